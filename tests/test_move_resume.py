"""Resume: the engine CLI SIGKILLed after k API writes, in every phase and in both directions, then run
again. Every run must converge to the same state as an uninterrupted move, and a half-done move must
also roll back when the direction is reversed."""

from __future__ import annotations

import signal

import pytest

from lab.seams import seam_env
from tests.kit.move import canonical, check, cli_move_args, engine_cli, move, seed_pair, settle, snapshot

pytestmark = pytest.mark.cluster


def kill_points(paused: int, created: int, deleted: int, total: int) -> list[int]:
    """At least one point inside each phase: pause, create, delete, unpause."""
    pts = {1, max(1, paused - 1), paused + 1, paused + created // 2, paused + created + 1,
           paused + created + deleted // 2, total - 1}
    return sorted(p for p in pts if 0 < p < total)


def test_sigkill_at_every_phase_then_rerun_converges(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)

    # one clean round trip measures where the phases' writes fall
    first = move(eph, tgt)
    settle(tgt)
    move(tgt, eph)
    settle(eph)
    points = kill_points(first.paused, first.created, first.deleted, first.writes)
    assert len(points) >= 6, points

    tried = 0
    for i, k in enumerate(points):
        src, dst = (eph, tgt) if i % 2 == 0 else (tgt, eph)
        killed = engine_cli(*cli_move_args(src, dst), env_extra=seam_env(kill_after=k))
        assert killed.returncode == -signal.SIGKILL, (k, killed.stderr[-2000:])
        tried += 1
        rerun = engine_cli(*cli_move_args(src, dst))
        assert rerun.returncode == 0, (k, rerun.stderr[-3000:])
        report = check(eph, tgt, expect=dst.name)
        assert report.ok, (k, [str(v) for v in report.violations])
        assert {key: canonical(o) for key, o in snapshot(dst).items()} == original, k
        assert snapshot(src) == {}
        settle(dst)
    assert tried == len(points)


def test_a_half_done_move_rolls_back_when_reversed(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)
    total = move(eph, tgt).writes
    settle(tgt)
    move(tgt, eph)
    settle(eph)

    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_after=total // 3))
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(tgt) and snapshot(eph)          # really half done: objects on both sides
    back = engine_cli(*cli_move_args(tgt, eph))     # the operator changes their mind
    assert back.returncode == 0, back.stderr[-3000:]
    assert check(eph, tgt, expect="ephemeral").ok
    assert snapshot(tgt) == {}
    assert {key: canonical(o) for key, o in snapshot(eph).items()} == original


def test_a_source_object_edited_while_the_move_was_stopped_is_copied_again(fresh_clusters) -> None:
    import asyncio
    import base64

    from metal3_pivot.kube import SECRET
    from tests.kit.move import TOPOLOGY, kube

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    first = move(eph, tgt)
    settle(tgt)
    move(tgt, eph)
    settle(eph)
    hosts = sum(1 for k in snapshot(eph) if k.kind == "BareMetalHost")
    end_of_creates = first.paused + 1 + first.created + hosts       # pause, namespace, creates, host statuses

    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_after=end_of_creates))
    assert killed.returncode == -signal.SIGKILL
    secret = sorted(k.name for k in snapshot(eph) if k.kind == "Secret" and k.name.endswith("-bmc-secret"))[0]
    assert any(k.name == secret for k in snapshot(tgt)), "the copy should exist before the edit"

    async def rotate() -> None:
        async with kube(eph) as k:
            await k.patch(SECRET, secret, TOPOLOGY.namespace,
                          {"data": {"password": base64.b64encode(b"rotated-during-the-move").decode()}})
    asyncio.run(rotate())

    rerun = engine_cli(*cli_move_args(eph, tgt))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "changed in source since an earlier run copied them" in rerun.stderr
    moved = next(o for k, o in snapshot(tgt).items() if k.kind == "Secret" and k.name == secret)
    assert base64.b64decode(moved["data"]["password"]) == b"rotated-during-the-move"
    assert check(eph, tgt, expect="target").ok


def test_a_host_copy_left_without_its_status_gets_it_before_the_unpause(fresh_clusters) -> None:
    """A run killed between creating a host's copy and writing its status (found by the live plane's kill
    test: the target's BMO then provisioned that host again). The next run writes the status first."""
    import asyncio
    import json

    from lab.cluster import kube_for
    from metal3_pivot import BMH_PAUSED, BMH_STATUS
    from metal3_pivot.kube import ResourceType

    bmh = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    move(eph, tgt)

    async def strip(name: str, ns: str) -> dict:
        async with kube_for(tgt) as k:
            host = await k.get(bmh, name, ns)
            status = host["status"]
            # the state the killed run left: paused by us, the status only in the annotation we added
            await k.patch(bmh, name, ns, {"metadata": {"annotations": {
                BMH_PAUSED: "metal3-pivot", BMH_STATUS: json.dumps(status),
                "metal3-pivot.io/status-added": "true"}}})
            await k.patch(bmh, name, ns, {"status": None}, sub="status")
            assert not ((await k.get(bmh, name, ns)).get("status") or {}).get("provisioning")
            return status

    async def hosts() -> list[dict]:
        async with kube_for(tgt) as k:
            return [h for h in await k.list(bmh) if (h.get("status") or {}).get("provisioning", {}).get("state")
                    == "provisioned"]
    victim = (asyncio.run(hosts()))[0]
    before = asyncio.run(strip(victim["metadata"]["name"], victim["metadata"]["namespace"]))
    report = move(eph, tgt)                       # the next run: nothing left to copy, one host to mend
    assert report.unpaused >= 1

    async def after() -> dict:
        async with kube_for(tgt) as k:
            return await k.get(bmh, victim["metadata"]["name"], victim["metadata"]["namespace"])
    host = asyncio.run(after())
    assert host["status"]["provisioning"] == before["provisioning"]
    assert BMH_PAUSED not in (host["metadata"].get("annotations") or {})
    assert BMH_STATUS not in (host["metadata"].get("annotations") or {})
