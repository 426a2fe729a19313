"""ObjectLocation: a Pulumi dynamic resource whose desired value says where the objects live.

The provider only translates Pulumi calls into engine calls (metal3_pivot):
- `check` validates the inputs and runs the engine's pre-flight against the live clusters, so that
  `pulumi preview` fails early and says why; it also computes `pending` (what an update would move,
  per kind), `preflight` (the findings) and `providers` (both inventories) as inputs, so the preview
  shows them and the policy pack can read them. The same check (`check_location`) runs first in
  MovePreflight (components/move_preflight.py), before the installs and the Ironic handover; here it
  runs again just before the move, on MovePreflight's reading of the clusters when that is seconds old
  (`_shared_inspect`).
- `diff` reports `location` as an in-place update (never a replace: a replace would create-then-delete).
- `create` / `update` run the move with their own deadline; a run that dies is finished by the next.
- `read` (refresh) reports where the objects really are, so drift made outside Pulumi shows up.
- `delete` never deletes the workload objects: it only forgets them.

Provider classes live in this importable module (pickled by reference, so the current code serves old
resources too) and keep nothing on `self`: clients are built per call. The one thing kept between calls
is MovePreflight's last reading, for ObjectLocation's check (`_READINGS`, taken once, 15 s at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs ship with grpcio; used for one client call
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
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

from components import cache_dir, engine_watch
from components.gate_reading import (
    FRESH_SECONDS,
    client,
    digest,
    inspect,
    reading_key,
    remember_placement,
    take,
)
from metal3_pivot import (
    LOCATIONS,
    ClusterView,
    Code,
    Finding,
    LocationInputs,
    LocationState,
    LockHeldError,
    MoveOptions,
    Mover,
    MoveReport,
    PendingMove,
    PivotError,
    PreflightError,
    discover,
    load_kubeconfig,
    placement,
    prop_key,
)

#: in a provider plugin, notice a dead CLI (components/engine_watch.py); nothing happens elsewhere
engine_watch.start()

#: problems that an update may legitimately fix first (the stack installs the target's providers)
FIXED_BY_STACK = {Code.MISSING_CRD, Code.STORAGE_VERSION, Code.PROVIDER_VERSION}


#: the inputs whose change is an update (where the objects go, which objects, which clusters); timeout,
#: concurrency and holder only shape how a move runs
MOVE_INPUTS = ("location", "namespaces", "ephemeral_context", "target_context", "ephemeral_kubeconfig",
               "target_kubeconfig")
LOCATION = prop_key("location")
#: MovePreflight's extra input: the token of the reading its program started (components/gate_reading.py)
READING = "reading"


class MoveRefusedError(Exception):
    """The engine refused the move before writing (pre-flight, or another mover holds the lock)."""


class MoveStoppedError(Exception):
    """The move started and stopped part-way; nothing is lost and `pulumi up` again finishes it."""


#: what pulumi passes for a value not known during preview
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _log_dir() -> Path:
    path = cache_dir() / "logs" / "moves"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Progress:
    """A move's progress: every line into the move's log file, and the gist on the resource in `pulumi up`.

    On the resource: a log message to the engine carrying ObjectLocation's URN, so the resource's row shows
    the latest step while it updates, and the milestones (discovered, moved) stay under it in the
    diagnostics. The SDK's dynamic provider passes neither the URN nor an engine client to `update`; the
    URN comes as an input (`urn`), the engine's address is the last argument the pulumi engine starts
    every provider plugin with. Without either (an old state, a unit test), the lines go to stderr, which
    the CLI shows under the stack instead of under the resource."""

    def __init__(self, action: str, urn: str = "") -> None:
        self.path = _log_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{action}.log"
        self.file = self.path.open("a")
        self.last = 0.0
        self.urn = urn
        self.engine = _engine() if urn else None

    def __call__(self, msg: str) -> None:
        self.file.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
        self.file.flush()
        now = time.monotonic()
        milestone = msg.startswith(("moved", "discovered"))
        if now - self.last < 1.0 and not milestone:
            return
        self.last = now
        if self.engine is not None:
            try:
                self.engine.Log(engine_pb2.LogRequest(severity=engine_pb2.INFO, message=msg, urn=self.urn,
                                                      ephemeral=not milestone), timeout=5)
                return
            except grpc.RpcError:
                self.engine = None        # the engine went away: keep the lines, on stderr
        with contextlib.suppress(OSError):   # the CLI gone, its end of the pipe is closed: the file has the line
            print(f"metal3-pivot: {msg}", file=sys.stderr, flush=True)


def _engine() -> engine_pb2_grpc.EngineStub | None:
    """A client of the pulumi engine that started this provider (its address is the plugin's last
    argument), or None when this process is not such a plugin."""
    address = engine_watch.engine_address()
    if address is None:
        return None
    return engine_pb2_grpc.EngineStub(grpc.insecure_channel(address))


async def _views(inputs: LocationInputs, *, light: bool = False) -> tuple[ClusterView, ClusterView]:
    async with client(inputs, "ephemeral") as e, client(inputs, "target") as t:
        ev, tv = await asyncio.gather(discover(e, inputs.namespaces, light=light),
                                      discover(t, inputs.namespaces, light=light))
    return ev, tv


def _outputs(props: dict[str, Any], moved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Echo the inputs (diff sees old *outputs*) plus where the objects are now: where they are, how many
    of each kind and the digest, which a light reading says as a whole one would (`discover(light=True)`;
    after a move at 1,000 hosts this reading was 1.5-2.4 s of the update, docs/performance.md)."""
    inputs = LocationInputs.from_props(props)
    e, t = asyncio.run(_views(inputs, light=True))
    actual = placement(e, t)
    remember_placement(inputs, actual)     # after a move, the next gate's reader reads whole at once
    state = LocationState.from_props(props)
    state.objects = (e if actual == "ephemeral" else t).graph.kind_counts()
    state.digest = digest(e, t)
    state.pending, state.preflight = None, []
    if moved is not None:
        state.last_move = moved
    return {**props, **state.to_props(), "location": actual if actual != "none" else inputs.location}


def _unknown(value: Any) -> bool:
    return value == UNKNOWN or (isinstance(value, str) and UNKNOWN in value)


def refusals(inputs: LocationInputs, state: LocationState) -> list[Finding]:
    """The findings that refuse the declared move now: every pre-flight finding (owner-chain and host
    status included), the move lock's, except what this same `pulumi up` fixes before the move (missing
    CRDs or old providers on a target whose providers the stack installs). Only toward the target: the
    stack installs nothing on the ephemeral cluster, so a move back to one that lacks a CRD or runs older
    providers is refused here, before Ironic is handed back."""
    fixed_by_stack = inputs.target_providers_managed and inputs.location == "target"
    return [p for p in state.preflight if not (fixed_by_stack and p.code in FIXED_BY_STACK)]


#: how long MovePreflight's reading of both clusters serves ObjectLocation's check (see `_shared_inspect`)
REUSE_SECONDS = FRESH_SECONDS
_READINGS: dict[str, tuple[float, LocationState]] = {}
_READINGS_LOCK = threading.Lock()


def _shared_inspect(inputs: LocationInputs, *, share: bool, reuse: bool, light_first: bool = False,
                    started: str = "") -> LocationState:
    """`inspect`, once for the two checks of one preview or up.

    MovePreflight's check and ObjectLocation's run in the same dynamic-provider process with the same
    inputs, a second or two apart in a preview (nothing is written in between), and each read both
    clusters whole: at 1,000 hosts that was 1.8-2.5 s each, a third of a no-change preview
    (docs/performance.md). So MovePreflight's reading (`share`) is kept and ObjectLocation's check
    (`reuse`) takes it once, when it is at most REUSE_SECONDS old. MovePreflight, the gate before the
    installs and the Ironic handover, reads fresh: its own reading, or the one this run's program
    `started` for it (components/gate_reading.py: of the same inputs, at most FRESH_SECONDS after it
    ended, made while the engine started its plugins). What ObjectLocation's check computes only shows
    what an update would do and refuses early: the move itself reads both clusters again and runs the
    pre-flight under the move lock (`_move`, the engine's Mover), so a reading a few seconds old never
    decides a write. In an `up` whose installs take longer than REUSE_SECONDS, ObjectLocation reads fresh."""
    key = reading_key(inputs)
    if reuse:
        with _READINGS_LOCK:
            kept = _READINGS.pop(key, None)
        if kept is not None and time.monotonic() - kept[0] <= REUSE_SECONDS:
            return kept[1]            # a copy kept for this one use: popped, no one else holds it
    taken = take(started, inputs) if share and started else None
    state, age = taken if taken is not None else (inspect(inputs, light_first=light_first), 0.0)
    if share:
        with _READINGS_LOCK:
            _READINGS.clear()  # one reading at a time: never an old one for other inputs
            _READINGS[key] = (time.monotonic() - age, copy.deepcopy(state))
    return state


def check_location(news: dict[str, Any], *, share: bool = False, reuse: bool = False,
                   olds: dict[str, Any] | None = None) -> CheckResult:
    """`check` of both ObjectLocation and MovePreflight (components/move_preflight.py): validate the
    inputs, run the engine's pre-flight on the live clusters, return its state as computed inputs and
    its refusals as CheckFailures. MovePreflight `share`s its reading, ObjectLocation may `reuse` it
    (`_shared_inspect`). `olds`: the inputs the state holds; the same location declared again reads light
    first (`inspect`). MovePreflight's `reading` input names the reading its program started."""
    failures: list[CheckFailure] = []
    inputs = LocationInputs.from_props(news)
    if inputs.location not in LOCATIONS:
        failures.append(CheckFailure(LOCATION, f"location must be one of {', '.join(LOCATIONS)}; got "
                                               f"{inputs.location!r}"))
    for side in LOCATIONS:
        text = inputs.kubeconfig(side)
        if not text:
            failures.append(CheckFailure(prop_key(f"{side}_kubeconfig"),
                                         f"the {side} cluster's kubeconfig is missing"))
        elif not _unknown(text):
            try:
                load_kubeconfig(text, inputs.context(side), label=f"{side} kubeconfig")
            except PivotError as err:
                failures.append(CheckFailure(prop_key(f"{side}_kubeconfig"), str(err)))
    if failures or any(_unknown(v) for v in news.values()):
        return CheckResult(news, failures)
    try:
        same_place = LocationInputs.read(olds, "location") == inputs.location if olds else False
        state = _shared_inspect(inputs, share=share, reuse=reuse, light_first=same_place,
                                started=str(news.get(READING) or "") if share else "")
    except PivotError as err:
        return CheckResult(news, [CheckFailure(LOCATION, str(err))])
    failures += [CheckFailure(LOCATION, f"move refused by the pre-flight: {p}") for p in refusals(inputs, state)]
    return CheckResult({**news, **state.to_props()}, failures)


def declared_props(*, location: pulumi.Input[str], ephemeral_kubeconfig: pulumi.Input[str],
                   target_kubeconfig: pulumi.Input[str], namespaces: list[str], ephemeral_context: str | None = None,
                   target_context: str | None = None, timeout: float = 1800.0, concurrency: int = 32,
                   target_providers_managed: bool = False, urn: pulumi.Input[str] = "") -> dict[str, Any]:
    """The registered properties of ObjectLocation and MovePreflight: the declared inputs (kubeconfigs
    secret), and the computed ones unknown (None) until the provider's `check` fills them in."""
    inputs = LocationInputs(
        location=location, ephemeral_kubeconfig=pulumi.Output.secret(ephemeral_kubeconfig),
        target_kubeconfig=pulumi.Output.secret(target_kubeconfig), namespaces=namespaces,
        ephemeral_context=ephemeral_context or "", target_context=target_context or "", timeout=timeout,
        concurrency=concurrency, target_providers_managed=target_providers_managed,
        holder=f"pulumi stack {pulumi.get_project()}/{pulumi.get_stack()}", urn=urn)
    return {**inputs.to_props(), **dict.fromkeys(LocationState.prop_keys())}


class ObjectLocationProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        with engine_watch.call():
            return check_location(news, reuse=True, olds=olds)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = LocationInputs.from_props(olds), LocationInputs.from_props(news)
        changed = [prop_key(f) for f in MOVE_INPUTS if getattr(old, f) != getattr(new, f)]
        if LocationState.from_props(news).pending is not None:
            changed.append(prop_key("pending"))
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _move(self, props: dict[str, Any], action: str) -> dict[str, Any]:
        """The move `check` found pending, run by the engine's Mover, which reads both clusters again and
        runs the pre-flight under the move lock. `check` ran just before, in this same `up` (its state is
        in `props`): it used to be followed here by a whole `inspect` of both clusters, ~2 s at 1,000
        hosts, to learn the same direction. A move that became due after that check is left to the next
        `up`; one that another mover finished meanwhile, the Mover finds done."""
        inputs = LocationInputs.from_props(props)
        pending = LocationState.from_props(props).pending
        if pending is None:
            return {"moved": 0, "from": None, "to": inputs.location, "seconds": 0.0}
        with engine_watch.call() as watch:
            return self._move_watched(inputs, pending, action, watch)

    def _move_watched(self, inputs: LocationInputs, pending: PendingMove, action: str,
                      watch: engine_watch.EngineWatch | None) -> dict[str, Any]:
        progress = _Progress(action, inputs.urn)
        src, dst = pending.source, pending.target
        # `check` read both clusters, ran the pre-flight and read the lock seconds ago, in this same `up`: the
        # Mover goes straight to the lock and reads under it (MoveOptions.checked_by_caller)
        opts = MoveOptions(namespaces=inputs.namespaces, progress=progress, timeout=inputs.timeout,
                           concurrency=inputs.concurrency, holder=inputs.holder, checked_by_caller=True,
                           abandoned=watch.abandoned if watch is not None else None)

        async def run() -> MoveReport:
            async with client(inputs, src, opts.concurrency) as s, client(inputs, dst, opts.concurrency) as d:
                return await Mover(s, d, opts).run()

        try:
            report = asyncio.run(run())
        except (PreflightError, LockHeldError) as err:
            raise MoveRefusedError(f"{err} (details: {progress.path})") from None
        except PivotError as err:
            progress(f"stopped: {err}")
            raise MoveStoppedError(f"the move from {src} to {dst} stopped: {err}. Nothing is lost: run `pulumi up` "
                                   f"again to finish it (log: {progress.path})") from None
        return {"moved": sum(report.moved.values()), "from": src, "to": dst, "seconds": round(report.seconds, 1),
                "phases": {k: round(v, 1) for k, v in report.phases.items()}, "log": str(progress.path)}

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


#: the type token: `pulumi-python:dynamic/metal3:ObjectLocation` (the policy pack finds it by this)
MODULE, NAME = "metal3", "ObjectLocation"
TYPE = f"pulumi-python:dynamic/{MODULE}:{NAME}"
#: the token of every dynamic resource without its own, which ObjectLocation had until issue 16: aliased,
#: so that a stack created then keeps its ObjectLocation (a replace would be a create, i.e. a move, then a
#: delete that only forgets; an alias makes it the same resource under its new URN)
GENERIC_TYPE = "pulumi-python:dynamic:Resource"


class ObjectLocation(pulumi.dynamic.Resource, module=MODULE, name=NAME):
    """Where the Cluster-API / Metal3 objects of `namespaces` live: "ephemeral" or "target"."""

    location: pulumi.Output[str]
    objects: pulumi.Output[dict[str, int]]
    digest: pulumi.Output[str]

    def __init__(self, name: str, *, opts: pulumi.ResourceOptions | None = None, **declared: Any) -> None:
        """`declared`: the keyword arguments of `declared_props` (location, kubeconfigs, namespaces, ...)."""
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=GENERIC_TYPE)]))
        urn = pulumi.resource.create_urn(name, TYPE, parent=opts.parent)
        super().__init__(ObjectLocationProvider(), name, declared_props(urn=urn, **declared), opts)
