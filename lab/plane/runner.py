"""The lab's node agent: run the controller Deployments a cluster declares, as a kubelet would run their Pods.

Which managers run against a management cluster is decided by that cluster's objects, not by a test
script: when `clusterctl init` or the stack's ProviderInstall puts a provider's Deployment there, its
manager starts; when the Deployment goes (or is scaled to 0, or its Pod template changes), the process
stops (or restarts). One `sync()` is one pass of that loop; `run()` repeats it.

A Deployment is runnable when its image is one the lab has a binary for (managers.IMAGES); others are
left alone (reported in `skipped`). What the Pod would get that the cluster does not declare comes from
the provider's release config, as `clusterctl init` would have installed it: the cert-manager
`Certificate` behind the webhook serving Secret and the webhook configurations (the stack's
ProviderInstall leaves both out today; see docs/live-plane.md).

Readiness goes back into the Deployment's status (replicas, readyReplicas, availableReplicas and an
Available condition), written by the lab as the deployment controller would from its Pods' state: the
lab's controller-manager runs no deployment controller, so nothing else writes it.

Processes are spawned from the thread that calls `sync()` (PR_SET_PDEATHSIG is per thread, see
lab/cluster.py): call it from the thread that owns the runner.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lab.cluster import LocalCluster
from lab.plane import managers
from lab.plane.managers import ManagerProcess, PlaneError
from metal3_pivot import DEPLOYMENTS, Kube, load_kubeconfig

Obj = dict[str, Any]

#: binary -> the provider (components.manifests name) whose release config completes its Deployment
RELEASE_OF = {"capi-manager": "cluster-api", "kubeadm-bootstrap-manager": "bootstrap-kubeadm",
              "kubeadm-control-plane-manager": "control-plane-kubeadm", "capm3-manager": "infrastructure-metal3",
              "ipam-manager": "ipam-metal3", "baremetal-operator": "baremetal-operator"}


def template_hash(deployment: Obj) -> str:
    """Like the pod-template-hash: a changed template means a new Pod (here, a restarted process)."""
    return hashlib.sha256(json.dumps(deployment["spec"]["template"], sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class _Running:
    process: ManagerProcess
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
        for d in deployments:
            key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            if managers.binary_for(image) is None:
                self.skipped.add(key)
                continue
            if (d["spec"].get("replicas", 1) or 0) > 0 and not d["metadata"].get("deletionTimestamp"):
                wanted[key] = d
        for key in list(self.running):
            r = self.running[key]
            d = wanted.get(key)
            if d is None or template_hash(d) != r.template or not r.process.alive():
                why = "gone or scaled to 0" if d is None else "template changed" if template_hash(d) != r.template \
                    else f"exited ({r.process.proc.returncode})"
                r.process.stop()
                del self.running[key]
                self._event(f"stopped {key}: {why}")
        for key, d in wanted.items():
            if key not in self.running:
                self._start(key, d)
        for key, d in wanted.items():
            self._report(d, self.running.get(key))

    def _start(self, key: str, d: Obj) -> None:
        binary = managers.binary_for(d["spec"]["template"]["spec"]["containers"][0]["image"])
        assert binary is not None
        release = managers.release_of(RELEASE_OF[binary])
        env = dict(self.env)
        if binary == "baremetal-operator":
            auth = self.cluster.directory / "plane" / "bmo-auth"
            auth.mkdir(parents=True, exist_ok=True)
            env.setdefault("METAL3_AUTH_ROOT_DIR", str(auth))
        try:
            mp = managers.start_deployment(self.cluster, d, release, variables=self.variables, env=env)
        except PlaneError as err:
            self.failures[key] = str(err)
            self._event(f"failed to start {key}: {str(err).splitlines()[0]}")
            return
        self.failures.pop(key, None)
        self.running[key] = _Running(mp, template_hash(d), d["metadata"].get("generation", 1))
        self._event(f"started {key} ({mp.plan.binary}, pid {mp.pid}) in {mp.started_in:.1f} s")

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

    def stop(self) -> None:
        for key in reversed(list(self.running)):
            self.running.pop(key).process.stop()
            self._event(f"stopped {key}: runner stopped")

    def _event(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {self.cluster.name}: {text}")

    def _call(self, fn: Any) -> Any:
        async def go() -> Any:
            async with Kube(load_kubeconfig(self.cluster.kubeconfig), name=self.cluster.name) as kube:
                return await fn(kube)
        return asyncio.run(go())
