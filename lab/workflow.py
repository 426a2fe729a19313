"""metal3-dev-env's CI workflow on the live plane, step by step: what `make demo` and the live workflow
tests run.

1. dev-env: the rack's BMCs, the ephemeral management cluster with CAPI + kubeadm bootstrap/control
   plane + CAPM3 + IPAM installed as `clusterctl init` installs them, Ironic + BMO as metal3-dev-env
   deploys them, and the BareMetalHosts registered to `available` through Ironic;
2. provision the workload cluster (one KubeadmControlPlane machine, one MachineDeployment worker)
   through CAPI -> CAPM3 -> BMO -> Ironic; the machine agent boots its control plane from the user
   data, and that cluster is the target management cluster (its kubeconfig from `<cluster>-kubeconfig`,
   as metal3-dev-env takes it);
3.-6. are the pivot and the move back, driven by the caller (`pulumi up`, or `clusterctl move` for the
   reference run), each followed by `checks.wait_until_passing` on the cluster that now holds the hosts;
7. de-provision: delete the workload cluster; the hosts return to `available` through Ironic.

Every process runs under `Lab.base`; `Lab.stop()` stops them all (agents first, so no controller
acts on a cluster that is going away).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components import manifests
from components.config import IronicConfig
from components.ironic import ironic_objects
from lab.cli import start_clusters
from lab.cluster import LocalCluster
from lab.data.topology import LiveTopology, live_objects
from lab.machines.bmc import BmcCheckpoint, LocalBmcs
from lab.plane import checks, webhooks
from lab.plane.agent import start_agent, stop_agent
from metal3_pivot import DEPLOYMENTS, SECRET, Kube, load_kubeconfig

Obj = dict[str, Any]
Progress = Callable[[str], None]


class WorkflowError(Exception):
    """A workflow step did not complete; the message says which check failed and where the logs are."""


def _quiet(_: str) -> None:
    pass


@dataclass
class Lab:
    base: Path
    topology: LiveTopology
    attached: bool = True
    progress: Progress = _quiet
    rack: LocalBmcs | None = None
    ephemeral: LocalCluster | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # -- where things are ----------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self.topology.namespace

    @property
    def workload_dir(self) -> Path:
        return self.base / self.topology.cluster

    @property
    def target_kubeconfig(self) -> Path:
        """The target cluster's kubeconfig as metal3-dev-env takes it: from the `<cluster>-kubeconfig` Secret."""
        return self.base / f"{self.topology.cluster}.kubeconfig"

    def target(self) -> LocalCluster:
        if not (self.workload_dir / "cluster.json").exists():
            raise WorkflowError(f"the workload cluster {self.topology.cluster} has not booted; see "
                                f"{self.base / 'ephemeral' / 'logs' / 'agent.log'}")
        return LocalCluster.load(self.workload_dir)

    @property
    def provisioned_hosts(self) -> int:
        return self.topology.control_planes + self.topology.workers

    def _step(self, name: str, t0: float) -> None:
        self.timings[name] = time.monotonic() - t0
        self.progress(f"{name}: {self.timings[name]:.1f} s")

    # -- 1. dev-env --------------------------------------------------------------------------------------
    def dev_env(self) -> None:
        t0 = time.monotonic()
        hosts = self.topology.hosts
        self.rack = LocalBmcs("rack", self.base / "bmcs", count=hosts).start(attached=self.attached)
        self.progress(f"the rack: {hosts} machines, Redfish at {self.rack.redfish}")
        self.ephemeral = start_clusters(["ephemeral"], self.base, attached=self.attached)["ephemeral"]
        start_agent(self.ephemeral, bmcs=self.rack.directory, machines=self.base, attached=self.attached)
        self.progress("clusterctl init (core, kubeadm bootstrap + control plane, metal3, ipam) on ephemeral")
        objs = [o for spec in manifests.PROVIDERS for o in manifests.controllers(spec)]
        objs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IronicConfig().namespace}},
                 *ironic_objects(IronicConfig())]
        install_webhooks(self.ephemeral)        # cert-manager's Secrets first, so the managers start at once
        kubectl_apply(self.ephemeral, objs)
        self.wait_deployments(self.ephemeral)
        self.progress("BareMetalHosts registered; waiting for them to be available through Ironic")
        kubectl_apply(self.ephemeral, [o for o in live_objects(self.topology, self.rack) if _is_host_side(o)])
        self.wait_hosts(self.ephemeral, {"available"}, count=hosts, timeout=300)
        self._step("1. dev-env (ephemeral cluster, controllers, Ironic, hosts available)", t0)

    # -- 2. provision ------------------------------------------------------------------------------------
    def provision(self) -> None:
        assert self.ephemeral is not None and self.rack is not None
        t0 = time.monotonic()
        self.progress(f"provisioning {self.topology.cluster} through CAPI -> CAPM3 -> BMO -> Ironic")
        kubectl_apply(self.ephemeral, [o for o in live_objects(self.topology, self.rack)
                                       if not _is_host_side(o) or o["kind"] == "Namespace"])
        result, _ = checks.wait_until_passing(self.ephemeral, self.namespace, self.rack,
                                              provisioned_hosts=self.provisioned_hosts, timeout=600,
                                              progress=self.progress)
        if not all(c.ok for c in result):
            raise WorkflowError("the workload cluster did not provision:\n" + "\n".join(map(str, result)))
        self.write_target_kubeconfig()
        self._step("2. provision the target cluster", t0)

    def write_target_kubeconfig(self) -> None:
        assert self.ephemeral is not None
        name = f"{self.topology.cluster}-kubeconfig"

        async def go() -> Obj | None:
            async with Kube(load_kubeconfig(self.ephemeral.kubeconfig), name="ephemeral") as kube:  # type: ignore[union-attr]
                return await kube.get(SECRET, name, self.namespace)
        secret = asyncio.run(go())
        if secret is None:
            raise WorkflowError(f"no Secret {self.namespace}/{name} in the ephemeral cluster")
        self.target_kubeconfig.write_bytes(base64.b64decode(secret["data"]["value"]))
        self.target_kubeconfig.chmod(0o600)

    # -- checks ------------------------------------------------------------------------------------------
    def checkpoint(self) -> BmcCheckpoint:
        assert self.rack is not None
        return self.rack.checkpoint()

    def verify(self, cluster: LocalCluster, mark: BmcCheckpoint | None, *, timeout: float = 300
               ) -> tuple[list[checks.Check], float]:
        """Step 5: wait until the controllers of `cluster` report everything reconciled; returns the
        checks and the seconds it took. The other management cluster is checked for what runs there: the
        controllers and Ironic that left it must have stopped."""
        assert self.rack is not None
        both = (LocalCluster.load(self.base / "ephemeral"), self.target())
        others = tuple(c for c in both if c.directory.resolve() != cluster.directory.resolve())
        return checks.wait_until_passing(cluster, self.namespace, self.rack, provisioned_hosts=self.provisioned_hosts,
                                         mark=mark, timeout=timeout, progress=self.progress, others=others)

    # -- 7. de-provision ---------------------------------------------------------------------------------
    def deprovision(self, cluster: LocalCluster) -> None:
        t0 = time.monotonic()
        hosts = self.topology.hosts
        subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", self.namespace, "delete",
                        "cluster", self.topology.cluster, "--wait=false"], check=True, capture_output=True)
        self.wait_hosts(cluster, {"available"}, count=hosts, timeout=600)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            objs = checks.read(cluster, self.namespace)
            if not objs.clusters and not objs.machines:
                break
            time.sleep(1)
        else:
            raise WorkflowError(f"the Cluster {self.topology.cluster} was not deleted in 300 s")
        while (self.workload_dir / "cluster.json").exists() and LocalCluster.load(self.workload_dir).running():
            if time.monotonic() > deadline:      # its init machine was wiped: the machine agent stops it
                raise WorkflowError(f"the workload cluster {self.topology.cluster} still runs after its "
                                    "control-plane host was deprovisioned; see the agents' logs")
            time.sleep(1)
        stop_agent(self.workload_dir)
        self._step("7. de-provision (hosts available again)", t0)

    # -- waits -------------------------------------------------------------------------------------------
    def wait_deployments(self, cluster: LocalCluster, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            async def go() -> list[Obj]:
                async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
                    return await kube.list(DEPLOYMENTS)
            pending = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in asyncio.run(go())
                       if not (d.get("status") or {}).get("availableReplicas")]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise WorkflowError(f"Deployments not available in {cluster.name} after {timeout:.0f} s: "
                                    f"{', '.join(pending)}; see {cluster.directory / 'logs'}")
            time.sleep(1)

    def wait_hosts(self, cluster: LocalCluster, states: set[str], *, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        shown = ""
        while True:
            hosts = checks.read(cluster, self.namespace).hosts
            where = {h["metadata"]["name"]: ((h.get("status") or {}).get("provisioning") or {}).get("state", "")
                     for h in hosts}
            if len(where) == count and set(where.values()) <= states:
                return
            now = ", ".join(f"{n}={s or '-'}" for n, s in sorted(where.items()))
            if now != shown:
                self.progress(f"hosts in {cluster.name}: {now}")
                shown = now
            if time.monotonic() > deadline:
                raise WorkflowError(f"hosts not {sorted(states)} in {cluster.name} after {timeout:.0f} s: {now}; "
                                    f"see {cluster.directory / 'logs'} and the Ironic logs under "
                                    f"{cluster.directory / 'plane'}")
            time.sleep(1)

    # -- the reference run: move.yml's handover by hand, then `clusterctl move` ---------------------------
    def handover_by_hand(self, source: LocalCluster, dest: LocalCluster, env: dict[str, str] | None = None) -> None:
        """metal3-dev-env's move.yml around `clusterctl move`: Ironic and BMO deleted from `source` (and
        gone), BMO's webhook with them (its kustomize delete takes the whole install), then deployed on
        `dest`, webhook and cert-manager's Secret included, and awaited `Available`."""
        kubectl = ["kubectl", "--kubeconfig", str(source.kubeconfig)]
        for args in (["delete", "validatingwebhookconfiguration",
                      "baremetal-operator-validating-webhook-configuration", "--ignore-not-found"],
                     ["-n", IronicConfig().namespace, "delete", "deployment", "ironic",
                      "baremetal-operator-controller-manager", "--wait=true", "--cascade=foreground"]):
            proc = subprocess.run([*kubectl, *args], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise WorkflowError(f"`kubectl {' '.join(args)}` on {source.name} failed: {proc.stderr[-2000:]}")
        install_webhooks(dest, (manifests.BMO,))
        kubectl_apply(dest, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IronicConfig().namespace}},
                             *ironic_objects(IronicConfig())], env=env)
        self.wait_deployments(dest)

    def clusterctl_move(self, source: LocalCluster, dest: LocalCluster, home: Path,
                        env: dict[str, str] | None = None) -> float:
        """`clusterctl move` of the lab's namespace with its own HOME (clusterctl writes its config and
        logs there); returns its seconds."""
        home.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        proc = subprocess.run(["clusterctl", "move", "--kubeconfig", str(source.kubeconfig), "--to-kubeconfig",
                               str(dest.kubeconfig), "-n", self.namespace], capture_output=True, text=True,
                              env={**(env if env is not None else os.environ), "HOME": str(home),
                                   "XDG_CONFIG_HOME": str(home / ".config"),
                                   "CLUSTERCTL_DISABLE_VERSIONCHECK": "true"}, timeout=600)
        if proc.returncode != 0:
            raise WorkflowError(f"clusterctl move from {source.name} to {dest.name} failed "
                                f"(exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return time.monotonic() - t0

    # -- teardown ----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Agents first (their controllers and Ironic with them), then the clusters, then the rack."""
        for d in (self.workload_dir, self.base / "ephemeral"):
            stop_agent(d)
        if (self.workload_dir / "cluster.json").exists():
            LocalCluster.load(self.workload_dir).stop()
        if self.ephemeral is not None:
            self.ephemeral.stop()
        elif (self.base / "ephemeral" / "cluster.json").exists():
            LocalCluster.load(self.base / "ephemeral").stop()
        if self.rack is not None:
            self.rack.stop()
        elif (self.base / "bmcs" / "bmcs.json").exists():
            LocalBmcs.load(self.base / "bmcs").stop()


def _is_host_side(obj: Obj) -> bool:
    """The BareMetalHosts and their BMC credentials (dev-env registers them before any cluster exists)."""
    if obj["kind"] in ("Namespace", "BareMetalHost"):
        return True
    return obj["kind"] == "Secret" and obj["metadata"]["name"].endswith("-bmc-secret")


def install_webhooks(cluster: LocalCluster, specs: tuple[manifests.ProviderSpec, ...] = manifests.all_specs()
                     ) -> list[str]:
    """The providers' and BMO's webhooks as `clusterctl init` (with cert-manager) and metal3-dev-env leave
    them: serving Secrets, webhook Services and configurations, CRD conversions (lab/plane/webhooks.py)."""
    async def go() -> list[str]:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return [w for spec in specs for w in await webhooks.install(kube, manifests.rendered(spec))]
    return asyncio.run(go())


def kubectl_apply(cluster: LocalCluster, objs: list[Obj], env: dict[str, str] | None = None) -> None:
    """`kubectl apply --server-side` of `objs` (Namespaces first), as an operator or clusterctl would."""
    ordered = sorted(objs, key=lambda o: (o["kind"] != "Namespace", o["kind"] != "CustomResourceDefinition"))
    text = yaml.safe_dump_all(ordered)
    proc = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "--server-side",
                           "--force-conflicts", "-f", "-"], input=text, text=True, capture_output=True, env=env)
    if proc.returncode != 0:
        raise WorkflowError(f"kubectl apply to {cluster.name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
