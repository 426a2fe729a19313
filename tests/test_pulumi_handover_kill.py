"""A `pulumi up` whose CLI dies inside the Ironic handover is finished by the next `pulumi up`.

Why this case: Pulumi's engine has a race in exactly that stretch (docs/pulumi-layer.md, "Destroy": a
delete step of a resource with `deleted_with` reads a map the step generator writes), and it once killed
the CLI in a clean-clone run. The CLI gone, what is left is what any crash leaves: pending operations in
the state, the old Ironic deleted (delete before create), the new one maybe not made yet, the objects not
moved. The next plain `up` must make Ironic where it goes, never run two, and go on to the move. (A kill that
fell inside a checkpoint's save once left the stack unreadable: see tests/test_pulumi_file_state.py.)

The real pulumi CLI, our program, real clusters. As soon as the ephemeral cluster's Ironic Deployment is
gone, the CLI and every process it started (language host, program, providers) are SIGKILLed at once, as
a lost machine or an OOM kill of the group would end them: nothing finishes or cleans up. (The CLI's own
crash leaves its plugins running, orphaned, and one of them may still finish the call it was making;
killing the whole tree is the harder case for the next `up`, and leaves no process behind the test.)

Beside it, the handover done twice in a row with no pause between: a move back started right after a
pivot once found the ephemeral cluster's Ironic namespace still terminating, took it over, and failed, and
every later `up` with it (components/objects.py, `await_annotations`). The handover now leaves that
namespace where it was (components/ironic.py): the pivot must end with it there, live, and empty of Ironic.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from lab.cluster import LocalCluster, kube_for
from lab.plane.spawn import kill_tree
from metal3_pivot.kube import DEPLOYMENTS, NAMESPACE
from tests.kit.ironic import IronicWatcher, ironic_on
from tests.kit.move import canonical_snapshot, check, settle, snapshot
from tests.kit.pulumi_cli import forget_objects, installed_pivot, object_records

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

IRONIC_NS = "baremetal-operator-system"


def _wait_until_ironic_leaves(cluster: LocalCluster, proc_alive: object, timeout: float = 300) -> bool:
    """True once the cluster has no Ironic Deployment (polled every 10 ms); False if the `up` ended first."""
    async def go() -> bool:
        async with kube_for(cluster) as k:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if await k.get(DEPLOYMENTS, "ironic", IRONIC_NS) is None:
                    return True
                if not proc_alive():  # type: ignore[operator]
                    return False
                await asyncio.sleep(0.01)
        return False
    return asyncio.run(go())


def test_an_up_killed_inside_the_ironic_handover_is_finished_by_the_next_up(fresh_clusters, tmp_path: Path) -> None:
    eph, tgt, original, p = installed_pivot(fresh_clusters, tmp_path / "proj")
    assert ironic_on(eph) and not ironic_on(tgt)

    p.set_config("location", "target")
    watcher = IronicWatcher([eph, tgt])
    watcher.start()
    try:
        proc = p.start("up", "--yes", "--skip-preview")
        left = _wait_until_ironic_leaves(eph, lambda: proc.poll() is None)
        if proc.poll() is None:
            kill_tree(proc.pid)
        killed = p.finish(proc)
        assert left, f"the up ended before the ephemeral Ironic went:\n{killed.output[-3000:]}"
        assert killed.returncode == -signal.SIGKILL, killed.output[-3000:]
        assert snapshot(tgt) == {}, "killed in the handover, yet objects reached the target"
        # the kill may fall inside a checkpoint's save; the backend's sidecars, which a kill can leave
        # empty, are never written on our URL (tests/test_pulumi_file_state.py)
        assert not list((tmp_path / "proj" / "state").rglob("*.attrs"))

        # what the crash left: Pulumi's lock on the stack (only a CLI that ends releases it), which a
        # plain `up` names with its remedy; `pulumi cancel` removes it, and then `up` finishes the
        # handover and the move
        locked = p.run("up", "--yes", "--skip-preview")
        assert locked.returncode != 0 and "pulumi cancel" in locked.output, locked.output[-3000:]
        p.run("cancel", "--yes", check=True)
        finished = p.run("up", "--yes", "--skip-preview")
        assert finished.returncode == 0, finished.output[-4000:]
    finally:
        watcher.stop()
    assert watcher.max_seen <= 1, f"two Ironics at once ({watcher.samples} samples)"
    assert ironic_on(tgt) and not ironic_on(eph)
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original and snapshot(eph) == {}
    p.run("up", "--yes", "--expect-no-changes", check=True)


def _namespace(cluster: LocalCluster) -> dict[str, object] | None:
    async def go() -> dict[str, object] | None:
        async with kube_for(cluster) as k:
            return await k.get(NAMESPACE, IRONIC_NS)
    return asyncio.run(go())


def test_a_move_back_started_right_after_the_pivot_hands_ironic_back(fresh_clusters, tmp_path: Path) -> None:
    eph, tgt, original, p = installed_pivot(fresh_clusters, tmp_path / "proj")

    p.set_config("location", "target")
    p.run("up", "--yes", "--skip-preview", check=True)
    # the old Ironic namespace stays, not being deleted: the move back's create takes it over as it is
    left = _namespace(eph)
    assert left is not None, "the pivot deleted the ephemeral cluster's Ironic namespace"
    assert not left["metadata"].get("deletionTimestamp"), "the ephemeral Ironic namespace is terminating"  # type: ignore[index]
    assert not ironic_on(eph)
    settle(tgt)                    # no controllers here: the statuses they would write (about a second)

    p.set_config("location", "ephemeral")
    back = p.run("up", "--yes", "--skip-preview")
    assert back.returncode == 0, back.output[-4000:]
    assert ironic_on(eph) and not ironic_on(tgt)
    assert check(eph, tgt, expect="ephemeral").ok
    assert canonical_snapshot(eph) == original and snapshot(tgt) == {}
    p.run("up", "--yes", "--expect-no-changes", check=True)


BMO_DEPLOYMENT = "ironic-deployment-baremetal-operator-system-baremetal-operator-controller-manager"


def test_objects_a_dead_up_made_but_never_recorded_are_taken_over_by_the_next_up(fresh_clusters,
                                                                               tmp_path: Path) -> None:
    """A kill between the API server's create and the state's save leaves the object on the cluster and no
    record of it; the next `up` creates it again. A kill sweep hit it in BMO's Deployment: that second
    create, under another field manager, was refused ("Apply failed with 2 conflicts", the server-defaulted
    `valueFrom.fieldRef`), and so was every `up` after. The state exported, *every* Kubernetes object's
    record taken out (and the references to them) and imported again leaves what such a kill leaves for
    each of them, without depending on when a kill falls; with the server's defaults written out in what
    the stack declares (components/objects.py, `with_server_defaults`) each second create must agree with
    the first and take the object over. The webhook configurations, which this lab does not declare (no
    Deployment is awaited here), are checked the same way in the live lab (tests/test_live_pivot.py) and,
    with every other kind, against the API server alone in tests/test_second_create.py."""
    eph, tgt, original, p = installed_pivot(fresh_clusters, tmp_path / "proj")
    forgotten = forget_objects(p, tmp_path / "forgotten.json")
    assert any(u.endswith("::" + BMO_DEPLOYMENT) for u in forgotten) and len(forgotten) > 50, forgotten

    again = p.run("up", "--yes", "--skip-preview")
    assert again.returncode == 0, again.output[-4000:]
    after = json.loads(p.run("stack", "export", check=True).stdout)["deployment"]["resources"]
    assert object_records(after) == forgotten
    assert ironic_on(eph) and not ironic_on(tgt)
    assert canonical_snapshot(eph) == original and snapshot(tgt) == {}
    p.run("up", "--yes", "--expect-no-changes", check=True)
