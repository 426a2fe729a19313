"""The cluster-side move lock: two movers never write the same clusters at once.

Pulumi's self-managed backends lock a *stack* (check, write, check again): that keeps two `pulumi up`
of one stack apart, and nothing else. Two stacks on the same clusters, the engine CLI beside
`pulumi up`, or two operators with their own state would all move at once, and interleaved moves are
how objects are lost. So the lock lives where every mover looks: in the clusters.

Where: one `coordination.k8s.io/v1` Lease, `kube-system/metal3-pivot-move`, in *both* clusters
(docs/architecture.md, "The move lock", says why not per namespace or per Cluster object). Taking it is
a create, taking over an expired one an update with the old resourceVersion: the API server's
optimistic concurrency makes both atomic, so exactly one of two racing movers wins. The two clusters
are locked in an order both movers agree on whatever their direction (by the UID of each cluster's
kube-system namespace), so two movers pointed in opposite directions cannot each hold one half.

Who: the Lease names the holder (stack or CLI, host, pid), the direction and the start time, so the
refused mover can tell its operator exactly who is moving and what to do.

Crashes: the holder renews the Lease every third of its duration. A Lease whose renewTime is older than
its duration has expired and is taken over; so is one whose holder process is gone (same host, pid no
longer running with the recorded start time), at once. The protocol is level-triggered, so the taker
simply finishes (or rolls back) the interrupted move.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from metal3_pivot.errors import (
    ConflictError,
    LockHeldError,
    LockLostError,
    MoveAbandonedError,
    NotFoundError,
    PivotError,
)
from metal3_pivot.kube import LEASE, NAMESPACE, Kube

Obj = dict[str, Any]

LOCK_NAME = "metal3-pivot-move"
LOCK_NAMESPACE = "kube-system"
#: the Lease's path, whose writes (the lock's own) the write guard lets through
LEASE_PATH = LEASE.path(LOCK_NAMESPACE, LOCK_NAME)
DEFAULT_DURATION = 60.0
#: holder details, on the Lease (spec.holderIdentity is the readable one-line summary)
HOLDER = "metal3-pivot.io/holder"
HOST = "metal3-pivot.io/host"
PID = "metal3-pivot.io/pid"
PID_START = "metal3-pivot.io/pid-start"
PID_NS = "metal3-pivot.io/pid-namespace"
DIRECTION = "metal3-pivot.io/direction"
STARTED = "metal3-pivot.io/started"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def micro_time(t: dt.datetime) -> str:
    """The Lease's MicroTime format."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def process_start(pid: int) -> str:
    """The kernel's start time of a process (clock ticks since boot): with the pid, it names one process
    for good, so a recycled pid is not mistaken for a live holder. Empty when there is no such running
    process (a zombie, killed but not yet reaped by its parent, is not running) or /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def pid_namespace() -> str:
    """The PID namespace this process counts pids in (Linux: `pid:[inode]`); empty without /proc. A pid
    names a process only within its namespace, and two containers may share a hostname."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """Who moves. `who` is what an operator recognises: "pulumi stack org/project/dev", "metal3-pivot CLI"."""

    who: str
    direction: str
    host: str
    pid: int
    pid_start: str
    started: str
    pid_ns: str = ""

    @classmethod
    def me(cls, who: str, direction: str) -> Holder:
        pid = os.getpid()
        return cls(who, direction, socket.gethostname(), pid, process_start(pid), micro_time(_now()), pid_namespace())

    @property
    def identity(self) -> str:
        return f"{self.who} on {self.host} (pid {self.pid})"

    def annotations(self) -> dict[str, str]:
        return {HOLDER: self.who, HOST: self.host, PID: str(self.pid), PID_START: self.pid_start,
                PID_NS: self.pid_ns, DIRECTION: self.direction, STARTED: self.started}

    @classmethod
    def of(cls, lease: Obj) -> Holder:
        ann = lease["metadata"].get("annotations") or {}
        try:
            pid = int(ann.get(PID, "0"))
        except ValueError:
            pid = 0
        return cls(ann.get(HOLDER) or str((lease.get("spec") or {}).get("holderIdentity") or "unknown mover"),
                   ann.get(DIRECTION, "unknown direction"), ann.get(HOST, "unknown host"), pid,
                   ann.get(PID_START, ""), ann.get(STARTED, ""), ann.get(PID_NS, ""))

    def is_gone(self) -> bool:
        """True only when we can *prove* the holder is dead: it ran on this host, counted its pid where we count
        ours, and its process is gone. Without /proc (not Linux) nothing is proved: every pid would look gone
        and a live mover on the same machine would be taken over. A holder of another PID namespace (a
        container sharing the hostname), or one that did not say its namespace, waits for its Lease to expire."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        here = pid_namespace()
        if not here or self.pid_ns != here:
            return False
        start = process_start(self.pid)
        return not start or bool(self.pid_start and start != self.pid_start)


@dataclass(frozen=True)
class LeaseState:
    """A Lease as read, judged: active (someone else is moving) or takeable."""

    lease: Obj
    holder: Holder
    expires: dt.datetime | None

    @classmethod
    def of(cls, lease: Obj) -> LeaseState:
        spec = lease.get("spec") or {}
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds")
        expires = renewed + dt.timedelta(seconds=float(duration)) if renewed and duration else None
        return cls(lease, Holder.of(lease), expires)

    @property
    def released(self) -> bool:
        return not (self.lease.get("spec") or {}).get("holderIdentity")

    @property
    def expired(self) -> bool:
        return self.expires is None or _now() > self.expires

    @property
    def takeable(self) -> tuple[bool, str]:
        if self.released:
            return True, "released"
        if self.expired:
            return True, f"expired at {self.expires:%H:%M:%S} UTC" if self.expires else "has no expiry"
        if self.holder.is_gone():
            return True, f"its holder (pid {self.holder.pid} on this host) is no longer running"
        return False, ""

    def refusal(self, cluster: str) -> str:
        h = self.holder
        until = f"; its lock expires at {self.expires:%H:%M:%S} UTC unless renewed" if self.expires else ""
        return (f"another move is in progress: {h.identity} is moving {h.direction}, started {h.started or '?'} "
                f"(Lease {LOCK_NAMESPACE}/{LOCK_NAME} in {cluster}{until}). Nothing was changed. Wait for it to "
                f"finish and run again; if that mover is dead on another host, its lock expires by itself. "
                f"Inspect it with: kubectl -n {LOCK_NAMESPACE} get lease {LOCK_NAME} -o yaml")


async def read_lock(kube: Kube) -> LeaseState | None:
    """The lock as it stands in one cluster, or None if nobody holds it (read-only: for previews)."""
    lease = await kube.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
    if lease is None:
        return None
    state = LeaseState.of(lease)
    return None if state.takeable[0] else state


async def cluster_uid(kube: Kube) -> str:
    """A cluster's identity that does not depend on which kubeconfig reached it."""
    ns = await kube.get(NAMESPACE, LOCK_NAMESPACE)
    return str((ns or {}).get("metadata", {}).get("uid") or kube.server)


class MoveLock:
    """Held for the whole of a move, in both clusters; use as `async with MoveLock(...)`."""

    def __init__(self, kubes: Sequence[Kube], holder: Holder, *, duration: float = DEFAULT_DURATION,
                 progress: Any = None, abandoned: Callable[[], str | None] | None = None) -> None:
        self.kubes = list(kubes)
        #: the caller's word that nobody waits for this move any more (MoveOptions.abandoned), asked before
        #: every write like the lock's own state
        self.abandoned = abandoned
        self.holder = holder
        self.duration = max(3.0, duration)
        self.say = progress or (lambda _msg: None)
        self.held: dict[str, tuple[Kube, Obj]] = {}    # cluster name -> (client, our Lease as last written)
        self.lost: str | None = None
        self.renewed: dict[str, float] = {}             # cluster name -> monotonic time of the last good write
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MoveLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def check(self) -> None:
        """Called before every write: stop if another mover has taken the lock over, or if renewals have
        failed for so long that it could have (client-go's "renew deadline": two thirds of the duration,
        so we stop before the Lease can expire in anybody's eyes)."""
        if self.lost:
            raise LockLostError(self.lost)
        if self.abandoned is not None and (why := self.abandoned()):
            raise MoveAbandonedError(f"{why}: stopped before the next write and released the move lock. Nothing "
                                     "is lost: run the move again to finish it")
        now = time.monotonic()
        for name, at in self.renewed.items():
            if now - at > self.duration * 2 / 3:
                self.lost = (f"could not renew the move lock in {name} for {now - at:.0f} s (its duration is "
                             f"{self.duration:.0f} s): stopped before another mover could take it over. Nothing "
                             "is lost: run the move again")
                raise LockLostError(self.lost)

    # -- acquire -------------------------------------------------------------------------------------
    async def acquire(self) -> None:
        uids = await asyncio.gather(*(cluster_uid(k) for k in self.kubes))
        try:
            for _, kube in sorted(zip(uids, self.kubes, strict=True), key=lambda p: p[0]):
                self.held[kube.name] = (kube, await self._take(kube))
                self.renewed[kube.name] = time.monotonic()
        except BaseException:
            await self.release()
            raise
        for kube in self.kubes:
            kube.write_guard = self._guard
        self._renewer = asyncio.create_task(self._renew_forever())

    def _guard(self, _method: str, path: str) -> None:
        """Every write of the clients the lock covers passes here first, the lock's own renewals excepted:
        a mover that lost the lock sends nothing more, even in the middle of an object's several writes."""
        if path != LEASE_PATH:
            self.check()

    def _body(self, base: Obj | None = None) -> Obj:
        now = micro_time(_now())
        lease: Obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"name": LOCK_NAME, "namespace": LOCK_NAMESPACE,
                                   "annotations": self.holder.annotations(),
                                   "labels": {"app.kubernetes.io/managed-by": "metal3-pivot"}},
                      "spec": {"holderIdentity": self.holder.identity,
                               "leaseDurationSeconds": int(self.duration), "acquireTime": now, "renewTime": now}}
        if base is not None:
            lease["metadata"]["resourceVersion"] = base["metadata"]["resourceVersion"]
            transitions = int((base.get("spec") or {}).get("leaseTransitions") or 0)
            lease["spec"]["leaseTransitions"] = transitions + 1
        return lease

    def _mine(self, lease: Obj | None) -> bool:
        """A write of ours whose answer was lost (a retried request then meets our own Lease)."""
        if lease is None:
            return False
        h = Holder.of(lease)
        return (h.host, h.pid, h.pid_start) == (self.holder.host, self.holder.pid, self.holder.pid_start)

    async def _take(self, kube: Kube) -> Obj:
        try:
            return await kube.create(LEASE, self._body())
        except ConflictError as err:
            if err.reason != "AlreadyExists":
                raise
        current = await kube.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
        if current is not None and self._mine(current):
            return current
        if current is None:    # released between our create and our read: one more try, then give up
            try:
                return await kube.create(LEASE, self._body())
            except ConflictError:
                current = await kube.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
                raise LockHeldError(LeaseState.of(current).refusal(kube.name) if current else
                                    f"the move lock in {kube.name} changed hands twice while we tried to "
                                    "take it: another mover is starting; run again in a minute") from None
        state = LeaseState.of(current)
        ok, why = state.takeable
        if not ok:
            raise LockHeldError(state.refusal(kube.name))
        try:
            taken = await kube.replace(LEASE, self._body(current))
        except ConflictError:
            fresh = await kube.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
            if fresh is not None and self._mine(fresh):
                return fresh
            raise LockHeldError(LeaseState.of(fresh).refusal(kube.name) if fresh else
                                f"another mover took the move lock in {kube.name} first; run again") from None
        if not state.released:
            self.say(f"took over the move lock in {kube.name} from {state.holder.identity} "
                     f"({state.holder.direction}): {why}; finishing its move")
        return taken

    # -- renew ---------------------------------------------------------------------------------------
    async def _renew_forever(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.duration / 3)
            for name, (kube, lease) in list(self.held.items()):
                body = dict(lease)
                body["spec"] = {**lease["spec"], "renewTime": micro_time(_now())}
                try:
                    self.held[name] = (kube, await kube.replace(LEASE, body))
                    self.renewed[name] = time.monotonic()
                except ConflictError:
                    fresh = await kube.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
                    if fresh is not None and self._mine(fresh):     # our renewal landed, its answer did not
                        self.held[name] = (kube, fresh)
                        self.renewed[name] = time.monotonic()
                        continue
                    self._lose(name)
                    return
                except NotFoundError:
                    self._lose(name)
                    return
                except PivotError as err:
                    # a blip: keep the lock; the next round retries, and the expiry is three rounds away
                    self.say(f"could not renew the move lock in {name}: {err}")

    def _lose(self, name: str) -> None:
        self.lost = self._lost_message(name)
        self.say(f"lost the move lock in {name} to another mover: no further writes")

    def _lost_message(self, name: str) -> str:
        return (f"the move lock in {name} was taken over by another mover (this move stalled for longer than the "
                f"lock's {self.duration:.0f} s): stopped before the next step; the other mover finishes the move")

    # -- release -------------------------------------------------------------------------------------
    async def release(self) -> None:
        for kube in self.kubes:
            if kube.write_guard == self._guard:
                kube.write_guard = None
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
        for _name, (kube, lease) in list(self.held.items()):
            with contextlib.suppress(PivotError):
                await self._drop(kube, lease)
        self.held.clear()
        self.renewed.clear()

    async def _drop(self, kube: Kube, lease: Obj) -> None:
        """Delete our Lease, and only ours: if another mover took it over, theirs stays. A renewal cut
        short by the cancel may have landed unseen, so a stale resourceVersion is re-read once."""
        for _ in range(2):
            md = lease["metadata"]
            try:
                await kube.delete(LEASE, LOCK_NAME, LOCK_NAMESPACE,
                                  preconditions={"uid": md["uid"], "resourceVersion": md["resourceVersion"]})
                return
            except ConflictError:
                fresh = await kube.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
                if fresh is None or (fresh.get("spec") or {}).get("holderIdentity") != self.holder.identity:
                    return
                lease = fresh
