"""Kill matrix, full mode: SIGKILL the engine CLI after every k-th API write, over the whole move and the
whole move back, re-run, and check the invariants after each. The suite runs a sample of these points
(tests/test_move_resume.py); this script runs them all and prints the figures for docs/reliability.md.

    python -m benchmarks.kill_matrix [--step 1] [--hosts 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import crds
from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster
from lab.seed import settle
from lab.seed_objects import Topology
from metal3_pivot.kube import KILL_AFTER_WRITES_ENV, Kube, load_kubeconfig
from metal3_pivot.mover import MoveOptions, Mover
from metal3_pivot.verify import verify

ROOT = Path(__file__).resolve().parent.parent


def kube(c: LocalCluster, name: str) -> Kube:
    return Kube(load_kubeconfig(c.kubeconfig), name=name)


def cli(src: LocalCluster, dst: LocalCluster, kill_after: int | None) -> int:
    env = dict(os.environ)
    if kill_after:
        env[KILL_AFTER_WRITES_ENV] = str(kill_after)
    return subprocess.run([sys.executable, "-m", "metal3_pivot.cli", "move", "--kubeconfig", str(src.kubeconfig),
                           "--to-kubeconfig", str(dst.kubeconfig), "-n", "metal3"], cwd=ROOT, env=env,
                          capture_output=True).returncode


async def writes_of(src: LocalCluster, dst: LocalCluster) -> int:
    async with kube(src, "source") as s, kube(dst, "target") as d:
        return (await Mover(s, d, MoveOptions(namespaces=("metal3",))).run()).writes


async def ok(a: LocalCluster, b: LocalCluster, expect: str) -> tuple[bool, int]:
    async with kube(a, "ephemeral") as ka, kube(b, "target") as kb:
        report = await verify(ka, kb, ("metal3",), expect=expect)
    return report.ok, sum(report.counts[expect].values())


async def reconcile(c: LocalCluster, topo: Topology) -> None:
    async with kube(c, c.name) as k:
        await settle(k, topo, crds.bundle().resource_types())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step", type=int, default=1, help="kill after every STEP-th write")
    p.add_argument("--hosts", type=int, default=6,
                   help="hosts in the seeded topology (3 control planes + workers + 1 spare)")
    a = p.parse_args()
    topo = Topology(namespace="metal3", clusters=1, control_planes=3, workers=max(0, a.hosts - 4), spare_hosts=1)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="m3p-kill-") as tmp:
        clusters = start_clusters(["ephemeral", "target"], Path(tmp), attached=True)
        eph, tgt = clusters["ephemeral"], clusters["target"]
        try:
            asyncio.run(seed_cluster(eph, topo))
            objects = asyncio.run(ok(eph, tgt, "ephemeral"))[1]
            forward = asyncio.run(writes_of(eph, tgt))
            asyncio.run(reconcile(tgt, topo))
            backward = asyncio.run(writes_of(tgt, eph))
            asyncio.run(reconcile(eph, topo))
            tried = converged = 0
            lost = 0
            plan = (("move", (eph, tgt, forward)), ("move back", (tgt, eph, backward)))
            for direction, (src, dst, total) in plan:
                for k in range(1, total, a.step):
                    rc = cli(src, dst, k)
                    tried += 1
                    rerun = cli(src, dst, None)
                    good, count = asyncio.run(ok(eph, tgt, dst.name))
                    converged += int(rc == -9 and rerun == 0 and good)
                    lost += objects - count
                    asyncio.run(reconcile(dst, topo))
                    cli(dst, src, None)                  # back to the start of this direction
                    asyncio.run(reconcile(src, topo))
                    print(f"{direction}: killed after {k}/{total} writes -> re-run {'ok' if rerun == 0 else rerun}, "
                          f"invariants {'ok' if good else 'VIOLATED'}", file=sys.stderr, flush=True)
                # leave the objects where the next direction starts
                if direction == "move":
                    cli(src, dst, None)
                    asyncio.run(reconcile(dst, topo))
        finally:
            for c in clusters.values():
                c.stop()
    print("| objects | writes (move / back) | kill points tried | converged | objects lost | minutes |")
    print("|---|---|---|---|---|---|")
    minutes = (time.monotonic() - t0) / 60
    print(f"| {objects} | {forward} / {backward} | {tried} | {converged} | {lost} | {minutes:.1f} |")
    return 0 if converged == tried and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
