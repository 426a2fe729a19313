"""Write a metal3-dev-env-like management cluster's objects (lab/data/seed_objects.py) into a real cluster.

Why level by level with real UIDs: the garbage collector deletes any object whose ownerReference names a
UID that does not exist, so owners must be created first and their server-assigned UIDs written into
their dependents. Statuses go through the status subresource afterwards, as the controllers would write
them (clusterctl's pre-flight reads them). Within a level, creates run in parallel, bounded.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from lab.data import live_metadata
from lab.data.seed_objects import SeedObject, Topology, build
from metal3_pivot import (
    CONFIGMAP,
    NAMESPACE,
    SECRET,
    SERVER_SET_METADATA,
    SOURCE_UID,
    SOURCE_VERSION,
    Kube,
    ObjKey,
    ResourceType,
    discover,
    group_of,
    unpacked,
)

CORE = {("", "Secret"): SECRET, ("", "ConfigMap"): CONFIGMAP}


@dataclass
class SeedResult:
    objects: int
    per_kind: dict[str, int]
    seconds: float


def type_index(types: dict[str, ResourceType]) -> dict[tuple[str, str], ResourceType]:
    index = dict(CORE)
    for rt in types.values():
        index[(rt.group, rt.kind)] = rt
    return index


async def seed(kube: Kube, topology: Topology, types: dict[str, ResourceType], *,
               concurrency: int = 32, progress: Any = None,
               live: dict[str, live_metadata.KindMetadata] | None = None) -> SeedResult:
    """Create the topology's objects level by level, then their statuses. `live`: also the finalizers,
    annotations and server-side-apply managers the live controllers leave (lab/data/live_metadata.py; the
    benchmark's seed)."""
    start = time.monotonic()
    index = type_index(types)
    objects = build(topology)
    if live:
        live_metadata.apply([so.obj for so in objects], live)
    await kube.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": topology.namespace}}, manager="metal3-lab")
    by_level: dict[int, list[SeedObject]] = defaultdict(list)
    for so in objects:
        by_level[so.level].append(so)
    uids: dict[tuple[str, str], str] = {}
    sem = asyncio.Semaphore(concurrency)

    def rt_of(obj: dict[str, Any]) -> ResourceType:
        return index[(group_of(obj["apiVersion"]), obj["kind"])]

    # kinds whose every live object carries fields of a server-side-apply manager (live_metadata.json
    # says which) are seeded by server-side apply under that manager's name: a move treats them apart
    appliers = {kind: m for kind, meta in (live or {}).items() if (m := meta.common_apply_manager())}

    async def create(so: SeedObject) -> None:
        obj = so.obj
        for ref in obj["metadata"].get("ownerReferences") or []:
            ref["uid"] = uids[(ref["kind"], ref["name"])]
        async with sem:
            if obj["kind"] in appliers:
                created = await kube.apply(rt_of(obj), obj, manager=appliers[obj["kind"]])
            else:
                created = await kube.create(rt_of(obj), obj)
        uids[(obj["kind"], obj["metadata"]["name"])] = created["metadata"]["uid"]

    async def write_status(so: SeedObject) -> None:
        md = so.obj["metadata"]
        async with sem:
            await kube.patch(rt_of(so.obj), md["name"], md.get("namespace"), {"status": so.status}, sub="status")

    done = 0
    for level in sorted(by_level):
        await asyncio.gather(*(create(so) for so in by_level[level]))
        done += len(by_level[level])
        if progress:
            progress(f"seeded {done}/{len(objects)} objects")
    await asyncio.gather(*(write_status(so) for so in objects if so.status))
    kinds = Counter(so.obj["kind"] for so in objects)
    return SeedResult(len(objects), dict(sorted(kinds.items())), time.monotonic() - start)


async def settle(kube: Kube, topology: Topology, types: dict[str, ResourceType], *, concurrency: int = 32) -> int:
    """Play the controllers' part after a move: write back the statuses they would recompute.

    clusterctl (and our engine, for parity) never copies status; in a real target cluster the CAPI and
    CAPM3 controllers rebuild it once the Cluster is unpaused. No controller runs here, so tests and the
    demo call this where a real cluster would simply reconcile. Objects that are absent are skipped.
    """
    index = type_index(types)
    sem = asyncio.Semaphore(concurrency)
    written = 0

    async def one(so: SeedObject) -> None:
        nonlocal written
        md = so.obj["metadata"]
        rt = index[(group_of(so.obj["apiVersion"]), so.obj["kind"])]
        async with sem:
            if await kube.patch(rt, md["name"], topology.namespace, {"status": so.status}, sub="status",
                                ok_missing=True) is not None:
                written += 1

    await asyncio.gather(*(one(so) for so in build(topology) if so.status and so.obj["kind"] != "BareMetalHost"))
    return written


# ---------------------------------------------------------------------------------------------- comparing

async def snapshot(kube: Kube, namespaces: list[str]) -> dict[ObjKey, dict[str, Any]]:
    """The objects that would move, as the cluster has them: what tests and the fault sweep compare."""
    view = await discover(kube, namespaces)
    return {key: unpacked(node.obj) for key, node in view.graph.move_nodes().items()}


async def canonical_snapshot(kube: Kube, namespaces: list[str]) -> dict[ObjKey, dict[str, Any]]:
    """`snapshot`, each object in its `canonical` form: equal before and after a faithful move."""
    return {key: canonical(obj) for key, obj in (await snapshot(kube, namespaces)).items()}


def canonical(obj: dict[str, Any], *, keep_status: bool = False, sort_owners: bool = False) -> dict[str, Any]:
    """An object without what legitimately differs between clusters: UIDs, versions, timestamps, our marks."""
    o = copy.deepcopy(obj)
    md = o["metadata"]
    for f in SERVER_SET_METADATA:
        md.pop(f, None)
    ann = md.get("annotations") or {}
    ann.pop(SOURCE_UID, None)
    ann.pop(SOURCE_VERSION, None)
    if not ann:
        md.pop("annotations", None)
    for ref in md.get("ownerReferences") or []:
        ref.pop("uid", None)
    if sort_owners and md.get("ownerReferences"):
        md["ownerReferences"].sort(key=lambda r: (r.get("kind", ""), r.get("name", "")))
    if not keep_status:
        o.pop("status", None)
    spec = o.get("spec")
    if isinstance(spec, dict) and spec.get("paused") is False:
        spec.pop("paused")       # unpaused: `false` and absent mean the same
    return o
