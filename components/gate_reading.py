"""Both clusters read for the gate (MovePreflight) and ObjectLocation, and that reading started early.

`inspect` is what the two `check`s compute from both clusters: where the objects are, what an update
would move, the pre-flight findings for that move. It lives here, without any Pulumi import, so that a
process of its own can run it cheaply (importing Pulumi's SDK costs ~0.3 s).

Why start it early: in a preview or an update, MovePreflight's `check` is the largest serial part of
Pulumi's fixed cost (1.3-2 s of a ~5-s no-change preview at 1,000 hosts, docs/performance.md), and
nothing else of the run goes on while it reads. Yet the program knows everything that reading needs
~1.5 s earlier, when its configuration is loaded, and what goes on in between (the program declaring
~100 resources, the engine starting its plugins) leaves a core to spare. So the program starts the
reading in a process of its own (`start`), hands MovePreflight a token for it, and MovePreflight's
`check` takes that reading (`take`), waiting for it while it runs, instead of starting its own.

What the gate decides on is still a reading made by this run, after its program started and before
anything was written: `take` accepts only the reading this token names, of exactly these inputs, at
most FRESH_SECONDS after it ended; anything else (no token, a failed or vanished reader, other inputs,
a reading too old, an error) makes the `check` read both clusters itself, as it always did, so its
error messages are its own. The file holds what `check` shows anyway (counts, findings, inventories),
never a kubeconfig: those reach the reader on its stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from components import cache_dir, sweep
from metal3_pivot import (
    LOCATIONS,
    ClusterView,
    Code,
    Finding,
    Kube,
    LocationInputs,
    LocationState,
    PendingMove,
    PivotError,
    ProviderEntry,
    discover,
    findings,
    load_kubeconfig,
    make_plan,
    no_cyclic_gc,
    placement,
    read_lock,
    unfinished,
)

ROOT = Path(__file__).resolve().parent.parent
#: how long after its end a reading of both clusters may still serve a check (the gate's started reading,
#: and MovePreflight's for ObjectLocation: components/object_location.py's REUSE_SECONDS)
FRESH_SECONDS = 15.0
#: the longest the gate waits for a reader that is still alive (a reading at 5,000 hosts takes ~30 s)
WAIT_SECONDS = 300.0
#: what a reader leaves behind when no `check` ever takes it (the program failed first): swept after this
SWEEP_SECONDS = 600.0
_TOKEN = re.compile(r"[0-9a-f]{32}")
#: the reader at a lower CPU priority: it takes what the program and the plugins' start leave of the cores
#: instead of slowing them. On held clusters at 1,000 hosts (six alternating rounds each), a no-change
#: preview took 7.5 s median without the early reading, 7.8 s with it at normal priority (it competed
#: with what the gate waits for), 6.3 s with it niced (docs/performance.md)
_NICE_READER = ("import os, runpy; os.nice(10); "
                "runpy.run_module('components.gate_reading', run_name='__main__', alter_sys=True)")


def _readings_dir() -> Path:
    path = cache_dir() / "gate-readings"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# -------------------------------------------------------------------------------------------- the reading

def client(inputs: LocationInputs, side: str, concurrency: int = 32) -> Kube:
    """An engine client for one side of the declared clusters."""
    return Kube(load_kubeconfig(inputs.kubeconfig(side), inputs.context(side), label=f"{side} kubeconfig"),
                name=side, concurrency=concurrency)


async def _views_and_locks(inputs: LocationInputs, *, light: bool = False
                           ) -> tuple[ClusterView, ClusterView, list[str]]:
    """Both views, and the moves in progress by other movers as the lock shows them (read-only), over one
    connection per cluster."""
    ns = inputs.namespaces
    async with client(inputs, "ephemeral") as e, client(inputs, "target") as t:
        ev, tv, el, tl = await asyncio.gather(discover(e, ns, light=light), discover(t, ns, light=light),
                                              read_lock(e), read_lock(t))
    return ev, tv, [state.refusal(name) for name, state in zip(LOCATIONS, (el, tl), strict=True) if state is not None]


def digest(e: ClusterView, t: ClusterView) -> str:
    """Stable across moves (no UIDs): changes only when the set of objects changes."""
    keys = sorted(str(k) for k in {**e.graph.move_nodes(), **t.graph.move_nodes()})
    return "sha256:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def inspect(inputs: LocationInputs, *, light_first: bool = False) -> LocationState:
    """Where the objects are, what an update would move, and the pre-flight findings for that move.

    `light_first`: the declared location is the one the stack last recorded, so the objects are most likely
    where they go already; then both clusters are read light first (`discover(light=True)`: metadata, and
    the few kinds whose content that answer needs), which says so from a quarter fewer bytes (~0.6 s of a
    no-change preview at 1,000 hosts, docs/performance.md: a metadata list still carries every item's
    managedFields), and whole only when a move turns out to be due, since the plan and the pre-flight's
    findings need every object as it is."""
    if light_first:
        e, t, locks = asyncio.run(_views_and_locks(inputs, light=True))
        if placement(e, t) in ("none", inputs.location):
            return _state(inputs, e, t, locks)
    return _state(inputs, *asyncio.run(_views_and_locks(inputs)))


def _state(inputs: LocationInputs, e: ClusterView, t: ClusterView, locks: list[str]) -> LocationState:
    """`inspect`'s answer from the views (light ones only where the objects are where they go)."""
    actual = placement(e, t)
    desired = inputs.location
    views = {"ephemeral": e, "target": t}
    state = LocationState(actual=actual, digest=digest(e, t),
                          providers={side: _providers(v) for side, v in views.items()})
    if actual == "none":
        return state
    src = "target" if desired == "ephemeral" else "ephemeral"
    if actual == desired:
        # every object where it goes, but a move stopped after its last delete may still owe the target its
        # end (unpauses, host statuses): the update runs the Mover, which finishes it
        owed = unfinished(views[src], views[desired])
        if not owed:
            return state
        state.pending = PendingMove(src, desired, {}, owed.counts())
    else:
        with no_cyclic_gc():   # the plan and the size checks allocate per object, as discovery does
            plan = make_plan(views[src], views[desired])
            state.pending = PendingMove(src, desired, plan.counts())
            state.preflight = findings(plan, inputs.namespaces)
    state.preflight += [Finding(Code.MOVE_IN_PROGRESS, "move lock", why) for why in locks]
    return state


def _providers(view: ClusterView) -> list[ProviderEntry]:
    """clusterctl's inventory of a cluster: what the target-initialised policy compares."""
    return sorted((ProviderEntry.of(p) for p in view.providers), key=lambda p: p.name)


def reading_key(inputs: LocationInputs) -> str:
    """What a reading depends on: the clusters, the scope and the direction (not the move's tuning)."""
    what = [inputs.location, inputs.namespaces, inputs.kubeconfig("ephemeral"), inputs.kubeconfig("target"),
            inputs.context("ephemeral"), inputs.context("target")]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------- started early, taken once

def start(inputs: LocationInputs) -> str:
    """The program's side: start reading both clusters in a process of its own; the token names the
    reading for MovePreflight's `check` (`take`). "" when it could not start (the check then reads itself)."""
    try:
        where = _readings_dir()
        sweep(where, SWEEP_SECONDS)     # readings no `check` took (the program failed before its gate)
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}  # no stack secrets
        proc = subprocess.Popen([sys.executable, "-c", _NICE_READER, token], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
                                start_new_session=True)
        (where / f"{token}.pid").write_text(str(proc.pid))
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(json.dumps(inputs.to_props()).encode())
    except OSError:
        return ""
    # reaped as it ends: a zombie would look alive to the gate's `take`
    threading.Thread(target=proc.wait, daemon=True, name=f"gate-reader-{proc.pid}").start()
    return token


def take(token: str, inputs: LocationInputs) -> tuple[LocationState, float] | None:
    """MovePreflight's side: the reading `token` names, if it is of these inputs and fresh, with its age in
    seconds; waits while its reader runs. None: read both clusters yourself."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    try:
        where = _readings_dir()
    except OSError:
        return None
    result, pid_file = where / f"{token}.json", where / f"{token}.pid"
    deadline = time.monotonic() + WAIT_SECONDS
    while not result.exists():
        if not _alive(pid_file) or time.monotonic() > deadline:
            pid_file.unlink(missing_ok=True)
            return None
        time.sleep(0.02)
    try:
        body = json.loads(result.read_text())
    except (OSError, ValueError):
        return None
    finally:
        result.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
    age = time.time() - float(body.get("ended") or 0)
    if body.get("key") != reading_key(inputs) or "state" not in body or not 0 <= age <= FRESH_SECONDS:
        return None
    return LocationState.from_props(body["state"]), age


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    with contextlib.suppress(OSError):   # a zombie answers kill(0): not alive for us
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def _placement_file(inputs: LocationInputs) -> Path:
    """Where the last reading of these clusters and scope (in either direction) found the objects."""
    clusters = reading_key(LocationInputs("", inputs.ephemeral_kubeconfig, inputs.target_kubeconfig,
                                          inputs.namespaces, inputs.ephemeral_context, inputs.target_context))
    return _readings_dir() / f"placement-{clusters}"


def remember_placement(inputs: LocationInputs, actual: str) -> None:
    """Where a reading of these clusters found the objects, for the next reader's light-or-whole choice;
    written by the reader and by ObjectLocation after a move (which changes it)."""
    with contextlib.suppress(OSError):
        _placement_file(inputs).write_text(actual)


def _read(token: str, props: dict[str, Any]) -> None:
    """The reader process: inspect, then write the state (or nothing on an error: the check reads itself
    and reports it in its own words) where `take` looks, atomically, readable by this user only.

    Light first only when the last reading of these clusters found the objects where they are declared
    now (or there is none): the check's own rule (light when the state's location is the declared one),
    which the program cannot apply, since it does not see the state. A light reading that finds a move
    due is followed by a whole one; before a pivot's or a move back's gate that was 1-2 s more of waiting
    at 1,000 hosts (docs/performance.md)."""
    inputs = LocationInputs.from_props(props)
    try:
        seen = _placement_file(inputs).read_text()
    except OSError:
        seen = ""
    try:
        state = inspect(inputs, light_first=seen in ("", "none", inputs.location))
    except PivotError:
        return
    remember_placement(inputs, state.actual or "")
    body = {"key": reading_key(inputs), "ended": time.time(), "state": state.to_props()}
    where = _readings_dir()
    tmp = where / f"{token}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)
    os.replace(tmp, where / f"{token}.json")


if __name__ == "__main__":
    if len(sys.argv) == 2 and _TOKEN.fullmatch(sys.argv[1]):
        _read(sys.argv[1], json.loads(sys.stdin.read()))
