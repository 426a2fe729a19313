"""The move lock's judgement, offline: when a Lease may be taken over, and when a holder must stop."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metal3_pivot.errors import LockLostError, MoveAbandonedError
from metal3_pivot.lock import LEASE_PATH, Holder, LeaseState, MoveLock, micro_time, pid_namespace, process_start

pytestmark = pytest.mark.unit


def lease(holder: Holder | None, *, renewed_ago: float = 0.0, duration: int = 60) -> dict:
    renewed = micro_time(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=renewed_ago))
    return {"metadata": {"name": "metal3-pivot-move", "annotations": holder.annotations() if holder else {}},
            "spec": {"holderIdentity": holder.identity if holder else None, "leaseDurationSeconds": duration,
                     "renewTime": renewed}}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_keeps_its_lock() -> None:
    me = Holder.me("metal3-pivot CLI (ops)", "ephemeral -> target")
    state = LeaseState.of(lease(me))
    assert state.takeable == (False, "")
    message = state.refusal("target")
    assert f"metal3-pivot CLI (ops) on {socket.gethostname()} (pid {os.getpid()})" in message
    assert "is moving ephemeral -> target" in message and "kubectl -n kube-system get lease" in message


def test_an_expired_lock_is_taken_over() -> None:
    other = Holder("pulumi stack fleet/prod", "target -> ephemeral", "bastion-2", 4242, "1", "t")
    ok, why = LeaseState.of(lease(other, renewed_ago=61)).takeable
    assert ok and why.startswith("expired at")
    assert LeaseState.of(lease(other, renewed_ago=30)).takeable[0] is False   # alive elsewhere: not ours to judge


def test_a_dead_holder_on_this_host_is_taken_over_at_once() -> None:
    pid = dead_pid()
    gone = Holder("metal3-pivot CLI", "a -> b", socket.gethostname(), pid, "12345", "t", pid_namespace())
    ok, why = LeaseState.of(lease(gone)).takeable
    assert ok and f"pid {pid} on this host" in why


def test_a_killed_holder_not_yet_reaped_is_gone() -> None:
    """pulumi's engine may not have reaped the SIGKILLed provider process yet when the next run looks."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    stat = Path(f"/proc/{proc.pid}/stat")
    while time.monotonic() < deadline and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)
    zombie = Holder("metal3-pivot CLI", "a -> b", socket.gethostname(), proc.pid, "1", "t", pid_namespace())
    assert zombie.is_gone()
    proc.wait()


def test_a_recycled_pid_is_not_mistaken_for_the_holder() -> None:
    ns = pid_namespace()
    recycled = Holder("metal3-pivot CLI", "a -> b", socket.gethostname(), os.getpid(), "not-my-start-time", "t", ns)
    assert recycled.is_gone()
    assert not Holder("x", "a -> b", socket.gethostname(), os.getpid(), process_start(os.getpid()), "t", ns).is_gone()


def test_a_holder_whose_pid_we_cannot_check_is_never_taken_for_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another PID namespace on the same hostname (containers), a holder that did not say its namespace
    (an older version), or no /proc here (not Linux, where every pid would look gone): the Lease must
    expire first."""
    from metal3_pivot import lock

    pid = dead_pid()
    host = socket.gethostname()
    assert Holder("x", "a -> b", host, pid, "1", "t", pid_namespace()).is_gone()
    assert not Holder("x", "a -> b", host, pid, "1", "t", "pid:[1]").is_gone()
    assert not Holder("x", "a -> b", host, pid, "1", "t").is_gone()
    monkeypatch.setattr(lock, "pid_namespace", lambda: "")
    assert not Holder("x", "a -> b", host, pid, "1", "t", "").is_gone()
    assert Holder.of(lease(Holder.me("x", "a -> b"))).pid_ns == ""          # Holder.me asked the patched one


def test_a_released_lease_is_free() -> None:
    assert LeaseState.of(lease(None)).takeable == (True, "released")


def test_a_holder_that_cannot_renew_stops_before_the_lock_could_expire() -> None:
    lock = MoveLock([], Holder.me("metal3-pivot CLI", "a -> b"), duration=60)
    lock.renewed["target"] = time.monotonic() - 39
    lock.check()                                    # within the renew deadline (2/3 of 60 s)
    lock.renewed["target"] = time.monotonic() - 41
    with pytest.raises(LockLostError, match="could not renew the move lock in target for 41 s"):
        lock.check()


def test_a_lost_lock_refuses_every_write_but_its_own_lease() -> None:
    """The guard the lock puts on its clients: the move's writes stop, the lock may still touch its Lease."""
    lock = MoveLock([], Holder.me("metal3-pivot CLI", "a -> b"), duration=60)
    lock._guard("POST", "/api/v1/namespaces/metal3/secrets")             # held: through
    lock.lost = "taken over"
    with pytest.raises(LockLostError, match="taken over"):
        lock._guard("PATCH", "/apis/metal3.io/v1alpha1/namespaces/metal3/baremetalhosts/h0/status")
    lock._guard("PUT", LEASE_PATH)


def test_an_abandoned_move_stops_before_its_next_write_but_may_release_its_lease() -> None:
    """MoveOptions.abandoned (the Pulumi layer's provider whose CLI died): asked before every write."""
    reason: list[str] = []
    lock = MoveLock([], Holder.me("pulumi stack dev", "a -> b"), duration=60,
                    abandoned=lambda: reason[0] if reason else None)
    lock._guard("POST", "/api/v1/namespaces/metal3/secrets")             # still wanted: through
    reason.append("the pulumi engine that asked for this move (127.0.0.1:4) is gone")
    with pytest.raises(MoveAbandonedError, match=r"\(127.0.0.1:4\) is gone: stopped before the next write"):
        lock._guard("DELETE", "/apis/cluster.x-k8s.io/v1beta2/namespaces/metal3/machines/m0")
    lock._guard("DELETE", LEASE_PATH)
