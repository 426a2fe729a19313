"""Read what a cluster holds: the kinds clusterctl moves, the provider inventory, and the objects.

Reads only. Lists are paginated and run in parallel, one request per kind and namespace, because on a
fleet of a thousand hosts discovery is a large share of a move's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metal3_pivot.graph import CLUSTERCTL_LABEL, Graph, TypeInfo, build_graph
from metal3_pivot.inventory import INVENTORY
from metal3_pivot.kube import CONFIGMAP, CRD, NAMESPACE, SECRET, Kube, ResourceType, resource_type_of_crd

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


async def discover_types(kube: Kube) -> tuple[dict[tuple[str, str], TypeInfo], dict[tuple[str, str], ResourceType]]:
    crds = await kube.list(CRD)
    served = {}
    types = {}
    for crd in crds:
        rt = resource_type_of_crd(crd)
        served[(rt.group, rt.kind)] = rt
        if CLUSTERCTL_LABEL in (crd["metadata"].get("labels") or {}):
            types[(rt.group, rt.kind)] = TypeInfo.from_crd(crd, rt)
    types[("", "Secret")] = TypeInfo(SECRET)
    types[("", "ConfigMap")] = TypeInfo(CONFIGMAP)
    return types, served


async def discover(kube: Kube, namespaces: Sequence[str]) -> ClusterView:
    """The cluster's objects of every candidate kind in `namespaces` (all when empty), as a graph."""
    types, served = await discover_types(kube)
    providers = await kube.list(INVENTORY) if (INVENTORY.group, INVENTORY.kind) in served else []
    existing = {n["metadata"]["name"] for n in await kube.list(NAMESPACE)}
    wanted = [ns for ns in namespaces if ns in existing] if namespaces else [None]
    # Secrets in infrastructure providers' namespaces may belong to global identities (clusterctl does this)
    extra_secret_ns = sorted({p["metadata"]["namespace"] for p in providers
                              if p.get("type") == "InfrastructureProvider"} - set(namespaces)) if namespaces else []

    async def list_one(info: TypeInfo, ns: str | None) -> list[tuple[TypeInfo, Obj]]:
        if not info.rt.namespaced and ns is not None and ns != wanted[0]:
            return []  # cluster-scoped kinds are listed once
        items = await kube.list(info.rt, ns if info.rt.namespaced else None)
        return [(info, o) for o in items]

    jobs = [list_one(info, ns) for info in types.values() for ns in wanted]
    jobs += [list_one(types[("", "Secret")], ns) for ns in extra_secret_ns]
    results = await asyncio.gather(*jobs)
    objects = [pair for chunk in results for pair in chunk]
    return ClusterView(kube.name, types, served, providers, existing, build_graph(objects))
