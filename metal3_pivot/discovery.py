"""Read what a cluster holds: the kinds clusterctl moves, the provider inventory, and the objects.

Reads only. Lists are paginated and run in parallel, one request per kind and namespace, because on a
fleet of a thousand hosts discovery is a large share of a move's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from metal3_pivot.graph import (
    ADDONS_GROUP,
    BMH_GROUP,
    CAPI_GROUP,
    CLUSTERCTL_LABEL,
    Graph,
    ObjKey,
    TypeInfo,
    build_graph,
    mark_should_not_delete,
)
from metal3_pivot.inventory import INVENTORY
from metal3_pivot.kube import CONFIGMAP, CRD, NAMESPACE, SECRET, Kube, ResourceType, group_of, resource_type_of_crd

Obj = dict[str, Any]

@dataclass
class ClusterView:
    """Everything the mover knows about one cluster at one moment."""

    name: str
    types: dict[tuple[str, str], TypeInfo]
    served: dict[tuple[str, str], ResourceType]      # every CRD kind the cluster serves, labelled or not
    providers: list[Obj]
    namespaces: set[str]
    graph: Graph
    #: the versions each CRD kind is served at (the pre-flight checks that the target serves the version the
    #: objects are created at); empty for a backup folder
    versions: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Short, as Graph's (which says why)."""
        return f"ClusterView({self.name!r}, {self.graph!r})"


def pack_managed_fields(obj: Obj) -> Obj:
    """Hold each `Update` managedFields entry's fieldsV1 as its compact JSON text instead of a tree.

    Why: fieldsV1 mirrors every field of the object as nested maps, ~40 % of an object's JSON and far more
    of its Python memory (a dict per field), and a move never reads it: a copy gets its managedFields
    from the target's API server, except where a server-side-apply manager owns fields (then every
    entry is restored, managed_fields_patch, which unpacks them; `Apply` entries stay as they are). The
    text is lossless: `unpack_managed_fields` gives the tree back for a backup file. This is what keeps
    the engine's memory within bounds at 5,000 hosts (docs/performance.md)."""
    for entry in obj.get("metadata", {}).get("managedFields") or ():
        fields = entry.get("fieldsV1")
        if entry.get("operation") != "Apply" and isinstance(fields, dict):
            entry["fieldsV1"] = _compact(fields) or fields
    return obj


def _compact(value: Any) -> str | None:
    """Compact JSON text, as json.dumps(separators=(",", ":"), ensure_ascii=False) writes it: with orjson
    (5x faster, run on every object of a discovery) up to its 255 levels, then with the standard
    library; None deeper than either follows (the pre-flight refuses such an object, preflight.MAX_DEPTH,
    before anything is written)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        return None


def unpack_managed_fields(entries: list[Obj]) -> list[Obj]:
    """A copy of managedFields entries with every packed fieldsV1 a tree again, as the API server gives it."""
    return [{**e, "fieldsV1": json.loads(e["fieldsV1"])} if isinstance(e.get("fieldsV1"), str) else copy.deepcopy(e)
            for e in entries]


def unpacked(obj: Obj) -> Obj:
    """`obj` as the API server gave it (managedFields unpacked); `obj` itself when nothing is packed."""
    entries = obj.get("metadata", {}).get("managedFields")
    if not entries or not any(isinstance(e.get("fieldsV1"), str) for e in entries):
        return obj
    return {**obj, "metadata": {**obj["metadata"], "managedFields": unpack_managed_fields(entries)}}


def packed_overcount(obj: Obj) -> int:
    """How many bytes the packing adds to `json.dumps(obj)` (the quotes and escapes of the packed text), so
    a size taken from the packed object is the size the API server stores."""
    return sum(len(json.dumps(e["fieldsV1"], ensure_ascii=False).encode()) - len(e["fieldsV1"].encode())
               for e in obj.get("metadata", {}).get("managedFields") or () if isinstance(e.get("fieldsV1"), str))


Types = dict[tuple[str, str], TypeInfo]
Served = dict[tuple[str, str], ResourceType]
Versions = dict[tuple[str, str], frozenset[str]]


async def discover_types(kube: Kube) -> tuple[Types, Served, Versions]:
    """The kinds clusterctl moves (CRDs with its label, plus Secrets and ConfigMaps); every CRD kind at its
    storage version; and the versions each CRD kind is served at."""
    crds = await kube.list(CRD)
    served: Served = {}
    versions: Versions = {}
    types: Types = {}
    for crd in crds:
        rt = resource_type_of_crd(crd)
        served[(rt.group, rt.kind)] = rt
        versions[(rt.group, rt.kind)] = frozenset(v["name"] for v in crd["spec"]["versions"] if v.get("served"))
        if CLUSTERCTL_LABEL in (crd["metadata"].get("labels") or {}):
            types[(rt.group, rt.kind)] = TypeInfo.from_crd(crd, rt)
    types[("", "Secret")] = TypeInfo(SECRET)
    types[("", "ConfigMap")] = TypeInfo(CONFIGMAP)
    return types, served, versions


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a discovery builds its objects.

    Why: a discovery allocates millions of dicts and strings (13,160 objects at 1,000 hosts), each
    allocation burst triggers a collection, and the older generations' collections walk everything
    still alive, the views read so far included: measured, parsing the same list answers took 2-3x as
    long with the collector on. Nothing a discovery builds is cyclic (reference counting frees it), and
    the collector runs again as soon as the last discovery in the process ends. Re-entrant and
    thread-safe (two clusters are discovered at once; the Pulumi provider serves calls on threads)."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


#: the kinds whose content beyond metadata a light discovery still reads: the graph's edges that are not
#: owner references (a Cluster's ClusterClass, a binding's Cluster), and the hosts' provisioning status
#: (plan.hosts_missing_status, part of what a finished-looking move may still owe)
CONTENT_READ = frozenset({(CAPI_GROUP, "Cluster"), (CAPI_GROUP, "ClusterClass"),
                          (ADDONS_GROUP, "ClusterResourceSetBinding"), (BMH_GROUP, "BareMetalHost")})


async def discover(kube: Kube, namespaces: Sequence[str], *, light: bool = False) -> ClusterView:
    """The cluster's objects of every candidate kind in `namespaces` (all when empty), as a graph.

    `light`: every kind but CONTENT_READ as its metadata alone (names, UIDs, owners, labels, annotations):
    enough to say where the objects are, which of them move, and what the end of a move still owes
    (`placement`, `unfinished`), not to copy them or plan a move. A no-change preview needs no more; at
    1,000 hosts it reads a quarter fewer bytes (managedFields are metadata too; docs/performance.md)."""
    with no_cyclic_gc():
        return await _discover(kube, namespaces, light)


async def _discover(kube: Kube, namespaces: Sequence[str], light: bool = False) -> ClusterView:
    types, served, versions = await discover_types(kube)
    providers = await kube.list(INVENTORY) if (INVENTORY.group, INVENTORY.kind) in served else []
    existing = {n["metadata"]["name"] for n in await kube.list(NAMESPACE)}
    wanted = [ns for ns in namespaces if ns in existing] if namespaces else [None]
    # Secrets in infrastructure providers' namespaces may belong to global identities (clusterctl does this)
    extra_secret_ns = sorted({p["metadata"]["namespace"] for p in providers
                              if p.get("type") == "InfrastructureProvider"} - set(namespaces)) if namespaces else []

    async def list_one(info: TypeInfo, ns: str | None) -> list[tuple[TypeInfo, Obj]]:
        if not info.rt.namespaced and ns is not None and ns != wanted[0]:
            return []  # cluster-scoped kinds are listed once
        where = ns if info.rt.namespaced else None
        if light and (info.rt.group, info.rt.kind) not in CONTENT_READ:
            return [(info, o) async for o in kube.iter_list(info.rt, where, metadata_only=True)]
        # packed page by page: a whole kind unpacked at once is the peak the packing is there to avoid
        return [(info, pack_managed_fields(o)) async for o in kube.iter_list(info.rt, where)]

    jobs = [list_one(info, ns) for info in types.values() for ns in wanted]
    jobs += [list_one(types[("", "Secret")], ns) for ns in extra_secret_ns]
    results = await asyncio.gather(*jobs)
    objects = [pair for chunk in results for pair in chunk]
    users: list[Obj] = []
    if namespaces:
        objects += await _external_classes(kube, types, objects, set(namespaces))
        cluster_type = types.get((CAPI_GROUP, "Cluster"))
        users = await kube.list(cluster_type.rt) if cluster_type is not None else []
    graph = build_graph(objects)
    mark_should_not_delete(graph, namespaces, users)
    return ClusterView(kube.name, types, served, providers, existing, graph, versions)


def _class_ref(cluster: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the ClusterClass a Cluster's managed topology names, if any."""
    topology = (cluster.get("spec") or {}).get("topology") or {}
    ref = topology.get("classRef") or {}
    name = ref.get("name") or topology.get("class")
    if not name:
        return None
    return (ref.get("namespace") or topology.get("classNamespace") or cluster["metadata"].get("namespace", ""),
            name)


def _template_refs(cc: Obj) -> list[Obj]:
    spec = cc.get("spec") or {}
    refs = [(spec.get("infrastructure") or {}).get("templateRef"),
            (spec.get("controlPlane") or {}).get("templateRef"),
            ((spec.get("controlPlane") or {}).get("machineInfrastructure") or {}).get("templateRef")]
    workers = spec.get("workers") or {}
    for cls in [*(workers.get("machineDeployments") or []), *(workers.get("machinePools") or [])]:
        refs += [(cls.get("infrastructure") or {}).get("templateRef"), (cls.get("bootstrap") or {}).get("templateRef")]
    return [r for r in refs if r and r.get("kind") and r.get("name")]


async def _external_classes(kube: Kube, types: dict[tuple[str, str], TypeInfo], objects: list[tuple[TypeInfo, Obj]],
                            scope: set[str]) -> list[tuple[TypeInfo, Obj]]:
    """clusterctl's discovery of ClusterClasses outside the moved namespaces that a moving Cluster uses:
    the class and the templates it names join the graph (the class is then copied, and kept in the source)."""
    cc_type = types.get((CAPI_GROUP, "ClusterClass"))
    if cc_type is None:
        return []
    have = {ObjKey.of(o) for _, o in objects}
    wanted = sorted({cls for _, o in objects if o.get("kind") == "Cluster" and group_of(o["apiVersion"]) == CAPI_GROUP
                     and (cls := _class_ref(o)) is not None and cls[0] not in scope})
    found: list[tuple[TypeInfo, Obj]] = []
    for namespace, name in wanted:
        cc = await kube.get(cc_type.rt, name, namespace)
        if cc is None:
            continue
        found.append((cc_type, cc))
        for ref in _template_refs(cc):
            info = types.get((group_of(ref.get("apiVersion", "")), ref["kind"]))
            if info is None:
                continue
            key = ObjKey(info.rt.group, ref["kind"], namespace, ref["name"])
            if key in have:
                continue
            template = await kube.get(info.rt, ref["name"], namespace)
            if template is not None:
                have.add(key)
                found.append((info, template))
    return found
