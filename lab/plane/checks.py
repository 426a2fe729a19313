"""What metal3-dev-env verifies after a pivot (and after the move back), read from the live plane.

Every check reads what the controllers, Ironic and the machines themselves report, never what a mover
wrote: the Cluster provisioned and its control plane initialized (CAPI, KCP), every Machine Running
with a nodeRef, every Metal3Machine provisioned (CAPM3), every BareMetalHost `provisioned` and powered
on (BMO), nothing paused (a paused object is not reconciled, whatever its status says), every host
known to this management cluster's Ironic and `active` there (Ironic), and, across
a pivot, nothing re-provisioned, re-inspected or power-cycled: no power request, virtual media or boot
device change reached any machine since the mark (the BMCs' own record, lab/machines/bmc.py), and
Ironic's node history holds no error (a failed adoption is recorded there). And on each management
cluster, what runs is what it declares: every controller Deployment there has its process answering its
health endpoint, Ironic runs there exactly when an Ironic Deployment is declared, and nothing else runs
against it (after a pivot: the controllers the stack installed on the target answer, BMO and Ironic,
which the stack removed from the ephemeral cluster, are gone from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cluster import LocalCluster
from lab.machines.bmc import BmcCheckpoint, LocalBmcs
from lab.plane import managers, spawn
from lab.plane.ironic_api import IronicClient
from lab.plane.runner import ironic_endpoint, is_ironic, runnable
from metal3_pivot import BMH_PAUSED, DEPLOYMENTS, Kube, ResourceType, load_kubeconfig

Obj = dict[str, Any]
CLUSTERS = ResourceType("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
MACHINES = ResourceType("cluster.x-k8s.io", "v1beta2", "Machine", "machines")
KCPS = ResourceType("controlplane.cluster.x-k8s.io", "v1beta2", "KubeadmControlPlane", "kubeadmcontrolplanes")
M3MS = ResourceType("infrastructure.cluster.x-k8s.io", "v1beta2", "Metal3Machine", "metal3machines")
BMHS = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"  [{'ok' if self.ok else 'FAIL'}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class Objects:
    clusters: list[Obj]
    kcps: list[Obj]
    machines: list[Obj]
    m3ms: list[Obj]
    hosts: list[Obj]


def read(cluster: LocalCluster, namespace: str) -> Objects:
    async def go() -> Objects:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            got = await asyncio.gather(*(kube.list(rt, namespace) for rt in (CLUSTERS, KCPS, MACHINES, M3MS, BMHS)))
            return Objects(*got)
    return asyncio.run(go())


def _names(objs: list[Obj]) -> str:
    return ", ".join(o["metadata"]["name"] for o in objs) or "none"


def _init(obj: Obj, field: str) -> bool:
    return bool(((obj.get("status") or {}).get("initialization") or {}).get(field))


def controllers(objs: Objects, *, provisioned_hosts: int) -> list[Check]:
    """The objects as the controllers report them (step 5 of the workflow, Kubernetes side)."""
    out = []
    bad = [c for c in objs.clusters if (c.get("status") or {}).get("phase") != "Provisioned"
           or not _init(c, "controlPlaneInitialized")]
    out.append(Check("Cluster provisioned, control plane initialized", bool(objs.clusters) and not bad,
                     f"{len(objs.clusters)} cluster(s); not yet: {_names(bad)}"))
    bad = [k for k in objs.kcps if not _init(k, "controlPlaneInitialized")]
    out.append(Check("KubeadmControlPlane initialized", bool(objs.kcps) and not bad,
                     f"{len(objs.kcps)}; not yet: {_names(bad)}"))
    bad = [m for m in objs.machines if (m.get("status") or {}).get("phase") != "Running"
           or not ((m.get("status") or {}).get("nodeRef") or {}).get("name")]
    out.append(Check("Machines Running with nodeRefs", bool(objs.machines) and not bad,
                     f"{len(objs.machines)}; not yet: {_names(bad)}"))
    bad = [m for m in objs.m3ms if not _init(m, "provisioned")]
    out.append(Check("Metal3Machines provisioned", bool(objs.m3ms) and not bad,
                     f"{len(objs.m3ms)}; not yet: {_names(bad)}"))
    used = [h for h in objs.hosts if (h.get("spec") or {}).get("consumerRef")]
    bad = [h for h in used if ((h.get("status") or {}).get("provisioning") or {}).get("state") != "provisioned"
           or not (h.get("status") or {}).get("poweredOn")
           or (h.get("status") or {}).get("operationalStatus") != "OK"]
    out.append(Check("BareMetalHosts provisioned, powered on, OK", len(used) == provisioned_hosts and not bad,
                     f"{len(used)} of {provisioned_hosts} claimed; not yet: {_names(bad)}"))
    # a paused object is one its controller does not reconcile, whatever its status still says: a move that
    # stopped before its unpause leaves every status above as it was
    paused = ([c for c in objs.clusters if (c.get("spec") or {}).get("paused")]
              + [h for h in objs.hosts if BMH_PAUSED in (h["metadata"].get("annotations") or {})])
    out.append(Check("nothing paused (Cluster spec.paused, BareMetalHost paused annotation)", not paused,
                     f"paused: {_names(paused)}"))
    return out


def ironic(cluster: LocalCluster, objs: Objects) -> list[Check]:
    """This management cluster's Ironic knows every host, and has each claimed one `active`, powered on."""
    try:
        nodes = {n["name"]: n for n in IronicClient(ironic_endpoint(cluster), timeout=10).nodes()}
    except OSError as err:
        return [Check(f"Ironic of {cluster.name} answers", False, str(err))]
    out = [Check(f"Ironic of {cluster.name} answers", True, f"{len(nodes)} node(s)")]
    names = {f"{h['metadata']['namespace']}~{h['metadata']['name']}": h for h in objs.hosts}
    missing = sorted(set(names) - set(nodes))
    out.append(Check("Ironic knows every host", not missing, f"missing: {', '.join(missing) or 'none'}"))
    claimed = [n for n, h in names.items() if (h.get("spec") or {}).get("consumerRef")]
    bad = [n for n in claimed if n in nodes and (nodes[n]["provision_state"] != "active"
                                                  or nodes[n]["power_state"] != "power on")]
    out.append(Check("Ironic has every claimed host active and powered on", not bad and not missing,
                     "; ".join(f"{n}: {nodes[n]['provision_state']}/{nodes[n]['power_state']}" for n in bad)
                     or f"{len(claimed)} active"))
    return out


def untouched(rack: LocalBmcs, mark: BmcCheckpoint, cluster: LocalCluster) -> list[Check]:
    """Nothing reached a machine since `mark` (the BMCs' own record), and this cluster's Ironic
    recorded no error (its node history): no host was re-provisioned, re-inspected or power-cycled."""
    activity = rack.activity_since(mark)
    detail = "; ".join(f"{uuid[:8]}: {len(ch)} change(s), {len(wr)} write(s)" for uuid, (ch, wr) in activity.items())
    out = [Check("no power, media or boot change reached any machine", not activity, detail or "none")]
    client = IronicClient(ironic_endpoint(cluster), timeout=10)
    failed = []
    try:
        for node in client.nodes():
            errors = [e.event for e in client.history(node["uuid"]) if e.severity.upper() == "ERROR"]
            if errors:
                failed.append(f"{node['name']}: {errors[-1][:120]}")
    except OSError as err:
        return [*out, Check("Ironic's node history holds no error", False, str(err))]
    out.append(Check("Ironic's node history holds no error", not failed, "; ".join(failed) or "none"))
    return out


def manager_processes(cluster: LocalCluster) -> dict[str, int]:
    """The controller processes running for `cluster`'s Deployments, "namespace/name" -> health port, read
    from /proc: each runs in its Deployment's folder, `<cluster>/plane/<namespace>.<name>`, with
    `--health-addr=127.0.0.1:PORT` (lab/plane/managers.py)."""
    plane = (cluster.directory / "plane").resolve()
    out: dict[str, int] = {}
    for pid in spawn.processes_mentioning(plane, managers.BINARIES):
        with contextlib.suppress(OSError, ValueError, StopIteration):   # gone since it was listed
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            port = int(next(a for a in argv if a.startswith("--health-addr=")).rsplit(":", 1)[1])
            if cwd.parent == plane:
                namespace, name = cwd.name.split(".", 1)
                out[f"{namespace}/{name}"] = port
    return out


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def runs_what_it_declares(cluster: LocalCluster) -> list[Check]:
    """What runs against this management cluster is what it declares, no more, no less: each controller
    Deployment (an image the lab has a binary for, replicas not 0, not being deleted) has its process, and
    the process answers /readyz; Ironic runs exactly when an Ironic Deployment is declared."""
    async def go() -> list[Obj]:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return await kube.list(DEPLOYMENTS)
    live = [d for d in asyncio.run(go()) if runnable(d) and not d["metadata"].get("deletionTimestamp")
            and (d.get("spec") or {}).get("replicas", 1) != 0]
    declared = {f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in live if not is_ironic(d)}
    running = manager_processes(cluster)
    answering = {key for key, port in running.items() if _answers(port)}
    not_running, extra = sorted(declared - set(running)), sorted(set(running) - declared)
    silent = sorted((declared & set(running)) - answering)
    ironic_declared = any(is_ironic(d) for d in live)
    ironic_running = bool(ironic_dirs(cluster.directory))
    detail = "; ".join(part for part in (
        f"{len(answering & declared)} of {len(declared)} declared answer /readyz",
        f"not answering: {', '.join(silent)}" if silent else "",
        f"not running: {', '.join(not_running)}" if not_running else "",
        f"running but not declared: {', '.join(extra)}" if extra else "",
        f"Ironic {'declared' if ironic_declared else 'not declared'}, "
        f"{'running' if ironic_running else 'not running'}") if part)
    return [Check(f"{cluster.name} runs the controllers it declares, and no other",
                  not silent and not not_running and not extra and ironic_declared == ironic_running, detail)]


def all_checks(cluster: LocalCluster, namespace: str, rack: LocalBmcs, *, provisioned_hosts: int,
               mark: BmcCheckpoint | None = None, others: tuple[LocalCluster, ...] = ()) -> list[Check]:
    """The checks on the cluster that holds the hosts; `others`: the management clusters that no longer do,
    checked for what runs there (BMO and Ironic must have left)."""
    objs = read(cluster, namespace)
    out = controllers(objs, provisioned_hosts=provisioned_hosts) + ironic(cluster, objs)
    out += runs_what_it_declares(cluster)
    for other in others:
        out += runs_what_it_declares(other)
    if mark is not None:
        out += untouched(rack, mark, cluster)
    return out


def wait_until_passing(cluster: LocalCluster, namespace: str, rack: LocalBmcs, *, provisioned_hosts: int,
                       mark: BmcCheckpoint | None = None, timeout: float = 300.0,
                       progress: Any = None, others: tuple[LocalCluster, ...] = ()) -> tuple[list[Check], float]:
    """Poll the checks until all pass (returns them and the seconds it took) or `timeout` (returns the last).
    The "untouched" checks are part of every poll: a machine touched once stays failed."""
    t0 = time.monotonic()
    last_shown = ""
    while True:
        result = all_checks(cluster, namespace, rack, provisioned_hosts=provisioned_hosts, mark=mark, others=others)
        if all(c.ok for c in result) or time.monotonic() - t0 > timeout:
            return result, time.monotonic() - t0
        if mark is not None and not all(c.ok for c in result if c.name.startswith("no power")):
            return result, time.monotonic() - t0
        pending = ", ".join(c.name for c in result if not c.ok)
        if progress is not None and pending != last_shown:
            progress(f"{cluster.name}: waiting for: {pending}")
            last_shown = pending
        time.sleep(1.0)


# ---------------------------------------------------------------------------------------------- never two

def ironic_dirs(base: Path) -> set[str]:
    """The LocalIronic folders below `base` with a live Ironic process (its master, or its forked worker,
    which retitles itself but keeps the folder as its working directory)."""
    found = set()
    for pid in spawn.processes_mentioning(base, ("ironic",)):
        with contextlib.suppress(OSError):      # gone since it was listed
            found.add(os.readlink(f"/proc/{pid}/cwd"))
    return found


@dataclass
class IronicWatch:
    """Looks at every process under the lab every 20 ms for as long as it runs, and keeps every moment two
    Ironics were alive at once. An Ironic takes seconds to start and to stop, so an overlap cannot fall
    between two looks. `with IronicWatch(base) as watch: ...`, then `watch.max_seen`."""

    base: Path
    interval: float = 0.02
    samples: int = 0
    max_seen: int = 0
    overlaps: list[tuple[float, set[str]]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> IronicWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = ironic_dirs(self.base)
            self.samples += 1
            self.seen |= now
            self.max_seen = max(self.max_seen, len(now))
            if len(now) > 1:
                self.overlaps.append((time.time(), now))
            self._stop.wait(self.interval)

    def summary(self) -> str:
        return (f"Ironics alive at once: at most {self.max_seen} ({self.samples} looks, every "
                f"{self.interval * 1000:.0f} ms)")
