"""Benchmark: our move against `clusterctl move` on the same seeded data, on the same apiservers.

    make bench                                # 10, 100, 1000 hosts
    python -m benchmarks.move_bench --hosts 10 100 --no-clusterctl

For each size: start a fresh pair of local clusters, seed the ephemeral one, then time
1. our engine moving ephemeral -> target, then back (the back move restores the starting point),
2. `clusterctl move` ephemeral -> target,
3. the raw create rate: the same objects created in parallel (no owner order, no reads) into a spare
   namespace of the target, i.e. the physical limit of the apiserver for this data.
Prints a table; docs/performance.md records a run. Speed targets live here, not in timed unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.cli import start_clusters
from lab.cluster import LocalCluster, kube_for
from lab.data import crds
from lab.data.seed import seed, settle, type_index
from lab.data.seed_objects import Topology, build
from metal3_pivot import NAMESPACE, Kube, MoveOptions, Mover, MoveReport, group_of

ROOT = Path(__file__).resolve().parent.parent


def topology_for(hosts: int) -> Topology:
    """Clusters of at most 100 hosts (3 control planes + workers), like a fleet of workload clusters."""
    clusters = max(1, math.ceil(hosts / 100))
    per = hosts // clusters
    return Topology(namespace="metal3", clusters=clusters, control_planes=3 if per >= 4 else 1,
                    workers=per - (3 if per >= 4 else 1))


def kube(c: LocalCluster, name: str, concurrency: int = 64) -> Kube:
    return kube_for(c, name, concurrency=concurrency)


async def our_move(src: LocalCluster, dst: LocalCluster, concurrency: int) -> MoveReport:
    async with kube(src, "source", concurrency) as s, kube(dst, "target", concurrency) as d:
        return await Mover(s, d, MoveOptions(namespaces=("metal3",), concurrency=concurrency)).run()


async def do_settle(c: LocalCluster, topo: Topology) -> None:
    async with kube(c, c.name) as k:
        await settle(k, topo, crds.bundle().resource_types(), concurrency=64)


async def raw_create(c: LocalCluster, topo: Topology, concurrency: int) -> tuple[int, float]:
    index = type_index(crds.bundle().resource_types())
    objs = []
    for so in build(topo):
        o = copy.deepcopy(so.obj)
        o["metadata"]["namespace"] = "raw"
        o["metadata"].pop("ownerReferences", None)
        objs.append(o)
    async with kube(c, c.name, concurrency) as k:
        await k.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "raw"}})
        sem = asyncio.Semaphore(concurrency)

        async def one(o: dict) -> None:
            async with sem:
                await k.create(index[(group_of(o["apiVersion"]), o["kind"])], o)

        t0 = time.monotonic()
        await asyncio.gather(*(one(o) for o in objs))
        return len(objs), time.monotonic() - t0


def clusterctl(src: LocalCluster, dst: LocalCluster, home: Path) -> float:
    env = dict(os.environ, HOME=str(home), CLUSTERCTL_DISABLE_VERSIONCHECK="true")
    t0 = time.monotonic()
    r = subprocess.run(["clusterctl", "move", "--kubeconfig", str(src.kubeconfig), "--to-kubeconfig",
                        str(dst.kubeconfig), "--namespace", "metal3"], env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"clusterctl move failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return took


def run_size(hosts: int, concurrency: int, with_clusterctl: bool, base: Path) -> dict[str, object]:
    topo = topology_for(hosts)
    clusters = start_clusters(["ephemeral", "target"], base / f"h{hosts}", attached=True)
    eph, tgt = clusters["ephemeral"], clusters["target"]
    try:
        async def do_seed() -> float:
            async with kube(eph, "ephemeral") as k:
                r = await seed(k, topo, crds.bundle().resource_types(), concurrency=64)
                return r.seconds
        seed_s = asyncio.run(do_seed())
        objects = len(build(topo))
        fwd = asyncio.run(our_move(eph, tgt, concurrency))
        asyncio.run(do_settle(tgt, topo))
        back = asyncio.run(our_move(tgt, eph, concurrency))
        asyncio.run(do_settle(eph, topo))
        cc_s = clusterctl(eph, tgt, base) if with_clusterctl else float("nan")
        n_raw, raw_s = asyncio.run(raw_create(tgt, topo, concurrency))
        return {"hosts": topo.clusters * (topo.control_planes + topo.workers), "objects": objects,
                "seed": seed_s, "ours": fwd.seconds, "ours_back": back.seconds, "writes": fwd.writes,
                "clusterctl": cc_s, "raw": raw_s, "raw_objects": n_raw, "phases": fwd.phases}
    finally:
        for c in clusters.values():
            c.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--no-clusterctl", action="store_true")
    a = p.parse_args()
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"concurrency {a.concurrency}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="m3p-bench-") as tmp:
        for hosts in a.hosts:
            print(f"# {hosts} hosts ...", file=sys.stderr, flush=True)
            rows.append(run_size(hosts, a.concurrency, not a.no_clusterctl, Path(tmp)))
    head = (f"| {'hosts':>5} | {'objects':>7} | {'seed s':>7} | {'ours s':>7} | {'back s':>7} | "
            f"{'clusterctl s':>12} | {'raw create s':>12} | {'vs clusterctl':>13} | {'vs raw':>6} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ours, cc, raw = float(r["ours"]), float(r["clusterctl"]), float(r["raw"])  # type: ignore[arg-type]
        speedup = f"{cc / ours:.1f}x faster" if cc == cc else "-"
        print(f"| {r['hosts']:>5} | {r['objects']:>7} | {float(r['seed']):>7.1f} | {ours:>7.1f} | "  # type: ignore[arg-type]
              f"{float(r['ours_back']):>7.1f} | {cc:>12.1f} | {raw:>12.1f} | {speedup:>13} | "  # type: ignore[arg-type]
              f"{ours / raw:>5.1f}x |")
    for r in rows:
        print(f"# {r['hosts']} hosts: our phases {r['phases']}, {r['writes']} writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
