"""The objects of a workload cluster as metal3-dev-env applies them, for the live controllers to provision.

Unlike lab/data/seed_objects.py (a still life: objects *and* the statuses the controllers would have written),
these are only the inputs a user applies: BareMetalHosts with their BMC credentials, and the cluster
templates (Cluster, Metal3Cluster, KubeadmControlPlane, MachineDeployment, the machine, data and
bootstrap templates, an IPPool). Everything else (Machines, KubeadmConfigs, Metal3Machines, data
claims, certificates, the kubeconfig, every status) is the live controllers' work.

What differs from a dev-env site, and why:
- The hosts are sushy-tools' fake systems (lab/machines/bmc.py): their BMC address, boot MAC, and
  `inspect.metal3.io: disabled` (there is no agent to inspect with), `automatedCleaningMode: disabled`
  (no agent to clean with).
- The image is a `live-iso` (Ironic's ramdisk deploy boots it without an agent; disk images need the
  Ironic Python Agent, which the lab cannot run).
- The control plane endpoint is 127.0.0.1:<api_port>: the machine agent (lab/machines/node_agent.py) serves
  the workload cluster's API there once the init machine "boots".
- kubeletExtraArgs keep dev-env's `node-labels: metal3.io/uuid={{ ds.meta_data.uuid }}` (the label
  CAPM3 finds a host's Node by, to set its providerID) and drop the ones about the machine's runtime
  (cgroup driver, CRI socket) and `provider-id` (so the providerID on the Nodes is CAPM3's doing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from lab.data import crds
from lab.data.seed import type_index
from lab.data.seed_objects import BMO, BOOTSTRAP, CAPI, CLUSTER_NAME, CONTROLPLANE, INFRA, IPAM
from lab.machines.bmc import IMAGE_NAME, FakeSystem, LocalBmcs
from metal3_pivot import NAMESPACE, Kube, group_of

Obj = dict[str, Any]



@dataclass(frozen=True)
class LiveTopology:
    """One workload cluster on the rack's fake machines: `control_planes + workers + spare_hosts` hosts."""

    api_port: int                       # the workload controlPlaneEndpoint port (lab.cluster.free_port)
    namespace: str = "metal3"
    cluster: str = "test1"
    control_planes: int = 1
    workers: int = 1
    spare_hosts: int = 0
    kubernetes_version: str = "v1.34.1"
    image_url: str = ""                 # default: the rack's live.iso (LocalBmcs.image_url)

    @property
    def hosts(self) -> int:
        return self.control_planes + self.workers + self.spare_hosts


class TopologyError(ValueError):
    """The topology does not fit the rack (too few machines) or is not one the controllers accept."""


def host_name(index: int) -> str:
    return f"node-{index}"


def live_objects(t: LiveTopology, bmcs: LocalBmcs) -> list[Obj]:
    """Every object to apply, in an order the webhooks accept (credentials before hosts, the Cluster's
    referents after it). `bmcs` must be started: its ports are in the BMC addresses and the image URL."""
    if t.hosts > bmcs.count:
        raise TopologyError(f"{t.hosts} hosts wanted ({t.control_planes} control planes, {t.workers} workers, "
                            f"{t.spare_hosts} spare) but the rack {bmcs.name!r} has {bmcs.count} machines: "
                            "start LocalBmcs with a larger count")
    if t.control_planes < 1 or t.workers < 0 or t.spare_hosts < 0:
        raise TopologyError("control_planes must be >= 1, workers and spare_hosts >= 0")
    if not t.api_port:
        raise TopologyError("api_port is 0: pick one with lab.cluster.free_port()")
    out: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.namespace}}]
    for i, system in enumerate(bmcs.systems[:t.hosts]):
        out += host_objects(t, bmcs, system, host_name(i))
    out += cluster_objects(t, _image(t, bmcs))
    return out


def host_objects(t: LiveTopology, bmcs: LocalBmcs, system: FakeSystem, name: str) -> list[Obj]:
    """A BareMetalHost for one fake system and its BMC credentials (sushy accepts any; each password is
    distinctive, so the secrets audit can search every log and output for it)."""
    secret = f"{name}-bmc-secret"
    password = "bmc-" + hashlib.sha256(f"{t.namespace}/{t.cluster}/{name}".encode()).hexdigest()[:20]
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": secret, "namespace": t.namespace},
         "stringData": {"username": "admin", "password": password}},
        {"apiVersion": BMO, "kind": "BareMetalHost",
         "metadata": {"name": name, "namespace": t.namespace,
                      "annotations": {"inspect.metal3.io": "disabled"}},
         "spec": {"online": True, "bootMACAddress": system.mac, "automatedCleaningMode": "disabled",
                  "bmc": {"address": bmcs.address(system), "credentialsName": secret,
                          "disableCertificateVerification": True}}},
    ]


def _image(t: LiveTopology, bmcs: LocalBmcs) -> Obj:
    url = t.image_url or bmcs.image_url
    iso = bmcs.directory / "images" / IMAGE_NAME
    checksum = hashlib.sha256(iso.read_bytes()).hexdigest() if iso.exists() else ""
    image: Obj = {"url": url, "diskFormat": "live-iso"}
    if checksum:
        image.update(checksum=checksum, checksumType="sha256")
    return image


def _node_registration() -> Obj:
    # cloud-init renders these from the config drive's meta_data (BMO: name, uuid = the BMH's UID, ...)
    return {"name": "{{ ds.meta_data.name }}",
            "kubeletExtraArgs": [{"name": "node-labels", "value": "metal3.io/uuid={{ ds.meta_data.uuid }}"}]}


def cluster_objects(t: LiveTopology, image: Obj) -> list[Obj]:
    ns, name = t.namespace, t.cluster
    pool = f"{name}-externalv4-pool"
    endpoint = {"host": "127.0.0.1", "port": t.api_port}

    def meta(obj_name: str, **extra: Any) -> Obj:
        return {"name": obj_name, "namespace": ns, **extra}

    def ref(api_version: str, kind: str, obj_name: str) -> Obj:
        return {"apiGroup": api_version.split("/")[0], "kind": kind, "name": obj_name}

    def m3_template(role: str) -> Obj:
        return {"apiVersion": INFRA, "kind": "Metal3MachineTemplate", "metadata": meta(f"{name}-{role}"),
                "spec": {"template": {"spec": {"image": dict(image), "automatedCleaningMode": "disabled",
                                               "dataTemplate": {"name": f"{name}-{role}-template"}}}}}

    def data_template(role: str) -> Obj:
        return {"apiVersion": INFRA, "kind": "Metal3DataTemplate", "metadata": meta(f"{name}-{role}-template"),
                "spec": {"clusterName": name,
                         "metaData": {"objectNames": [{"key": "name", "object": "machine"},
                                                      {"key": "local-hostname", "object": "machine"},
                                                      {"key": "local_hostname", "object": "machine"}],
                                      "ipAddressesFromPool": [{"key": "externalv4IP", "name": pool}],
                                      "prefixesFromPool": [{"key": "externalv4CIDR", "name": pool}]}}}

    labels = {CLUSTER_NAME: name, "nodepool": "nodepool-0"}
    return [
        {"apiVersion": CAPI, "kind": "Cluster", "metadata": meta(name),
         "spec": {"clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/18"]},
                                     "services": {"cidrBlocks": ["10.96.0.0/12"]}},
                  "controlPlaneEndpoint": dict(endpoint),
                  "infrastructureRef": ref(INFRA, "Metal3Cluster", name),
                  "controlPlaneRef": ref(CONTROLPLANE, "KubeadmControlPlane", name)}},
        {"apiVersion": INFRA, "kind": "Metal3Cluster", "metadata": meta(name),
         "spec": {"controlPlaneEndpoint": dict(endpoint), "cloudProviderEnabled": False}},
        {"apiVersion": IPAM, "kind": "IPPool", "metadata": meta(pool),
         "spec": {"clusterName": name, "namePrefix": f"{name}-bmv4",
                  "pools": [{"start": "192.168.111.100", "end": "192.168.111.200"}],
                  "prefix": 24, "gateway": "192.168.111.1"}},
        {"apiVersion": CONTROLPLANE, "kind": "KubeadmControlPlane", "metadata": meta(name),
         "spec": {"replicas": t.control_planes, "version": t.kubernetes_version,
                  "rollout": {"strategy": {"rollingUpdate": {"maxSurge": 1}}},
                  "machineTemplate": {"spec": {
                      "infrastructureRef": ref(INFRA, "Metal3MachineTemplate", f"{name}-controlplane"),
                      "deletion": {"nodeDrainTimeoutSeconds": 0}}},
                  "kubeadmConfigSpec": {
                      "format": "cloud-config",
                      "initConfiguration": {"nodeRegistration": _node_registration()},
                      "joinConfiguration": {"controlPlane": {}, "nodeRegistration": _node_registration()}}}},
        m3_template("controlplane"),
        data_template("controlplane"),
        {"apiVersion": CAPI, "kind": "MachineDeployment", "metadata": meta(name, labels=dict(labels)),
         "spec": {"clusterName": name, "replicas": t.workers,
                  "selector": {"matchLabels": dict(labels)},
                  "template": {"metadata": {"labels": dict(labels)},
                               "spec": {"clusterName": name, "version": t.kubernetes_version,
                                        "bootstrap": {"configRef": ref(BOOTSTRAP, "KubeadmConfigTemplate",
                                                                       f"{name}-workers")},
                                        "infrastructureRef": ref(INFRA, "Metal3MachineTemplate", f"{name}-workers"),
                                        "deletion": {"nodeDrainTimeoutSeconds": 0}}}}},
        m3_template("workers"),
        data_template("workers"),
        {"apiVersion": BOOTSTRAP, "kind": "KubeadmConfigTemplate", "metadata": meta(f"{name}-workers"),
         "spec": {"template": {"spec": {"format": "cloud-config",
                                        "joinConfiguration": {"nodeRegistration": _node_registration()}}}}},
    ]


async def apply_objects(kube: Kube, objects: list[Obj], *, manager: str = "metal3-lab") -> None:
    """Server-side apply `objects` in order (as `kubectl apply -f` of the templates would), with the
    resource types the lab's CRD bundle declares."""
    index = type_index(crds.bundle().resource_types())
    index[("", "Namespace")] = NAMESPACE
    for obj in objects:
        await kube.apply(index[(group_of(obj["apiVersion"]), obj["kind"])], obj, manager=manager)
