"""Shared by the move tests: seeding a pair, snapshots, canonical forms, the engine CLI."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.cli import seed_cluster
from lab.cluster import LocalCluster, kube_for
from lab.data import crds
from lab.data.seed import canonical
from lab.data.seed import snapshot as seed_snapshot
from lab.data.seed_objects import Topology
from metal3_pivot.discovery import discover
from metal3_pivot.graph import ObjKey
from metal3_pivot.kube import CONFIGMAP, DEPLOYMENTS, NAMESPACE, Kube, load_kubeconfig
from metal3_pivot.mover import MoveOptions, Mover, MoveReport
from metal3_pivot.verify import VerifyReport, verify
from tests.kit.env import ROOT, tool_env

TOPOLOGY = Topology(namespace="metal3", clusters=1, control_planes=3, workers=2, spare_hosts=1)
OTHER_NS = "bystander"

Obj = dict[str, Any]


kube = kube_for


def seed_pair(clusters: dict[str, LocalCluster], topology: Topology = TOPOLOGY) -> dict[ObjKey, Obj]:
    """Seed the ephemeral cluster, plus a bystander namespace in both that no move may touch. Returns the
    ephemeral cluster's canonical snapshot: what every move test compares the end state with."""
    asyncio.run(seed_cluster(clusters["ephemeral"], topology))

    async def bystanders() -> None:
        for c in clusters.values():
            async with kube(c) as k:
                await k.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER_NS}})
                await k.create(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "keep-me", "namespace": OTHER_NS},
                                           "data": {"who": c.name}})
    asyncio.run(bystanders())
    return canonical_snapshot(clusters["ephemeral"], (topology.namespace,))


def settle(cluster: LocalCluster, topology: Topology = TOPOLOGY) -> None:
    """The target's controllers reconcile after a move (lab.data.seed.settle plays them)."""
    from lab.data.seed import settle as write_statuses

    async def go() -> None:
        async with kube(cluster) as k:
            await write_statuses(k, topology, bundle_types())
    asyncio.run(go())


def snapshot(cluster: LocalCluster, namespaces: tuple[str, ...] = (TOPOLOGY.namespace,)) -> dict[ObjKey, Obj]:
    """The objects that would move, as `cluster` has them (lab.data.seed.snapshot)."""
    async def go() -> dict[ObjKey, Obj]:
        async with kube(cluster) as k:
            return await seed_snapshot(k, list(namespaces))
    return asyncio.run(go())


def canonical_snapshot(cluster: LocalCluster, namespaces: tuple[str, ...] = (TOPOLOGY.namespace,)
                       ) -> dict[ObjKey, Obj]:
    """`snapshot` in canonical form: what a faithful move leaves equal."""
    return {k: canonical(o) for k, o in snapshot(cluster, namespaces).items()}


def read_seeded(kubeconfig: Path, topology: Topology = TOPOLOGY) -> dict[tuple[str, str], Obj]:
    """Every object the seed builder made for `topology`, read back by kind and name (absent ones left out)."""
    from lab.data.seed import type_index
    from lab.data.seed_objects import build
    from metal3_pivot.kube import group_of

    async def go() -> dict[tuple[str, str], Obj]:
        index = type_index(bundle_types())
        found = {}
        async with Kube(load_kubeconfig(kubeconfig)) as k:
            for so in build(topology):
                rt = index[(group_of(so.obj["apiVersion"]), so.obj["kind"])]
                obj = await k.get(rt, so.obj["metadata"]["name"], topology.namespace)
                if obj is not None:
                    found[(so.obj["kind"], so.obj["metadata"]["name"])] = obj
        return found
    return asyncio.run(go())


def resource_versions(cluster: LocalCluster, namespaces: tuple[str, ...] = ()) -> dict[ObjKey, str]:
    """Every object of every candidate kind (all namespaces by default): proof that nothing was written."""
    async def go() -> dict[ObjKey, str]:
        async with kube(cluster) as k:
            view = await discover(k, list(namespaces))
            return {key: str(n.obj["metadata"]["resourceVersion"]) for key, n in view.graph.nodes.items()}
    return asyncio.run(go())


def deployments(cluster: LocalCluster) -> dict[tuple[str, str], str]:
    """Every Deployment of the cluster (namespace, name) with its resourceVersion: what the stack installs
    (controllers, Ironic, BMO) and proof that an install was or was not touched."""
    async def go() -> dict[tuple[str, str], str]:
        async with kube(cluster) as k:
            return {(d["metadata"]["namespace"], d["metadata"]["name"]): str(d["metadata"]["resourceVersion"])
                    for d in await k.list(DEPLOYMENTS)}
    return asyncio.run(go())


def move(src: LocalCluster, dst: LocalCluster, **opts: Any) -> MoveReport:
    async def go() -> MoveReport:
        async with kube(src, "source") as s, kube(dst, "target") as d:
            return await Mover(s, d, MoveOptions(namespaces=(TOPOLOGY.namespace,), **opts)).run()
    return asyncio.run(go())


def check(a: LocalCluster, b: LocalCluster, expect: str | None = None) -> VerifyReport:
    async def go() -> VerifyReport:
        async with kube(a, "ephemeral") as ka, kube(b, "target") as kb:
            return await verify(ka, kb, (TOPOLOGY.namespace,), expect=expect)
    return asyncio.run(go())


def engine_cli(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 600
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metal3_pivot.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=tool_env(**(env_extra or {})))


def cli_move_args(src: LocalCluster, dst: LocalCluster) -> list[str]:
    return ["move", "--kubeconfig", str(src.kubeconfig), "--to-kubeconfig", str(dst.kubeconfig),
            "--namespace", TOPOLOGY.namespace]


def clusterctl_move(src: LocalCluster, dst: LocalCluster, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["clusterctl", "move", "--kubeconfig", str(src.kubeconfig), "--to-kubeconfig", str(dst.kubeconfig),
         "--namespace", TOPOLOGY.namespace],
        env=tool_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")), capture_output=True, text=True,
        timeout=900)


def bundle_types() -> dict[str, Any]:
    return crds.bundle().resource_types()


def diff_paths(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ, as readable paths (for assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {'missing' if k not in a else repr(a[k])[:80]} vs "
                           f"{'missing' if k not in b else repr(b[k])[:80]}")
            else:
                out.extend(diff_paths(a[k], b[k], f"{path}.{k}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in diff_paths(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {repr(a)[:100]} vs {repr(b)[:100]}"]


@contextlib.contextmanager
def broken_owner_chain(cluster: LocalCluster) -> Iterator[str]:
    """One Metal3Machine gains an owner that does not move (a ConfigMap `outsider`): the pre-flight's
    owner-chain finding, as long as the block runs; mended after. Yields the Metal3Machine's name."""
    m3m = sorted(k.name for k in snapshot(cluster) if k.kind == "Metal3Machine")[0]
    rt = next(r for r in bundle_types().values() if r.kind == "Metal3Machine")

    async def break_chain() -> list[Obj]:
        async with kube(cluster) as k:
            outsider = await k.create(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "outsider", "namespace": TOPOLOGY.namespace}})
            obj = await k.get(rt, m3m, TOPOLOGY.namespace)
            assert obj is not None
            refs = list(obj["metadata"]["ownerReferences"])
            await k.patch(rt, m3m, TOPOLOGY.namespace, {"metadata": {"ownerReferences": [*refs, {
                "apiVersion": "v1", "kind": "ConfigMap", "name": "outsider", "uid": outsider["metadata"]["uid"]}]}})
            return refs

    async def mend(refs: list[Obj]) -> None:
        async with kube(cluster) as k:
            await k.patch(rt, m3m, TOPOLOGY.namespace, {"metadata": {"ownerReferences": refs}})
            await k.delete(CONFIGMAP, "outsider", TOPOLOGY.namespace)

    refs = asyncio.run(break_chain())
    try:
        yield m3m
    finally:
        asyncio.run(mend(refs))
