"""The objects of a Metal3 management cluster as metal3-dev-env leaves it after provisioning clusters.

Seed data for tests and benchmarks of the pivot: every object a real CAPI v1.14 / CAPM3 v1.13.2 /
BMO v0.13.2 / Metal3 IPAM v1.13.2 management cluster holds for a provisioned workload cluster, as dicts,
with the owner references, labels and annotations those controllers set (they are what `clusterctl move`
walks) and the status they write. Nothing here talks to a cluster: `lab/data/seed.py` creates the objects
level by level, fills the owner UIDs in and writes the statuses through the status subresource.

Why the details matter:
- ownerReferences carry name/kind/apiVersion and a uid placeholder: an object's owners always sit on a lower
  level, so a caller creating level by level can resolve every uid (the garbage collector deletes objects
  whose owner uid does not exist).
- Every CAPI-family object uses the v1beta2 storage version: no conversion webhook runs in the lab clusters.
- BareMetalHosts carry `baremetalhost.metal3.io/status` (what CAPM3 writes when it pauses a host): BMO on the
  target rebuilds a host's status from it, so the pivot must carry it.
- Everything is derived from hashlib digests of stable seeds: two builds are equal, byte for byte.

Deliberately left out: finalizers (no controller runs in the lab to remove them, so they would only block
cleanup) and objects of the workload clusters themselves (Nodes live there, not here).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

Obj = dict[str, Any]

# API versions: the storage versions of the pinned providers' CRDs.
CAPI = "cluster.x-k8s.io/v1beta2"
BOOTSTRAP = "bootstrap.cluster.x-k8s.io/v1beta2"
CONTROLPLANE = "controlplane.cluster.x-k8s.io/v1beta2"
INFRA = "infrastructure.cluster.x-k8s.io/v1beta2"
BMO = "metal3.io/v1alpha1"
IPAM = "ipam.metal3.io/v1alpha1"

# Labels and annotations the controllers read and write.
CLUSTER_NAME = "cluster.x-k8s.io/cluster-name"
CONTROL_PLANE = "cluster.x-k8s.io/control-plane"
CONTROL_PLANE_NAME = "cluster.x-k8s.io/control-plane-name"
DEPLOYMENT_NAME = "cluster.x-k8s.io/deployment-name"
SET_NAME = "cluster.x-k8s.io/set-name"
TEMPLATE_HASH = "machine-template-hash"
PROVIDER = "cluster.x-k8s.io/provider"
CLONED_FROM_NAME = "cluster.x-k8s.io/cloned-from-name"
CLONED_FROM_GROUPKIND = "cluster.x-k8s.io/cloned-from-groupkind"
KCP_CLEANUP_HOOK = "pre-terminate.delete.hook.machine.cluster.x-k8s.io/kcp-cleanup"
MD_REVISION = "machinedeployment.clusters.x-k8s.io/revision"
MD_DESIRED_REPLICAS = "machinedeployment.clusters.x-k8s.io/desired-replicas"
MD_MAX_REPLICAS = "machinedeployment.clusters.x-k8s.io/max-replicas"
HOST_ANNOTATION = "metal3.io/BareMetalHost"
BMH_STATUS = "baremetalhost.metal3.io/status"
BMO_ENVIRONMENT = "environment.metal3.io"        # BMO labels every Secret it reads (secretutils.claimSecret)

CLUSTER_SECRET = "cluster.x-k8s.io/secret"
METAL3_SECRET = "infrastructure.cluster.x-k8s.io/secret"

#: the alphabet of k8s.io/apimachinery's rand.String, which CAPI uses for generated names
_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_BASE_TIME = datetime(2026, 5, 4, 8, 0, 0, tzinfo=UTC)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NICS = ("enp1s0", "enp2s0")                     # metal3-dev-env's bmh_nic_names: provisioning, external
_SSH_USER = "metal3"


@dataclass(frozen=True)
class Topology:
    namespace: str = "metal3"
    clusters: int = 1                # workload clusters: "test1", "test2", ...
    control_planes: int = 3          # 1 or 3 per cluster
    workers: int = 2                 # per cluster
    spare_hosts: int = 0             # extra available (unclaimed) BareMetalHosts per cluster
    kubernetes_version: str = "v1.36.3"


@dataclass
class SeedObject:
    obj: dict[str, Any]            # the manifest to CREATE (ownerReferences with uid="" placeholders)
    status: dict[str, Any] | None  # to write afterwards through /status (None: no subresource / nothing)
    level: int                     # creation order: owners have a lower level than dependents (0 first)


def build(topology: Topology) -> list[SeedObject]:
    """Every object of `topology.clusters` provisioned workload clusters, owners before dependents.

    The cyclic garbage collector is paused while building: the seed is a forest of fresh dicts without
    reference cycles, and with a large heap alive its passes over them cost more than the build itself."""
    _validate(topology)
    collecting = gc.isenabled()
    gc.disable()
    try:
        seed = _Seed()
        hosts_per_cluster = topology.control_planes + topology.workers + topology.spare_hosts
        for n in range(1, topology.clusters + 1):
            _build_cluster(seed, _Cluster(topology, n, first_host=(n - 1) * hosts_per_cluster))
        return seed.objects
    finally:
        if collecting:
            gc.enable()


def _validate(t: Topology) -> None:
    if not _DNS1123_LABEL.match(t.namespace) or len(t.namespace) > 63:
        raise ValueError(f"namespace {t.namespace!r} is not a DNS-1123 label")
    if t.clusters < 1 or t.clusters > 250:
        raise ValueError("clusters must be between 1 and 250")
    if t.control_planes < 1 or t.control_planes % 2 == 0:
        raise ValueError("control_planes must be odd (KubeadmControlPlane with stacked etcd)")
    if t.workers < 0 or t.spare_hosts < 0:
        raise ValueError("workers and spare_hosts must not be negative")
    if not re.match(r"^v\d+\.\d+\.\d+$", t.kubernetes_version):
        raise ValueError(f"kubernetes_version {t.kubernetes_version!r} is not vMAJOR.MINOR.PATCH")


class _Seed:
    """Collects objects in creation order and derives each level from its owners, which must already be in."""

    def __init__(self) -> None:
        self.objects: list[SeedObject] = []
        self._levels: dict[tuple[str, str], int] = {}

    def add(self, obj: Obj, status: Obj | None = None) -> Obj:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self._levels:
            raise ValueError(f"duplicate {key}")
        level = 0
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = (ref["kind"], ref["name"])
            if owner not in self._levels:
                raise ValueError(f"{key} is owned by {owner}, which is not (yet) in the seed")
            level = max(level, self._levels[owner] + 1)
        self._levels[key] = level
        self.objects.append(SeedObject(obj, status, level))
        return obj


# ---------------------------------------------------------------------------------------------- fake data

def _digest(seed: str, size: int = 32) -> bytes:
    """Deterministic pseudo-random bytes: the only source of 'randomness' in the seed."""
    return hashlib.shake_256(seed.encode()).digest(size)


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _suffix(seed: str) -> str:
    """Five characters like CAPI's generated name suffixes."""
    return "".join(_RANDOM_ALPHABET[b % len(_RANDOM_ALPHABET)] for b in _digest(seed, 5))


def _uuid(seed: str) -> str:
    return str(uuid.UUID(bytes=_digest(seed, 16), version=4))


def _pem(kind: str, seed: str, size: int) -> str:
    body = base64.b64encode(_digest(seed, size)).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----\n"


@lru_cache(maxsize=4096)
def _ts(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds, as metav1.Time marshals (cached: the same moments recur a lot)."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _mac(prefix: str, index: int) -> str:
    return f"{prefix}:{(index >> 16) & 255:02x}:{(index >> 8) & 255:02x}:{index & 255:02x}"


def _ipv4(address: int) -> str:
    return ".".join(str((address >> shift) & 255) for shift in (24, 16, 8, 0))


def _ipv4_int(dotted: str) -> int:
    a, b, c, d = (int(x) for x in dotted.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _netmask(prefix: int) -> str:
    return _ipv4((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)


# ------------------------------------------------------------------------------------------ object pieces

def _meta(ns: str, name: str, *, labels: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None, owners: list[Obj] | None = None) -> Obj:
    md: Obj = {"name": name, "namespace": ns}
    if labels:
        md["labels"] = dict(labels)
    if annotations:
        md["annotations"] = dict(annotations)
    if owners:
        md["ownerReferences"] = owners
    return md


def _owner(obj: Obj, *, controller: bool | None = None, block: bool = False) -> Obj:
    """An ownerReference to `obj` with a uid placeholder; controller/block as the owning controller sets them
    (controllerutil.SetOwnerReference: neither; SetControllerReference / NewControllerRef: both;
    CAPM3's setOwnerRefInList: an explicit controller true/false, never blockOwnerDeletion)."""
    ref: Obj = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                "uid": ""}
    if controller is not None:
        ref["controller"] = controller
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def _controller_ref(obj: Obj) -> Obj:
    """metav1.NewControllerRef / controllerutil.SetControllerReference."""
    return _owner(obj, controller=True, block=True)


def _contract_ref(obj: Obj) -> Obj:
    """A v1beta2 contract reference: {apiGroup, kind, name}."""
    return {"apiGroup": obj["apiVersion"].split("/")[0], "kind": obj["kind"], "name": obj["metadata"]["name"]}


def _ns_ref(ns: str, name: str) -> Obj:
    """{name, namespace}: the SecretReference / ObjectReference shape the controllers fill in."""
    return {"name": name, "namespace": ns}


def _cond(ctype: str, status: bool, reason: str, when: datetime, message: str = "") -> Obj:
    """A metav1.Condition as the v1beta2 controllers write it."""
    return {"type": ctype, "status": "True" if status else "False", "reason": reason, "message": message,
            "lastTransitionTime": _ts(when)}


def _secret(ns: str, name: str, data: dict[str, str], *, stype: str, labels: dict[str, str] | None = None,
            owners: list[Obj] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(ns, name, labels=labels, owners=owners),
            "type": stype, "data": {k: _b64(v) for k, v in data.items()}}


# ------------------------------------------------------------------------------------------------ cluster

@dataclass
class _Network:
    """The external (baremetal) IPv4 network of one workload cluster and its IPAM pool.

    Small clusters get metal3-dev-env's layout (test1: 192.168.111.0/24, pool from .100, VIP .249);
    clusters too big for a /24 get 10.<n>.0.0/16."""

    prefix: int
    pool_start: int
    pool_end: int
    gateway: str
    endpoint: str

    @classmethod
    def for_cluster(cls, n: int, machines: int) -> _Network:
        if machines <= 140 and n <= 145:
            base = _ipv4_int(f"192.168.{110 + n}.0")
            return cls(24, base + 100, base + 240, _ipv4(base + 1), _ipv4(base + 249))
        base = _ipv4_int(f"10.{n}.0.0")
        return cls(16, base + 256, base + 65000, _ipv4(base + 1), _ipv4(base + 10))

    def address(self, index: int) -> str:
        return _ipv4(self.pool_start + index)


class _Cluster:
    """Names, network, times and the fake key material of one workload cluster `test<n>`."""

    def __init__(self, topology: Topology, n: int, first_host: int) -> None:
        self.topology = topology
        self.first_host = first_host           # global index of the cluster's first host (node-<index>)
        self.name = f"test{n}"
        self.ns = topology.namespace
        self.net = _Network.for_cluster(n, topology.control_planes + topology.workers)
        self.start = _BASE_TIME + timedelta(hours=2 * (n - 1))
        self.endpoint = f"{self.net.endpoint}:6443"
        self.pool = f"{self.name}-externalv4-pool"
        self.pool_prefix = f"{self.name}-bmv4"
        self.image_url = ("http://172.22.0.1/images/"
                          f"UBUNTU_24.04_NODE_IMAGE_K8S_{topology.kubernetes_version}-raw.img")
        #: certificate (or public key) and private key of each cluster certificate Secret
        kinds = {"ca": ("CERTIFICATE", 790), "etcd": ("CERTIFICATE", 790), "proxy": ("CERTIFICATE", 790),
                 "sa": ("PUBLIC KEY", 294)}
        self.pems = {purpose: (_pem(crt_kind, f"{self.name}/{purpose}/crt", size),
                               _pem("RSA PRIVATE KEY", f"{self.name}/{purpose}/key", 1190))
                     for purpose, (crt_kind, size) in kinds.items()}
        self.ca_hash = "sha256:" + hashlib.sha256(self.pems["ca"][0].encode()).hexdigest()
        self.token = f"{_suffix(self.name + '/token-id')}a.{_digest(self.name + '/token', 8).hex()}"
        self.used_suffixes: set[str] = set()

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes)

    def unique_suffix(self, seed: str) -> str:
        """A generated-name suffix, unique within the cluster (re-derived on the rare collision)."""
        attempt = 0
        while True:
            s = _suffix(f"{self.name}/{seed}/{attempt}")
            if s not in self.used_suffixes:
                self.used_suffixes.add(s)
                return s
            attempt += 1


@dataclass
class _Role:
    """What differs between the control-plane machines and the workers of a cluster."""

    owner: Obj                      # KubeadmControlPlane or MachineSet
    m3_template: Obj
    data_template: Obj
    data_status: Obj                # the Metal3DataTemplate's status: its indexes grow with every claim
    bootstrap_template: Obj | None  # KubeadmConfigTemplate for workers
    labels: dict[str, str]
    control_plane: bool


def _build_cluster(seed: _Seed, c: _Cluster) -> None:
    t = c.topology
    cluster = seed.add(*_cluster(c))
    seed.add(*_metal3_cluster(c, cluster))
    kcp = seed.add(*_kcp(c, cluster))
    cp_template = seed.add(_m3_machine_template(c, cluster, "controlplane"))
    cp_data, cp_data_status = _data_template(c, cluster, "controlplane", t.control_planes)
    seed.add(cp_data, cp_data_status)
    worker_template = seed.add(_m3_machine_template(c, cluster, "workers"))
    worker_data, worker_data_status = _data_template(c, cluster, "workers", t.workers)
    seed.add(worker_data, worker_data_status)
    kct = seed.add(_kubeadm_config_template(c, cluster))
    pool, pool_status = _ip_pool(c, cluster)
    seed.add(pool, pool_status)
    md = seed.add(*_machine_deployment(c, cluster, kct, worker_template))
    ms = seed.add(*_machine_set(c, md, kct, worker_template))
    for purpose in ("ca", "etcd", "proxy", "sa"):
        seed.add(_certificate_secret(c, kcp, purpose))
    seed.add(_kubeconfig_secret(c, kcp))

    cp_labels = {CLUSTER_NAME: c.name, CONTROL_PLANE: "", CONTROL_PLANE_NAME: kcp["metadata"]["name"]}
    worker_labels = {**ms["spec"]["template"]["metadata"]["labels"], SET_NAME: ms["metadata"]["name"],
                     DEPLOYMENT_NAME: md["metadata"]["name"]}
    control_plane = _Role(kcp, cp_template, cp_data, cp_data_status, None, cp_labels, control_plane=True)
    workers = _Role(ms, worker_template, worker_data, worker_data_status, kct, worker_labels,
                    control_plane=False)
    roles = [(control_plane, t.control_planes), (workers, t.workers)]
    machine = 0
    for role, count in roles:
        for index in range(count):
            _build_machine(seed, c, role, index=index, machine=machine, pool=pool, pool_status=pool_status)
            machine += 1
    for spare in range(t.spare_hosts):
        _build_host(seed, c, c.first_host + machine + spare)


def _cluster(c: _Cluster) -> tuple[Obj, Obj]:
    t = c.topology
    obj = {
        "apiVersion": CAPI, "kind": "Cluster",
        "metadata": _meta(c.ns, c.name),
        "spec": {
            "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/18"]},
                               "services": {"cidrBlocks": ["10.96.0.0/12"]}},
            "controlPlaneEndpoint": {"host": c.net.endpoint, "port": 6443},
            "infrastructureRef": {"apiGroup": INFRA.split("/")[0], "kind": "Metal3Cluster", "name": c.name},
            "controlPlaneRef": {"apiGroup": CONTROLPLANE.split("/")[0], "kind": "KubeadmControlPlane",
                                "name": c.name},
        },
    }
    done = c.at(30 + 10 * (t.control_planes + t.workers))
    replicas = {"desiredReplicas": t.control_planes, "replicas": t.control_planes,
                "readyReplicas": t.control_planes, "availableReplicas": t.control_planes,
                "upToDateReplicas": t.control_planes}
    workers = {"desiredReplicas": t.workers, "replicas": t.workers, "readyReplicas": t.workers,
               "availableReplicas": t.workers, "upToDateReplicas": t.workers}
    no_workers = "NoReplicas"
    status = {
        "initialization": {"infrastructureProvisioned": True, "controlPlaneInitialized": True},
        "phase": "Provisioned",
        "controlPlane": replicas,
        "workers": workers,
        "conditions": [
            _cond("Available", True, "Available", done),
            _cond("InfrastructureReady", True, "Ready", c.at(2)),
            _cond("ControlPlaneInitialized", True, "Initialized", c.at(25)),
            _cond("ControlPlaneAvailable", True, "Available", c.at(26)),
            _cond("WorkersAvailable", True, "Available", done),   # "NoWorkers" needs no MachineDeployment
            _cond("ControlPlaneMachinesReady", True, "Ready", done),
            _cond("WorkerMachinesReady", True, "Ready" if t.workers else no_workers, done),
            _cond("ControlPlaneMachinesUpToDate", True, "UpToDate", done),
            _cond("WorkerMachinesUpToDate", True, "UpToDate" if t.workers else no_workers, done),
            _cond("RemoteConnectionProbe", True, "ProbeSucceeded", c.at(25)),
            _cond("RollingOut", False, "NotRollingOut", c.at(1)),
            _cond("ScalingUp", False, "NotScalingUp", done),
            _cond("ScalingDown", False, "NotScalingDown", c.at(1)),
            _cond("Remediating", False, "NotRemediating", c.at(1)),
            _cond("Deleting", False, "NotDeleting", c.at(1)),
            _cond("Paused", False, "NotPaused", c.at(1)),
        ],
    }
    return obj, status


def _metal3_cluster(c: _Cluster, cluster: Obj) -> tuple[Obj, Obj]:
    obj = {
        "apiVersion": INFRA, "kind": "Metal3Cluster",
        "metadata": _meta(c.ns, c.name, labels={CLUSTER_NAME: c.name}, owners=[_owner(cluster)]),
        "spec": {"controlPlaneEndpoint": {"host": c.net.endpoint, "port": 6443},
                 "cloudProviderEnabled": False},
    }
    status = {
        "initialization": {"provisioned": True},
        "lastUpdated": _ts(c.at(1)),
        "conditions": [
            _cond("Ready", True, "Ready", c.at(1)),
            _cond("BaremetalInfrastructureReady", True, "Ready", c.at(1)),
            _cond("Paused", False, "NotPaused", c.at(1)),
        ],
    }
    return obj, status


def _kubelet_args() -> list[Obj]:
    """metal3-dev-env's kubeletExtraArgs (the node label and provider ID CAPM3 matches nodes by)."""
    return [
        {"name": "node-labels", "value": "metal3.io/uuid={{ ds.meta_data.uuid }}"},
        {"name": "provider-id", "value": "metal3://{{ ds.meta_data.providerid }}"},
        {"name": "feature-gates", "value": "AllAlpha=false"},
        {"name": "cgroup-driver", "value": "systemd"},
        {"name": "container-runtime-endpoint", "value": "unix:///var/run/crio/crio.sock"},
        {"name": "runtime-request-timeout", "value": "5m"},
    ]


def _node_registration() -> Obj:
    return {"name": "{{ ds.meta_data.name }}", "kubeletExtraArgs": _kubelet_args()}


def _users(c: _Cluster) -> list[Obj]:
    key = "ssh-ed25519 " + _b64(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + _digest(c.ns + "/ssh", 32))
    return [{"name": _SSH_USER, "sudo": "ALL=(ALL) NOPASSWD:ALL",
             "sshAuthorizedKeys": [f"{key} metal3@dev-env"]}]


def _kubeadm_config_spec(c: _Cluster) -> Obj:
    keepalived = (
        "! Configuration File for keepalived\n"
        "global_defs {\n    notification_email {\n    sysadmin@example.com\n    }\n"
        "    notification_email_from noreply@example.com\n    smtp_server localhost\n"
        "    smtp_connect_timeout 30\n}\n"
        f"vrrp_instance VI_1 {{\n    state MASTER\n    interface {_NICS[1]}\n    virtual_router_id 1\n"
        "    priority 101\n    advert_int 1\n"
        f"    virtual_ipaddress {{\n        {c.net.endpoint}\n    }}\n}}\n"
    )
    return {
        "clusterConfiguration": {"imageRepository": "registry.k8s.io",
                                 "dns": {"imageRepository": "registry.k8s.io/coredns"}},
        "initConfiguration": {"nodeRegistration": _node_registration()},
        "joinConfiguration": {"controlPlane": {}, "nodeRegistration": _node_registration()},
        "files": [{"path": "/etc/keepalived/keepalived.conf", "owner": "root:root", "permissions": "0644",
                   "content": keepalived}],
        "preKubeadmCommands": ["rm /etc/cni/net.d/* || true", "netplan apply",
                               "systemctl enable --now keepalived", "systemctl enable --now crio kubelet"],
        "postKubeadmCommands": [f"mkdir -p /home/{_SSH_USER}/.kube",
                                f"cp /etc/kubernetes/admin.conf /home/{_SSH_USER}/.kube/config",
                                f"chown {_SSH_USER}:{_SSH_USER} /home/{_SSH_USER}/.kube/config"],
        "users": _users(c),
    }


def _kcp(c: _Cluster, cluster: Obj) -> tuple[Obj, Obj]:
    t = c.topology
    obj = {
        "apiVersion": CONTROLPLANE, "kind": "KubeadmControlPlane",
        "metadata": _meta(c.ns, c.name, labels={CLUSTER_NAME: c.name}, owners=[_owner(cluster)]),
        "spec": {
            "replicas": t.control_planes,
            "version": t.kubernetes_version,
            "rollout": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
            "machineTemplate": {"spec": {
                "infrastructureRef": {"apiGroup": INFRA.split("/")[0], "kind": "Metal3MachineTemplate",
                                      "name": f"{c.name}-controlplane"},
                "deletion": {"nodeDrainTimeoutSeconds": 0},
            }},
            "kubeadmConfigSpec": _kubeadm_config_spec(c),
        },
    }
    done = c.at(20 + 10 * t.control_planes)
    n = t.control_planes
    status = {
        "initialization": {"controlPlaneInitialized": True},
        "replicas": n, "readyReplicas": n, "availableReplicas": n, "upToDateReplicas": n,
        "selector": f"{CLUSTER_NAME}={c.name},{CONTROL_PLANE}",
        "version": t.kubernetes_version,
        "conditions": [
            _cond("Available", True, "Available", c.at(26)),
            _cond("Initialized", True, "Initialized", c.at(25)),
            _cond("CertificatesAvailable", True, "Available", c.at(3)),
            _cond("EtcdClusterHealthy", True, "Healthy", done),
            _cond("ControlPlaneComponentsHealthy", True, "Healthy", done),
            _cond("MachinesReady", True, "Ready", done),
            _cond("MachinesUpToDate", True, "UpToDate", done),
            _cond("RollingOut", False, "NotRollingOut", c.at(3)),
            _cond("ScalingUp", False, "NotScalingUp", done),
            _cond("ScalingDown", False, "NotScalingDown", c.at(3)),
            _cond("Remediating", False, "NotRemediating", c.at(3)),
            _cond("Deleting", False, "NotDeleting", c.at(3)),
            _cond("Paused", False, "NotPaused", c.at(3)),
        ],
    }
    return obj, status


def _m3_machine_template(c: _Cluster, cluster: Obj, role: str) -> Obj:
    """Owned by the Cluster (plain reference): KCP and the MachineSet controller adopt their templates."""
    return {
        "apiVersion": INFRA, "kind": "Metal3MachineTemplate",
        "metadata": _meta(c.ns, f"{c.name}-{role}", owners=[_owner(cluster)]),
        "spec": {"template": {"spec": {
            "image": _m3_image(c),
            "dataTemplate": {"name": f"{c.name}-{role}-template"},
        }}},
    }


def _m3_image(c: _Cluster) -> Obj:
    return {"url": c.image_url, "checksum": c.image_url + ".sha256sum", "checksumType": "sha256",
            "diskFormat": "raw"}


def _data_template(c: _Cluster, cluster: Obj, role: str, claims: int) -> tuple[Obj, Obj]:
    """metal3-dev-env's Metal3DataTemplate, on the one external pool of this seed.

    Owned by the Cluster with controller=false (CAPM3's SetClusterOwnerRef). The cluster-name label is set
    here so the rendered metadata/networkdata Secrets carry it: CAPM3 copies the template's label onto
    them (metal3-dev-env's template has none, so there they get an empty value)."""
    obj = {
        "apiVersion": INFRA, "kind": "Metal3DataTemplate",
        "metadata": _meta(c.ns, f"{c.name}-{role}-template", labels={CLUSTER_NAME: c.name},
                          owners=[_owner(cluster, controller=False)]),
        "spec": {
            "clusterName": c.name,
            "metaData": {
                "objectNames": [{"key": "name", "object": "machine"},
                                {"key": "local-hostname", "object": "machine"},
                                {"key": "local_hostname", "object": "machine"}],
                "ipAddressesFromPool": [{"key": "externalv4IP", "name": c.pool}],
                "prefixesFromPool": [{"key": "externalv4CIDR", "name": c.pool}],
            },
            "networkData": {
                "links": {"ethernets": [{"type": "phy", "id": nic, "macAddress": {"fromHostInterface": nic}}
                                        for nic in _NICS]},
                "networks": {"ipv4": [{
                    "id": "externalv4", "link": _NICS[1], "ipAddressFromIPPool": c.pool,
                    "routes": [{"network": "0.0.0.0", "prefix": 0, "gateway": {"fromIPPool": c.pool}}],
                }]},
                "services": {"dns": ["8.8.8.8"]},
            },
        },
    }
    # indexes (one per Metal3DataClaim) are appended by _build_machine; the CRD wants at least one or none
    status: Obj = {"lastUpdated": _ts(c.at(20 + 10 * claims))}
    return obj, status


def _kubeadm_config_template(c: _Cluster, cluster: Obj) -> Obj:
    return {
        "apiVersion": BOOTSTRAP, "kind": "KubeadmConfigTemplate",
        "metadata": _meta(c.ns, f"{c.name}-workers", owners=[_owner(cluster)]),
        "spec": {"template": {"spec": {
            "joinConfiguration": {"nodeRegistration": _node_registration()},
            "preKubeadmCommands": ["rm /etc/cni/net.d/* || true", "netplan apply",
                                   "systemctl enable --now crio kubelet"],
            "users": _users(c),
        }}},
    }


def _ip_pool(c: _Cluster, cluster: Obj) -> tuple[Obj, Obj]:
    """Owned by the Cluster with controller=false and labelled by the IPAM IPPool controller."""
    obj = {
        "apiVersion": IPAM, "kind": "IPPool",
        "metadata": _meta(c.ns, c.pool, labels={CLUSTER_NAME: c.name, PROVIDER: "ipam-metal3"},
                          owners=[_owner(cluster, controller=False)]),
        "spec": {
            "clusterName": c.name,
            "namePrefix": c.pool_prefix,
            "pools": [{"start": _ipv4(c.net.pool_start), "end": _ipv4(c.net.pool_end)}],
            "prefix": c.net.prefix,
            "gateway": c.net.gateway,
        },
    }
    status: Obj = {"lastUpdated": _ts(c.at(20 + 10 * (c.topology.control_planes + c.topology.workers)))}
    return obj, status


def _machine_deployment(c: _Cluster, cluster: Obj, kct: Obj, m3mt: Obj) -> tuple[Obj, Obj]:
    t = c.topology
    template_labels = {CLUSTER_NAME: c.name, "nodepool": "nodepool-0"}
    obj: Obj = {
        "apiVersion": CAPI, "kind": "MachineDeployment",
        "metadata": _meta(c.ns, c.name, labels=template_labels, annotations={MD_REVISION: "1"},
                          owners=[_owner(cluster)]),
        "spec": {
            "clusterName": c.name,
            "replicas": t.workers,
            "rollout": {"strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}},
            "selector": {"matchLabels": dict(template_labels)},
            "template": {"metadata": {"labels": dict(template_labels)},
                         "spec": _machine_template_spec(c, kct, m3mt)},
        },
    }
    return obj, _replica_status(c, t.workers, obj["spec"]["selector"]["matchLabels"], phase=True)


def _machine_template_spec(c: _Cluster, kct: Obj, m3mt: Obj) -> Obj:
    return {
        "clusterName": c.name,
        "version": c.topology.kubernetes_version,
        "bootstrap": {"configRef": _contract_ref(kct)},
        "infrastructureRef": _contract_ref(m3mt),
        "deletion": {"nodeDrainTimeoutSeconds": 0},
    }


def _replica_status(c: _Cluster, replicas: int, selector: dict[str, str], *, phase: bool) -> Obj:
    done = c.at(30 + 10 * (c.topology.control_planes + replicas))
    status: Obj = {
        "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
        "upToDateReplicas": replicas,
        "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        "conditions": [
            _cond("Available", True, "Available", done),
            _cond("MachinesReady", True, "Ready" if replicas else "NoReplicas", done),
            _cond("MachinesUpToDate", True, "UpToDate" if replicas else "NoReplicas", done),
            _cond("ScalingUp", False, "NotScalingUp", done),
            _cond("ScalingDown", False, "NotScalingDown", c.at(5)),
            _cond("Remediating", False, "NotRemediating", c.at(5)),
            _cond("Deleting", False, "NotDeleting", c.at(5)),
            _cond("Paused", False, "NotPaused", c.at(5)),
        ],
    }
    if replicas:
        status["versions"] = [{"version": c.topology.kubernetes_version, "replicas": replicas}]
    if phase:
        status["phase"] = "Running"
        status["conditions"].insert(3, _cond("RollingOut", False, "NotRollingOut", c.at(5)))
    return status


def _machine_set(c: _Cluster, md: Obj, kct: Obj, m3mt: Obj) -> tuple[Obj, Obj]:
    """The MachineDeployment's one MachineSet: its name and machine-template-hash carry a random suffix."""
    t = c.topology
    suffix = c.unique_suffix("machineset")
    template_hash = f"{int.from_bytes(_digest(c.name + '/template-hash', 4), 'big')}-{suffix}"
    template_labels = {**md["spec"]["template"]["metadata"]["labels"], TEMPLATE_HASH: template_hash}
    replicas = str(t.workers)
    obj: Obj = {
        "apiVersion": CAPI, "kind": "MachineSet",
        "metadata": _meta(c.ns, f"{md['metadata']['name']}-{suffix}",
                          labels={**template_labels, DEPLOYMENT_NAME: md["metadata"]["name"]},
                          annotations={MD_REVISION: "1", MD_DESIRED_REPLICAS: replicas,
                                       MD_MAX_REPLICAS: str(t.workers + 1)},
                          owners=[_controller_ref(md)]),
        "spec": {
            "clusterName": c.name,
            "replicas": t.workers,
            "selector": {"matchLabels": {**md["spec"]["selector"]["matchLabels"],
                                         TEMPLATE_HASH: template_hash}},
            "template": {"metadata": {"labels": template_labels},
                         "spec": _machine_template_spec(c, kct, m3mt)},
        },
    }
    return obj, _replica_status(c, t.workers, obj["spec"]["selector"]["matchLabels"], phase=False)


def _certificate_secret(c: _Cluster, kcp: Obj, purpose: str) -> Obj:
    """`<cluster>-ca|etcd|proxy|sa`, generated by KCP and controlled by it (NewControllerRef)."""
    crt, key = c.pems[purpose]
    return _secret(c.ns, f"{c.name}-{purpose}", {"tls.crt": crt, "tls.key": key}, stype=CLUSTER_SECRET,
                   labels={CLUSTER_NAME: c.name}, owners=[_controller_ref(kcp)])


def _kubeconfig_secret(c: _Cluster, kcp: Obj) -> Obj:
    user = f"{c.name}-admin"
    kubeconfig = (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {_b64(c.pems['ca'][0])}\n"
        f"    server: https://{c.endpoint}\n"
        f"  name: {c.name}\n"
        "contexts:\n"
        "- context:\n"
        f"    cluster: {c.name}\n"
        f"    user: {user}\n"
        f"  name: {user}@{c.name}\n"
        f"current-context: {user}@{c.name}\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n"
        f"    client-certificate-data: {_b64(_pem('CERTIFICATE', c.name + '/admin/crt', 760))}\n"
        f"    client-key-data: {_b64(_pem('RSA PRIVATE KEY', c.name + '/admin/key', 1190))}\n"
    )
    return _secret(c.ns, f"{c.name}-kubeconfig", {"value": kubeconfig}, stype=CLUSTER_SECRET,
                   labels={CLUSTER_NAME: c.name}, owners=[_controller_ref(kcp)])


# ------------------------------------------------------------------------------------------------ machines

def _build_machine(seed: _Seed, c: _Cluster, role: _Role, *, index: int, machine: int, pool: Obj,
                   pool_status: Obj) -> None:
    """One provisioned Machine and everything hanging off it, down to its BareMetalHost and IPAddress.

    `index` counts within the role (the Metal3DataTemplate index), `machine` within the cluster (host and
    IP address allocation order)."""
    name = f"{role.owner['metadata']['name']}-{c.unique_suffix(f'machine-{machine}')}"
    host = c.first_host + machine
    host_name = f"node-{host}"
    when = c.at(20 + 10 * machine)
    ip = c.net.address(machine)
    labels = role.labels

    init = role.control_plane and index == 0      # the first control-plane machine runs `kubeadm init`

    m_obj = seed.add(*_machine(c, role, name, host, when, ip))
    kc = seed.add(*_kubeadm_config(c, role, m_obj, init=init, when=when))
    # CABPK's data Secret, controlled by the KubeadmConfig; BMO labels it when it reads the user data
    seed.add(_secret(c.ns, name, {"value": _cloud_config(c, role.control_plane, init=init),
                                  "format": "cloud-config"},
                     stype=CLUSTER_SECRET, labels={CLUSTER_NAME: c.name, BMO_ENVIRONMENT: "baremetal"},
                     owners=[_owner(kc, controller=True)]))

    template = role.data_template
    template_name = template["metadata"]["name"]
    data_name = f"{template_name}-{index}"
    m3m = seed.add(*_metal3_machine(c, role, m_obj, host, data_name, ip, when))
    claim = seed.add({"apiVersion": INFRA, "kind": "Metal3DataClaim",
                      "metadata": _meta(c.ns, name, labels=labels, owners=[_owner(m3m, controller=True)]),
                      "spec": {"template": _ns_ref(c.ns, template_name)}},
                     {"renderedData": _ns_ref(c.ns, data_name)})
    role.data_status.setdefault("indexes", []).append({"name": name, "index": index})
    data = seed.add({"apiVersion": INFRA, "kind": "Metal3Data",
                     "metadata": _meta(c.ns, data_name, labels=labels,
                                       owners=[_owner(template, controller=True), _owner(claim),
                                               _owner(m3m)]),
                     "spec": {"index": index,
                              "template": _ns_ref(c.ns, template_name),
                              "claim": _ns_ref(c.ns, name),
                              "metaData": _ns_ref(c.ns, f"{name}-metadata"),
                              "networkData": _ns_ref(c.ns, f"{name}-networkdata")}},
                    {"ready": True})
    rendered_labels = {CLUSTER_NAME: c.name, BMO_ENVIRONMENT: "baremetal"}
    seed.add(_secret(c.ns, f"{name}-metadata", {"metaData": _metadata(c, name, host_name, ip)},
                     stype=METAL3_SECRET, labels=rendered_labels, owners=[_owner(data, controller=True)]))
    seed.add(_secret(c.ns, f"{name}-networkdata", {"networkData": _network_data(c, host, ip)},
                     stype=METAL3_SECRET, labels=rendered_labels, owners=[_owner(data, controller=True)]))

    # IPAM: the claim is controlled by the Metal3Data, the address owned by both pool and claim
    claim_name = f"{data_name}-{c.pool}"
    address_name = f"{c.pool_prefix}-{ip.replace('.', '-')}"
    ip_claim = seed.add({"apiVersion": IPAM, "kind": "IPClaim",
                         "metadata": _meta(c.ns, claim_name, labels=labels,
                                           owners=[_owner(data, controller=True)]),
                         "spec": {"pool": _ns_ref(c.ns, c.pool)}},
                        {"address": _ns_ref(c.ns, address_name)})
    seed.add({"apiVersion": IPAM, "kind": "IPAddress",
              "metadata": _meta(c.ns, address_name, labels=labels, owners=[_owner(pool), _owner(ip_claim)]),
              "spec": {"address": ip, "prefix": c.net.prefix, "gateway": c.net.gateway,
                       "pool": _ns_ref(c.ns, c.pool), "claim": _ns_ref(c.ns, claim_name)}})
    pool_status.setdefault("indexes", {})[claim_name] = ip

    _build_host(seed, c, host, m3m=m3m, external_ip=ip, provisioned_at=when)


def _machine(c: _Cluster, role: _Role, name: str, host: int, when: datetime, ip: str) -> tuple[Obj, Obj]:
    """A Machine controlled by its KubeadmControlPlane or MachineSet, Running with a Node."""
    t = c.topology
    host_name = f"node-{host}"
    obj: Obj = {
        "apiVersion": CAPI, "kind": "Machine",
        "metadata": _meta(c.ns, name, labels=role.labels,
                          annotations={KCP_CLEANUP_HOOK: ""} if role.control_plane else None,
                          owners=[_controller_ref(role.owner)]),
        "spec": {
            "clusterName": c.name,
            "version": t.kubernetes_version,
            "bootstrap": {"configRef": {"apiGroup": BOOTSTRAP.split("/")[0], "kind": "KubeadmConfig",
                                        "name": name},
                          "dataSecretName": name},
            "infrastructureRef": {"apiGroup": INFRA.split("/")[0], "kind": "Metal3Machine", "name": name},
            "providerID": f"metal3://{c.ns}/{host_name}/{name}",
            "deletion": {"nodeDrainTimeoutSeconds": 0},
        },
    }
    ready = when + timedelta(minutes=8)
    conditions = [
        _cond("Available", True, "Available", ready),
        _cond("Ready", True, "Ready", ready),
        _cond("UpToDate", True, "UpToDate", when),
        _cond("BootstrapConfigReady", True, "Ready", when + timedelta(minutes=1)),
        _cond("InfrastructureReady", True, "Ready", ready - timedelta(minutes=1)),
        _cond("NodeReady", True, "NodeReady", ready),
        _cond("NodeHealthy", True, "NodeHealthy", ready),
        _cond("Updating", False, "NotUpdating", when),
        _cond("Deleting", False, "NotDeleting", when),
        _cond("Paused", False, "NotPaused", when),
    ]
    if role.control_plane:
        gates = [("NodeKubeadmLabelsAndTaintsSet", "Set"), ("APIServerPodHealthy", "Running"),
                 ("ControllerManagerPodHealthy", "Running"), ("SchedulerPodHealthy", "Running"),
                 ("EtcdPodHealthy", "Running"), ("EtcdMemberHealthy", "Healthy")]
        obj["spec"]["readinessGates"] = [{"conditionType": gate} for gate, _ in gates]
        conditions += [_cond(gate, True, reason, ready) for gate, reason in gates]
    status: Obj = {
        "nodeRef": {"name": name},        # metal3-dev-env names nodes after their Machine (ds.meta_data.name)
        "initialization": {"bootstrapDataSecretCreated": True, "infrastructureProvisioned": True},
        "phase": "Running",
        "addresses": _node_addresses(host, ip),
        "lastUpdated": _ts(ready),
        "nodeInfo": {
            "architecture": "amd64", "bootID": _uuid(f"{c.name}/{name}/boot"),
            "containerRuntimeVersion": "cri-o://1.36.0", "kernelVersion": "6.8.0-64-generic",
            "kubeProxyVersion": "", "kubeletVersion": t.kubernetes_version,
            "machineID": _digest(f"{c.name}/{name}/machine-id", 16).hex(), "operatingSystem": "linux",
            "osImage": "Ubuntu 24.04.3 LTS", "systemUUID": _system_uuid(host),
        },
        "conditions": conditions,
    }
    if role.control_plane:
        status["certificatesExpiryDate"] = _ts(when + timedelta(days=365))
    return obj, status


def _kubeadm_config(c: _Cluster, role: _Role, machine: Obj, *, init: bool, when: datetime) -> tuple[Obj, Obj]:
    """The Machine's KubeadmConfig: KCP's kubeadmConfigSpec (init or join) or the workers' template, with
    the discovery CABPK fills in for joining nodes. Controlled by the Machine (the creator's reference is
    dropped once the Machine adopts it)."""
    name = machine["metadata"]["name"]
    if role.control_plane:
        spec = _kubeadm_config_spec(c)
        if init:
            del spec["joinConfiguration"]
        else:
            del spec["initConfiguration"]
        annotations = None
    else:
        spec = _worker_kubeadm_spec(c)
        template = role.bootstrap_template
        assert template is not None
        annotations = {CLONED_FROM_NAME: template["metadata"]["name"],
                       CLONED_FROM_GROUPKIND: "KubeadmConfigTemplate.bootstrap.cluster.x-k8s.io"}
    if not init:
        spec["joinConfiguration"]["discovery"] = {"bootstrapToken": {
            "apiServerEndpoint": c.endpoint, "caCertHashes": [c.ca_hash], "token": c.token}}
    obj = {
        "apiVersion": BOOTSTRAP, "kind": "KubeadmConfig",
        "metadata": _meta(c.ns, name, labels=role.labels, annotations=annotations,
                          owners=[_controller_ref(machine)]),
        "spec": spec,
    }
    created = when + timedelta(minutes=1)
    conditions = [_cond("Ready", True, "Ready", created),
                  _cond("DataSecretAvailable", True, "Available", created),
                  _cond("Paused", False, "NotPaused", when)]
    if role.control_plane:
        conditions.insert(2, _cond("CertificatesAvailable", True, "Available", created))
    status = {"initialization": {"dataSecretCreated": True}, "dataSecretName": name, "conditions": conditions}
    return obj, status


def _worker_kubeadm_spec(c: _Cluster) -> Obj:
    return {
        "joinConfiguration": {"nodeRegistration": _node_registration()},
        "preKubeadmCommands": ["rm /etc/cni/net.d/* || true", "netplan apply",
                               "systemctl enable --now crio kubelet"],
        "users": _users(c),
    }


def _cloud_config(c: _Cluster, control_plane: bool, *, init: bool) -> str:
    """A cloud-config shaped like CABPK's output: the cluster certificates (control plane only), the
    kubeadm configuration, the kubeadm command. The key material is the cluster's fake material."""
    files: list[tuple[str, str, str]] = []
    if control_plane:
        for purpose, crt_name, key_name in (("ca", "ca.crt", "ca.key"),
                                            ("etcd", "etcd/ca.crt", "etcd/ca.key"),
                                            ("proxy", "front-proxy-ca.crt", "front-proxy-ca.key"),
                                            ("sa", "sa.pub", "sa.key")):
            crt, key = c.pems[purpose]
            files += [(f"/etc/kubernetes/pki/{crt_name}", "0640", crt),
                      (f"/etc/kubernetes/pki/{key_name}", "0600", key)]
    if init:
        kubeadm = ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
                   f"clusterName: {c.name}\ncontrolPlaneEndpoint: {c.endpoint}\n"
                   f"kubernetesVersion: {c.topology.kubernetes_version}\nimageRepository: registry.k8s.io\n"
                   "networking:\n  dnsDomain: cluster.local\n  podSubnet: 192.168.0.0/18\n"
                   "  serviceSubnet: 10.96.0.0/12\n---\napiVersion: kubeadm.k8s.io/v1beta4\n"
                   "kind: InitConfiguration\nnodeRegistration:\n  name: '{{ ds.meta_data.name }}'\n")
        command = "kubeadm init --config /run/kubeadm/kubeadm.yaml"
    else:
        kubeadm = ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n"
                   f"  bootstrapToken:\n    apiServerEndpoint: {c.endpoint}\n    caCertHashes:\n"
                   f"    - {c.ca_hash}\n    token: {c.token}\n"
                   + ("controlPlane: {}\n" if control_plane else "")
                   + "nodeRegistration:\n  name: '{{ ds.meta_data.name }}'\n")
        command = "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml"
    kubeadm_path = "/run/kubeadm/kubeadm.yaml" if init else "/run/kubeadm/kubeadm-join-config.yaml"
    files.append((kubeadm_path, "0640", kubeadm))
    out = ["## template: jinja", "#cloud-config", "", "write_files:"]
    for path, perms, content in files:
        out += [f"-   path: {path}", "    owner: root:root", f"    permissions: '{perms}'", "    content: |"]
        out += [f"      {line}" for line in content.rstrip("\n").split("\n")]
    out += ["runcmd:", "  - 'rm /etc/cni/net.d/* || true'", "  - 'netplan apply'",
            f"  - '{command} && echo success > /run/cluster-api/bootstrap-success.complete'",
            "users:", f"  - name: {_SSH_USER}", "    sudo: ALL=(ALL) NOPASSWD:ALL",
            "    ssh_authorized_keys:",
            f"      - {_users(c)[0]['sshAuthorizedKeys'][0]}"]
    return "\n".join(out) + "\n"


def _metal3_machine(c: _Cluster, role: _Role, machine: Obj, host: int, data_name: str, ip: str,
                    when: datetime) -> tuple[Obj, Obj]:
    """Cloned from the role's Metal3MachineTemplate, controlled by the Machine, associated with its host."""
    name = machine["metadata"]["name"]
    host_name = f"node-{host}"
    obj = {
        "apiVersion": INFRA, "kind": "Metal3Machine",
        "metadata": _meta(c.ns, name, labels=role.labels, owners=[_controller_ref(machine)], annotations={
            CLONED_FROM_NAME: role.m3_template["metadata"]["name"],
            CLONED_FROM_GROUPKIND: "Metal3MachineTemplate.infrastructure.cluster.x-k8s.io",
            HOST_ANNOTATION: f"{c.ns}/{host_name}",
        }),
        "spec": {
            "image": _m3_image(c),
            "dataTemplate": _ns_ref(c.ns, role.data_template["metadata"]["name"]),
            "providerID": machine["spec"]["providerID"],
        },
    }
    ready = when + timedelta(minutes=7)
    status = {
        "initialization": {"provisioned": True},
        "addresses": _node_addresses(host, ip),
        "lastUpdated": _ts(ready),
        "userData": _ns_ref(c.ns, name),
        "metaData": _ns_ref(c.ns, f"{name}-metadata"),
        "networkData": _ns_ref(c.ns, f"{name}-networkdata"),
        "renderedData": _ns_ref(c.ns, data_name),
        "conditions": [
            _cond("Ready", True, "Ready", ready),
            _cond("AssociateBareMetalHost", True, "AssociateBareMetalHostSuccess",
                  when + timedelta(minutes=1)),
            _cond("AssociateMetal3MachineMetaData", True, "AssociateMetal3MachineMetaDataSuccess",
                  when + timedelta(minutes=1)),
            _cond("Metal3DataReady", True, "Metal3DataSecretsReady", when + timedelta(minutes=1)),
            _cond("Paused", False, "NotPaused", when),
        ],
    }
    return obj, status


def _metadata(c: _Cluster, name: str, host_name: str, ip: str) -> str:
    """The metaData CAPM3 renders from the Metal3DataTemplate (yaml, keys sorted as Go marshals a map)."""
    return (f"externalv4CIDR: \"{c.net.prefix}\"\nexternalv4IP: {ip}\nlocal-hostname: {name}\n"
            f"local_hostname: {name}\nname: {name}\nproviderid: {c.ns}/{host_name}/{name}\n")


def _network_data(c: _Cluster, host: int, ip: str) -> str:
    """The networkData CAPM3 renders (OpenStack network_data layout)."""
    macs = _host_macs(host)
    links = "".join(f"- ethernet_mac_address: {mac}\n  id: {nic}\n  mtu: 1500\n  type: phy\n"
                    for nic, mac in zip(_NICS, macs, strict=True))
    return (f"links:\n{links}networks:\n- id: externalv4\n  ip_address: {ip}\n  link: {_NICS[1]}\n"
            f"  netmask: {_netmask(c.net.prefix)}\n  routes:\n  - gateway: {c.net.gateway}\n"
            "    netmask: 0.0.0.0\n    network: 0.0.0.0\n  type: ipv4\n"
            "services:\n- address: 8.8.8.8\n  type: dns\n")


# --------------------------------------------------------------------------------------------------- hosts

def _host_macs(host: int) -> tuple[str, str]:
    return _mac("00:5c:52", host), _mac("00:60:2f", host)


def _system_uuid(host: int) -> str:
    return _uuid(f"system/{host}")


def _provisioning_ip(host: int) -> str:
    return _ipv4(_ipv4_int("172.22.0.20") + host)


def _hardware(host: int, external_ip: str | None) -> Obj:
    """What inspection found on a metal3-dev-env VM (two virtio NICs, one 50 GiB disk)."""
    boot_mac, external_mac = _host_macs(host)
    nics: list[Obj] = [
        {"name": _NICS[0], "mac": boot_mac, "ip": _provisioning_ip(host), "model": "0x1af4 0x0041",
         "pxe": True, "speedGbps": 0, "vlanId": 0},
        {"name": _NICS[1], "mac": external_mac, "model": "0x1af4 0x0041", "pxe": False, "speedGbps": 0,
         "vlanId": 0},
    ]
    if external_ip:
        nics[1]["ip"] = external_ip
    return {
        "cpu": {"arch": "x86_64", "clockMegahertz": 2194.842, "count": 4,
                "flags": ["aes", "avx", "avx2", "lm", "sse4_2", "vmx"],
                "model": "Intel Xeon Processor (Cascadelake)"},
        "firmware": {"bios": {"date": "02/02/2022", "vendor": "EFI Development Kit II / OVMF",
                              "version": "0.0.0"}},
        "hostname": f"node-{host}",
        "nics": nics,
        "ramMebibytes": 8192,
        "storage": [{"name": "/dev/sda", "alternateNames": ["/dev/disk/by-path/pci-0000:00:07.0-scsi-0:0:0:0",
                                                            "/dev/sda"],
                     "hctl": "0:0:0:0", "model": "QEMU HARDDISK", "rotational": True,
                     "serialNumber": f"drive-scsi0-0-0-{host}", "sizeBytes": 53687091200, "type": "HDD",
                     "vendor": "QEMU"}],
        "systemVendor": {"manufacturer": "QEMU", "productName": "Standard PC (Q35 + ICH9, 2009)",
                         "serialNumber": ""},
    }


def _node_addresses(host: int, external_ip: str | None) -> list[Obj]:
    """CAPM3's nodeAddresses: an InternalIP per inspected NIC address, then Hostname and InternalDNS."""
    hw = _hardware(host, external_ip)
    return [*({"type": "InternalIP", "address": nic["ip"]} for nic in hw["nics"] if nic.get("ip")),
            {"type": "Hostname", "address": hw["hostname"]},
            {"type": "InternalDNS", "address": hw["hostname"]}]


def _build_host(seed: _Seed, c: _Cluster, host: int, *, m3m: Obj | None = None,
                external_ip: str | None = None, provisioned_at: datetime | None = None) -> None:
    """A BareMetalHost with its BMC credentials and HardwareData: provisioned for `m3m` (at
    `provisioned_at`, with the IPAM address `external_ip`), or available without them."""
    name = f"node-{host}"
    boot_mac = _host_macs(host)[0]
    spec: Obj = {
        "online": True,
        "bootMACAddress": boot_mac,
        "bootMode": "UEFI",
        "automatedCleaningMode": "metadata",
        "bmc": {"address": f"redfish+http://192.168.111.1:8000/redfish/v1/Systems/{_system_uuid(host)}",
                "credentialsName": f"{name}-bmc-secret"},
        "rootDeviceHints": {"deviceName": "/dev/sda"},
    }
    labels: dict[str, str] | None = None
    owners: list[Obj] | None = None
    if m3m is not None:
        m3m_name = m3m["metadata"]["name"]
        # CAPM3's Associate / setHostSpec: consumerRef, a controller reference, the cluster label and the
        # provisioning inputs
        spec["consumerRef"] = {"apiVersion": INFRA, "kind": "Metal3Machine", "name": m3m_name,
                               "namespace": c.ns}
        spec["image"] = _bmh_image(c)
        spec["userData"] = _ns_ref(c.ns, m3m_name)
        spec["metaData"] = _ns_ref(c.ns, f"{m3m_name}-metadata")
        spec["networkData"] = _ns_ref(c.ns, f"{m3m_name}-networkdata")
        labels = {CLUSTER_NAME: c.name}
        owners = [_owner(m3m, controller=True)]
    status = _host_status(c, host, provisioned_at=provisioned_at, external_ip=external_ip)
    bmh = seed.add({"apiVersion": BMO, "kind": "BareMetalHost",
                    "metadata": _meta(c.ns, name, labels=labels, owners=owners,
                                      annotations={BMH_STATUS: _status_annotation(status)}),
                    "spec": spec}, status)
    # BMO adds a plain owner reference to the credentials (clusterctl moves them only through it);
    # CAPM3 labels them with the cluster of the host's consumer
    secret_labels = {BMO_ENVIRONMENT: "baremetal", **({CLUSTER_NAME: c.name} if m3m is not None else {})}
    password = "bmc-" + _digest(name, 9).hex()          # distinctive, so a leak audit can search for it
    seed.add(_secret(c.ns, f"{name}-bmc-secret", {"username": "admin", "password": password},
                     stype="Opaque", labels=secret_labels, owners=[_owner(bmh)]))
    seed.add({"apiVersion": BMO, "kind": "HardwareData",
              "metadata": _meta(c.ns, name, owners=[_controller_ref(bmh)]),
              "spec": {"hardware": _hardware(host, external_ip)}})


def _bmh_image(c: _Cluster) -> Obj:
    return {"url": c.image_url, "checksum": c.image_url + ".sha256sum", "checksumType": "sha256",
            "format": "raw"}


def _host_status(c: _Cluster, host: int, *, provisioned_at: datetime | None, external_ip: str | None) -> Obj:
    """The status BMO writes for a provisioned host, or for an available one when `provisioned_at` is None."""
    registered = c.start - timedelta(minutes=40) + timedelta(seconds=5 * (host - c.first_host))
    inspected = registered + timedelta(minutes=6)
    def credentials() -> Obj:
        return {"credentials": _ns_ref(c.ns, f"node-{host}-bmc-secret"),
                "credentialsVersion": str(1000 + 7 * host)}

    history: Obj = {"register": {"start": _ts(registered), "end": _ts(registered + timedelta(seconds=40))},
                    "inspect": {"start": _ts(registered + timedelta(seconds=40)), "end": _ts(inspected)}}
    provisioning: Obj = {"ID": _uuid(f"ironic/{c.ns}/{host}"), "bootMode": "UEFI",
                         "rootDeviceHints": {"deviceName": "/dev/sda"}}
    if provisioned_at is not None:
        provisioning.update(state="provisioned", image=_bmh_image(c))
        history["provision"] = {"start": _ts(provisioned_at + timedelta(minutes=1)),
                                "end": _ts(provisioned_at + timedelta(minutes=6))}
        last = provisioned_at + timedelta(minutes=6)
        conditions = [("Manageable", True, "Manageable"), ("AvailableForProvisioning", False, "NotAvailable"),
                      ("Provisioned", True, "Provisioned"), ("Ready", True, "Provisioned"),
                      ("Progressing", False, "NotProgressing"), ("Healthy", True, "Healthy")]
    else:
        provisioning.update(state="available", image={"url": ""})
        last = inspected + timedelta(minutes=2)
        conditions = [("Manageable", True, "Manageable"), ("AvailableForProvisioning", True, "Available"),
                      ("Provisioned", False, "NotProvisioned"), ("Ready", False, "NotProvisioned"),
                      ("Progressing", False, "NotProgressing"), ("Healthy", True, "Healthy")]
    return {
        "operationalStatus": "OK",
        "lastUpdated": _ts(last),
        "hardwareProfile": "unknown",
        "hardware": _hardware(host, external_ip),
        "provisioning": provisioning,
        "goodCredentials": credentials(),
        "triedCredentials": credentials(),
        "errorMessage": "",
        "poweredOn": True,
        "operationHistory": history,
        "errorCount": 0,
        "conditions": [_cond(ctype, ok, reason, last) for ctype, ok, reason in conditions],
    }


def _status_annotation(status: Obj) -> str:
    """`baremetalhost.metal3.io/status` as CAPM3's SetPauseAnnotation writes it: the host status marshalled
    by Go and round-tripped through a map (so keys sorted, compact), without `hardware` (HardwareData has it).
    Go marshals the zero OperationMetric of an operation not yet run as start/end null."""
    annotated = {k: v for k, v in status.items() if k != "hardware"}
    history = dict(annotated["operationHistory"])
    for op in ("register", "inspect", "provision", "deprovision"):
        history.setdefault(op, {"start": None, "end": None})
    annotated["operationHistory"] = history
    return json.dumps(annotated, sort_keys=True, separators=(",", ":"))
