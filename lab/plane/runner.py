"""The lab's node agent: run the controller Deployments a cluster declares, as a kubelet would run their Pods.

Which managers run against a management cluster is decided by that cluster's objects, not by a test
script: when `clusterctl init` or the stack's ProviderInstall puts a provider's Deployment there, its
manager starts; when the Deployment goes (or is scaled to 0, or its Pod template changes), the process
stops (or restarts). One `sync()` is one pass of that loop; `run()` repeats it.

A Deployment is runnable when its image is one the lab has a binary for (managers.IMAGES); others are
left alone (reported in `skipped`). Everything a process gets comes from the cluster: the webhook
serving Secret it mounts and the webhook configurations that call it are the install's (the stack's
ProviderInstall / Ironic, or the lab's dev-env `clusterctl init`); the runner adds only what a kubelet
and the EndpointSlice controller would: the Pod's address in its Services' EndpointSlices
(lab/plane/endpoints.py), so those `service:` references reach it. A mounted Secret that changes (a
renewed certificate) restarts the process, as a kubelet refreshing the volume and the manager's
certificate watcher would make it serve the new one.

Readiness goes back into the Deployment's status (replicas, readyReplicas, availableReplicas and an
Available condition), written by the lab as the deployment controller would from its Pods' state: the
lab's controller-manager runs no deployment controller, so nothing else writes it.

Ironic's Deployment (image `.../ironic`, as the stack's Ironic component and metal3-dev-env declare it)
runs as the cluster's LocalIronic (lab/plane/ironic.py), fresh database at every start as a new pod
would have, behind the cluster's Ironic endpoint (lab/plane/adoption.py). That endpoint stands for
"the provisioning IP, port 6385" that BMO's IRONIC_ENDPOINT names: one port per cluster, kept while
Ironic comes and goes, so BMO is pointed at it whatever its ConfigMap says and is not restarted when
Ironic is; while no Ironic runs on the cluster, connections there are refused.

A Deployment being deleted keeps a finalizer of the lab's (`FINALIZER`) until its process has exited:
in a real cluster a deleted Deployment (foreground deletion, what `kubectl delete` and Pulumi do) is
gone only after its Pods have terminated. This is what makes a Pulumi delete-before-replace of Ironic
wait until the old Ironic has stopped before the new one is created.

Processes are spawned from the thread that calls `sync()` (PR_SET_PDEATHSIG is per thread, see
lab/cluster.py): call it from the thread that owns the runner.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lab.cluster import LocalCluster, free_port
from lab.plane import endpoints, managers, spawn
from lab.plane.ironic import IronicError, LocalIronic
from lab.plane.managers import ManagerProcess, PlaneError
from metal3_pivot import DEPLOYMENTS, SECRET, Kube, load_kubeconfig

Obj = dict[str, Any]

FINALIZER = "lab.metal3-pivot.io/process-running"
#: image repositories run as the cluster's Ironic (any registry and tag)
IRONIC_IMAGES = frozenset({"ironic"})


def image_repo(image: str) -> str:
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def runnable(deployment: Obj) -> bool:
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return managers.binary_for(image) is not None or image_repo(image) in IRONIC_IMAGES


def is_ironic(deployment: Obj) -> bool:
    return image_repo(deployment["spec"]["template"]["spec"]["containers"][0]["image"]) in IRONIC_IMAGES


@dataclass
class IronicProcess:
    """The cluster's Ironic (API + conductor + httpd) and the endpoint BMO talks to, as one "Pod"."""

    ironic: LocalIronic
    endpoint_pid: int
    started_in: float

    @property
    def pid(self) -> int:
        return self.ironic.pids["ironic"]

    @property
    def label(self) -> str:
        return "ironic"

    def alive(self) -> bool:
        return self.ironic.running() and spawn.alive(self.endpoint_pid)

    def stop(self, grace: float = 10.0) -> None:
        spawn.stop(self.endpoint_pid, grace)
        self.ironic.stop(grace)


def ironic_endpoint_port(cluster: LocalCluster) -> int:
    """The cluster's "provisioning IP:6385": picked once, kept in the cluster folder for every later runner."""
    path = cluster.directory / "plane" / "ironic-endpoint.json"
    if path.exists():
        return int(json.loads(path.read_text())["port"])
    path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path.write_text(json.dumps({"port": port}))
    return port


def ironic_endpoint(cluster: LocalCluster) -> str:
    """BMO's IRONIC_ENDPOINT in this cluster."""
    return f"http://127.0.0.1:{ironic_endpoint_port(cluster)}/v1/"


def mounted_secrets(deployment: Obj) -> list[str]:
    return sorted(v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"].get("volumes") or []
                  if "secret" in v)


def template_hash(deployment: Obj, secrets: dict[str, str] | None = None) -> str:
    """Like the pod-template-hash: a changed template means a new Pod (here, a restarted process). With
    `secrets` ("<ns>/<name>" -> resourceVersion), a changed mounted Secret counts too (see the module doc)."""
    ns = deployment["metadata"]["namespace"]
    versions = {n: (secrets or {}).get(f"{ns}/{n}", "") for n in mounted_secrets(deployment)} if secrets else {}
    text = json.dumps([deployment["spec"]["template"], versions], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class _Running:
    process: ManagerProcess | IronicProcess
    template: str
    generation: int


@dataclass
class DeploymentRunner:
    cluster: LocalCluster
    variables: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)          # e.g. BMO's IRONIC_ENDPOINT
    running: dict[str, _Running] = field(default_factory=dict)  # "<ns>/<name>" -> process
    skipped: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    # -- one pass ----------------------------------------------------------------------------------------
    def sync(self) -> None:
        deployments = self._call(lambda kube: kube.list(DEPLOYMENTS))
        wanted: dict[str, Obj] = {}
        finalized: list[Obj] = []
        # Ironic first: BMO started in the same pass finds its endpoint answering
        for d in sorted(deployments, key=lambda d: not is_ironic(d)):
            key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            if not runnable(d):
                self.skipped.add(key)
                continue
            if FINALIZER in (d["metadata"].get("finalizers") or []):
                finalized.append(d)
            if (d["spec"].get("replicas", 1) or 0) > 0 and not d["metadata"].get("deletionTimestamp"):
                wanted[key] = d
        secrets = self._secret_versions(wanted.values())
        for key in list(self.running):
            r = self.running[key]
            d = wanted.get(key)
            if d is None or template_hash(d, secrets) != r.template or not r.process.alive():
                why = "gone or scaled to 0" if d is None else "exited" if not r.process.alive() else \
                    "template or mounted Secret changed"
                r.process.stop()
                del self.running[key]
                self._event(f"stopped {key}: {why}")
        for d in finalized:     # its process has exited (stopped above): the "Pod" is gone
            key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            if key not in self.running and key not in wanted:
                self._set_finalizer(d, present=False)
        for key, d in wanted.items():
            if key not in self.running:
                self._start(key, d, template_hash(d, secrets))
        self._publish_late_services()
        for key, d in wanted.items():
            self._report(d, self.running.get(key))

    def _publish_late_services(self) -> None:
        """The EndpointSlice controller's part for a Service that appears after its Pod started: an install
        declares a provider's Deployment and its webhook Service side by side (ProviderInstall), so the
        process may be up before the Service exists; its slice is written on the next pass."""
        running = {key: r.process for key, r in self.running.items()
                   if isinstance(r.process, ManagerProcess) and r.process.alive()}
        if not running:
            return

        async def go(kube: Kube) -> dict[str, list[str]]:
            services = await kube.list(endpoints.SERVICES)      # one read per pass, all namespaces
            address = endpoints.host_address()
            return {key: await endpoints.publish(kube, mp.plan.namespace, mp.plan.pod_labels, mp.plan.pod_ports,
                                                 address, f"{mp.plan.name}-lab", services=services,
                                                 written_already=mp.slices)
                    for key, mp in running.items()}
        for key, written in self._call(go).items():
            if written:
                running[key].slices += written
                self._event(f"{key}: EndpointSlice {', '.join(written)} written (its Service came after the Pod)")

    def _set_finalizer(self, d: Obj, *, present: bool) -> None:
        md = d["metadata"]
        now = list(md.get("finalizers") or [])
        if (FINALIZER in now) == present:
            return
        new = [*now, FINALIZER] if present else [f for f in now if f != FINALIZER]
        patch = {"metadata": {"resourceVersion": md["resourceVersion"], "finalizers": new}}
        try:      # a conflict means someone else wrote it meanwhile: the next pass sees the new version
            self._call(lambda kube: kube.patch(DEPLOYMENTS, md["name"], md["namespace"], patch, ok_missing=True))
        except Exception as err:
            self._event(f"finalizer on {md['namespace']}/{md['name']} not {'added' if present else 'removed'} "
                        f"this pass: {str(err).splitlines()[0]}")

    def _start_ironic(self, key: str, d: Obj) -> IronicProcess:
        t0 = time.monotonic()
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        ironic = LocalIronic(self.cluster.name, self.cluster.directory / "plane" / f"{ns}.{name}")
        ironic.start(attached=True)
        port = ironic_endpoint_port(self.cluster)
        log = ironic.log("endpoint")
        try:
            pid = spawn.spawn([sys.executable, "-m", "lab.plane.adoption", "--port", str(port), "--ironic",
                               ironic.url, "--kubeconfig", str(self.cluster.kubeconfig),
                               "--record", str(ironic.directory / "adoptions.jsonl")],
                              log=log, cwd=ironic.directory, attached=True)
            spawn.wait_http(f"http://127.0.0.1:{port}/v1", what=f"{key}: Ironic endpoint", pid=pid, log=log,
                            deadline=time.monotonic() + 30)
        except BaseException:
            ironic.stop()
            raise
        return IronicProcess(ironic, pid, time.monotonic() - t0)

    def _secret_versions(self, deployments: Any) -> dict[str, str]:
        """resourceVersion of every Secret the Deployments mount ("<ns>/<name>"; absent ones left out)."""
        wanted = {(d["metadata"]["namespace"], n) for d in deployments if not is_ironic(d) for n in mounted_secrets(d)}
        if not wanted:
            return {}

        async def go(kube: Kube) -> dict[str, str]:
            out = {}
            for ns, name in sorted(wanted):
                s = await kube.get(SECRET, name, ns)
                if s is not None:
                    out[f"{ns}/{name}"] = s["metadata"]["resourceVersion"]
            return out
        return dict(self._call(go))

    def _start(self, key: str, d: Obj, template: str) -> None:
        process: ManagerProcess | IronicProcess
        try:
            process = self._start_ironic(key, d) if is_ironic(d) else self._start_manager(d)
        except (PlaneError, IronicError, spawn.PlaneProcessError) as err:
            self.failures[key] = str(err)
            self._event(f"failed to start {key}: {str(err).splitlines()[0]}")
            return
        self.failures.pop(key, None)
        self.running[key] = _Running(process, template, d["metadata"].get("generation", 1))
        self._set_finalizer(d, present=True)
        what = process.label if isinstance(process, IronicProcess) else process.plan.binary
        self._event(f"started {key} ({what}, pid {process.pid}) in {process.started_in:.1f} s")

    def _start_manager(self, d: Obj) -> ManagerProcess:
        binary = managers.binary_for(d["spec"]["template"]["spec"]["containers"][0]["image"])
        assert binary is not None
        env = dict(self.env)
        if binary == "baremetal-operator":
            auth = self.cluster.directory / "plane" / "bmo-auth"
            auth.mkdir(parents=True, exist_ok=True)
            env.setdefault("METAL3_AUTH_ROOT_DIR", str(auth))
            env.setdefault("IRONIC_ENDPOINT", ironic_endpoint(self.cluster))
        return managers.start_deployment(self.cluster, d, variables=self.variables, env=env)

    def _report(self, d: Obj, r: _Running | None) -> None:
        ready = 1 if r is not None and r.process.alive() else 0
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": 1, "updatedReplicas": 1,
                  "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": 1 - ready,
                  "conditions": [{"type": "Available", "status": "True" if ready else "False",
                                  "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable",
                                  "message": "run by the lab's node agent (lab/plane/runner.py)",
                                  "lastUpdateTime": now, "lastTransitionTime": now}]}
        old = d.get("status") or {}
        if old.get("availableReplicas") == ready and old.get("observedGeneration") == status["observedGeneration"]:
            return
        md = d["metadata"]
        self._call(lambda kube: kube.patch(DEPLOYMENTS, md["name"], md["namespace"], {"status": status},
                                           sub="status", ok_missing=True))

    # -- loop --------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """sync() until `stop` is set, then stop every process. Call from the owning thread."""
        try:
            while not stop.is_set():
                self.sync()
                stop.wait(interval)
        finally:
            self.stop()

    def stop(self, *, release: bool = True) -> None:
        """Stop every process; with `release`, also drop the lab's finalizer from the Deployments (no
        process of ours runs any more, so nothing must hold their deletion). Skip that when the
        cluster itself is going away."""
        for key in reversed(list(self.running)):
            process = self.running.pop(key).process
            if isinstance(process, ManagerProcess):
                process.stop(withdraw=release)
            else:
                process.stop()
            self._event(f"stopped {key}: runner stopped")
        if not release:
            return
        try:
            held = [d for d in self._call(lambda kube: kube.list(DEPLOYMENTS))
                    if FINALIZER in (d["metadata"].get("finalizers") or [])]
        except Exception as err:        # the cluster is gone already: nothing to release
            self._event(f"finalizers not released: {str(err).splitlines()[0]}")
            return
        for d in held:
            self._set_finalizer(d, present=False)

    def _event(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {self.cluster.name}: {text}")

    def _call(self, fn: Any) -> Any:
        async def go() -> Any:
            async with Kube(load_kubeconfig(self.cluster.kubeconfig), name=self.cluster.name) as kube:
                return await fn(kube)
        return asyncio.run(go())
