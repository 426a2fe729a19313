"""API faults during a move: each ends in a completed move or a clean stop with a clear error, and a
re-run (or a reversal) leaves every object in exactly one cluster, intact.

- a fault-injecting proxy in front of the target apiserver: 429s, 500s, stalls past the client timeout,
  dropped connections, and requests executed whose answer is lost;
- the target's kube-apiserver killed and restarted in the middle of a move;
- creates rejected by the target's schema (admission) halfway through.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.faultproxy import FaultProxy, FaultRates
from metal3_pivot.errors import InvalidObjectError, PivotError
from metal3_pivot.kube import CRD, Kube, load_kubeconfig
from metal3_pivot.mover import MoveOptions, Mover
from tests.kit.env import ROOT, tool_env
from tests.kit.move import (
    TOPOLOGY,
    canonical_snapshot,
    check,
    cli_move_args,
    engine_cli,
    move,
    seed_pair,
    snapshot,
)

pytestmark = pytest.mark.cluster


def test_move_through_a_faulty_target_api(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)
    proxy = FaultProxy(tgt, FaultRates(throttle=0.05, error=0.05, stall=0.01, drop=0.03, lost=0.03),
                       stall_seconds=4).start()
    try:
        flaky = proxy.kubeconfig(tmp_path / "flaky.kubeconfig")

        async def go() -> None:
            async with Kube(load_kubeconfig(eph.kubeconfig), name="source") as s, \
                    Kube(load_kubeconfig(flaky), name="target", timeout=2, retries=10) as d:
                await Mover(s, d, MoveOptions(namespaces=(TOPOLOGY.namespace,))).run()

        outcome = "completed"
        try:
            asyncio.run(go())
        except PivotError as err:                 # a clean stop is allowed; losing anything is not
            outcome = f"stopped: {type(err).__name__}"
        stats = proxy.stats
    finally:
        proxy.stop()
    print(f"faults injected: {stats.injected} of {stats.requests} requests; first run {outcome}")
    assert sum(stats.injected.values()) >= 10, stats
    if outcome != "completed":
        move(eph, tgt)                            # the re-run, without faults, finishes it
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original


def test_target_apiserver_restarted_mid_move(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)
    mover = subprocess.Popen([sys.executable, "-m", "metal3_pivot.cli", *cli_move_args(eph, tgt), "--concurrency", "2"],
                             cwd=ROOT, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(snapshot(tgt)) < 10 and mover.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mover.poll() is None, "the move finished before the restart: nothing was tested"
    tgt.restart("kube-apiserver", down_for=1.0)
    _, err = mover.communicate(timeout=300)
    if mover.returncode != 0:
        assert mover.returncode == 3 and "cannot reach" in err, err[-2000:]   # a clean, specific stop
        rerun = engine_cli(*cli_move_args(eph, tgt))
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original


def test_creates_rejected_by_the_target_stop_cleanly_and_roll_back(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)

    async def stricter_hosts() -> None:
        """The target's BareMetalHost schema now requires a field the source's hosts lack."""
        async with Kube(load_kubeconfig(tgt.kubeconfig)) as k:
            crd = await k.get(CRD, "baremetalhosts.metal3.io")
            assert crd is not None
            version = next(v for v in crd["spec"]["versions"] if v["storage"])
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            spec["required"] = [*spec.get("required", []), "hardwareProfile"]
            await k.replace(CRD, crd)
    asyncio.run(stricter_hosts())
    time.sleep(1)

    with pytest.raises(InvalidObjectError) as err:
        move(eph, tgt)
    assert "hardwareProfile" in str(err.value)
    assert len(snapshot(eph)) == len(original)          # nothing deleted from the source
    back = engine_cli(*cli_move_args(tgt, eph))          # the operator reverses: roll back
    assert back.returncode == 0, back.stderr[-2000:]
    assert check(eph, tgt, expect="ephemeral").ok
    assert snapshot(tgt) == {}
    assert canonical_snapshot(eph) == original
