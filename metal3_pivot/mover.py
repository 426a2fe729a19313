"""The move protocol: level-triggered and resumable (docs/architecture.md, "The move protocol").

Every run derives what is left to do from the two clusters alone, like a controller: discover both,
pair objects across them, check everything before the first write, then pause, create what the target
lacks (owners first), delete from the source only once everything exists in the target, and unpause in
the target. A run killed at any point is finished by the next run; the same call with source and
target swapped moves back, or rolls back a half-finished move.

What a run does is derived by the pure functions of metal3_pivot/plan.py (which also hold the
annotation vocabulary a re-run recognises its own work by); this module does the I/O.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metal3_pivot import backup, preflight
from metal3_pivot.discovery import discover, discover_types
from metal3_pivot.errors import (
    BlockMoveTimeoutError,
    ConflictError,
    LockHeldError,
    MoveTimeoutError,
    NotFoundError,
    PivotError,
    SourceChangedError,
)
from metal3_pivot.graph import BLOCK_MOVE_ANNOTATION, BMH_GROUP, Node, ObjKey, TypeInfo
from metal3_pivot.kube import NAMESPACE, VALIDATING_WEBHOOKS, Kube
from metal3_pivot.lock import DEFAULT_DURATION, Holder, MoveLock, read_lock
from metal3_pivot.plan import (
    BMH_STATUS,
    DELETE_FOR_MOVE,
    STRIP_PATCH,
    Finish,
    Obj,
    Plan,
    annotation_marks,
    carried_bmh_status,
    copy_is_current,
    copy_manager,
    copy_marks,
    finish_of_copies,
    kept_paused,
    make_plan,
    managed_fields_patch,
    pause_patch,
    related,
    remarked_managed_fields,
    restore_pending,
    restore_unpause_patch,
    same_copy,
    target_copy,
    uids,
    unfinished,
    unpause_patch,
)

#: a validating webhook rule's apiGroups entry that matches every group
ALL_GROUPS = "*"

Progress = Callable[[str], None]

#: how many times a run reads both clusters under the lock and writes, when objects changed in the source
#: after it read them (SourceChangedError): a paused source stops changing once its controllers have seen
#: the pause, so the second reading normally finishes the move
READINGS = 4
#: how many versions of an object whose status alone keeps changing in the source its delete tries
STATUS_CHANGES = 5
#: how many kinds the check for new dependents lists at once (Mover.no_new_dependents)
NEW_DEPENDENT_LISTS = 4


def _quiet(_: str) -> None:
    pass


@dataclass
class MoveOptions:
    namespaces: Sequence[str] = ()
    dry_run: bool = False
    concurrency: int = 32
    block_move_timeout: float = 120.0
    timeout: float | None = None               # whole-move deadline, seconds
    progress: Progress = _quiet
    holder: str = "metal3-pivot CLI"           # who moves, as the move lock shows it to other movers
    lock_duration: float = DEFAULT_DURATION    # seconds a killed mover's lock outlives it (other hosts)
    #: the caller read both clusters, ran the pre-flight and read the lock itself, seconds before (the Pulumi
    #: layer's `check`, just before its update): the move goes straight to the lock and reads under it (`run`)
    checked_by_caller: bool = False
    #: asked before every write while the lock is held: a reason to stop (e.g. "the pulumi CLI that started
    #: this move is gone") or None. Must be cheap: it runs once per request. The Pulumi layer's provider
    #: outlives a killed CLI, and a move nobody waits for should not hold the lock against the next run
    abandoned: Callable[[], str | None] | None = None


@dataclass
class MoveReport:
    source: str
    target: str
    dry_run: bool
    moved: dict[str, int] = field(default_factory=dict)
    created: int = 0
    deleted: int = 0
    paused: int = 0
    unpaused: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    writes: int = 0
    writes_by_method: dict[str, int] = field(default_factory=dict)   # POST / DELETE / PATCH / PUT
    writes_by_resource: dict[str, int] = field(default_factory=dict)  # "PATCH baremetalhosts" -> count

    def summary(self) -> str:
        total = sum(self.moved.values())
        verb = "would move" if self.dry_run else "moved"
        return (f"{verb} {total} objects from {self.source} to {self.target} "
                f"(created {self.created}, deleted {self.deleted}, unpaused {self.unpaused}) "
                f"in {self.seconds:.1f} s")


async def delete_webhook_groups(kube: Kube) -> set[str]:
    """API groups whose DELETE a validating webhook intercepts ("*" matches every group)."""
    groups: set[str] = set()
    for cfg in await kube.list(VALIDATING_WEBHOOKS):
        for hook in cfg.get("webhooks") or []:
            for rule in hook.get("rules") or []:
                ops = set(rule.get("operations") or [])
                if ops & {"DELETE", "*"}:
                    groups.update(rule.get("apiGroups") or [])
    return groups


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group, unwrapped: callers catch the engine's own exception types."""
    first = errors.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


# ---------------------------------------------------------------------------------------------- the mover

class Mover:
    def __init__(self, source: Kube, target: Kube, options: MoveOptions | None = None) -> None:
        self.src = source
        self.dst = target
        self.opts = options or MoveOptions()
        self.deadline = time.monotonic() + self.opts.timeout if self.opts.timeout else None
        self.sem = asyncio.Semaphore(self.opts.concurrency)
        self.delete_webhook_groups: set[str] = {ALL_GROUPS}
        self.lock: MoveLock | None = None
        #: a create met a copy already there (an earlier run's, or ours whose answer was lost): the end of the
        #: move then reads the target rather than trusting what this run wrote (_finish_known)
        self.met_existing = False
        #: what this run deletes from the source, over all its readings (a reading stopped by a changed
        #: object may have deleted some, the next the rest)
        self.deleting: set[ObjKey] = set()
        #: source objects whose status alone changed after the move copied them, deleted at their new version
        self.status_changed = 0

    def say(self, msg: str) -> None:
        self.opts.progress(msg)

    def check_deadline(self, phase: str) -> None:
        if self.lock is not None:
            self.lock.check()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise MoveTimeoutError(f"the move ran past its deadline during {phase}; nothing is lost: "
                                   "run it again to finish")

    async def discover(self) -> Plan:
        ns = list(self.opts.namespaces)
        source, target = await asyncio.gather(discover(self.src, ns), discover(self.dst, ns))
        return make_plan(source, target)

    async def run(self) -> MoveReport:
        t0 = time.monotonic()
        report = MoveReport(self.src.name, self.dst.name, self.opts.dry_run)
        phase_start = time.monotonic()

        def phase(name: str) -> None:
            nonlocal phase_start
            now = time.monotonic()
            report.phases[name] = round(report.phases.get(name, 0.0) + now - phase_start, 3)
            phase_start = now

        if not self.opts.checked_by_caller or self.opts.dry_run:
            # read-only first: a move refused by the pre-flight or the lock changes nothing, not even a Lease
            plan = await self.discover()
            phase("discover")
            preflight.check(plan, self.opts.namespaces)
            for kube in (self.src, self.dst):
                held = await read_lock(kube)
                if held is not None:
                    raise LockHeldError(held.refusal(kube.name))
            phase("preflight")
            report.moved = plan.counts()
            self._say_stuck(plan)
            if not plan.work and not unfinished(plan.source, plan.target) and not kept_paused(plan):
                self.say(self._nothing_to_move(plan))
                report.moved = {}
                report.seconds = time.monotonic() - t0
                return report
            if self.opts.dry_run:
                self.say(f"would move {len(plan.moving)} objects ({len(plan.to_create)} to create, "
                         f"{len(plan.already_in_target)} already in {self.dst.name})")
                report.seconds = time.monotonic() - t0
                return report
            # the first plan goes before the second is read: held across the re-discovery, two copies of the
            # source were the engine's peak memory (71 against 46 MiB at 300 hosts, docs/performance.md)
            del plan
        # else the caller's own reading just said the same as this first one would (the Pulumi layer's check,
        # seconds before its update: 3-4 s of both clusters' reading at 1,000 hosts, docs/performance.md). What
        # changes: a pre-flight that refuses only now does so under the lock, whose Lease is then deleted, and
        # a move someone else finished meanwhile is found done under it (its end is written again, a no-op)
        holder = Holder.me(self.opts.holder, f"{self.src.name} ({self.src.server}) -> {self.dst.name} "
                                             f"({self.dst.server})")
        self.lock = MoveLock([self.src, self.dst], holder, duration=self.opts.lock_duration, progress=self.say,
                             abandoned=self.opts.abandoned)
        writes0 = self.src.writes + self.dst.writes
        by_method0 = self.src.writes_by_method + self.dst.writes_by_method
        by_resource0 = self.src.writes_by_resource + self.dst.writes_by_resource
        async with self.lock:
            phase("lock")
            for reading in range(1, READINGS + 1):
                # again under the lock: another mover may have finished (or half-done) a move since
                plan = await self.discover()
                preflight.check(plan, self.opts.namespaces)
                if reading == 1:
                    report.moved = plan.counts()
                    if self.opts.checked_by_caller:
                        self._say_stuck(plan)
                phase("rediscover")
                self.say(f"discovered {len(plan.moving)} objects to move ({len(plan.to_create)} to create, "
                         f"{len(plan.already_in_target)} already in {self.dst.name})")
                try:
                    await self._write(plan, report, phase)
                    break
                except SourceChangedError as err:
                    # what the run wrote so far is an interrupted move's, which the next reading finishes: the
                    # changed objects' copies are rewritten from the source (_refresh_stale) before any delete
                    del plan
                    if reading == READINGS:
                        raise SourceChangedError(
                            f"{err}; objects kept changing in {self.src.name} while the move ran, read {READINGS} "
                            "times: nothing is lost (what changed is still there, and its copy is rewritten by "
                            f"the next run), but {self.src.name} may be paused: find what writes there (a "
                            "controller not paused, a person), stop it, then run again to finish") from None
                    self.say(f"{err}: reading both clusters again, to copy what changed")
        report.writes = self.src.writes + self.dst.writes - writes0
        # Counter subtraction keeps the methods this move used (positive counts) only
        report.writes_by_method = dict(sorted((self.src.writes_by_method + self.dst.writes_by_method
                                               - by_method0).items()))
        report.writes_by_resource = dict(sorted((self.src.writes_by_resource + self.dst.writes_by_resource
                                                 - by_resource0).items()))
        report.seconds = time.monotonic() - t0
        self.say(report.summary())
        return report

    def _scope(self) -> str:
        ns = list(self.opts.namespaces)
        if not ns:
            return "any namespace"
        return f"namespace {ns[0]}" if len(ns) == 1 else "namespaces " + ", ".join(ns)

    def _nothing_to_move(self, plan: Plan) -> str:
        if any(not n.kept for n in plan.target.graph.move_nodes().values()):
            return f"nothing to move: nothing is left in {self.src.name}, every object is in {self.dst.name} already"
        return (f"nothing to move: {self._scope()} of {self.src.name} holds no object that clusterctl moves "
                "(Clusters and what they own, or kinds labelled for move)")

    def _say_stuck(self, plan: Plan) -> None:
        if plan.stuck:
            names = ", ".join(str(k) for k in plan.stuck[:5])
            more = f" and {len(plan.stuck) - 5} more" if len(plan.stuck) > 5 else ""
            self.say(f"left in {self.src.name}, as clusterctl leaves them: {len(plan.stuck)} objects in or below an "
                     f"ownerReference cycle, which no order can create ({names}{more})")

    async def _write(self, plan: Plan, report: MoveReport, phase: Callable[[str], None]) -> None:
        # the plan's objects (both clusters' views, read once) out of the cyclic collector's way while the
        # writes run: its collections would walk them again and again for nothing (they are freed by
        # reference counting); garbage the writes make is collected as usual. Measured at 300 hosts with
        # the collector off for the whole move: 6-7 % less CPU in the mover (docs/performance.md)
        gc.freeze()
        try:
            await self._write_frozen(plan, report, phase)
        finally:
            gc.unfreeze()

    async def _write_frozen(self, plan: Plan, report: MoveReport, phase: Callable[[str], None]) -> None:
        gone: set[str] = set()
        if plan.work:
            report.paused += await self.pause(plan)
            phase("pause")
            await self.wait_block_move(plan)
            phase("wait-block-move")
            report.created += await self.create(plan)
            phase("create")
            await self.unpause_kept(plan)
            await self.keep_originals(plan)
            await self.no_new_dependents(plan)
            phase("new-dependents")
            await self.delete(plan)
            report.deleted = len(self.deleting)
            gone = {plan.moving[k].uid for k in plan.to_delete}
            phase("delete")
        else:
            # every copy exists: what stays in the source unpaused too (a run killed just before its
            # unpause_kept, when all it moves is kept, has nothing else left to do)
            await self.unpause_kept(plan)
        left_in_source = uids(plan.source) - gone
        finish = self._finish_known(plan, left_in_source)
        plan.release()
        self.check_deadline("unpause")
        if finish is None:
            finish = Finish.of(await discover(self.dst, list(self.opts.namespaces)), left_in_source)
        await self.restore_host_status(finish.statuses)
        await self.strip_marks(finish.marked)
        phase("strip-marks")
        report.unpaused = await self.unpause(finish.unpauses)
        phase("unpause")

    def _finish_known(self, plan: Plan, left_in_source: set[str]) -> Finish | None:
        """What the end of the move writes in the target, where it is known without reading the target again
        (None: read it). Why: that read of the whole target was 27-44 s of a 1,000-s move at 5,000 hosts.
        Known when the run wrote nothing (the target as read under the lock is the target now), and when it
        made every copy of the move itself: the target is then what was read under the lock, which this run
        did not write (Finish.of), plus the copies, which hold what it wrote (finish_of_copies). A run that
        found copies of an earlier run (a resumed or reversed move: it restores their managedFields, rewrites
        stale ones, and they may lack a host status) or met one while creating reads the target afresh."""
        as_read = Finish.of(plan.target, left_in_source)
        if not plan.work:
            return as_read
        if self.met_existing or any(not plan.moving[k].kept for k in plan.already_in_target):
            return None
        return as_read + finish_of_copies([plan.moving[k] for k in plan.to_create], left_in_source)

    async def _bounded(self, items: Sequence[Any], fn: Callable[[Any], Any], label: str) -> list[Any]:
        done = 0
        last = time.monotonic()
        total = len(items)

        async def one(item: Any) -> Any:
            nonlocal done, last
            async with self.sem:       # the lock's guard (Kube.write_guard) checks each of fn's writes
                result = await fn(item)
            done += 1
            if time.monotonic() - last > 1.0 and done < total:
                last = time.monotonic()
                self.say(f"{label}: {done}/{total}")
            return result

        return list(await asyncio.gather(*(one(i) for i in items)))

    async def _in_order(self, nodes: Sequence[Node], waits_for: Callable[[Node], set[ObjKey]],
                        fn: Callable[[Node], Awaitable[None]], phase: str) -> None:
        """Run `fn` on every node, each once `fn` has finished on every node of `nodes` it waits for, with
        at most `concurrency` in flight. Why not level by level: a level waits for its slowest object before
        the next starts, and the last objects of every level ran with a handful of requests in flight.
        Nodes that wait for each other in a cycle (the API server does not refuse ownerReference cycles),
        and those below them, all start once nothing else can, as `levels` puts them in one last level
        (the plan leaves such objects in the source: plan.stuck).
        The first error stops the phase: nothing new starts, what is in flight is cancelled (a write whose
        answer was lost is recognised by the next run), and the error is raised as it came."""
        keys = {n.key for n in nodes}
        waiting = {n.key: waits_for(n) & keys for n in nodes}
        waiters: dict[ObjKey, list[Node]] = {}
        for node in nodes:
            for key in waiting[node.key]:
                waiters.setdefault(key, []).append(node)
        ready = deque(n for n in nodes if not waiting[n.key])
        blocked = {n.key: n for n in nodes if waiting[n.key]}
        wake = asyncio.Event()
        running = done = 0
        total, last = len(nodes), time.monotonic()

        async def worker() -> None:
            nonlocal running, done, last
            while True:
                if not ready and blocked and not running:
                    ready.extend(blocked.pop(k) for k in sorted(blocked))      # a cycle: start them all
                if not ready:
                    if not blocked:
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                node = ready.popleft()
                self.check_deadline(phase)
                running += 1
                try:
                    async with self.sem:
                        await fn(node)
                finally:
                    running -= 1
                done += 1
                for waiter in waiters.pop(node.key, ()):
                    left = waiting[waiter.key]
                    left.discard(node.key)
                    if not left and blocked.pop(waiter.key, None) is not None:
                        ready.append(waiter)
                wake.set()
                if time.monotonic() - last > 1.0 and done < total:
                    last = time.monotonic()
                    self.say(f"{phase}: {done}/{total}")

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.opts.concurrency, total)):
                    group.create_task(worker())
        except BaseExceptionGroup as errors:
            raise _first(errors) from None

    async def restore(self, directory: Path) -> MoveReport:
        """Create a backup's objects in the target (this Mover's `dst`), then unpause them, as clusterctl's
        `move --from-directory` does: objects the target already has are skipped (their UIDs are used for the
        owner chains), Clusters and ClusterClasses of the backup are unpaused. Reads clusterctl's files too."""
        t0 = time.monotonic()
        report = MoveReport(f"directory {directory}", self.dst.name, self.opts.dry_run)
        _, served, _ = await discover_types(self.dst)
        view = backup.read(directory, served)
        plan = make_plan(view, await discover(self.dst, sorted(view.namespaces)))
        preflight.check(plan, (), preflight.RESTORE_RULES)
        report.moved = plan.counts()
        if not self.opts.dry_run:
            holder = Holder.me(self.opts.holder, f"directory {directory} -> {self.dst.name} ({self.dst.server})")
            self.lock = MoveLock([self.dst], holder, duration=self.opts.lock_duration, progress=self.say,
                                 abandoned=self.opts.abandoned)
            async with self.lock:
                plan = make_plan(view, await discover(self.dst, sorted(view.namespaces)))
                preflight.check(plan, (), preflight.RESTORE_RULES)
                report.created = await self.create(plan)
                patches = [(n, p) for n in plan.moving.values() if (p := restore_unpause_patch(n)) is not None]
                await self._bounded(patches, self._patch_target, "unpause")
                report.unpaused = len(patches)
        report.seconds = time.monotonic() - t0
        return report

    async def backup(self, directory: Path) -> int:
        """`--to-directory`, as clusterctl does it: the same checks as a move, pause the source's Clusters and
        ClusterClasses, wait for block-move, write every object of the move as it then is, unpause. Returns
        how many objects were written. The files carry none of our marks (clusterctl restores them too)."""
        ns = list(self.opts.namespaces)
        source = await discover(self.src, ns)
        plan = make_plan(source, backup.empty_view())
        preflight.check(plan, ns, preflight.BACKUP_RULES)
        self._say_stuck(plan)
        if self.opts.dry_run:
            self.say(f"would write {len(plan.moving)} objects to {directory}")
            return 0
        holder = Holder.me(self.opts.holder, f"{self.src.name} ({self.src.server}) -> directory {directory}")
        self.lock = MoveLock([self.src], holder, duration=self.opts.lock_duration, progress=self.say,
                             abandoned=self.opts.abandoned)
        async with self.lock:
            plan = make_plan(await discover(self.src, ns), backup.empty_view())
            preflight.check(plan, ns, preflight.BACKUP_RULES)
            await self.pause(plan, hosts=False)
            try:
                await self.wait_block_move(plan)
                fresh = await discover(self.src, ns)
                nodes = [fresh.graph.nodes.get(k, n) for k, n in plan.moving.items()]
                count = backup.write(nodes, directory)
            finally:
                view = await discover(self.src, ns)
                keys = set(plan.moving)
                patches = [(n, p) for k, n in view.graph.nodes.items()
                           if k in keys and (p := unpause_patch(n)) is not None]
                await self._bounded(patches, self._patch_source, "unpause")
        return count

    async def _patch_target(self, item: tuple[Node, Obj]) -> None:
        node, patch = item
        md = node.obj["metadata"]
        await self.dst.patch(node.type.rt, md["name"], md.get("namespace"), patch, ok_missing=True, metadata_only=True)

    async def _patch_source(self, item: tuple[Node, Obj]) -> None:
        node, patch = item
        md = node.obj["metadata"]
        await self.src.patch(node.type.rt, md["name"], md.get("namespace"), patch, ok_missing=True, metadata_only=True)

    # -- pause -----------------------------------------------------------------------------------------
    async def pause(self, plan: Plan, *, hosts: bool = True) -> int:
        """Stop the source's controllers acting on what moves: Clusters, ClusterClasses, hosts (a backup,
        which deletes nothing, pauses only what clusterctl pauses)."""
        patches = [(node, patch) for node in plan.moving.values() if (patch := pause_patch(node)) is not None
                   and (hosts or node.key.group_kind != (BMH_GROUP, "BareMetalHost"))]

        async def apply(item: tuple[Node, Obj]) -> None:
            node, patch = item
            md = node.obj["metadata"]
            for _ in range(STATUS_CHANGES):
                if BMH_STATUS in ((patch.get("metadata") or {}).get("annotations") or {}):
                    # the status annotation is the host's status as read: it must be the status the host has
                    # when the pause lands (BMO writes none after), else the copy gets an older one. Applied to
                    # that version only; a host changed since is read again and its patch made again
                    patch = {**patch, "metadata": {**patch["metadata"], "resourceVersion": md["resourceVersion"]}}
                try:
                    updated = await self.src.patch(node.type.rt, md["name"], md.get("namespace"), patch)
                except ConflictError:
                    fresh = await self.src.get(node.type.rt, md["name"], md.get("namespace"))
                    if fresh is None:
                        return
                    node.obj = fresh
                    md = fresh["metadata"]
                    again = pause_patch(node)
                    if again is None:
                        return
                    patch = again
                    continue
                if updated is not None:
                    node.obj = updated
                return
            raise SourceChangedError(f"the status of {node.key} kept changing in {self.src.name} while the move "
                                     "paused it")

        if patches:
            self.say(f"pausing {len(patches)} objects in {self.src.name}")
        await self._bounded(patches, apply, "pause")
        return len(patches)

    async def wait_block_move(self, plan: Plan) -> None:
        """clusterctl's waitReadyForMove, after the pause: providers (CAPZ, for one) hold a move with the
        block-move annotation until their objects' Cluster is paused and in-flight work has settled."""
        blocked = [n for n in plan.moving.values() if n.blocks_move]
        deadline = time.monotonic() + self.opts.block_move_timeout
        delay = 0.2
        while blocked:
            self.say(f"waiting for {len(blocked)} objects to drop {BLOCK_MOVE_ANNOTATION}")
            if time.monotonic() > deadline:
                names = ", ".join(str(n.key) for n in blocked[:5])
                raise BlockMoveTimeoutError(
                    f"{len(blocked)} objects still carry {BLOCK_MOVE_ANNOTATION} after "
                    f"{self.opts.block_move_timeout:.0f} s ({names}); the source is paused and nothing was "
                    "created or deleted yet: find the controller that set it, then run again to finish")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            still = []
            for node in blocked:
                md = node.obj["metadata"]
                fresh = await self.src.get(node.type.rt, md["name"], md.get("namespace"))
                if fresh is not None:
                    node.obj = fresh
                    if node.blocks_move:
                        still.append(node)
            blocked = still
            self.check_deadline("the block-move wait")

    # -- create ----------------------------------------------------------------------------------------
    async def create(self, plan: Plan) -> int:
        uid_map: dict[ObjKey, str] = {k: plan.target.graph.nodes[k].uid for k in plan.already_in_target}
        by_source_uid = {n.uid: k for k, n in plan.source.graph.nodes.items()}
        api_versions = {k: str(n.obj.get("apiVersion", "")) for k, n in plan.source.graph.nodes.items()}
        todo = set(plan.to_create)
        rewritten = await self._refresh_stale(plan, uid_map, by_source_uid)
        await self._finish_restores(plan, rewritten)
        for ns in sorted({k.namespace for k in todo if k.namespace} - plan.target.namespaces):
            await self.dst.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        batch = [plan.moving[k] for k in sorted(todo)]
        if batch:
            self.say(f"creating {len(batch)} objects in {self.dst.name}, each once its owners exist there")

        async def one(node: Node) -> None:
            obj = target_copy(node, uid_map, by_source_uid, api_versions)
            uid_map[node.key] = await self._create_one(node, obj)

        # owners first: an object waits for its owners (hard: their new UID goes into it; soft: so that the
        # deletes, in reverse, take a Cluster's secrets before the Cluster) among those still to create
        await self._in_order(batch, lambda n: n.owners | n.soft_owners, one, "create")
        return len(batch)

    async def _refresh_stale(self, plan: Plan, uid_map: dict[ObjKey, str],
                             by_source_uid: dict[str, ObjKey]) -> set[ObjKey]:
        """A copy made by an earlier, interrupted run from a source object that has changed since (someone
        edited it while the move was stopped) is rewritten from the source: the change must not be lost.
        Returns what was rewritten (with its managedFields restored where the move restores them)."""
        api_versions = {k: str(n.obj.get("apiVersion", "")) for k, n in plan.source.graph.nodes.items()}
        stale = []
        for key in plan.already_in_target:
            src, dst = plan.moving[key], plan.target.graph.nodes[key]
            recorded = copy_marks(dst.obj).get(src.uid)
            if not recorded or recorded == str(src.obj["metadata"].get("resourceVersion")):
                continue
            # marked for deletion by a run of ours, the object has a new version by our own patch: stale only
            # if something else changed too (an edit between that patch and the DELETE)
            if DELETE_FOR_MOVE not in src.annotations or not copy_is_current(src, dst.obj, uid_map, by_source_uid,
                                                                             api_versions):
                stale.append((src, dst))

        async def rewrite(pair: tuple[Node, Node]) -> None:
            src, dst = pair
            copy_obj: Obj | None = dst.obj
            for _ in range(STATUS_CHANGES):
                if copy_obj is None:
                    raise PivotError(f"{src.key}: its copy went from {self.dst.name} during the move; nothing was "
                                     "deleted from the source: run again")
                obj = target_copy(src, uid_map, by_source_uid, api_versions)
                obj["metadata"]["resourceVersion"] = copy_obj["metadata"]["resourceVersion"]
                if DELETE_FOR_MOVE in src.annotations:
                    # our patch took the source's finalizers off; the copy holds the original's
                    obj["metadata"].pop("finalizers", None)
                    if copy_obj["metadata"].get("finalizers"):
                        obj["metadata"]["finalizers"] = copy_obj["metadata"]["finalizers"]
                manager = copy_manager(src)
                if manager is not None:
                    # the copy's record of its source, renamed to the source's new version: one record, current
                    entries = remarked_managed_fields(copy_obj, src.uid, manager)
                    if entries is not None:
                        obj["metadata"]["managedFields"] = entries
                    else:
                        # recorded in annotations (a copy made before the record moved into the creator's name):
                        # recorded there again, since a rewrite that changes no field would leave no name behind
                        obj["metadata"]["annotations"] = {**(obj["metadata"].get("annotations") or {}),
                                                          **annotation_marks(src)}
                        manager = None
                try:
                    await self.dst.replace(src.type.rt, obj, manager=manager, metadata_only=True)
                    break
                except ConflictError:
                    # the target's controllers write the status of paused copies too (a Paused condition):
                    # rewritten over the copy's new version
                    md = obj["metadata"]
                    copy_obj = await self.dst.get(src.type.rt, md["name"], md.get("namespace"))
            else:
                raise PivotError(f"{src.key}: its copy kept changing in {self.dst.name} while the move rewrote it; "
                                 "nothing was deleted from the source: run again")
            await self._restore_fields(src)      # the rewrite made its writer the owner of what it changed

        if stale:
            self.say(f"{len(stale)} objects changed in {self.src.name} since an earlier run copied them: "
                     "copying them again")
        await self._bounded(stale, rewrite, "refresh")
        return {src.key for src, _ in stale}

    async def _finish_restores(self, plan: Plan, skip: set[ObjKey]) -> None:
        """Copies of ours an earlier run created but whose managedFields it did not restore yet (killed
        between the two writes) get them now, before anything is deleted from the source, which is where
        they come from."""
        pending = []
        for key in plan.already_in_target:
            src, dst = plan.moving[key], plan.target.graph.nodes[key]
            if key not in skip and not src.kept and related(src.obj, dst.obj) and restore_pending(src.obj, dst.obj):
                pending.append(src)
        if pending:
            self.say(f"restoring the managedFields of {len(pending)} copies an earlier run made in {self.dst.name}")
        await self._bounded(pending, self._restore_fields, "restore managedFields")

    async def _restore_fields(self, src: Node) -> None:
        """Give `src`'s copy (same name in the target) the source's field owners and its record of the source
        (managed_fields_patch), where the move restores them."""
        restore = managed_fields_patch(src)
        if restore is not None:
            md = src.obj["metadata"]
            await self.dst.patch(src.type.rt, md["name"], md.get("namespace"), restore, metadata_only=True)

    async def _create_one(self, node: Node, obj: Obj) -> str:
        rt = node.type.rt
        md = obj["metadata"]
        try:
            # the answer's metadata is all that is read (the UID, the managedFields)
            created = await self.dst.create(rt, obj, manager=copy_manager(node), metadata_only=True)
        except ConflictError as err:
            if err.reason != "AlreadyExists":
                raise
            # created by a run that died before it could record it (or whose answer was lost): ours if it
            # carries our mark (copy_marks: its creator's name, or our annotation); a kept object
            # (global, shared ClusterClass, restored from a backup) that appeared meanwhile is skipped
            self.met_existing = True
            existing = await self.dst.get(rt, md["name"], md.get("namespace"))
            if existing is not None and node.kept:
                return str(existing["metadata"]["uid"])
            if existing is None or not related(node.obj, existing):
                raise PivotError(f"{node.key} appeared in {self.dst.name} during the move, not created by us; "
                                 "nothing was deleted from the source") from None
            created = existing
        if restore_pending(node.obj, created):
            await self._restore_fields(node)
        if node.key.group_kind == (BMH_GROUP, "BareMetalHost"):
            status = carried_bmh_status(node.obj)
            if status is not None and not created.get("status", {}).get("provisioning"):
                # what BMO does on start-up from the annotation, so the host is never seen unprovisioned
                # (a fresh copy's answer has no status: a create drops it, and the answer is metadata)
                await self.dst.patch(rt, md["name"], md.get("namespace"), {"status": status}, sub="status",
                                     metadata_only=True)
        return str(created["metadata"]["uid"])

    # -- delete ----------------------------------------------------------------------------------------
    async def delete(self, plan: Plan) -> int:
        """Only after every object exists in the target; dependents before owners."""
        self.delete_webhook_groups = await delete_webhook_groups(self.src)
        batch = [plan.moving[k] for k in plan.to_delete]
        self.deleting.update(plan.to_delete)
        dependents: dict[ObjKey, set[ObjKey]] = {n.key: set() for n in batch}
        for node in batch:
            for owner in node.owners | node.soft_owners:
                if owner in dependents:
                    dependents[owner].add(node.key)
        if batch:
            self.say(f"deleting {len(batch)} objects from {self.src.name}, each once its dependents are gone")
        # the reverse of the creates: an owner goes once every object it owns is gone, so what is left in the
        # source is always whole (every object's owners are still there) however the run ends
        changed = self.status_changed
        await self._in_order(batch, lambda n: dependents[n.key], self._delete_one, "delete")
        if self.status_changed > changed:
            self.say(f"{self.status_changed - changed} objects' status changed in {self.src.name} after the move "
                     "copied them (a copy holds no status): deleted at their new version")
        return len(batch)

    async def no_new_dependents(self, plan: Plan) -> None:
        """Before the first delete: no object appeared in the source since the read under the lock that a
        moving object owns (a child a controller created before it saw the pause: a Machine of a MachineSet
        scaling up, its bootstrap Secret). Not in the plan, it would not be copied, and the source's garbage
        collector would delete it with its owner. Found, it raises SourceChangedError: the next reading moves
        it. One more list of each kind moved in the scope (only names, UIDs and owners are kept); clusterctl
        has the same gap, and no such check."""
        if not plan.to_delete:
            return
        known = uids(plan.source)
        owners = {plan.moving[k].uid for k in plan.to_delete}
        ns: list[str | None] = [*self.opts.namespaces] or [None]
        # a few kinds at a time: a page of items' metadata still holds their managedFields, and every kind's
        # page parsed at once raised the engine's peak by ~50 MiB at 1,000 hosts (docs/performance.md)
        pages = asyncio.Semaphore(NEW_DEPENDENT_LISTS)

        async def new_in(info: TypeInfo, namespace: str | None) -> list[tuple[str, str, set[str]]]:
            if not info.rt.namespaced and namespace != ns[0]:
                return []
            found = []
            async with pages:
                async for obj in self.src.iter_list(info.rt, namespace if info.rt.namespaced else None,
                                                    metadata_only=True):
                    md = obj["metadata"]
                    if str(md.get("uid")) not in known and md.get("ownerReferences"):
                        where = f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"]
                        found.append((f"{info.rt.kind} {where}", str(md.get("uid")),
                                      {str(r.get("uid")) for r in md["ownerReferences"]}))
            return found

        new = [o for chunk in await asyncio.gather(*(new_in(i, n) for i in plan.source.types.values() for n in ns))
               for o in chunk]
        owned: list[str] = []
        grew = True
        while grew:                         # the new objects' own new children too
            grew = False
            for name, uid, refs in new:
                if uid not in owners and refs & owners:
                    owners.add(uid)
                    owned.append(name)
                    grew = True
        if owned:
            more = f" and {len(owned) - 3} more" if len(owned) > 3 else ""
            raise SourceChangedError(f"{len(owned)} objects appeared in {self.src.name} after the move read it, owned "
                                     f"by objects it moves ({', '.join(owned[:3])}{more})")

    async def _delete_one(self, node: Node) -> None:
        """Both writes carry the resourceVersion last seen of the object: one changed in the source since the
        move copied it (a controller that had not seen the pause yet, a person) is not deleted, and its change
        not lost with it (clusterctl deletes unconditionally). A change to its status alone loses nothing (a
        copy holds none: CAPI's controllers write a Paused condition on every object of a Cluster just
        paused), so the object is deleted at its new version. Any other change raises SourceChangedError,
        which stops the phase: the run reads both clusters again and copies it again (Mover.run)."""
        rt = node.type.rt
        copied = node.obj
        # the delete-for-move annotation exists to tell validating webhooks that a deletion is a move;
        # where no webhook intercepts deletes of this group, and no finalizer must go, one DELETE suffices
        hooked = rt.group in self.delete_webhook_groups or ALL_GROUPS in self.delete_webhook_groups
        for _ in range(STATUS_CHANGES):
            md = node.obj["metadata"]
            version = str(md.get("resourceVersion") or "")
            try:
                if md.get("finalizers") or hooked:
                    # a merge patch that names a resourceVersion applies only to that version
                    patch = {"metadata": {"annotations": {DELETE_FOR_MOVE: ""}, "finalizers": None,
                                          "resourceVersion": version}}
                    marked = await self.src.patch(rt, md["name"], md.get("namespace"), patch, ok_missing=True,
                                                  metadata_only=True)
                    if marked is None:
                        return
                    version = str(marked["metadata"]["resourceVersion"])
                preconditions = {"uid": node.uid, "resourceVersion": version} if version else None
                await self.src.delete(rt, md["name"], md.get("namespace"), preconditions=preconditions)
                return
            except NotFoundError:
                return
            except ConflictError:
                fresh = await self.src.get(rt, md["name"], md.get("namespace"))
                if fresh is None:
                    return
                if not same_copy(copied, fresh):
                    raise SourceChangedError(f"{node.key} changed in {self.src.name} after the move copied it"
                                             ) from None
                node.obj = fresh
                self.status_changed += 1
        raise SourceChangedError(f"the status of {node.key} kept changing in {self.src.name}")

    async def keep_originals(self, plan: Plan) -> None:
        """A move reversed after the deletes had begun (a roll-back) finds originals in its target that the
        first run marked delete-for-move and stripped of finalizers (`_delete_one`) but did not delete. They
        stay now: the mark comes off and the finalizers come back from their copy (which has them as the
        original had them when it was copied), before the copies that prove the mark ours are deleted. Left
        on, the mark reads as another tool's move in progress, which the next move refuses
        (preflight.no_foreign_move), and the providers would take a later real deletion for a move and skip
        their cleanup."""
        nodes = plan.target.graph.nodes
        marked = [k for k in plan.already_in_target
                  if DELETE_FOR_MOVE in nodes[k].annotations and related(plan.moving[k].obj, nodes[k].obj)]
        if marked:
            self.say(f"taking {DELETE_FOR_MOVE} off {len(marked)} objects in {self.dst.name} that an interrupted "
                     "move had marked for deletion: they stay")
        await self._bounded([(nodes[k], {"metadata": {"annotations": {DELETE_FOR_MOVE: None},
                                                      "finalizers": plan.moving[k].obj["metadata"].get("finalizers")}})
                             for k in marked], self._patch_target, "keep originals")

    # -- marks and unpause -----------------------------------------------------------------------------
    async def unpause_kept(self, plan: Plan) -> None:
        """What stays in the source (a shared ClusterClass) is unpaused there once its copy exists: clusterctl
        leaves it paused, which stops its other Clusters' topology reconciling; we do not."""
        patches = kept_paused(plan)
        if patches:
            self.say(f"unpausing {len(patches)} objects that stay in {self.src.name} (shared or global)")
        await self._bounded(patches, self._patch_source, "unpause kept")

    async def restore_host_status(self, missing: list[tuple[Node, Obj]]) -> int:
        """Before anything is unpaused: every host copy of ours gets the provisioning status it carries, also
        one an interrupted run created but did not finish (found by the live plane's kill test: such a host
        was provisioned again by the target's BMO). `missing`: Finish.statuses (hosts_missing_status)."""
        if missing:
            self.say(f"restoring the provisioning status of {len(missing)} hosts in {self.dst.name} that lack it "
                     "(an interrupted run created them without it, or it was lost since), from the status they carry")

        async def one(item: tuple[Node, Obj]) -> None:
            node, status = item
            md = node.obj["metadata"]
            await self.dst.patch(node.type.rt, md["name"], md.get("namespace"), {"status": status}, sub="status",
                                 metadata_only=True)
        await self._bounded(missing, one, "restore host status")
        return len(missing)

    async def strip_marks(self, nodes: list[Node]) -> int:
        """Take SOURCE_UID / SOURCE_VERSION off copies whose original is gone: the target ends as clusterctl
        leaves it. Before the unpause, so no controller of the target ever sees them. Only copies that set no
        field but their name (plan.marked_by_annotation) and copies made by earlier versions have any; the
        others' marks are the name of the field manager that created them, which costs no write."""
        if nodes:
            self.say(f"removing the move's marks from {len(nodes)} objects in {self.dst.name}")
        await self._bounded([(n, STRIP_PATCH) for n in nodes], self._patch_target, "strip marks")
        return len(nodes)

    async def unpause(self, patches: list[tuple[Node, Obj]]) -> int:
        """Unpause in the target exactly what a move of ours paused (Finish.unpauses: also how a run that died
        after the deletes finishes, from what it reads under the lock)."""
        if patches:
            self.say(f"unpausing {len(patches)} objects in {self.dst.name}")
        await self._bounded(patches, self._patch_target, "unpause")
        return len(patches)

