"""The move engine on real clusters: parity, round trip, resume after SIGKILL, no writes on dry-run.

Every scenario seeds a fresh pair (lab/data/seed_objects.py: 1 workload cluster, 3 control planes, 2 workers,
1 spare host), moves with the real engine (its CLI where the user-facing path matters), and checks the
invariants with metal3_pivot.verify plus direct comparisons against the original objects.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from metal3_pivot import BMH_STATUS, DELETE_FOR_MOVE, PreflightError
from metal3_pivot.graph import ObjKey
from metal3_pivot.kube import LEASE
from metal3_pivot.lock import LOCK_NAME, LOCK_NAMESPACE
from tests.kit.move import (
    OTHER_NS,
    TOPOLOGY,
    bundle_types,
    canonical,
    check,
    cli_move_args,
    engine_cli,
    kube,
    move,
    resource_versions,
    seed_pair,
    settle,
    snapshot,
)

pytestmark = pytest.mark.cluster


def _by_kind(objs: dict[ObjKey, dict], kind: str) -> list[dict]:
    return [o for k, o in objs.items() if k.kind == kind]


def test_pivot_and_move_back_keep_everything(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    original = snapshot(eph)
    bystanders = {c.name: resource_versions(c, (OTHER_NS,)) for c in (eph, tgt)}
    assert all(bystanders.values())
    assert len(original) > 50

    result = engine_cli(*cli_move_args(eph, tgt))
    assert result.returncode == 0, result.stderr
    assert "moved" in result.stdout

    moved = snapshot(tgt)
    assert set(moved) == set(original)                      # every object, once
    assert snapshot(eph) == {}                              # none left behind
    report = check(eph, tgt, expect="target")
    assert report.ok, report.violations                     # owner chains resolve, nothing paused, no dupes
    uids = {k: o["metadata"]["uid"] for k, o in moved.items()}
    for key, obj in moved.items():
        assert obj["metadata"]["uid"] != original[key]["metadata"]["uid"]
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = next(k for k in moved if k.kind == ref["kind"] and k.name == ref["name"])
            assert ref["uid"] == uids[owner]
        if key.kind == "Secret":
            assert obj["data"] == original[key]["data"]      # byte-identical
            assert base64.b64decode(next(iter(obj["data"].values())))
    for host in _by_kind(moved, "BareMetalHost"):
        carried = json.loads(host["metadata"]["annotations"][BMH_STATUS])
        assert host["status"]["provisioning"]["state"] == carried["provisioning"]["state"]
        assert host["status"]["operationalStatus"] == carried["operationalStatus"]
    for cluster in _by_kind(moved, "Cluster"):
        assert not cluster["spec"].get("paused")
    for c in (eph, tgt):
        assert resource_versions(c, (OTHER_NS,)) == bystanders[c.name]     # other namespaces untouched

    settle(tgt)   # the target's controllers reconcile (rebuild status) before anyone moves back
    back = engine_cli(*cli_move_args(tgt, eph))
    assert back.returncode == 0, back.stderr
    returned = snapshot(eph)
    assert snapshot(tgt) == {}
    assert check(eph, tgt, expect="ephemeral").ok
    assert {k: canonical(o) for k, o in returned.items()} == {k: canonical(o) for k, o in original.items()}


def test_dry_run_and_plan_write_nothing(fresh_clusters, tmp_path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    before = {c.name: resource_versions(c) for c in (eph, tgt)}

    dry = engine_cli(*cli_move_args(eph, tgt), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would move" in dry.stdout
    for output in ("text", "json", "dot"):
        plan = engine_cli("plan", "--kubeconfig", str(eph.kubeconfig), "--to-kubeconfig", str(tgt.kubeconfig),
                          "--namespace", TOPOLOGY.namespace, "--output", output)
        assert plan.returncode == 0, plan.stderr
    parsed = json.loads(engine_cli("plan", "--kubeconfig", str(eph.kubeconfig), "-n", TOPOLOGY.namespace,
                                   "-o", "json").stdout)
    first_level_kinds = {n["kind"] for n in parsed["levels"][0]}
    assert "Cluster" in first_level_kinds and "Machine" not in first_level_kinds
    dot = engine_cli("plan", "--kubeconfig", str(eph.kubeconfig), "-n", TOPOLOGY.namespace, "-o", "dot").stdout
    assert dot.startswith("digraph move {") and "->" in dot

    after = {c.name: resource_versions(c) for c in (eph, tgt)}
    assert after == before


def test_a_second_run_changes_nothing(fresh_clusters) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    first = move(eph, tgt)
    assert first.created == len(snapshot(tgt))
    before = resource_versions(tgt)
    again = move(eph, tgt)
    assert (again.created, again.deleted, again.unpaused, again.writes) == (0, 0, 0, 0)
    assert resource_versions(tgt) == before


def test_the_end_of_a_move_writes_what_a_read_of_the_target_would_say(fresh_clusters) -> None:
    """A move that made every copy itself does not read the target again after its deletes
    (Mover._finish_known): the host statuses, marks and unpauses it then writes come from what it wrote.
    Held here against the read it skips, taken on the real target just before those writes, in both
    directions, with an object whose marks go in annotations (a bare HardwareData sets no field but its
    name). A run that finds an earlier run's copy reads the target, as before."""

    from lab.cluster import kube_for
    from lab.data.seed_objects import BMO
    from metal3_pivot.discovery import discover
    from metal3_pivot.mover import MoveOptions, Mover
    from metal3_pivot.plan import Finish, copy_manager, make_plan, target_copy
    from tests.kit.move import bundle_types

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    ns = TOPOLOGY.namespace

    async def add_bare() -> None:
        async with kube_for(eph) as k:
            await k.create(bundle_types()["HardwareData.metal3.io"],
                           {"apiVersion": BMO, "kind": "HardwareData", "metadata": {"name": "bare", "namespace": ns}})
    asyncio.run(add_bare())
    original = snapshot(eph)

    def shape(finish: Finish) -> tuple[list, list, list]:
        return (sorted((str(n.key), s) for n, s in finish.statuses), sorted(str(n.key) for n in finish.marked),
                sorted((str(n.key), p) for n, p in finish.unpauses))

    class Witness(Mover):
        """Records the end it was given and what the target said just before it was written."""

        def _finish_known(self, plan, left_in_source):   # type: ignore[no-untyped-def]
            self.left = left_in_source
            self.known = super()._finish_known(plan, left_in_source)
            return self.known

        async def restore_host_status(self, missing):   # type: ignore[no-untyped-def]
            self.read = Finish.of(await discover(self.dst, [ns]), self.left)
            self.light = Finish.of(await discover(self.dst, [ns], light=True), self.left)
            return await super().restore_host_status(missing)

    def witnessed(src, dst) -> Witness:   # type: ignore[no-untyped-def]
        async def go() -> Witness:
            async with kube_for(src) as s, kube_for(dst) as d:
                mover = Witness(s, d, MoveOptions(namespaces=(ns,)))
                await mover.run()
                return mover
        return asyncio.run(go())

    forward = witnessed(eph, tgt)
    assert forward.known is not None                        # nothing read after the deletes
    marked, unpaused = shape(forward.read)[1:]
    assert len(marked) == 1 and "HardwareData" in marked[0] and "bare" in marked[0]
    assert len(unpaused) > 5                                # the hosts and the Cluster
    assert shape(forward.known) == shape(forward.read)
    # a light reading (metadata, and the content of hosts and Clusters: what a no-change preview reads)
    # owes the same end as a whole one
    assert shape(forward.light) == shape(forward.read)
    assert check(eph, tgt, expect="target").ok
    assert set(snapshot(tgt)) == set(original)
    settle(tgt)
    assert_light_reading_agrees(tgt, eph, ns)

    back = witnessed(tgt, eph)
    assert back.known is not None
    assert shape(back.known) == shape(back.read)
    assert check(eph, tgt, expect="ephemeral").ok
    settle(eph)

    # an earlier run's copy in the target (as a run killed after one create leaves it): the target is read
    async def one_copy() -> None:
        async with kube_for(eph) as s, kube_for(tgt) as d:
            plan = make_plan(await discover(s, [ns]), await discover(d, [ns]))
            cluster = next(n for k, n in plan.moving.items() if k.kind == "Cluster")
            await d.create(cluster.type.rt, target_copy(cluster, {}, {}), manager=copy_manager(cluster))
    asyncio.run(one_copy())
    resumed = witnessed(eph, tgt)
    assert resumed.known is None
    assert check(eph, tgt, expect="target").ok
    assert set(snapshot(tgt)) == set(original)


def assert_light_reading_agrees(dst, src, ns: str) -> None:
    """`discover(light=True)` against a whole discovery of the same cluster, after a move: the same objects
    move, in the same places, and the end owes the same; here with a host copy whose provisioning status is
    gone (what a run killed between a host's create and its status leaves), which only the host's content
    shows."""

    from lab.cluster import kube_for
    from metal3_pivot.discovery import discover
    from metal3_pivot.plan import Finish, uids
    from tests.kit.move import bundle_types

    rt = bundle_types()["BareMetalHost.metal3.io"]

    async def go() -> None:
        async with kube_for(dst) as d, kube_for(src) as s:
            host = next(h for h in await d.list(rt, ns) if (h.get("status") or {}).get("provisioning"))
            name = host["metadata"]["name"]
            await d.patch(rt, name, ns, {"status": {"provisioning": {"state": ""}}}, sub="status")
            try:
                left = uids(await discover(s, [ns]))
                whole, light = await discover(d, [ns]), await discover(d, [ns], light=True)
                assert light.graph.kind_counts() == whole.graph.kind_counts()
                assert set(light.graph.move_nodes()) == set(whole.graph.move_nodes())
                owed, owed_light = Finish.of(whole, left), Finish.of(light, left)
                assert [str(n.key) for n, _ in owed_light.statuses] == [str(n.key) for n, _ in owed.statuses]
                assert [n.key.name for n, _ in owed.statuses] == [name]
                assert ([str(n.key) for n in owed_light.marked], [p for _, p in owed_light.unpauses]) == (
                    [str(n.key) for n in owed.marked], [p for _, p in owed.unpauses])
            finally:
                await d.patch(rt, name, ns, {"status": host["status"]}, sub="status")
    asyncio.run(go())


def _editing_mover(edit, **opts):   # type: ignore[no-untyped-def]
    """A Mover that calls `edit(mover, plan)` in each reading between its creates and its deletes: what a
    controller that has not seen the pause yet, or a person, can do to the source while a move runs."""
    from metal3_pivot.mover import Mover

    class Editing(Mover):
        readings = 0

        async def keep_originals(self, plan):   # type: ignore[no-untyped-def]
            self.readings += 1
            await edit(self, plan)
            await super().keep_originals(plan)

    return Editing


def _run(mover_type, src, dst, said: list[str], **opts):   # type: ignore[no-untyped-def]

    from lab.cluster import kube_for
    from metal3_pivot.mover import MoveOptions

    async def go():   # type: ignore[no-untyped-def]
        async with kube_for(src) as s, kube_for(dst) as d:
            mover = mover_type(s, d, MoveOptions(namespaces=(TOPOLOGY.namespace,), progress=said.append, **opts))
            try:
                return mover, await mover.run()
            except Exception as err:   # handed to the test, with the mover
                return mover, err
    return asyncio.run(go())


def test_an_object_edited_in_the_source_during_a_move_reaches_the_target_with_its_edit(fresh_clusters) -> None:
    """A source object changed after the move read it (a controller that had not seen the pause yet, a
    person) and before its delete: the delete's resourceVersion precondition (or that of the patch that takes
    its finalizers off) refuses, the run reads both clusters again, rewrites the copy from the source, and
    deletes the object at its new version. Deleted unconditionally (as clusterctl deletes), the edit was lost.
    A change to an object's status alone (which a copy does not hold: CAPI writes a Paused condition on every
    object of a Cluster just paused) costs no new reading: the object is deleted at its new version."""

    from lab.cluster import kube_for

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    ns = TOPOLOGY.namespace
    before = snapshot(eph)
    machine = next(k for k in before if k.kind == "Machine")
    secret = next(k for k in before if k.kind == "Secret")
    others = [k for k in before if k.kind == "Machine" and k != machine]

    async def hold_machine() -> None:        # a finalizer: its delete goes through the patch that strips it
        async with kube_for(eph) as k:
            await k.patch(bundle_types()["Machine.cluster.x-k8s.io"], machine.name, ns,
                          {"metadata": {"finalizers": ["machine.cluster.x-k8s.io"]}})
    asyncio.run(hold_machine())
    original = snapshot(eph)

    async def edit(mover, plan) -> None:   # type: ignore[no-untyped-def]
        if mover.readings == 1:
            for key, patch in ((machine, {"metadata": {"labels": {"edited": "during-the-move"}}}),
                               (secret, {"metadata": {"annotations": {"edited": "during-the-move"}}})):
                await mover.src.patch(plan.moving[key].type.rt, key.name, ns, patch)
        # in each reading, a status alone changes (the second reading's would cost a third, were it a change)
        other = others[mover.readings - 1] if mover.readings <= len(others) else None
        if other in plan.moving:
            await mover.src.patch(plan.moving[other].type.rt, other.name, ns,
                                  {"status": {"phase": ("Failed", "Unknown")[mover.readings - 1]}}, sub="status")

    class AlsoInTheTarget(_editing_mover(edit)):   # type: ignore[misc]
        async def create(self, plan):   # type: ignore[no-untyped-def]
            if self.readings == 1:
                # the target's controllers write the status of paused copies too: the second reading's
                # rewrite of the Machine's copy meets a newer version than it read
                await self.dst.patch(plan.moving[machine].type.rt, machine.name, ns,
                                     {"status": {"phase": "Running"}}, sub="status")
            return await super().create(plan)

    said: list[str] = []
    mover, report = _run(AlsoInTheTarget, eph, tgt, said)
    assert not isinstance(report, Exception), report
    moved = snapshot(tgt)
    assert set(moved) == set(original) and snapshot(eph) == {}
    assert moved[machine]["metadata"]["labels"]["edited"] == "during-the-move"
    assert moved[machine]["metadata"]["finalizers"] == ["machine.cluster.x-k8s.io"]
    assert moved[secret]["metadata"]["annotations"]["edited"] == "during-the-move"
    assert mover.readings == 2
    assert any("changed in ephemeral after the move copied it" in line for line in said), said
    assert any("1 objects' status changed in ephemeral" in line for line in said), said
    assert moved[secret]["data"] == original[secret]["data"]
    assert check(eph, tgt, expect="target").ok
    assert report.deleted == len(original)                   # over both readings, each object once


def test_an_object_edited_between_its_delete_for_move_patch_and_its_delete_reaches_the_target_with_its_edit(
        fresh_clusters) -> None:
    """The delete-for-move patch takes an object's finalizers off and marks it, so a later reading finds a
    source object whose resourceVersion is not the one its copy records, for a reason of our own. An edit
    that lands between that patch and the DELETE (a person, a controller that has not seen the pause) makes
    the DELETE's precondition refuse; the next reading must not take that edit for our patch: it compares
    the copy with what the source would give it now, the finalizers aside (the copy holds the original's),
    and rewrites the copy with the edit and the original's finalizers before the object is deleted."""
    from lab.cluster import kube_for
    from metal3_pivot.kube import Write, add_write_hook

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    ns = TOPOLOGY.namespace
    machine = next(k for k in snapshot(eph) if k.kind == "Machine")
    rt = bundle_types()["Machine.cluster.x-k8s.io"]

    async def hold_machine() -> None:        # a finalizer: its delete goes through the patch that strips it
        async with kube_for(eph) as k:
            await k.patch(rt, machine.name, ns, {"metadata": {"finalizers": ["machine.cluster.x-k8s.io"]}})
    asyncio.run(hold_machine())
    original = snapshot(eph)
    edits: list[str] = []

    async def edit_after_the_mark(write: Write) -> None:
        if (not edits and write.server == eph.server and write.method == "PATCH"
                and write.path == rt.path(ns, machine.name)):
            edits.append(write.path)          # before the edit's own PATCH comes back through this hook
            async with kube_for(eph) as k:
                await k.patch(rt, machine.name, ns, {"metadata": {"labels": {"edited": "after-the-mark"}}})

    said: list[str] = []
    remove = add_write_hook(edit_after_the_mark)
    try:
        mover, report = _run(_editing_mover(_no_edit), eph, tgt, said)
    finally:
        remove()
    assert not isinstance(report, Exception), report
    assert edits, "the Machine's delete-for-move patch was never seen"
    moved = snapshot(tgt)
    assert set(moved) == set(original) and snapshot(eph) == {}
    assert moved[machine]["metadata"]["labels"]["edited"] == "after-the-mark"
    assert moved[machine]["metadata"]["finalizers"] == ["machine.cluster.x-k8s.io"]
    assert DELETE_FOR_MOVE not in (moved[machine]["metadata"].get("annotations") or {})
    assert mover.readings == 2
    assert any("changed in ephemeral after the move copied it" in line for line in said), said
    # the edited Machine alone: the other objects the first reading marked but did not delete compare equal
    assert [line for line in said if "since an earlier run copied them" in line] == [
        "1 objects changed in ephemeral since an earlier run copied them: copying them again"], said
    assert check(eph, tgt, expect="target").ok


async def _no_edit(mover, plan) -> None:   # type: ignore[no-untyped-def]
    return None


def test_a_host_whose_status_changes_before_the_pause_reaches_the_target_with_that_status(fresh_clusters) -> None:
    """The pause writes a host's status into its status annotation, which the copy's status comes from. BMO
    writes no status after the pause, so the annotation must be the status the host has when the pause lands,
    not the one the move read: a host changed in between (BMO, before it saw the pause) is read again."""
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    ns = TOPOLOGY.namespace
    seeded = snapshot(eph)
    host = next(k for k, o in seeded.items() if k.kind == "BareMetalHost" and (o.get("status") or {}).get("poweredOn"))

    from lab.cluster import kube_for
    from metal3_pivot.mover import Mover

    async def running_host() -> None:      # as a live host is: no status annotation until a pause writes it
        async with kube_for(eph) as k:
            await k.patch(bundle_types()["BareMetalHost.metal3.io"], host.name, ns,
                          {"metadata": {"annotations": {BMH_STATUS: None}}})
    asyncio.run(running_host())

    class LateStatus(Mover):
        async def pause(self, plan, *, hosts=True):   # type: ignore[no-untyped-def]
            await self.src.patch(plan.moving[host].type.rt, host.name, ns, {"status": {"poweredOn": False}},
                                 sub="status")
            return await super().pause(plan, hosts=hosts)

    said: list[str] = []
    _, report = _run(LateStatus, eph, tgt, said)
    assert not isinstance(report, Exception), report
    copy = snapshot(tgt)[host]
    assert BMH_STATUS not in (copy["metadata"].get("annotations") or {})   # the pause's, gone with the unpause
    assert copy["status"]["poweredOn"] is False
    assert copy["status"]["provisioning"]["state"] == "provisioned"
    assert snapshot(eph) == {} and check(eph, tgt, expect="target").ok


def test_a_source_that_keeps_changing_stops_the_move_with_nothing_lost(fresh_clusters) -> None:
    """An object edited in every reading (a controller that ignores the pause): the move stops with
    SourceChangedError (exit 9) after its readings, the edited object still in the source; once the
    writer stops, the next run finishes the move with the last edit."""
    from metal3_pivot.errors import SourceChangedError
    from metal3_pivot.mover import READINGS

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    ns = TOPOLOGY.namespace
    original = snapshot(eph)
    machine = next(k for k in original if k.kind == "Machine")

    async def edit(mover, plan) -> None:   # type: ignore[no-untyped-def]
        await mover.src.patch(plan.moving[machine].type.rt, machine.name, ns,
                              {"metadata": {"labels": {"edited": str(mover.readings)}}})

    said: list[str] = []
    mover, err = _run(_editing_mover(edit), eph, tgt, said)
    assert isinstance(err, SourceChangedError), err
    assert SourceChangedError.exit_code == 9 and mover.readings == READINGS
    assert "kept changing in ephemeral" in str(err) and "run again" in str(err)
    left = snapshot(eph)
    assert machine in left and left[machine]["metadata"]["labels"]["edited"] == str(READINGS)
    assert set(left) | set(snapshot(tgt)) == set(original)   # each object in one cluster or, copied, in both

    finished = move(eph, tgt)
    assert finished.deleted
    moved = snapshot(tgt)
    assert set(moved) == set(original) and snapshot(eph) == {}
    assert moved[machine]["metadata"]["labels"]["edited"] == str(READINGS)
    assert check(eph, tgt, expect="target").ok


def test_an_object_created_in_the_source_during_a_move_under_a_moving_owner_reaches_the_target(
        fresh_clusters) -> None:
    """A child a controller creates in the source after the move read it (before it saw the pause: a
    Machine's bootstrap Secret) is not in the plan; copied by nobody, it went with its owner to the source's
    garbage collector. The check before the first delete finds it, and a second reading moves it."""
    from metal3_pivot.kube import SECRET

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    ns = TOPOLOGY.namespace
    original = snapshot(eph)
    machine = next(k for k in original if k.kind == "Machine")
    born = ObjKey("", "Secret", ns, "born-during-the-move")

    async def create_child(mover, plan) -> None:   # type: ignore[no-untyped-def]
        if mover.readings == 1:
            owner = plan.moving[machine]
            await mover.src.create(SECRET, {
                "apiVersion": "v1", "kind": "Secret", "data": {"value": base64.b64encode(b"kept").decode()},
                "metadata": {"name": born.name, "namespace": ns, "ownerReferences": [
                    {"apiVersion": owner.obj["apiVersion"], "kind": "Machine", "name": machine.name,
                     "uid": owner.uid}]}})

    said: list[str] = []
    mover, report = _run(_editing_mover(create_child), eph, tgt, said)
    assert not isinstance(report, Exception), report
    moved = snapshot(tgt)
    assert born in moved and set(moved) == set(original) | {born}
    assert base64.b64decode(moved[born]["data"]["value"]) == b"kept"
    assert moved[born]["metadata"]["ownerReferences"][0]["uid"] == moved[machine]["metadata"]["uid"]
    assert snapshot(eph) == {} and check(eph, tgt, expect="target").ok
    assert mover.readings == 2
    assert any(f"1 objects appeared in ephemeral after the move read it, owned by objects it moves (Secret {ns}/"
               f"{born.name})" in line for line in said), said


def test_a_move_its_caller_checked_reads_both_clusters_only_under_the_lock(fresh_clusters) -> None:
    """The Pulumi layer's update runs the Mover seconds after its own `check` read both clusters, ran the
    pre-flight and read the lock (MoveOptions.checked_by_caller): the Mover skips its read-only first reading.
    It must still refuse what the pre-flight refuses by then, under the lock, writing nothing and leaving no
    Lease; and move everything as a move that reads twice does."""
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    original = snapshot(eph)
    types = bundle_types()
    cluster_rt = next(r for r in types.values() if (r.group, r.kind) == ("cluster.x-k8s.io", "Cluster"))
    name = next(k.name for k in original if k.kind == "Cluster")

    async def pause(paused: bool | None) -> None:
        async with kube(eph) as k:
            await k.patch(cluster_rt, name, TOPOLOGY.namespace, {"spec": {"paused": paused}})

    async def leases() -> list[object]:
        found = []
        for c in (eph, tgt):
            async with kube(c) as k:
                found.append(await k.get(LEASE, LOCK_NAME, LOCK_NAMESPACE))
        return found

    # paused by someone else after the caller's check passed: refused under the lock, nothing written
    asyncio.run(pause(True))
    before = {c.name: resource_versions(c) for c in (eph, tgt)}
    with pytest.raises(PreflightError, match="not by metal3-pivot"):
        move(eph, tgt, checked_by_caller=True)
    assert {c.name: resource_versions(c) for c in (eph, tgt)} == before
    assert asyncio.run(leases()) == [None, None]

    asyncio.run(pause(None))
    report = move(eph, tgt, checked_by_caller=True)
    assert "discover" not in report.phases and "preflight" not in report.phases, report.phases
    assert report.phases.get("rediscover") is not None and sum(report.moved.values()) == len(original)
    assert set(snapshot(tgt)) == set(original) and snapshot(eph) == {}
    assert check(eph, tgt, expect="target").ok
    assert asyncio.run(leases()) == [None, None]
