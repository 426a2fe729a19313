"""ObjectLocation: a Pulumi dynamic resource whose desired value says where the objects live.

The provider only translates Pulumi calls into engine calls (metal3_pivot):
- `check` validates the inputs and runs the engine's pre-flight against the live clusters, so that
  `pulumi preview` fails early and says why; it also computes `pending` (what an update would move,
  per kind), `preflight` (the findings) and `providers` (both inventories) as inputs, so the preview
  shows them and the policy pack can read them.
- `diff` reports `location` as an in-place update (never a replace: a replace would create-then-delete).
- `create` / `update` run the move with their own deadline; a run that dies is finished by the next.
- `read` (refresh) reports where the objects really are, so drift made outside Pulumi shows up.
- `delete` never deletes the workload objects: it only forgets them.

Provider classes live in this importable module (pickled by reference, so the current code serves old
resources too) and keep nothing on `self`: clients are built per call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from metal3_pivot.discovery import ClusterView, discover
from metal3_pivot.errors import LockHeldError, PivotError, PreflightError
from metal3_pivot.kube import Kube, load_kubeconfig
from metal3_pivot.lock import read_lock
from metal3_pivot.mover import MoveOptions, Mover, make_plan
from metal3_pivot.preflight import findings

LOCATIONS = ("ephemeral", "target")
#: problems that an update may legitimately fix first (the stack installs the target's providers)
FIXED_BY_STACK = {"missing-crd", "provider-version"}
#: problems reported by the policy pack (owner-chain, bmh-status-annotation) rather than by `check`, so a
#: preview with the pack names the policy; without the pack, `update`'s pre-flight still refuses them
LEFT_TO_POLICIES = {"owner-chain", "bmh-status"}
#: what pulumi passes for a value not known during preview
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _log_dir() -> Path:
    base = os.environ.get("METAL3_PIVOT_CACHE") or os.path.join(os.path.expanduser("~/.cache"), "metal3-pivot")
    path = Path(base) / "logs" / "moves"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Progress:
    """Short lines on stderr (the CLI shows them as diagnostics), everything in a log file."""

    def __init__(self, action: str) -> None:
        self.path = _log_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{action}.log"
        self.file = self.path.open("a")
        self.last = 0.0

    def __call__(self, msg: str) -> None:
        self.file.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
        self.file.flush()
        now = time.monotonic()
        if now - self.last >= 1.0 or msg.startswith(("moved", "discovered")):
            self.last = now
            print(f"metal3-pivot: {msg}", file=sys.stderr, flush=True)


def _kube(props: dict[str, Any], side: str, concurrency: int = 32) -> Kube:
    return Kube(load_kubeconfig(props[f"{side}Kubeconfig"], props.get(f"{side}Context") or None,
                                label=f"{side} kubeconfig"), name=side, concurrency=concurrency)


async def _views(props: dict[str, Any]) -> tuple[ClusterView, ClusterView]:
    ns = list(props.get("namespaces") or [])
    async with _kube(props, "ephemeral") as e, _kube(props, "target") as t:
        return await asyncio.gather(discover(e, ns), discover(t, ns))


async def _views_and_locks(props: dict[str, Any]) -> tuple[ClusterView, ClusterView, list[str]]:
    """Both views, and the moves in progress by other movers as the lock shows them (read-only), over one
    connection per cluster."""
    ns = list(props.get("namespaces") or [])
    async with _kube(props, "ephemeral") as e, _kube(props, "target") as t:
        ev, tv, el, tl = await asyncio.gather(discover(e, ns), discover(t, ns), read_lock(e), read_lock(t))
    return ev, tv, [state.refusal(name) for name, state in zip(LOCATIONS, (el, tl), strict=True) if state is not None]


def where(e: ClusterView, t: ClusterView) -> str:
    """ephemeral, target, split (a move in progress) or none."""
    in_e, in_t = bool(e.graph.move_nodes()), bool(t.graph.move_nodes())
    return "split" if in_e and in_t else "ephemeral" if in_e else "target" if in_t else "none"


def _counts(view: ClusterView) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in view.graph.move_nodes():
        counts[key.kind] = counts.get(key.kind, 0) + 1
    return dict(sorted(counts.items()))


def _digest(e: ClusterView, t: ClusterView) -> str:
    """Stable across moves (no UIDs): changes only when the set of objects changes."""
    keys = sorted(str(k) for k in {**e.graph.move_nodes(), **t.graph.move_nodes()})
    return "sha256:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def inspect(props: dict[str, Any]) -> dict[str, Any]:
    """Where the objects are, what an update would move, and the pre-flight findings for that move."""
    e, t, locks = asyncio.run(_views_and_locks(props))
    actual = where(e, t)
    desired = props["location"]
    views = {"ephemeral": e, "target": t}
    result: dict[str, Any] = {"actual": actual, "pending": {}, "preflight": [], "digest": _digest(e, t),
                              "providers": {side: _providers(v) for side, v in views.items()}}
    if actual in ("none", desired):
        return result
    src = "target" if desired == "ephemeral" else "ephemeral"
    plan = make_plan(views[src], views[desired])
    result["pending"] = {"from": src, "to": desired, "objects": plan.counts()}
    result["preflight"] = [{"code": p.code, "subject": p.subject, "message": p.message}
                           for p in findings(plan, list(props.get("namespaces") or []))]
    result["preflight"] += [{"code": "move-in-progress", "subject": "move lock", "message": why}
                            for why in locks]
    return result


def _outputs(props: dict[str, Any], moved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Echo the inputs (diff sees old *outputs*) plus where the objects are now."""
    e, t = asyncio.run(_views(props))
    actual = where(e, t)
    out = dict(props)
    out.update(location=actual if actual != "none" else props["location"],
               objects=_counts(e if actual == "ephemeral" else t), digest=_digest(e, t),
               pending={}, preflight=[])
    if moved is not None:
        out["lastMove"] = moved
    return out


def _providers(view: ClusterView) -> list[dict[str, str]]:
    """clusterctl's inventory of a cluster: what the target-initialised policy compares."""
    return sorted(({"name": p["metadata"]["name"], "type": str(p.get("type")), "version": str(p.get("version"))}
                   for p in view.providers), key=lambda p: p["name"])


def _unknown(value: Any) -> bool:
    return value == UNKNOWN or (isinstance(value, str) and UNKNOWN in value)


class ObjectLocationProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        location = news.get("location")
        if location not in LOCATIONS:
            failures.append(CheckFailure("location", f"location must be one of {', '.join(LOCATIONS)}; got "
                                                     f"{location!r}"))
        for side in LOCATIONS:
            text = news.get(f"{side}Kubeconfig")
            if not text:
                failures.append(CheckFailure(f"{side}Kubeconfig", f"the {side} cluster's kubeconfig is missing"))
            elif not _unknown(text):
                try:
                    load_kubeconfig(text, news.get(f"{side}Context") or None, label=f"{side} kubeconfig")
                except PivotError as err:
                    failures.append(CheckFailure(f"{side}Kubeconfig", str(err)))
        if failures or any(_unknown(v) for v in news.values()):
            return CheckResult(news, failures)
        try:
            state = inspect(news)
        except PivotError as err:
            return CheckResult(news, [CheckFailure("location", str(err))])
        managed = bool(news.get("targetProvidersManaged"))
        blocking = [p for p in state["preflight"]
                    if not (managed and p["code"] in FIXED_BY_STACK) and p["code"] not in LEFT_TO_POLICIES]
        for p in blocking:
            failures.append(CheckFailure("location", f"move refused by the pre-flight: {p['subject']}: "
                                                     f"{p['message']}"))
        return CheckResult({**news, **state}, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in ("location", "namespaces", "ephemeralContext", "targetContext")
                   if olds.get(k) != news.get(k)]
        if news.get("pending"):
            changed.append("pending")
        for side in LOCATIONS:
            if olds.get(f"{side}Kubeconfig") != news.get(f"{side}Kubeconfig"):
                changed.append(f"{side}Kubeconfig")
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _move(self, props: dict[str, Any], action: str) -> dict[str, Any]:
        state = inspect(props)
        if not state["pending"]:
            return {"moved": 0, "from": None, "to": props["location"], "seconds": 0.0}
        progress = _Progress(action)
        src, dst = state["pending"]["from"], state["pending"]["to"]
        opts = MoveOptions(namespaces=list(props.get("namespaces") or []), progress=progress,
                           timeout=float(props.get("timeout") or 1800), concurrency=int(props.get("concurrency") or 32),
                           holder=str(props.get("holder") or "a pulumi stack"))

        async def run() -> Any:
            async with _kube(props, src, opts.concurrency) as s, _kube(props, dst, opts.concurrency) as d:
                return await Mover(s, d, opts).run()

        try:
            report = asyncio.run(run())
        except (PreflightError, LockHeldError) as err:
            raise Exception(f"{err} (details: {progress.path})") from None
        except PivotError as err:
            raise Exception(f"the move from {src} to {dst} stopped: {err}. Nothing is lost: run `pulumi up` "
                            f"again to finish it (log: {progress.path})") from None
        return {"moved": sum(report.moved.values()), "from": src, "to": dst, "seconds": round(report.seconds, 1),
                "log": str(progress.path)}

    def create(self, props: dict[str, Any]) -> CreateResult:
        moved = self._move(props, "create")
        return CreateResult(id_="object-location", outs=_outputs(props, moved))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        moved = self._move(news, "update")
        return UpdateResult(outs=_outputs(news, moved))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, _outputs(props, props.get("lastMove")))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Forget, never delete: the objects own real machines."""


class ObjectLocation(pulumi.dynamic.Resource):
    """Where the Cluster-API / Metal3 objects of `namespaces` live: "ephemeral" or "target"."""

    location: pulumi.Output[str]
    objects: pulumi.Output[dict[str, int]]
    digest: pulumi.Output[str]

    def __init__(self, name: str, *, location: pulumi.Input[str], ephemeral_kubeconfig: pulumi.Input[str],
                 target_kubeconfig: pulumi.Input[str], namespaces: list[str], ephemeral_context: str | None = None,
                 target_context: str | None = None, timeout: float = 1800.0, concurrency: int = 32,
                 target_providers_managed: bool = False, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ObjectLocationProvider(), name, {
            "location": location,
            "ephemeralKubeconfig": pulumi.Output.secret(ephemeral_kubeconfig),
            "targetKubeconfig": pulumi.Output.secret(target_kubeconfig),
            "ephemeralContext": ephemeral_context or "", "targetContext": target_context or "",
            "namespaces": namespaces, "timeout": timeout, "concurrency": concurrency,
            "targetProvidersManaged": target_providers_managed,
            # who moves, as the cluster-side move lock shows it to other movers
            "holder": f"pulumi stack {pulumi.get_project()}/{pulumi.get_stack()}",
            "objects": None, "digest": None, "pending": None, "preflight": None, "actual": None, "lastMove": None,
            "providers": None,
        }, opts)
