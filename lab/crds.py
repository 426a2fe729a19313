"""Install the real CAPI / CAPM3 / IPAM / BMO CRDs and clusterctl's provider inventory into a cluster.

The CRDs come from the pinned provider modules' CRD folders (the envtest convention), labelled the way
`clusterctl init` and metal3-dev-env leave them, because the mover's discovery reads exactly those
labels: `clusterctl.cluster.x-k8s.io` marks a type clusterctl moves, `.../move` and `.../move-hierarchy`
on BareMetalHost and HardwareData are metal3-dev-env's hand-labelling, and the `Provider` objects are
what clusterctl's pre-flight compares between source and target.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metal3_pivot.kube import CRD, NAMESPACE, Kube, ResourceType, resource_type_of_crd

ROOT = Path(__file__).resolve().parent.parent
MODULES_FILE = ROOT / ".tools" / "crd-modules.json"

CLUSTERCTL = "clusterctl.cluster.x-k8s.io"
MOVE = "clusterctl.cluster.x-k8s.io/move"
MOVE_HIERARCHY = "clusterctl.cluster.x-k8s.io/move-hierarchy"
PROVIDER_LABEL = "cluster.x-k8s.io/provider"
INVENTORY = ResourceType("clusterctl.cluster.x-k8s.io", "v1alpha3", "Provider", "providers")


@dataclass(frozen=True)
class ProviderSpec:
    """One clusterctl provider: where its CRDs are and how its inventory object reads."""

    name: str                  # inventory object name, e.g. infrastructure-metal3
    provider_name: str         # e.g. metal3
    type: str                  # CoreProvider, InfrastructureProvider, ...
    namespace: str
    module: str                # key in tools/versions.toml [crds]
    crd_dir: str               # inside the module
    extra_labels: dict[str, dict[str, str]] = field(default_factory=dict)   # CRD name -> labels


PROVIDERS = (
    ProviderSpec("cluster-api", "cluster-api", "CoreProvider", "capi-system", "cluster-api", "core/config/crd"),
    ProviderSpec("bootstrap-kubeadm", "kubeadm", "BootstrapProvider", "capi-kubeadm-bootstrap-system", "cluster-api",
                 "bootstrap/kubeadm/config/crd"),
    ProviderSpec("control-plane-kubeadm", "kubeadm", "ControlPlaneProvider", "capi-kubeadm-control-plane-system",
                 "cluster-api", "controlplane/kubeadm/config/crd"),
    ProviderSpec("infrastructure-metal3", "metal3", "InfrastructureProvider", "capm3-system", "capm3", "config/crd"),
    ProviderSpec("ipam-metal3", "metal3", "IPAMProvider", "metal3-ipam-system", "ipam", "config/crd"),
)

#: BMO is installed by metal3-dev-env, not clusterctl: only these two CRDs get labels, by hand
BMO_LABELS = {
    "baremetalhosts.metal3.io": {CLUSTERCTL: "", MOVE: "", MOVE_HIERARCHY: ""},
    "hardwaredata.metal3.io": {CLUSTERCTL: "", MOVE: ""},
}


class CrdSourceError(Exception):
    """The pinned provider modules are not available; run the bootstrap."""


def module_dirs() -> dict[str, dict[str, str]]:
    """{key: {"dir": ..., "version": ...}} as tools/bootstrap.py recorded them."""
    if not MODULES_FILE.exists():
        raise CrdSourceError(f"{MODULES_FILE} is missing: run `python3 tools/bootstrap.py` (it downloads the "
                             "pinned provider modules whose CRD folders are installed into the clusters)")
    data: dict[str, dict[str, str]] = json.loads(MODULES_FILE.read_text())
    return data


def _kustomize_labels(folder: Path) -> dict[str, str]:
    """The `labels` / `commonLabels` pairs of the CRD folder's kustomization (e.g. CAPM3's contract labels)."""
    kfile = folder / "kustomization.yaml"
    if not kfile.exists():
        return {}
    k = yaml.safe_load(kfile.read_text()) or {}
    labels: dict[str, str] = dict(k.get("commonLabels") or {})
    for entry in k.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    return labels


def _read_crds(folder: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((folder / "bases").glob("*.yaml"))]


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
    mods = module_dirs()
    crds: list[dict[str, Any]] = []
    providers: list[dict[str, Any]] = []
    for p in PROVIDERS:
        folder = Path(mods[p.module]["dir"]) / p.crd_dir
        labels = {CLUSTERCTL: "", PROVIDER_LABEL: p.name, **_kustomize_labels(folder)}
        for crd in _read_crds(folder):
            crd["metadata"].setdefault("labels", {}).update(labels)
            crds.append(crd)
        providers.append({
            "apiVersion": INVENTORY.api_version, "kind": "Provider",
            "metadata": {"name": p.name, "namespace": p.namespace,
                         "labels": {CLUSTERCTL: "", PROVIDER_LABEL: p.name}},
            "providerName": p.provider_name, "type": p.type, "version": mods[p.module]["version"]})
    inventory = Path(mods["cluster-api"]["dir"]) / "cmd/clusterctl/config/crd"
    for crd in _read_crds(inventory):
        crd["metadata"].setdefault("labels", {}).update({CLUSTERCTL: "", f"{CLUSTERCTL}/core": "inventory"})
        crds.append(crd)
    for crd in _read_crds(Path(mods["bmo"]["dir"]) / "config/base/crds"):
        crd["metadata"].setdefault("labels", {}).update(BMO_LABELS.get(crd["metadata"]["name"], {}))
        crds.append(crd)
    crds = [c for c in crds if c["metadata"]["name"] not in without]
    return Bundle(crds, providers, sorted({p.namespace for p in PROVIDERS}))


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
