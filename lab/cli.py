"""`metal3-lab`: start, seed and stop the local management clusters the demo and the tests use.

    metal3-lab up [--dir .lab] [ephemeral target]     start clusters (they keep running), install CRDs
    metal3-lab seed --cluster ephemeral [--clusters 1 --control-planes 3 --workers 2]
    metal3-lab status          the clusters, the BMCs, and every process of each with its memory
    metal3-lab down
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cluster import ClusterError, LocalCluster, kube_for, start_all
from lab.data import crds

if TYPE_CHECKING:
    from lab.data.seed_objects import Topology

DEFAULT_DIR = Path(".lab")


def log(msg: str) -> None:
    print(f"metal3-lab: {msg}", file=sys.stderr, flush=True)


def start_clusters(names: list[str], base: Path, *, attached: bool, with_crds: bool = True,
                   without: frozenset[str] = frozenset(), templates: Path | None = None) -> dict[str, LocalCluster]:
    """Start the named clusters in parallel and install the CRDs and provider inventory into each.

    `templates`: a folder of etcd data to start from (made there on first use, one per cluster name and
    CRD selection). A cluster started from one has the CRDs (Established) and inventory in ~5 s instead
    of ~13: the test suite starts a hundred clusters. One per name, so that two clusters of one call
    never share the kube-system UID that the move lock orders clusters by."""
    t0 = time.monotonic()
    seeds = _templates(names, templates, without) if with_crds and templates is not None else {}
    clusters = {n: LocalCluster(n, base / n, etcd_seed=seeds.get(n)) for n in names}
    start_all(list(clusters.values()), attached=attached)
    origin = f" with the CRDs and inventory from {templates}" if seeds else ""
    log(f"started {', '.join(names)}{origin} in {time.monotonic() - t0:.1f} s")
    if with_crds and not seeds:
        b = crds.bundle(without)
        t1 = time.monotonic()
        asyncio.run(_install_all(list(clusters.values()), b))
        took = time.monotonic() - t1
        log(f"installed {len(b.crds)} CRDs and {len(b.providers)} providers per cluster in {took:.1f} s")
    return clusters


def _templates(names: list[str], folder: Path, without: frozenset[str]) -> dict[str, Path]:
    """The etcd data folder of a cluster with the CRDs and inventory, per name: made by starting the
    clusters missing one, installing, and stopping them cleanly (etcd's files then hold it all)."""
    tag = "all" if not without else "without-" + hashlib.sha256(",".join(sorted(without)).encode()).hexdigest()[:8]
    seeds = {n: folder / f"{n}-{tag}" / "etcd" for n in names}
    missing = [n for n in names if not seeds[n].is_dir()]
    if missing:
        build = folder / f"building-{tag}"
        made = start_clusters(missing, build, attached=True, without=without)
        for c in made.values():
            c.stop()
            seeds[c.name].parent.mkdir(parents=True, exist_ok=True)
            shutil.move(c.directory / "etcd", seeds[c.name])
        shutil.rmtree(build, ignore_errors=True)
    return seeds


async def _install_all(clusters: list[LocalCluster], b: crds.Bundle) -> None:
    async def one(cluster: LocalCluster) -> None:
        async with kube_for(cluster) as kube:
            await crds.install(kube, b)

    await asyncio.gather(*(one(c) for c in clusters))


async def seed_cluster(cluster: LocalCluster, topology: Topology, concurrency: int = 32) -> None:
    from lab.data.seed import seed

    async with kube_for(cluster, concurrency=concurrency) as kube:
        result = await seed(kube, topology, crds.bundle().resource_types(), concurrency=concurrency,
                            progress=log)
    log(f"seeded {result.objects} objects into {cluster.name}/{topology.namespace} in {result.seconds:.1f} s")


def processes_of(folder: Path) -> list[tuple[int, float, str]]:
    """(pid, RSS MiB, command) of every live process working in `folder`: its cluster's components, node
    agent, managers, Ironic (master and retitled worker) and their helpers; or the rack's BMCs."""
    out = []
    needle = str(folder.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            rss = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            continue
        if cwd == needle or cwd.startswith(needle + "/"):
            command = " ".join(a for a in argv if a)
            out.append((int(proc.name), rss / 1024, command))
    return sorted(out, key=lambda t: -t[1])


def print_processes(folder: Path) -> None:
    procs = processes_of(folder)
    for pid, rss, command in procs:
        print(f"  {pid:>7} {rss:7.0f} MiB  {command[:110]}")
    if procs:
        print(f"  {len(procs)} processes, {sum(r for _, r, _ in procs):.0f} MiB resident")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="metal3-lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where cluster folders live (default .lab)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("names", nargs="*", default=["ephemeral", "target"])
    up.add_argument("--no-crds", action="store_true")
    sd = sub.add_parser("seed")
    sd.add_argument("--cluster", default="ephemeral")
    sd.add_argument("--namespace", default="metal3")
    sd.add_argument("--clusters", type=int, default=1)
    sd.add_argument("--control-planes", type=int, default=3)
    sd.add_argument("--workers", type=int, default=2)
    sd.add_argument("--spare-hosts", type=int, default=0)
    sd.add_argument("--concurrency", type=int, default=32)
    sub.add_parser("status")
    sub.add_parser("down")
    args = p.parse_args(argv)
    base: Path = args.dir.resolve()
    try:
        if args.cmd == "up":
            for name in args.names:
                if (base / name / "cluster.json").exists():
                    LocalCluster.load(base / name).stop()
            clusters = start_clusters(args.names, base, attached=False, with_crds=not args.no_crds)
            for c in clusters.values():
                print(f"{c.name}: {c.server} kubeconfig={c.kubeconfig}")
        elif args.cmd == "seed":
            from lab.data.seed_objects import Topology

            cluster = LocalCluster.load(base / args.cluster)
            topo = Topology(namespace=args.namespace, clusters=args.clusters, control_planes=args.control_planes,
                            workers=args.workers, spare_hosts=args.spare_hosts)
            asyncio.run(seed_cluster(cluster, topo, args.concurrency))
        elif args.cmd == "status":
            for d in sorted([*base.glob("*/cluster.json"), *base.glob("*/bmcs.json")]):
                if d.name == "cluster.json":
                    c = LocalCluster.load(d.parent)
                    print(f"{c.name}: {'running' if c.running() else 'stopped'} {c.server} kubeconfig={c.kubeconfig}")
                else:
                    print(f"{d.parent.name}: the machines' BMCs")
                print_processes(d.parent)
        elif args.cmd == "down":
            from lab.machines.bmc import LocalBmcs
            from lab.plane.agent import stop_agent

            folders = sorted(d.parent for d in base.glob("*/cluster.json"))
            for folder in folders:      # the node agents first: no controller acts on a cluster going away
                stop_agent(folder)
            for folder in folders:
                c = LocalCluster.load(folder)
                c.stop()
                log(f"stopped {c.name}")
            for d in sorted(base.glob("*/bmcs.json")):
                LocalBmcs.load(d.parent).stop()
                log(f"stopped the machines' BMCs in {d.parent.name}")
    except (ClusterError, crds.CrdSourceError, FileNotFoundError) as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
