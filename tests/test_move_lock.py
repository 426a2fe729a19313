"""The cluster-side move lock, with the engine CLI against real clusters.

A second mover is refused at once, naming the holder; a killed holder's lock is taken over and its move
finished; a lock held on another host blocks until it expires; a mover whose lock is taken over stops
before its next write; another tool's move in progress is refused. The write journal
(tests/kit/concurrency.py) proves that no two movers' writes ever interleave.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import pytest

from lab.seams import seam_env
from metal3_pivot.kube import LEASE
from metal3_pivot.lock import HOST, LOCK_NAME, LOCK_NAMESPACE, PID, micro_time
from metal3_pivot.plan import DELETE_FOR_MOVE
from tests.kit.concurrency import (
    interleavings,
    journal_env,
    lease,
    move_spans,
    stamped_lines,
    start_cli,
    wait_for_lease,
)
from tests.kit.move import (
    TOPOLOGY,
    bundle_types,
    canonical_snapshot,
    check,
    cli_move_args,
    engine_cli,
    kube,
    resource_versions,
    seed_pair,
    snapshot,
)

pytestmark = pytest.mark.cluster


def foreign_lease(duration: int, renewed_ago: float = 0.0) -> dict:
    """A lock as a mover on another machine would hold it."""
    renewed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=renewed_ago)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LOCK_NAME, "namespace": LOCK_NAMESPACE,
                         "annotations": {"metal3-pivot.io/holder": "pulumi stack fleet/prod", HOST: "bastion-2",
                                         PID: "4242", "metal3-pivot.io/direction": "ephemeral -> target",
                                         "metal3-pivot.io/started": micro_time(renewed)}},
            "spec": {"holderIdentity": "pulumi stack fleet/prod on bastion-2 (pid 4242)",
                     "leaseDurationSeconds": duration, "acquireTime": micro_time(renewed),
                     "renewTime": micro_time(renewed)}}


def put_lease(cluster, body: dict) -> None:
    async def go() -> None:
        async with kube(cluster) as k:
            current = await k.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
            if current is None:
                await k.create(LEASE, body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await k.replace(LEASE, body)
    asyncio.run(go())


class ForeignHolder(threading.Thread):
    """Another host's mover, alive: keeps its Lease renewed (every 0.5 s) until `let_expire`, so the test's
    refusal does not depend on how fast the refused CLI starts on a loaded machine. After `let_expire`
    nothing renews it, and `expired` waits until its last renewal is older than its duration."""

    def __init__(self, cluster, duration: int = 4) -> None:
        super().__init__(daemon=True)
        self.cluster, self.duration = cluster, duration
        self.stop_event = threading.Event()
        self.last_renewal = 0.0
        put_lease(cluster, foreign_lease(duration))
        self.last_renewal = time.monotonic()

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            put_lease(self.cluster, foreign_lease(self.duration))
            self.last_renewal = time.monotonic()

    def let_expire(self) -> None:
        self.stop_event.set()
        self.join()

    def expired(self) -> None:
        time.sleep(max(0.0, self.last_renewal + self.duration + 0.5 - time.monotonic()))


def test_a_second_mover_is_refused_while_the_first_moves(fresh_clusters, tmp_path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)
    journal = tmp_path / "journal"
    first = start_cli(*cli_move_args(eph, tgt), "--lock-duration", "3", env_extra=journal_env(journal))
    wait_for_lease(tgt, first)
    wait_for_lease(eph, first)                                  # both halves (taken in cluster-UID order)
    held = lease(eph)
    assert held is not None and held["metadata"]["annotations"][PID] == str(first.pid)
    assert "metal3-pivot CLI" in held["spec"]["holderIdentity"]
    assert "source (https://" in held["metadata"]["annotations"]["metal3-pivot.io/direction"]

    time.sleep(1.5)                                             # renewed every duration / 3 = 1 s
    renewed = lease(eph)
    assert renewed is not None and renewed["spec"]["renewTime"] > held["spec"]["renewTime"]

    second = engine_cli(*cli_move_args(eph, tgt), env_extra=journal_env(journal, slow=False))
    assert second.returncode == 7, second.stderr
    assert "another move is in progress" in second.stderr and f"(pid {first.pid})" in second.stderr
    assert "kubectl -n kube-system get lease metal3-pivot-move" in second.stderr

    _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert set(move_spans(journal)) == {first.pid}          # the refused mover wrote nothing at all
    assert interleavings(journal) == 0
    assert lease(eph) is None and lease(tgt) is None           # released in both clusters
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original


def test_a_killed_movers_lock_is_taken_over_and_its_move_finished(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)
    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_after=50))
    assert killed.returncode == -9
    assert lease(eph) is not None and lease(tgt) is not None    # the dead mover's lock is still there
    again = engine_cli(*cli_move_args(eph, tgt))
    assert again.returncode == 0, again.stderr
    assert "took over the move lock" in again.stderr and "is no longer running" in again.stderr
    assert lease(eph) is None and lease(tgt) is None
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original


def test_a_lock_held_on_another_host_refuses_until_it_expires(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    holder = ForeignHolder(tgt, duration=4)
    holder.start()
    try:
        before = {c.name: resource_versions(c) for c in (eph, tgt)}
        refused = engine_cli(*cli_move_args(eph, tgt))
    finally:
        holder.let_expire()
    assert refused.returncode == 7, refused.stderr
    assert "pulumi stack fleet/prod on bastion-2 (pid 4242) is moving ephemeral -> target" in refused.stderr
    assert "expires by itself" in refused.stderr
    assert {c.name: resource_versions(c) for c in (eph, tgt)} == before
    assert lease(eph) is None                                   # not even the other half of the lock taken

    holder.expired()                                            # nobody renews it any more: it lapses
    done = engine_cli(*cli_move_args(eph, tgt))
    assert done.returncode == 0, done.stderr
    assert "took over the move lock in target from pulumi stack fleet/prod" in done.stderr
    assert "expired at" in done.stderr
    assert check(eph, tgt, expect="target").ok
    assert lease(tgt) is None


def test_a_mover_whose_lock_is_taken_over_stops_before_its_next_write(fresh_clusters, tmp_path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)
    journal = tmp_path / "journal"
    mover = start_cli(*cli_move_args(eph, tgt), "--lock-duration", "3", env_extra=journal_env(journal))
    said, reader = stamped_lines(mover.stderr)
    wait_for_lease(eph, mover)
    time.sleep(2.0)
    put_lease(eph, foreign_lease(duration=3))                   # somebody else's mover takes it over
    stolen_at = time.time()
    mover.wait(timeout=300)
    reader.join(timeout=30)
    err = "".join(line for _, line in said)
    assert mover.returncode == 8, err                         # LockLostError: not "held" (7)
    assert "was taken over by another mover" in err
    seen = next((t for t, line in said if "lost the move lock in " in line), None)
    assert seen is not None, err                              # said the moment the renewal met the other Lease
    span = move_spans(journal)[mover.pid]
    # not one write sent after that, though writes were in flight: every write passes the lock's guard
    assert span.last_sent <= seen, (span, seen)
    # and it saw it within one renewal round: the renewal period (duration / 3), then the round's requests
    # (a renewal in each cluster, the read of the other Lease), each no slower than the slowest write the
    # mover saw answered, plus the seam's 0.25 s pause after each of its writes
    assert seen - stolen_at < 1.0 + 3 * (span.slowest + 0.25) + 0.5, (seen - stolen_at, span)
    time.sleep(3.5)                                             # the "other mover" is gone: its lock expires
    done = engine_cli(*cli_move_args(eph, tgt))
    assert done.returncode == 0, done.stderr
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original


def test_another_tools_move_in_progress_is_refused(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    host = sorted(k.name for k in snapshot(eph) if k.kind == "BareMetalHost")[0]

    async def mark() -> None:
        rt = next(r for r in bundle_types().values() if r.kind == "BareMetalHost")
        async with kube(eph) as k:
            await k.patch(rt, host, TOPOLOGY.namespace, {"metadata": {"annotations": {DELETE_FOR_MOVE: ""}}})
    asyncio.run(mark())
    before = {c.name: resource_versions(c) for c in (eph, tgt)}
    refused = engine_cli(*cli_move_args(eph, tgt))
    assert refused.returncode == 2, refused.stderr
    assert f"BareMetalHost {TOPOLOGY.namespace}/{host}" in refused.stderr or host in refused.stderr
    assert "another tool (clusterctl move?) is moving it" in refused.stderr
    assert {c.name: resource_versions(c) for c in (eph, tgt)} == before
