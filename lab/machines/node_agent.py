"""The machines' operating system: what a provisioned host would run, for the fake systems that boot nothing.

sushy-tools' fake systems are the BMCs (lab/machines/bmc.py); BMO and Ironic provision them for real, but
no OS starts on them. `MachineAgent` is the one stand-in: for every BareMetalHost of a management
cluster that is a *running machine* it does what cloud-init + kubeadm would do on it.

A running machine: the BMH's `status.provisioning.state` is `provisioned`, its BMC (the rack's own
record, not the BMH status) says the system is powered On, and the BMH names user data
(`spec.userData`). BMO v0.13.2 builds no config drive for a `live-iso` image (getConfigDrive: "not
providing config drive for live ISO"), so on real hardware a live ISO would have to fetch its user
data itself; the agent reads what BMO would have put in the config drive for a disk image:
- user data: the Secret `spec.userData` names, key `userData`, else `value` (BMO's hostConfigData);
- meta_data: BMO's defaults (`uuid` = the BMH's UID, `metal3-namespace`, `metal3-name`,
  `local-hostname`, `local_hostname`, `name` = the BMH's name) overlaid with the YAML of the
  `spec.metaData` Secret (key `metaData`, else `value`), which CAPM3 renders from the Metal3DataTemplate.
The user data is CABPK's cloud-config: with a `## template: jinja` header, `{{ ds.meta_data.KEY }}` is
rendered as cloud-init's jinja would; `write_files` are decoded (plain, base64, gzip+base64);
`runcmd` says which kubeadm command the machine runs.

- `kubeadm init`: the workload cluster boots as a `lab.cluster.LocalCluster` at `base/<clusterName>`,
  with the CA of the user data (`/etc/kubernetes/pki/ca.{crt,key}`: the `<cluster>-ca` KCP generated,
  so the `<cluster>-kubeconfig` KCP wrote works against it) on the port of `controlPlaneEndpoint`.
  Then what kubeadm init leaves in a cluster that CAPI/KCP read (see `_init_objects`).
- `kubeadm join`: once the bootstrap token CABPK created in the workload cluster is there and the CA
  hash matches (what kubeadm's discovery checks), the Node registers (Ready), with the control-plane
  labels and taint for `--control-plane` joins.
Idempotent: existing Nodes and objects are left alone; hosts of other racks and BMHs absent from this
management cluster are ignored (after a pivot they live in the other cluster, whose agent does the same).
A machine that ran `kubeadm init` and has since been powered off or restarted (its BMC's own record:
deprovisioning powers it off) stops its workload cluster: the machine was wiped. Workers going away
need nothing: CAPI deletes their Nodes.

Processes are started from the calling thread (PR_SET_PDEATHSIG is per thread): call `sync()` from
the thread that owns the lab's processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import re
import shlex
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from lab.cluster import LocalCluster, kube_for, load_certificate
from lab.machines.bmc import LocalBmcs
from metal3_pivot import CONFIGMAP, NAMESPACE, SECRET, Kube, PivotError, ResourceType

Obj = dict[str, Any]

BMH = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
NODE = ResourceType("", "v1", "Node", "nodes", namespaced=False)
POD = ResourceType("", "v1", "Pod", "pods")

CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"
EXCLUDE_FROM_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
_JINJA_HEADER = re.compile(r"^##\s*template:\s*jinja\s*$", re.MULTILINE)
_META_VAR = re.compile(r"\{\{\s*ds\.meta_data\.([A-Za-z0-9_\-]+)\s*\}\}")
_MARK = "machine.json"      # in a workload cluster's folder: which host booted it


class MachineError(Exception):
    """A running machine's user data cannot be carried out (unparseable, no kubeadm command, no CA)."""


# ---------------------------------------------------------------------------------------------- cloud-init

@dataclass
class UserData:
    """A machine's cloud-config after rendering: the files it writes and the kubeadm command it runs."""

    files: dict[str, bytes]
    command: str                    # "init" or "join"
    config_path: str                # the --config file of the kubeadm command
    control_plane: bool             # join --control-plane / a JoinConfiguration with controlPlane

    def kubeadm_documents(self) -> dict[str, Obj]:
        """The kubeadm configuration file's documents by kind (ClusterConfiguration, InitConfiguration,
        JoinConfiguration)."""
        text = self.files.get(self.config_path)
        if text is None:
            raise MachineError(f"kubeadm {self.command} reads {self.config_path}, which the user data does not write")
        return {d["kind"]: d for d in yaml.safe_load_all(text.decode()) if isinstance(d, dict) and "kind" in d}


def meta_data_for(bmh: Obj, metadata_yaml: str | None) -> dict[str, Any]:
    """The config drive's meta_data as BMO v0.13.2 builds it (ironic.getConfigDrive)."""
    md = bmh["metadata"]
    data: dict[str, Any] = {"uuid": md["uid"], "metal3-namespace": md["namespace"], "metal3-name": md["name"],
                            "local-hostname": md["name"], "local_hostname": md["name"], "name": md["name"]}
    if metadata_yaml:
        loaded = yaml.safe_load(metadata_yaml)
        if isinstance(loaded, dict):
            data.update(loaded)
    return data


def render(user_data: str, meta_data: dict[str, Any]) -> str:
    """cloud-init's jinja rendering of `{{ ds.meta_data.KEY }}`, for user data that asks for it."""
    if not _JINJA_HEADER.search(user_data.split("\n", 1)[0]):
        return user_data

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in meta_data:
            raise MachineError(f"the user data uses ds.meta_data.{m.group(1)}, which the meta_data lacks "
                               f"(it has {sorted(meta_data)})")
        return str(meta_data[m.group(1)])
    return _META_VAR.sub(one, user_data)


def _decode(content: str, encoding: str) -> bytes:
    enc = encoding.lower()
    if enc in ("", "text/plain"):
        return content.encode()
    raw = base64.b64decode(content)
    if enc in ("b64", "base64"):
        return raw
    if enc in ("gz+b64", "gz+base64", "gzip+b64", "gzip+base64"):
        return gzip.decompress(raw)
    raise MachineError(f"write_files encoding {encoding!r} is not one cloud-init knows")


def parse_user_data(text: str) -> UserData:
    body = yaml.safe_load(text)
    if not isinstance(body, dict):
        raise MachineError("the user data is not a cloud-config mapping")
    files: dict[str, bytes] = {}
    for f in body.get("write_files") or []:
        data = _decode(str(f.get("content", "")), str(f.get("encoding", "")))
        path = str(f["path"])
        files[path] = files.get(path, b"") + data if f.get("append") else data
    for entry in body.get("runcmd") or []:
        line = " ".join(entry) if isinstance(entry, list) else str(entry)
        for part in re.split(r"&&|;|\|\|", line):
            words = shlex.split(part)
            if len(words) >= 2 and words[0] == "kubeadm" and words[1] in ("init", "join"):
                config = words[words.index("--config") + 1] if "--config" in words else ""
                return UserData(files, words[1], config, words[1] == "join" and "--control-plane" in words)
    raise MachineError("the user data runs neither `kubeadm init` nor `kubeadm join` (runcmd)")


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA certificate's SubjectPublicKeyInfo."""
    cert = load_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


# ---------------------------------------------------------------------------------------------- the agent

@dataclass
class RunningMachine:
    """A host that runs its user data, as the agent found it in one pass."""

    host: str                       # "<namespace>/<name>" of the BareMetalHost
    uid: str
    system: str                     # the fake system's UUID
    meta_data: dict[str, Any]
    user_data: UserData


@dataclass
class SyncReport:
    """What one pass did (empty lists: nothing to do)."""

    running: list[str] = field(default_factory=list)       # hosts that are running machines
    booted: list[str] = field(default_factory=list)        # workload clusters started
    registered: list[str] = field(default_factory=list)    # Nodes created
    stopped: list[str] = field(default_factory=list)       # workload clusters stopped (their host wiped)
    waiting: list[str] = field(default_factory=list)       # machines that cannot act yet, and why


class MachineAgent:
    """The OS of the rack `bmcs`'s machines provisioned by the management cluster `management`.

    Workload clusters live at `base/<cluster name>`, each with a `machine.json` naming the host that
    booted it, so that the agent of another management cluster sharing `base` (after a pivot) finds them.
    `on_boot(cluster)` is called once after a workload cluster boots (e.g. to start its own plane agent)."""

    def __init__(self, management: LocalCluster, bmcs: LocalBmcs, base: Path, attached: bool, *,
                 on_boot: Callable[[LocalCluster], None] | None = None) -> None:
        self.management = management
        self.bmcs = bmcs
        self.base = base
        self.attached = attached
        self.on_boot = on_boot
        self.clusters: dict[str, LocalCluster] = {}       # the workload clusters this agent started or found

    # -- one pass -----------------------------------------------------------------------------------------
    def sync(self) -> SyncReport:
        """One pass over the management cluster's hosts (synchronous: runs its own event loop). A pass
        that cannot reach a cluster reports it in `waiting` and changes nothing; a workload cluster that
        cannot start raises lab.cluster.ClusterError (its log named)."""
        report = SyncReport()
        try:
            machines = asyncio.run(self._read_management(report))
        except PivotError as err:       # the management cluster is down or answers errors: next pass
            report.waiting.append(f"{self.management.name}: {err}")
            return report
        self._stop_wiped(report)
        # init machines first: a join needs the cluster an init machine boots
        for m in sorted(machines, key=lambda m: m.user_data.command != "init"):
            try:
                (self._run_init if m.user_data.command == "init" else self._run_join)(m, report)
            except (MachineError, PivotError) as err:   # PivotError: the workload cluster answered an error
                report.waiting.append(f"{m.host}: {err}")
        return report

    def stop(self) -> None:
        """Stop every workload cluster this agent started or found running (the lab is torn down), except
        its own management cluster: after a pivot the target management cluster *is* the workload
        cluster its agent finds, and stopping it is the caller's business."""
        own = self.management.directory.resolve()
        for cluster in self.clusters.values():
            if cluster.directory.resolve() != own:
                cluster.stop()
        self.clusters.clear()

    def workload(self, name: str) -> LocalCluster | None:
        """The workload cluster `name` if it was booted in `base` (running or not)."""
        if name in self.clusters:
            return self.clusters[name]
        if (self.base / name / "cluster.json").exists():
            return LocalCluster.load(self.base / name)
        return None

    # -- reading the management cluster ------------------------------------------------------------------
    def _system_of(self, bmh: Obj) -> str | None:
        address = ((bmh.get("spec") or {}).get("bmc") or {}).get("address", "")
        system = address.rstrip("/").rsplit("/", 1)[-1]
        return system if address and self.bmcs.address(system) == address else None

    def _power_state(self, system: str) -> str | None:
        """The BMC's PowerState of a system; None when the BMC does not answer (not a power change)."""
        try:
            return str(self.bmcs.system(system).get("PowerState"))
        except OSError:
            return None

    def _powered_on(self, system: str) -> bool:
        """On, and the last power action the BMC accepted was On: a machine whose power-off is pending
        (the BMC accepted it, the fake driver takes 1-11 s) is not running its OS any more."""
        requests = self.bmcs.power_requests(system)
        return self._power_state(system) == "On" and (not requests or requests[-1] == "On")

    async def _read_management(self, report: SyncReport) -> list[RunningMachine]:
        async with kube_for(self.management, name=f"{self.management.name}-machines") as kube:
            hosts = [h for h in await kube.list(BMH) if self._system_of(h)]
            machines = []
            for h in hosts:
                state = ((h.get("status") or {}).get("provisioning") or {}).get("state")
                user = (h.get("spec") or {}).get("userData") or {}
                system = self._system_of(h)
                assert system is not None
                if state != "provisioned" or not user.get("name") or not self._powered_on(system):
                    continue
                key = f"{h['metadata']['namespace']}/{h['metadata']['name']}"
                try:
                    machines.append(await self._machine(kube, h, system))
                    report.running.append(key)
                except MachineError as err:
                    report.waiting.append(f"{key}: {err}")
            return machines

    async def _machine(self, kube: Kube, bmh: Obj, system: str) -> RunningMachine:
        ns = bmh["metadata"]["namespace"]
        spec = bmh["spec"]
        user = await _secret_value(kube, ns, spec["userData"]["name"], "userData")
        if user is None:
            raise MachineError(f"user data Secret {spec['userData']['name']} not found")
        meta_yaml = None
        if (spec.get("metaData") or {}).get("name"):
            meta_yaml = await _secret_value(kube, ns, spec["metaData"]["name"], "metaData")
        meta = meta_data_for(bmh, meta_yaml)
        return RunningMachine(f"{ns}/{bmh['metadata']['name']}", bmh["metadata"]["uid"], system, meta,
                              parse_user_data(render(user, meta)))

    # -- kubeadm init ------------------------------------------------------------------------------------
    def _run_init(self, m: RunningMachine, report: SyncReport) -> None:
        docs = m.user_data.kubeadm_documents()
        cc = docs.get("ClusterConfiguration") or {}
        name = cc.get("clusterName") or "kubernetes"
        endpoint = str(cc.get("controlPlaneEndpoint") or "")
        if not endpoint.rsplit(":", 1)[-1].isdigit():
            raise MachineError(f"{m.host}: controlPlaneEndpoint {endpoint!r} has no port")
        port = int(endpoint.rsplit(":", 1)[1])
        ca = (m.user_data.files.get("/etc/kubernetes/pki/ca.crt"), m.user_data.files.get("/etc/kubernetes/pki/ca.key"))
        if ca[0] is None or ca[1] is None:
            raise MachineError(f"{m.host}: the init user data carries no /etc/kubernetes/pki/ca.crt and ca.key")
        directory = self.base / name
        cluster = self.clusters.get(name) or self.workload(name)
        if cluster is not None and cluster.running() and cluster.api_port == port \
                and (cluster.pki / "ca.crt").read_bytes() == ca[0]:
            self.clusters[name] = cluster
        else:
            if cluster is not None:
                cluster.stop()
            cluster = LocalCluster(name, directory, fixed_api_port=port, ca_pem=(ca[0], ca[1]))
            cluster.start(attached=self.attached)
            # the BMC's record so far: a later power action other than On means the machine was wiped
            (directory / _MARK).write_text(json.dumps({
                "host": m.host, "uid": m.uid, "system": m.system, "management": self.management.name,
                "power_requests": len(self.bmcs.power_requests(m.system))}, indent=2))
            self.clusters[name] = cluster
            report.booted.append(name)
            asyncio.run(self._init_objects(cluster, m, docs))
            if self.on_boot is not None:
                self.on_boot(cluster)
            return
        asyncio.run(self._init_objects(cluster, m, docs))

    async def _init_objects(self, cluster: LocalCluster, m: RunningMachine, docs: dict[str, Obj]) -> None:
        """What `kubeadm init` leaves in the cluster that CAPI and KCP read, each created if missing:
        - kube-system/kubeadm-config (ClusterConfiguration): KCP's proof that the control plane is
          initialized (status.initialization.controlPlaneInitialized), and what it edits on upgrades;
        - kube-system/kubelet-config (the KubeletConfiguration kubeadm uploads; kubeadm join reads it);
        - kube-public/cluster-info (the kubeconfig stub kubeadm's discovery reads);
        - the control-plane Node (as the kubelet registers it, with kubeadm's label and taint);
        - the mirror Pods a kubelet keeps for the static Pods that really run here (etcd, kube-apiserver,
          kube-controller-manager: the LocalCluster's processes; there is no kube-scheduler, so no Pod).
        """
        cc = docs.get("ClusterConfiguration") or {}
        init = docs.get("InitConfiguration") or {}
        version = str(cc.get("kubernetesVersion") or "")
        async with kube_for(cluster) as kube:
            await _create_missing(kube, CONFIGMAP, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                "data": {"ClusterConfiguration": yaml.safe_dump(cc, sort_keys=False)}})
            await _create_missing(kube, CONFIGMAP, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
                "data": {"kubelet": yaml.safe_dump(_kubelet_configuration(cc), sort_keys=False)}})
            await _create_missing(kube, NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": "kube-public"}})
            await _create_missing(kube, CONFIGMAP, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                "data": {"kubeconfig": _cluster_info(cluster, cc)}})
            registration = init.get("nodeRegistration") or {}
            node = await self._register(kube, m, registration, version, control_plane=True)
            stacked = not ((cc.get("etcd") or {}).get("external"))
            for component in (("etcd",) if stacked else ()) + ("kube-apiserver", "kube-controller-manager"):
                await _mirror_pod(kube, node, component, cc, version)

    # -- kubeadm join ------------------------------------------------------------------------------------
    def _run_join(self, m: RunningMachine, report: SyncReport) -> None:
        docs = m.user_data.kubeadm_documents()
        join = docs.get("JoinConfiguration") or {}
        token = ((join.get("discovery") or {}).get("bootstrapToken")) or {}
        endpoint = str(token.get("apiServerEndpoint") or "")
        port = int(endpoint.rsplit(":", 1)[1]) if endpoint.rsplit(":", 1)[-1].isdigit() else 0
        cluster = next((c for c in self.clusters.values() if c.api_port == port and c.running()), None)
        if cluster is None:
            for mark in self.base.glob(f"*/{_MARK}"):
                found = LocalCluster.load(mark.parent)
                if found.api_port == port and found.running():
                    cluster = self.clusters[found.name] = found
        if cluster is None:
            report.waiting.append(f"{m.host}: kubeadm join: nothing serves {endpoint} yet")
            return
        control_plane = m.user_data.control_plane or bool(join.get("controlPlane"))
        outcome = asyncio.run(self._join(cluster, m, join, token, control_plane))
        if outcome == "registered":
            report.registered.append(f"{cluster.name}/{m.meta_data.get('name')}")
        elif outcome:
            report.waiting.append(f"{m.host}: {outcome}")

    async def _join(self, cluster: LocalCluster, m: RunningMachine, join: Obj, token: Obj,
                    control_plane: bool) -> str:
        """kubeadm join's discovery (token and CA hash), then the kubelet's registration; "" when the
        Node exists already."""
        registration = join.get("nodeRegistration") or {}
        async with kube_for(cluster) as kube:
            name = str(registration.get("name") or m.meta_data["name"])
            if await kube.get(NODE, name) is not None:
                return ""
            token_id, _, token_secret = str(token.get("token", "")).partition(".")
            secret = await kube.get(SECRET, f"bootstrap-token-{token_id}", "kube-system")
            got = base64.b64decode((secret or {}).get("data", {}).get("token-secret", "")).decode()
            if not token_id or got != token_secret:
                return f"kubeadm join: bootstrap token {token_id!r} is not (yet) valid in {cluster.name}"
            wanted = set(token.get("caCertHashes") or [])
            if wanted and ca_cert_hash((cluster.pki / "ca.crt").read_bytes()) not in wanted and \
                    not token.get("unsafeSkipCAVerification"):
                return f"kubeadm join: {cluster.name}'s CA does not match caCertHashes {sorted(wanted)}"
            cm = await kube.get(CONFIGMAP, "kubeadm-config", "kube-system")
            cc = yaml.safe_load(((cm or {}).get("data") or {}).get("ClusterConfiguration", "")) or {}
            version = str(cc.get("kubernetesVersion") or "")
            node = await self._register(kube, m, registration, version, control_plane=control_plane)
            if control_plane:
                stacked = not ((cc.get("etcd") or {}).get("external"))
                for component in (("etcd",) if stacked else ()) + ("kube-apiserver", "kube-controller-manager"):
                    await _mirror_pod(kube, node, component, cc, version)
            return "registered"

    # -- the Node ----------------------------------------------------------------------------------------
    async def _register(self, kube: Kube, m: RunningMachine, registration: Obj, version: str, *,
                        control_plane: bool) -> Obj:
        """The Node as the kubelet registers it (its labels, `--node-labels` from kubeletExtraArgs, Ready
        status) plus what kubeadm adds for a control plane (role label, LB exclusion label, taint)."""
        name = str(registration.get("name") or m.meta_data["name"])
        existing = await kube.get(NODE, name)
        if existing is not None:
            return existing
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
        for arg in _kubelet_args(registration):
            if arg[0] == "node-labels":
                for pair in filter(None, arg[1].split(",")):
                    k, _, v = pair.partition("=")
                    labels[k] = v
        taints = registration.get("taints")
        if control_plane:
            labels[CONTROL_PLANE_ROLE] = ""
            labels[EXCLUDE_FROM_LB] = ""
            if taints is None:
                taints = [{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}]
        spec: Obj = {"taints": taints} if taints else {}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels,
                "annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/crio/crio.sock",
                                "node.alpha.kubernetes.io/ttl": "0"}}, "spec": spec}
        created = await kube.create(NODE, node)
        await kube.patch(NODE, name, None, {"status": _node_status(m, name, version)}, sub="status")
        return created

    # -- wiped machines ----------------------------------------------------------------------------------
    def _stop_wiped(self, report: SyncReport) -> None:
        """Stop the workload clusters whose init machine stopped running, as the machine itself knows it:
        its BMC recorded a power action other than On since the boot (Ironic powers a host off when it
        deprovisions it; a restart boots whatever is inserted now), or reports it powered Off. A live
        ISO runs in memory, so either wipes what `kubeadm init` started. The BMH is not consulted: after
        a pivot it lives in the other management cluster, and both agents read the same BMC record."""
        ours = {s.uuid for s in self.bmcs.systems}
        for mark in sorted(self.base.glob(f"*/{_MARK}")):
            booted_by = json.loads(mark.read_text())
            system = booted_by.get("system")
            if system not in ours:
                continue
            cluster = self.clusters.get(mark.parent.name) or LocalCluster.load(mark.parent)
            if not cluster.running():
                continue
            since = self.bmcs.power_requests(system)[int(booted_by.get("power_requests", 0)):]
            if any(r != "On" for r in since) or self._power_state(system) == "Off":
                cluster.stop()
                self.clusters.pop(cluster.name, None)
                report.stopped.append(cluster.name)


# ---------------------------------------------------------------------------------------------- helpers

async def _secret_value(kube: Kube, namespace: str, name: str, key: str) -> str | None:
    secret = await kube.get(SECRET, name, namespace)
    if secret is None:
        return None
    data = secret.get("data") or {}
    raw = data.get(key, data.get("value"))
    return base64.b64decode(raw).decode() if raw is not None else ""


async def _create_missing(kube: Kube, rt: ResourceType, obj: Obj) -> None:
    md = obj["metadata"]
    if await kube.get(rt, md["name"], md.get("namespace")) is None:
        with contextlib.suppress(PivotError):       # created meanwhile (AlreadyExists): fine
            await kube.create(rt, obj)


def _kubelet_args(registration: Obj) -> list[tuple[str, str]]:
    """kubeletExtraArgs in either shape: v1beta4's list of {name, value} or v1beta3's map."""
    args = registration.get("kubeletExtraArgs") or []
    if isinstance(args, dict):
        return [(str(k), str(v)) for k, v in args.items()]
    return [(str(a.get("name")), str(a.get("value", ""))) for a in args]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _node_status(m: RunningMachine, name: str, version: str) -> Obj:
    now = _now()
    ip = str(m.meta_data.get("externalv4IP") or "127.0.0.1")

    def cond(ctype: str, status: str, reason: str, message: str) -> Obj:
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}
    return {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"},
        "conditions": [cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                            "kubelet has sufficient memory available"),
                       cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                       cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                       cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "osImage": "metal3-pivot lab machine",
                     "kernelVersion": "lab", "containerRuntimeVersion": "cri-o://lab", "kubeletVersion": version,
                     "kubeProxyVersion": "", "machineID": uuidlib.UUID(m.system).hex, "systemUUID": m.system,
                     "bootID": str(uuidlib.uuid5(uuidlib.UUID(m.system), m.uid))},
    }


def _kubelet_configuration(cc: Obj) -> Obj:
    """The KubeletConfiguration kubeadm uploads (its defaults that matter to a reader: DNS, driver)."""
    networking = cc.get("networking") or {}
    return {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}},
            "authorization": {"mode": "Webhook"}, "cgroupDriver": "systemd",
            "clusterDNS": ["10.96.0.10"], "clusterDomain": networking.get("dnsDomain", "cluster.local"),
            "rotateCertificates": True, "staticPodPath": "/etc/kubernetes/manifests"}


def _cluster_info(cluster: LocalCluster, cc: Obj) -> str:
    ca = base64.b64encode((cluster.pki / "ca.crt").read_bytes()).decode()
    server = f"https://{cc.get('controlPlaneEndpoint') or f'127.0.0.1:{cluster.api_port}'}"
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "preferences": {}, "users": None,
                           "contexts": None, "current-context": "",
                           "clusters": [{"name": "", "cluster": {"server": server,
                                                                  "certificate-authority-data": ca}}]})


async def _mirror_pod(kube: Kube, node: Obj, component: str, cc: Obj, version: str) -> None:
    """The mirror Pod the kubelet creates for a static Pod (`<component>-<node>` in kube-system), Running
    and Ready: KCP reads their phase and Ready condition for the control plane's health."""
    name = f"{component}-{node['metadata']['name']}"
    if await kube.get(POD, name, "kube-system") is not None:
        return
    repo = cc.get("imageRepository") or "registry.k8s.io"
    image = f"{repo}/etcd:3.6.5-0" if component == "etcd" else f"{repo}/{component}:{version}"
    now = _now()
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "kube-system",
                        "labels": {"component": component, "tier": "control-plane"},
                        "annotations": {"kubernetes.io/config.mirror": hashlib.sha256(name.encode()).hexdigest()[:32],
                                        "kubernetes.io/config.source": "file", "kubernetes.io/config.seen": now},
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node["metadata"]["name"],
                                             "uid": node["metadata"]["uid"], "controller": True}]},
           "spec": {"nodeName": node["metadata"]["name"], "hostNetwork": True,
                    "containers": [{"name": component, "image": image}]}}
    try:
        await kube.create(POD, pod)
    except PivotError:
        return
    conds = [{"type": t, "status": "True", "lastTransitionTime": now}
             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    await kube.patch(POD, name, "kube-system", {"status": {
        "phase": "Running", "conditions": conds, "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": now,
        "containerStatuses": [{"name": component, "image": image, "imageID": image, "ready": True, "started": True,
                               "restartCount": 0, "state": {"running": {"startedAt": now}}}]}}, sub="status")
