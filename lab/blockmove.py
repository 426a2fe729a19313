"""A provider stand-in that holds moves with clusterctl's `block-move` annotation, as CAPZ does.

Some providers (the Azure one, CAPZ) put `clusterctl.cluster.x-k8s.io/block-move` on their objects while
the owning Cluster is unpaused, and remove it only once the Cluster is paused and they have finished
what must travel with the object (in-flight long-running operations). clusterctl therefore pauses first
and then waits for the annotation to go (`waitReadyForMove`). The CAPM3 version pinned here sets none,
so the lab has this small controller to exercise that path against real API servers:

- every `interval` seconds it reads the Clusters of its namespace and the objects of its kinds that carry
  the `cluster.x-k8s.io/cluster-name` label;
- an object whose Cluster is unpaused gets the annotation; one whose Cluster is paused loses it (after
  `release_delay` seconds of seeing the pause, to make the wait observable), unless `hold` is set: a
  provider that never lets go, for the tests of the wait's deadline.

It runs as its own process (`python -m lab.blockmove ...`, started by `start()`), so that it acts beside
a mover exactly as a provider's controller would: a separate client, racing the mover's writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from metal3_pivot import CRD, Kube, ResourceType, load_kubeconfig, resource_type_of_crd

BLOCK_MOVE = "clusterctl.cluster.x-k8s.io/block-move"
CLUSTER_NAME = "cluster.x-k8s.io/cluster-name"
CLUSTERS = ("cluster.x-k8s.io", "Cluster")
DEFAULT_KINDS = (("infrastructure.cluster.x-k8s.io", "Metal3Machine"),)

Obj = dict[str, Any]


def is_paused(cluster: Obj) -> bool:
    return bool((cluster.get("spec") or {}).get("paused")) or "cluster.x-k8s.io/paused" in (
        cluster["metadata"].get("annotations") or {})


class BlockMoveController:
    def __init__(self, kube: Kube, namespace: str, kinds: tuple[tuple[str, str], ...] = DEFAULT_KINDS, *,
                 release_delay: float = 1.0, hold: bool = False) -> None:
        self.kube = kube
        self.namespace = namespace
        self.kinds = kinds
        self.release_delay = release_delay
        self.hold = hold
        self.paused_since: dict[str, float] = {}
        self.types: dict[tuple[str, str], ResourceType] = {}

    async def _types(self) -> dict[tuple[str, str], ResourceType]:
        if not self.types:
            for crd in await self.kube.list(CRD):
                rt = resource_type_of_crd(crd)
                self.types[(rt.group, rt.kind)] = rt
        return self.types

    async def reconcile(self) -> int:
        """One pass; returns how many objects it changed."""
        types = await self._types()
        clusters = {c["metadata"]["name"]: c for c in await self.kube.list(types[CLUSTERS], self.namespace)}
        now = time.monotonic()
        for name, cluster in clusters.items():
            if is_paused(cluster):
                self.paused_since.setdefault(name, now)
            else:
                self.paused_since.pop(name, None)
        changed = 0
        for gk in self.kinds:
            rt = types.get(gk)
            if rt is None:
                continue
            for obj in await self.kube.list(rt, self.namespace):
                md = obj["metadata"]
                cluster_name = str((md.get("labels") or {}).get(CLUSTER_NAME, ""))
                if cluster_name not in clusters or md.get("deletionTimestamp"):
                    continue
                blocked = BLOCK_MOVE in (md.get("annotations") or {})
                since = self.paused_since.get(cluster_name)
                release = since is not None and not self.hold and now - since >= self.release_delay
                if since is None and not blocked:
                    patch: Obj = {"metadata": {"annotations": {BLOCK_MOVE: "true"}}}
                elif release and blocked:
                    patch = {"metadata": {"annotations": {BLOCK_MOVE: None}}}
                else:
                    continue
                if await self.kube.patch(rt, md["name"], self.namespace, patch, ok_missing=True) is not None:
                    changed += 1
        return changed

    async def run(self, interval: float, stop: asyncio.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            try:
                changed = await self.reconcile()
                if changed:
                    print(f"blockmove: changed {changed} objects", file=sys.stderr, flush=True)
            except Exception as err:
                print(f"blockmove: {err}", file=sys.stderr, flush=True)
            await asyncio.sleep(interval)


def _pdeathsig() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the test that started it


def start(kubeconfig: Path, namespace: str, log: Path, *, hold: bool = False, interval: float = 0.5,
          release_delay: float = 1.0) -> subprocess.Popen[bytes]:
    """Run the controller as a process of its own, attached to the caller (it dies with it)."""
    args = [sys.executable, "-m", "lab.blockmove", "--kubeconfig", str(kubeconfig), "--namespace", namespace,
            "--interval", str(interval), "--release-delay", str(release_delay)]
    if hold:
        args.append("--hold")
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parent.parent, preexec_fn=_pdeathsig)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.blockmove", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--kind", action="append", help="group/Kind to annotate (default: Metal3Machine)")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--release-delay", type=float, default=1.0)
    p.add_argument("--hold", action="store_true", help="never remove the annotation (a stuck provider)")
    a = p.parse_args(argv)
    kinds = tuple((k.split("/", 1)[0], k.split("/", 1)[1]) for k in a.kind) if a.kind else DEFAULT_KINDS

    async def go() -> None:
        async with Kube(load_kubeconfig(a.kubeconfig), name="blockmove") as kube:
            ctl = BlockMoveController(kube, a.namespace, kinds, release_delay=a.release_delay, hold=a.hold)
            await ctl.run(a.interval)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
