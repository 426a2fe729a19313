"""Fault-rate sweep: move the seeded topology through lab/faultproxy.py at several total fault rates and
print a table for docs/reliability.md. The suite runs one rate (tests/test_faults.py); this is the
benchmark-style mode.

At each rate the move goes ephemeral -> target with the proxy in front of the target, then back with the
proxy in front of the ephemeral cluster (the destination of each move is the faulty one). A run that
stops with a PivotError is re-run through the same proxy, up to --attempts runs; anything else escaping
the engine is reported as a crash. After each direction: `verify` (every object in the destination) and
the moved objects equal to the originals (UIDs, versions, timestamps, our marks aside; Secret data byte
for byte), otherwise the objects that differ or are missing count as lost.

    python -m benchmarks.fault_sweep [--rates 0,5,10,20,30] [--hosts 6] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster, kube_for
from lab.data import crds
from lab.data.seed import canonical_snapshot, settle
from lab.data.seed_objects import Topology
from lab.faultproxy import FaultProxy, FaultRates
from metal3_pivot import MoveOptions, Mover, ObjKey, PivotError, verify

NS = "metal3"
#: how a total fault rate is shared between the fault kinds (stalls are the slowest, so the rarest)
MIX = {"throttle": 0.3, "error": 0.3, "drop": 0.15, "lost": 0.15, "stall": 0.1}


@dataclass
class Leg:
    rate: float
    direction: str
    requests: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    outcome: str = ""
    seconds: float = 0.0
    lost: int = 0


kube = kube_for


async def objects(c: LocalCluster) -> dict[ObjKey, dict[str, Any]]:
    async with kube(c) as k:
        return await canonical_snapshot(k, [NS])


async def check(eph: LocalCluster, tgt: LocalCluster, expect: str, original: dict[ObjKey, Any]) -> int:
    async with kube(eph, "ephemeral") as a, kube(tgt, "target") as b:
        report = await verify(a, b, (NS,), expect=expect)
    moved = await objects(eph if expect == "ephemeral" else tgt)
    lost = sum(1 for k, o in original.items() if moved.get(k) != o)
    if not report.ok:
        print(f"  verify: {[str(v) for v in report.violations[:5]]}", file=sys.stderr)
    return lost + (0 if report.ok else 1)


def leg(rate: float, src: LocalCluster, dst: LocalCluster, tmp: Path, seed: int, attempts: int) -> Leg:
    result = Leg(rate, f"{src.name} -> {dst.name}")
    rates = FaultRates(**{k: rate * share for k, share in MIX.items()})
    proxy = FaultProxy(dst, rates, seed=seed, stall_seconds=3).start()
    t0 = time.monotonic()
    try:
        flaky = proxy.kubeconfig(tmp / f"{dst.name}-{rate}.kubeconfig")

        async def run() -> None:
            async with kube(src, "source") as s, kube(flaky, "target", timeout=2, retries=10) as d:
                await Mover(s, d, MoveOptions(namespaces=(NS,))).run()

        for attempt in range(1, attempts + 1):
            result.runs = attempt
            try:
                asyncio.run(run())
            except PivotError as err:
                result.outcome = f"stopped ({type(err).__name__})"
                print(f"  run {attempt}: clean stop: {str(err)[:160]}", file=sys.stderr)
                continue
            except Exception as err:                 # a crash is a finding, reported in the table
                result.outcome = f"CRASH {type(err).__name__}"
                print(f"  run {attempt}: CRASH {err!r}", file=sys.stderr)
                break
            result.outcome = "completed" if attempt == 1 else f"stopped, re-run {attempt} completed"
            break
    finally:
        proxy.stop()
    result.seconds = time.monotonic() - t0
    result.requests = proxy.stats.requests
    result.injected = dict(proxy.stats.injected)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="0,5,10,20,30", help="total fault rates, percent, comma-separated")
    p.add_argument("--hosts", type=int, default=6, help="hosts in the seeded topology")
    p.add_argument("--seed", type=int, default=7, help="seed of the proxy's fault draws (+1 per leg)")
    p.add_argument("--attempts", type=int, default=5, help="runs through the faults before giving up")
    a = p.parse_args()
    topo = Topology(namespace=NS, clusters=1, control_planes=3, workers=max(0, a.hosts - 4), spare_hosts=1)
    rates = [float(r) / 100 for r in a.rates.split(",")]
    legs: list[Leg] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="m3p-faults-") as tmp:
        clusters = start_clusters(["ephemeral", "target"], Path(tmp), attached=True)
        eph, tgt = clusters["ephemeral"], clusters["target"]
        types = crds.bundle().resource_types()

        async def reconcile(c: LocalCluster) -> None:
            async with kube(c, c.name) as k:
                await settle(k, topo, types)
        try:
            asyncio.run(seed_cluster(eph, topo))
            original = asyncio.run(objects(eph))
            for i, rate in enumerate(rates):
                for j, (src, dst) in enumerate(((eph, tgt), (tgt, eph))):
                    one = leg(rate, src, dst, Path(tmp), a.seed + 2 * i + j, a.attempts)
                    one.lost = asyncio.run(check(eph, tgt, dst.name, original)) if "CRASH" not in one.outcome \
                        else len(original)
                    legs.append(one)
                    print(f"{rate:.0%} {one.direction}: {one.outcome}, {sum(one.injected.values())} faults in "
                          f"{one.requests} requests, {one.seconds:.1f} s, lost {one.lost}", file=sys.stderr,
                          flush=True)
                    asyncio.run(reconcile(dst))      # the destination's controllers rebuild statuses
        finally:
            for c in clusters.values():
                c.stop()
    print(f"{len(original)} objects, {a.hosts} hosts, proxy seed {a.seed}, {(time.monotonic() - t0) / 60:.1f} min")
    print("| fault rate | direction | requests | faults injected (429/500/drop/lost/stall) | outcome | seconds "
          "| objects lost |")
    print("|---|---|---|---|---|---|---|")
    for one in legs:
        f = one.injected
        mix = "/".join(str(f.get(k, 0)) for k in ("throttle", "error", "drop", "lost", "stall"))
        print(f"| {one.rate:.0%} | {one.direction} | {one.requests} | {sum(f.values())} ({mix}) | {one.outcome} "
              f"| {one.seconds:.1f} | {one.lost} |")
    ok = all(one.lost == 0 and "completed" in one.outcome for one in legs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
