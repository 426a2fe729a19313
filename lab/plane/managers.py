"""Run a provider's controller Deployment as a local process against a lab cluster.

The input is a Deployment object: the one in the provider's release config (`start`, the direct API)
or one a cluster declares (the runner builds on `start_deployment`). What a kubelet would do with its
Pod is done here, with the changes a process on loopback needs and nothing else:
- image -> the binary tools/bootstrap.py built from the same pinned module (IMAGES);
- the container's args are kept, `${VAR:=default}` resolved as clusterctl's variable substitution would
  (defaults unless `variables` says otherwise); the flags about where to listen and how to reach the
  API server are replaced: kubeconfig, no leader election, no metrics/diagnostics server, health and
  webhook ports picked free (several managers and several clusters share one host; health on 127.0.0.1,
  the webhook server on every interface, as its release binds it);
- env (values, fieldRefs to the Pod's namespace/name/uid, envFrom ConfigMaps) carried over;
- mounted Secrets and ConfigMaps written as files under the process's folder, each mountPath re-rooted
  there (TMPDIR too, so a manager that only knows `/tmp/k8s-webhook-server/serving-certs`, like BMO,
  finds its certificate);
- the webhook serving certificate: the Secret the Deployment mounts, from the cluster (the stack's
  ProviderInstall / Ironic issue it; on clusters the lab installs itself, lab/plane/webhooks.py does, as
  cert-manager would); a missing Secret keeps the process from starting, as it keeps a Pod from starting;
- once ready, the Pod's address: an EndpointSlice for every Service that selects its labels, at this
  host's address and the process's webhook port (lab/plane/endpoints.py), so the API server reaches the
  webhooks through the `service:` references the cluster's webhook configurations carry; withdrawn when
  the process stops.

Processes are spawned from the calling thread with PR_SET_PDEATHSIG (see lab/cluster.py), log to
`<cluster dir>/logs/<deployment>.log`, and count as started once `/readyz` answers and the webhook port
accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import manifests
from lab.cluster import LocalCluster, _pdeathsig, _tail, free_port
from lab.plane import certs, endpoints, webhooks
from metal3_pivot import CONFIGMAP, SECRET, Kube, ResourceType, load_kubeconfig

Obj = dict[str, Any]

#: image repository (last path segment, any registry and tag) -> binary built by tools/bootstrap.py
IMAGES = {
    "cluster-api-controller": "capi-manager",
    "kubeadm-bootstrap-controller": "kubeadm-bootstrap-manager",
    "kubeadm-control-plane-controller": "kubeadm-control-plane-manager",
    "cluster-api-provider-metal3": "capm3-manager",
    "ip-address-manager": "ipam-manager",
    "baremetal-operator": "baremetal-operator",
}
BINARIES = tuple(IMAGES.values())
CERTIFICATES = ResourceType("cert-manager.io", "v1", "Certificate", "certificates")

#: flags the lab sets itself (dropped from the Deployment's args), per flag family
_CAPI_OWNED: tuple[str, ...] = ("--kubeconfig", "--leader-elect", "--diagnostics-address",
                                 "--insecure-diagnostics", "--metrics-bind-addr", "--health-addr",
                                 "--webhook-port", "--webhook-cert-dir")
_BMO_OWNED: tuple[str, ...] = ("--kubeconfig", "--enable-leader-election", "--metrics-addr", "--health-addr",
                               "--webhook-port")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")


class PlaneError(Exception):
    """A manager could not be planned, started or stopped; the message names it and its log."""


def binary_for(image: str) -> str | None:
    """The local binary standing in for a container image, or None for an image the lab cannot run."""
    repo = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return IMAGES.get(repo)


def substitute(text: str, variables: dict[str, str]) -> str:
    """clusterctl's `${VAR:=default}` substitution (a Deployment in a cluster has it done already)."""
    def one(m: re.Match[str]) -> str:
        if m.group(1) in variables:
            return variables[m.group(1)]
        if m.group(2) is None:
            raise PlaneError(f"variable {m.group(1)} has no default and no value: pass it in `variables`")
        return m.group(2)
    return _VAR.sub(one, text)


def _owned(arg: str, owned: tuple[str, ...]) -> bool:
    flag = "--" + arg.lstrip("-").split("=", 1)[0]
    return flag in owned


@dataclass
class Plan:
    """Everything about one manager process, decided before it starts."""

    namespace: str
    name: str                       # the Deployment's
    binary: str
    args: list[str]
    env: dict[str, str]
    files: dict[Path, bytes]
    workdir: Path
    health_port: int
    webhook_port: int
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_ports: dict[str | int, int] = field(default_factory=dict)   # container port (number or name) -> ours

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class ManagerProcess:
    plan: Plan
    log: Path
    proc: subprocess.Popen[bytes]
    started_in: float = 0.0
    kubeconfig: Path | None = None
    slices: list[str] = field(default_factory=list)     # EndpointSlices written for it (its namespace)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def name(self) -> str:
        return self.plan.name

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mib(self) -> float:
        """Resident memory now (VmRSS), for the docs' figures and a newcomer's curiosity."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, grace: float = 10.0, *, withdraw: bool = True) -> None:
        """SIGTERM, SIGKILL after `grace`; safe to call twice. The Pod's EndpointSlices are withdrawn first
        (a terminating Pod leaves its Service's endpoints before it exits); skip that with
        `withdraw=False` when the cluster itself is gone. Webhook configurations stay: they are the install's."""
        if withdraw and self.slices and self.kubeconfig is not None:
            _withdraw(self.kubeconfig, self.plan.namespace, self.slices)
        self.slices = []
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _withdraw(kubeconfig: Path, namespace: str, names: list[str]) -> None:
    async def go() -> None:
        async with Kube(load_kubeconfig(kubeconfig), name="withdraw") as kube:
            await endpoints.withdraw(kube, namespace, names)
    with contextlib.suppress(Exception):    # the cluster is gone or going: nothing left to route to the process
        asyncio.run(asyncio.wait_for(go(), 10))


# ---------------------------------------------------------------------------------------------- planning

class _Lookup:
    """ConfigMaps a Deployment refers to: the cluster's first, then the release's (direct API only);
    Secrets only from the cluster."""

    def __init__(self, kube: Kube, release: list[Obj]) -> None:
        self.kube = kube
        self.release = release

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        rt = {"ConfigMap": CONFIGMAP, "Secret": SECRET}[kind]
        found = await self.kube.get(rt, name, namespace)
        if found is not None or kind == "Secret":
            return found
        return next((o for o in self.release if o.get("kind") == kind and o["metadata"]["name"] == name
                     and o["metadata"].get("namespace", namespace) == namespace), None)


def _contents(kind: str, obj: Obj | None) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys as file contents (what a volume or envFrom sees)."""
    if obj is None:
        return {}
    if kind == "Secret":
        return certs.secret_files(obj)
    return {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}


def _reroot(workdir: Path, path: str) -> Path:
    return workdir / "root" / path.lstrip("/")


async def _plan(cluster: LocalCluster, kube: Kube, deployment: Obj, release: list[Obj],
                variables: dict[str, str], env_overrides: dict[str, str]) -> Plan:
    md = deployment["metadata"]
    ns, name = md["namespace"], md["name"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    binary = binary_for(container["image"])
    if binary is None:
        raise PlaneError(f"{ns}/{name}: no local binary for image {container['image']} (known: {sorted(IMAGES)})")
    workdir = cluster.directory / "plane" / f"{ns}.{name}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    lookup = _Lookup(kube, release)
    pod_name = f"{name}-lab"
    # what a container starts with before its own env: a PATH and a HOME
    env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    for ref in container.get("envFrom") or []:
        src = ref.get("configMapRef") or ref.get("secretRef") or {}
        kind = "ConfigMap" if "configMapRef" in ref else "Secret"
        obj = await lookup.get(kind, ns, src["name"])
        if obj is None:
            if src.get("optional"):
                continue
            raise PlaneError(f"{ns}/{name}: envFrom {kind} {src['name']} exists neither in {cluster.name} nor in "
                             "the release config")
        env.update({ref.get("prefix", "") + k: v.decode() for k, v in _contents(kind, obj).items()})
    fields = {"metadata.namespace": ns, "metadata.name": pod_name, "metadata.uid": str(uuid.uuid4()),
              "spec.nodeName": "lab", "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = substitute(str(item["value"]), variables)
        elif "fieldRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = fields.get(item["valueFrom"]["fieldRef"]["fieldPath"], "")
        elif "configMapKeyRef" in (item.get("valueFrom") or {}) or "secretKeyRef" in (item.get("valueFrom") or {}):
            ref = item["valueFrom"].get("configMapKeyRef") or item["valueFrom"]["secretKeyRef"]
            kind = "ConfigMap" if "configMapKeyRef" in item["valueFrom"] else "Secret"
            data = _contents(kind, await lookup.get(kind, ns, ref["name"]))
            if ref["key"] in data:
                env[item["name"]] = data[ref["key"]].decode()

    health, webhook = free_port(), free_port()
    files: dict[Path, bytes] = {}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        vol = volumes.get(mount["name"]) or {}
        target = _reroot(workdir, mount["mountPath"])
        if "secret" in vol:
            secret_name = vol["secret"]["secretName"]
            secret = await kube.get(SECRET, secret_name, ns)
            if secret is None:
                if vol["secret"].get("optional"):
                    continue
                raise PlaneError(f"{ns}/{name}: Secret {secret_name} (volume {mount['name']}) is missing in "
                                 f"{cluster.name}; a kubelet would not start the Pod either (the webhook serving "
                                 "certificate comes with the install: ProviderInstall / Ironic, or the lab's "
                                 "dev-env issuer)")
            data = certs.secret_files(secret)
        elif "configMap" in vol:
            data = _contents("ConfigMap", await lookup.get("ConfigMap", ns, vol["configMap"]["name"]))
        else:
            continue            # emptyDir and the like: an empty folder is what the Pod would get
        for key, value in data.items():
            files[target / key] = value

    # the port the Pod's webhook server listens on, and the container port names that point at it
    declared = next((int(a.split("=", 1)[1]) for a in container.get("args") or []
                     if a.startswith("--webhook-port=")), 9443)
    pod_ports: dict[str | int, int] = {declared: webhook}
    pod_ports.update({p["name"]: webhook for p in container.get("ports") or []
                      if p.get("name") and p.get("containerPort") == declared})
    given_cert_dir = next((a.split("=", 1)[1] for a in container.get("args") or []
                           if a.startswith("--webhook-cert-dir=")), "/tmp/k8s-webhook-server/serving-certs")
    cert_dir = _reroot(workdir, given_cert_dir)

    kc = str(cluster.kubeconfig)
    if binary == "baremetal-operator":
        owned = _BMO_OWNED
        ours = [f"--kubeconfig={kc}", "--metrics-addr=0", f"--health-addr=127.0.0.1:{health}",
                f"--webhook-port={webhook}"]
    else:
        owned = _CAPI_OWNED
        ours = [f"--kubeconfig={kc}", "--leader-elect=false", "--diagnostics-address=0",
                f"--health-addr=127.0.0.1:{health}", f"--webhook-port={webhook}", f"--webhook-cert-dir={cert_dir}"]
    args = [substitute(a, variables) for a in [*(container.get("command") or [])[1:], *(container.get("args") or [])]
            if not _owned(a, owned)]
    env.update({"KUBECONFIG": kc, "TMPDIR": str(_reroot(workdir, "/tmp"))})
    env.update(env_overrides)
    labels = dict((deployment["spec"]["template"].get("metadata") or {}).get("labels") or {})
    return Plan(ns, name, binary, [*args, *ours], env, files, workdir, health, webhook, labels, pod_ports)


# ---------------------------------------------------------------------------------------------- running

def start_deployment(cluster: LocalCluster, deployment: Obj, release: list[Obj] | None = None, *,
                     variables: dict[str, str] | None = None, env: dict[str, str] | None = None,
                     timeout: float = 90.0) -> ManagerProcess:
    """Start the process for `deployment` in `cluster` and wait until it is ready.

    `release` is the provider's release config (ConfigMaps the cluster may lack; direct API only);
    `variables` feed `${VAR:=default}`; `env` overrides the container's environment (e.g. BMO's
    IRONIC_ENDPOINT). Once ready, the Services selecting the Pod get their EndpointSlices.
    """
    t0 = time.monotonic()
    release = release or []
    try:
        address = endpoints.host_address()
    except endpoints.EndpointError as err:
        raise PlaneError(str(err)) from None

    async def prepare() -> Plan:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return await _plan(cluster, kube, deployment, release, variables or {}, env or {})

    plan = asyncio.run(prepare())
    for path, data in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o600)
    Path(plan.env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    exe = shutil.which(plan.binary)
    if exe is None:
        raise PlaneError(f"{plan.binary} is not on PATH: run `python3 tools/bootstrap.py` (it builds the "
                         "management plane's managers) and put .tools/bin first on PATH (the Makefile does)")
    log = cluster.directory / "logs" / f"{plan.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"--- {time.strftime('%H:%M:%S')} {exe} {' '.join(plan.args)}\n".encode())
        out.flush()
        proc = subprocess.Popen([exe, *plan.args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=plan.workdir, env=plan.env, preexec_fn=_pdeathsig)
    mp = ManagerProcess(plan, log, proc, kubeconfig=cluster.kubeconfig)
    try:
        _wait_ready(mp, time.monotonic() + timeout)

        async def publish() -> list[str]:
            async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
                return await endpoints.publish(kube, plan.namespace, plan.pod_labels, plan.pod_ports, address,
                                               f"{plan.name}-lab")
        try:
            mp.slices = asyncio.run(publish())
        except Exception as err:
            raise PlaneError(f"{plan.key}: its Services' EndpointSlices could not be written in {cluster.name}: "
                             f"{err}") from err
    except BaseException:
        mp.stop(grace=2)
        raise
    mp.started_in = time.monotonic() - t0
    return mp


def _wait_ready(mp: ManagerProcess, deadline: float) -> None:
    url = f"http://127.0.0.1:{mp.plan.health_port}/readyz"
    last = ""
    ready = False
    while time.monotonic() < deadline:
        if not mp.alive():
            raise PlaneError(f"{mp.plan.key} ({mp.plan.binary}) exited with {mp.proc.returncode} during start-up; "
                             f"see {mp.log}:\n{_tail(mp.log, 25)}")
        try:
            if not ready:
                with urllib.request.urlopen(url, timeout=2) as r:
                    ready = r.status == 200
            if ready:
                with socket.create_connection(("127.0.0.1", mp.plan.webhook_port), timeout=2):
                    return
        except OSError as err:      # not listening yet, or 500 while caches sync
            last = str(err)
        time.sleep(0.2)
    raise PlaneError(f"{mp.plan.key} ({mp.plan.binary}) not ready at {url} / webhook port {mp.plan.webhook_port} "
                     f"in time ({last}); see {mp.log}:\n{_tail(mp.log, 25)}")


# ---------------------------------------------------------------------------------------------- direct API

PROVIDERS = {spec.name: spec for spec in manifests.all_specs()}


def release_of(provider: str) -> list[Obj]:
    if provider not in PROVIDERS:
        raise PlaneError(f"unknown provider {provider!r}; known: {sorted(PROVIDERS)}")
    return manifests.rendered(PROVIDERS[provider])


def start(cluster: LocalCluster, provider: str, *, variables: dict[str, str] | None = None,
          env: dict[str, str] | None = None, timeout: float = 90.0) -> ManagerProcess:
    """Start `provider`'s controller (a name of components.manifests: cluster-api, bootstrap-kubeadm,
    control-plane-kubeadm, infrastructure-metal3, ipam-metal3, baremetal-operator) as its release
    config deploys it, its webhooks installed as `clusterctl init` would (lab/plane/webhooks.py).
    For BMO pass env IRONIC_ENDPOINT; METAL3_AUTH_ROOT_DIR defaults to an empty
    folder (no ironic/ credentials in it: BMO talks to Ironic without authentication)."""
    release = release_of(provider)
    deployment = next(o for o in release if o.get("kind") == "Deployment")

    async def install() -> list[str]:     # what clusterctl init (with cert-manager) puts there for its webhooks
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return await webhooks.install(kube, release)
    asyncio.run(install())
    env = dict(env or {})
    if binary_for(deployment["spec"]["template"]["spec"]["containers"][0]["image"]) == "baremetal-operator":
        auth = cluster.directory / "plane" / "bmo-auth"
        auth.mkdir(parents=True, exist_ok=True)
        env.setdefault("METAL3_AUTH_ROOT_DIR", str(auth))
    return start_deployment(cluster, deployment, release, variables=variables, env=env, timeout=timeout)


class Plane:
    """Several managers against one cluster, stopped together in reverse order."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.processes: dict[str, ManagerProcess] = {}

    def start(self, *providers: str, **kwargs: Any) -> Plane:
        for p in providers:
            self.processes[p] = start(self.cluster, p, **kwargs)
        return self

    def stop(self) -> None:
        for p in reversed(list(self.processes)):
            self.processes.pop(p).stop()

    def __enter__(self) -> Plane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
