"""The stack never silently adopts a controller it did not create.

pulumi-kubernetes 4.25 creates with server-side apply and "upserts": declaring a Deployment that already
exists takes it over without a word. On a metal3-dev-env cluster that would adopt the BMO, Ironic or
provider controllers that kubectl, kustomize or clusterctl put there, and a later Ironic handover (a
replacement, delete first) would delete from that cluster what the stack never created.

So before any resource is declared, the program reads every Deployment it is about to declare, on the
cluster it declares it on. One that exists and carries no field manager of pulumi-kubernetes (it writes
as `pulumi-kubernetes` or `pulumi-kubernetes-<suffix>`) was created by something else: the program stops
with the object, who manages it, and the operator's choices. Deployments only: they are what runs (a
Namespace or a CRD that exists is shared by nature, e.g. CRDs that `clusterctl init` or the lab installed).
Limits: an object created by *another* Pulumi stack carries a pulumi-kubernetes manager too and is not
told apart; an object this stack adopted in the past counts as its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import StackConfig
from components.ironic import ironic_objects
from components.providers import objects_for
from metal3_pivot import DEPLOYMENTS, Kube, PivotError, load_kubeconfig

#: the field manager names pulumi-kubernetes writes with (client-side: exactly this; server-side apply:
#: this plus "-" and a suffix kept in the resource's state)
PULUMI_MANAGER = "pulumi-kubernetes"


class OwnershipError(Exception):
    """Deployments the stack would declare already run on a cluster, created by something else."""


@dataclass(frozen=True)
class Declared:
    """A Deployment the program is about to declare: where, and which component and config key own it."""

    cluster: str                       # "ephemeral" or "target"
    namespace: str
    name: str
    component: str                     # "Ironic", "ProviderInstall"
    setting: str                       # the config key that decides it: "ironic" or "providers"


@dataclass(frozen=True)
class Foreign:
    declared: Declared
    managers: tuple[str, ...]


def managers(obj: dict[str, Any]) -> tuple[str, ...]:
    """The field managers of an object, in the order the API lists them."""
    return tuple(str(e.get("manager") or "?") for e in obj["metadata"].get("managedFields") or [])


def created_elsewhere(obj: dict[str, Any]) -> bool:
    """No field of the object was ever written by pulumi-kubernetes."""
    return not any(m == PULUMI_MANAGER or m.startswith(PULUMI_MANAGER + "-") for m in managers(obj))


async def _find(kube: Kube, declared: Sequence[Declared]) -> list[Foreign]:
    found = await asyncio.gather(*(kube.get(DEPLOYMENTS, d.name, d.namespace) for d in declared))
    return [Foreign(d, managers(obj)) for d, obj in zip(declared, found, strict=True)
            if obj is not None and created_elsewhere(obj)]


def find(clusters: dict[str, tuple[str, str | None]], declared: Sequence[Declared]) -> list[Foreign]:
    """The declared Deployments that already exist and were not created by Pulumi. `clusters`: name ->
    (kubeconfig text, context). Read-only."""
    async def go() -> list[Foreign]:
        out: list[Foreign] = []
        for name, (kubeconfig, context) in clusters.items():
            mine = [d for d in declared if d.cluster == name]
            if not mine:
                continue
            async with Kube(load_kubeconfig(kubeconfig, context, label=f"{name} kubeconfig"), name=name,
                            retries=1, timeout=10) as kube:
                out += await _find(kube, mine)
        return out

    try:  # in a thread of its own: the Pulumi program already runs inside an event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()
    except PivotError as err:
        raise OwnershipError(f"cannot check which controllers already run: {err}") from None


def declared_deployments(config: StackConfig, root: Path) -> list[Declared]:
    """The Deployments the program declares with this config, on the cluster it declares each on (a
    setting with `adopt: true` is left out: the operator chose to let the stack take them over)."""
    out: list[Declared] = []
    if config.providers.install and not config.providers.adopt:
        out += [Declared("target", o["metadata"].get("namespace", "default"), o["metadata"]["name"],
                         "ProviderInstall", "providers")
                for objs in objects_for(config.providers, root).values() for o in objs if o["kind"] == "Deployment"]
    if config.ironic.install and not config.ironic.adopt:
        out += [Declared(config.location, o["metadata"].get("namespace", "default"), o["metadata"]["name"], "Ironic",
                         "ironic")
                for o in ironic_objects(config.ironic) if o["kind"] == "Deployment"]
    return out


def refusal(foreign: Sequence[Foreign]) -> str:
    """One message: every foreign Deployment, who manages it, and the two choices per config key."""
    lines = [f"the stack would take over {len(foreign)} Deployment(s) that it did not create "
             "(pulumi-kubernetes adopts an existing object silently, and an Ironic handover would later "
             "delete it from that cluster):"]
    for f in foreign:
        d = f.declared
        lines.append(f"  - Deployment {d.namespace}/{d.name} on the {d.cluster} cluster (declared by {d.component}; "
                     f"managed by {', '.join(f.managers) or 'nobody recorded'})")
    for setting in sorted({f.declared.setting for f in foreign}):
        lines.append(f"  choose for `{setting}`: leave them managed elsewhere "
                     f"(`pulumi config set --path {setting}.install false`), or let this stack own "
                     f"them from now on (`pulumi config set --path {setting}.adopt true`; then "
                     f"`pulumi up` updates them to what the stack declares, and an Ironic handover moves them)")
    return "\n".join(lines)
