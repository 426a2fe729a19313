"""Install the real CAPI / CAPM3 / IPAM / BMO CRDs and clusterctl's provider inventory into a cluster.

The objects come from components/manifests.py (the pinned provider modules' CRD folders, labelled the
way `clusterctl init` and metal3-dev-env leave them), so a lab cluster holds exactly what the
ProviderInstall component would install: the mover's discovery reads those labels and the `Provider`
objects are what the pre-flight compares between source and target.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from components.manifests import (
    BMO,
    CLUSTERCTL,
    MOVE,
    MOVE_HIERARCHY,
    PROVIDER_LABEL,
    PROVIDERS,
    ManifestError,
    crds,
    inventory,
)
from metal3_pivot import CRD, INVENTORY, NAMESPACE, Kube, ResourceType, resource_type_of_crd

__all__ = ["CLUSTERCTL", "INVENTORY", "MOVE", "MOVE_HIERARCHY", "PROVIDER_LABEL", "Bundle", "CrdSourceError",
           "bundle", "install"]

CrdSourceError = ManifestError


@dataclass
class Bundle:
    crds: list[dict[str, Any]]
    providers: list[dict[str, Any]]             # inventory objects
    namespaces: list[str]

    def resource_types(self) -> dict[str, ResourceType]:
        return {c["spec"]["names"]["kind"] + "." + c["spec"]["group"]: resource_type_of_crd(c) for c in self.crds}


def bundle(without: frozenset[str] = frozenset()) -> Bundle:
    """Every CRD (labelled) and inventory object; `without` leaves out CRDs by name (for tests of a
    target that lacks a kind)."""
    all_crds = [c for spec in (*PROVIDERS, BMO) for c in crds(spec) if c["metadata"]["name"] not in without]
    providers = [p for p in (inventory(spec) for spec in PROVIDERS) if p]
    return Bundle(all_crds, providers, sorted({p.namespace for p in PROVIDERS}))


async def install(kube: Kube, b: Bundle, *, timeout: float = 60.0, providers: bool = True) -> None:
    """Apply CRDs server-side, wait until every one is Established, then the inventory."""
    await asyncio.gather(*(kube.apply(CRD, c, manager="metal3-lab") for c in b.crds))
    deadline = time.monotonic() + timeout
    names = {c["metadata"]["name"] for c in b.crds}
    while True:
        established = {c["metadata"]["name"] for c in await kube.list(CRD) if any(
            cond["type"] == "Established" and cond["status"] == "True"
            for cond in (c.get("status") or {}).get("conditions") or [])}
        if names <= established:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not established after {timeout} s: {sorted(names - established)}")
        await asyncio.sleep(0.1)
    if not providers:
        return
    for ns in b.namespaces:
        await kube.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                         manager="metal3-lab")
    await asyncio.gather(*(kube.apply(INVENTORY, p, manager="metal3-lab") for p in b.providers))
