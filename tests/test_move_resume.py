"""Resume: the engine CLI SIGKILLed after k API writes, in every phase and in both directions, then run
again. Every run must converge to the same state as an uninterrupted move, and a half-done move must
also roll back when the direction is reversed."""

from __future__ import annotations

import signal

import pytest

from lab.seams import seam_env
from metal3_pivot.plan import COPY_MANAGER, SOURCE_UID, SOURCE_VERSION, copy_marks
from tests.kit.move import (
    canonical,
    check,
    cli_move_args,
    engine_cli,
    move,
    resource_versions,
    seed_pair,
    settle,
    snapshot,
)

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
        # objects the killed run marked for deletion carry a version of our patch's: not an edit to copy again
        assert "since an earlier run copied them" not in rerun.stderr, (k, rerun.stderr[-3000:])
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


def test_a_move_rolled_back_after_its_deletes_began_leaves_the_originals_as_they_were(fresh_clusters) -> None:
    """Killed in its delete phase, right after marking a Machine delete-for-move (and taking its finalizers
    off) but before deleting it, then reversed: the roll-back takes the mark off and gives the finalizers
    back (from the copy) before deleting the copies. Left on, the mark read as another tool's move and the
    next pivot was refused."""
    import asyncio
    import re

    from lab.cluster import kube_for
    from metal3_pivot import DELETE_FOR_MOVE
    from tests.kit.move import TOPOLOGY, bundle_types, canonical_snapshot

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)

    machines = [key for key in snapshot(eph) if key.kind == "Machine"]

    async def finalize() -> None:        # as CAPI's Machine controller leaves it (the lab seed has none)
        rt = bundle_types()["Machine.cluster.x-k8s.io"]
        async with kube_for(eph) as k:
            for key in machines:
                await k.patch(rt, key.name, key.namespace, {"metadata": {"finalizers": ["machine.cluster.x-k8s.io"]}})
    asyncio.run(finalize())
    original = canonical_snapshot(eph)
    machine = (rf"^PATCH {re.escape(eph.server)}/apis/cluster\.x-k8s\.io/[^/]+/namespaces/{TOPOLOGY.namespace}"
               r"/machines/[^/?]+(\?|$)")
    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_on=machine))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    marked = [k for k, o in snapshot(eph).items() if DELETE_FOR_MOVE in (o["metadata"].get("annotations") or {})]
    assert marked and {k.kind for k in marked} == {"Machine"}, marked     # one, or more in flight with it

    back = engine_cli(*cli_move_args(tgt, eph))
    assert back.returncode == 0, back.stderr[-3000:]
    assert "that an interrupted move had marked for deletion" in back.stderr
    assert check(eph, tgt, expect="ephemeral").ok and snapshot(tgt) == {}
    assert {key: canonical(o) for key, o in snapshot(eph).items()} == original
    assert not any(DELETE_FOR_MOVE in (o["metadata"].get("annotations") or {}) for o in snapshot(eph).values())
    assert snapshot(eph)[marked[0]]["metadata"].get("finalizers")

    again = engine_cli(*cli_move_args(eph, tgt))
    assert again.returncode == 0, again.stderr[-3000:]
    assert check(eph, tgt, expect="target").ok


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
    secret, legacy = sorted(k.name for k in snapshot(eph) if k.kind == "Secret" and k.name.endswith("-bmc-secret"))[:2]
    assert {secret, legacy} <= {k.name for k in snapshot(tgt)}, "the copies should exist before the edit"

    async def as_made_before_2026_12_01() -> None:
        """The second copy as a run of an earlier version left it: its record in annotations, created by a
        manager of another name."""
        async with kube(tgt) as k:
            copy = await k.get(SECRET, legacy, TOPOLOGY.namespace)
            [(uid, version)] = copy_marks(copy).items()
            entries = [{**e, "manager": "an-earlier-metal3-pivot"} if e["manager"].startswith(COPY_MANAGER) else e
                       for e in copy["metadata"]["managedFields"]]
            await k.patch(SECRET, legacy, TOPOLOGY.namespace, {"metadata": {
                "managedFields": entries, "annotations": {SOURCE_UID: uid, SOURCE_VERSION: version}}})
    asyncio.run(as_made_before_2026_12_01())

    async def rotate(name: str) -> dict:
        async with kube(eph) as k:
            return await k.patch(SECRET, name, TOPOLOGY.namespace,
                                 {"data": {"password": base64.b64encode(b"rotated-during-the-move").decode()}})
    rotated = asyncio.run(rotate(secret))
    asyncio.run(rotate(legacy))

    rerun = engine_cli(*cli_move_args(eph, tgt))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "2 objects changed in source since an earlier run copied them" in rerun.stderr
    moved = {k.name: o for k, o in snapshot(tgt).items() if k.kind == "Secret" and k.name in (secret, legacy)}
    for obj in moved.values():
        assert base64.b64decode(obj["data"]["password"]) == b"rotated-during-the-move"
        assert SOURCE_UID not in (obj["metadata"].get("annotations") or {})
    assert check(eph, tgt, expect="target").ok
    # the rewritten copy records its source once, at the version it was copied again from
    assert copy_marks(moved[secret]) == {rotated["metadata"]["uid"]: rotated["metadata"]["resourceVersion"]}


def test_a_run_that_finds_its_own_delete_for_move_marks_copies_nothing_again(fresh_clusters) -> None:
    """A run killed in its delete phase leaves source objects marked delete-for-move, their finalizers off, at
    a version their copies do not record. The next run takes that for its own patch (the copy compared with
    what the source would give it now, the finalizers aside: plan.copy_is_current): no copy is written again,
    and the copies keep the originals' finalizers. A kill leaves only the few marks in flight; here every
    object of every kind is marked as the delete phase marks it, so the comparison meets each kind as the
    API server returns it."""
    import asyncio

    from lab.data.seed import type_index
    from metal3_pivot import DELETE_FOR_MOVE
    from tests.kit.move import bundle_types, canonical_snapshot, kube

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    first = move(eph, tgt)
    settle(tgt)
    move(tgt, eph)
    settle(eph)
    index = type_index(bundle_types())
    held = [k for k in snapshot(eph) if k.kind in ("Machine", "BareMetalHost")]

    async def finalize() -> None:        # as the live controllers leave them (the lab seed has none)
        async with kube(eph) as k:
            for key in held:
                await k.patch(index[(key.group, key.kind)], key.name, key.namespace,
                              {"metadata": {"finalizers": [f"{key.kind.lower()}.example/held"]}})
    asyncio.run(finalize())
    original = canonical_snapshot(eph)
    hosts = sum(1 for k in original if k.kind == "BareMetalHost")
    end_of_creates = first.paused + 1 + first.created + hosts       # pause, namespace, creates, host statuses
    # killed after the delete phase's first write, a delete-for-move mark (never a DELETE: each object's
    # DELETE follows its own mark), which the test then puts on every object anyway. Killing at the last
    # create instead left one copy missing in a clean-clone run (2026-12-04): the writes before the delete
    # phase are not always exactly the first move's count, and one more moved the kill a create early.
    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_after=end_of_creates + 1))
    assert killed.returncode == -signal.SIGKILL

    copies = snapshot(tgt)
    assert set(copies) == set(original), "every copy should exist before the marks"

    async def mark_all() -> None:         # _delete_one's patch, on every object
        async with kube(eph) as k:
            for key in original:
                await k.patch(index[(key.group, key.kind)], key.name, key.namespace,
                              {"metadata": {"annotations": {DELETE_FOR_MOVE: ""}, "finalizers": None}})
    asyncio.run(mark_all())

    rerun = engine_cli(*cli_move_args(eph, tgt))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "since an earlier run copied them" not in rerun.stderr, rerun.stderr[-3000:]
    assert snapshot(eph) == {} and check(eph, tgt, expect="target").ok
    moved = canonical_snapshot(tgt)
    assert moved == original
    assert all(moved[k]["metadata"].get("finalizers") for k in held)


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


def test_a_moved_host_without_its_status_gets_it_when_nothing_else_is_left_to_do(fresh_clusters) -> None:
    """A host copy of a finished move (its creator's name says it is ours), unpaused, that has lost its
    provisioning status but carries it in its status annotation. Nothing is left to copy, delete or unpause,
    and yet the run is not "nothing to move": the end's writes (plan.Finish) count as work, so it writes
    the status, the one object it touches; a run after it writes nothing."""
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

    async def provisioned() -> dict:
        async with kube_for(tgt) as k:
            return next(h for h in await k.list(bmh)
                        if (h.get("status") or {}).get("provisioning", {}).get("state") == "provisioned")
    victim = asyncio.run(provisioned())
    name, ns = victim["metadata"]["name"], victim["metadata"]["namespace"]
    assert copy_marks(victim) and BMH_PAUSED not in (victim["metadata"].get("annotations") or {})

    async def lose_status() -> None:
        async with kube_for(tgt) as k:
            await k.patch(bmh, name, ns, {"metadata": {"annotations": {BMH_STATUS: json.dumps(victim["status"])}}})
            await k.patch(bmh, name, ns, {"status": None}, sub="status")
    asyncio.run(lose_status())
    before = resource_versions(tgt)

    report = move(eph, tgt)
    after = resource_versions(tgt)
    assert (report.created, report.deleted, report.unpaused) == (0, 0, 0)
    assert {k for k in after if after[k] != before[k]} == {k for k in after if k.kind == "BareMetalHost"
                                                            and k.name == name}

    async def host() -> dict:
        async with kube_for(tgt) as k:
            return await k.get(bmh, name, ns)
    assert asyncio.run(host())["status"]["provisioning"] == victim["status"]["provisioning"]
    move(eph, tgt)
    assert resource_versions(tgt) == after


def test_copies_record_their_source_in_their_creators_name_and_the_move_leaves_no_mark_to_strip(
        fresh_clusters) -> None:
    """The marks a re-run pairs copies by live in the name of the field manager that created each copy
    (plan.copy_manager): recorded by the API server with the create itself, so a run killed mid-create
    leaves copies that are recognised, and a finished move has no mark to take off (the strip was a
    quarter of a move at 1,000 hosts). Also the API server's side of `marked_by_annotation`: a manager
    whose create set nothing but a name is not kept, so such a copy carries its marks in annotations."""
    import asyncio

    from lab.cluster import kube_for
    from metal3_pivot.kube import CONFIGMAP

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    original = seed_pair(clusters)

    async def bare_create() -> tuple[list[str], list[str]]:
        async with kube_for(tgt) as k:
            bare = await k.create(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "bare", "namespace": "default"}},
                                  manager=f"{COPY_MANAGER}x@1")
            full = await k.create(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "full", "namespace": "default"},
                                              "data": {"a": "b"}}, manager=f"{COPY_MANAGER}x@1")
            await k.delete(CONFIGMAP, "bare", "default")
            await k.delete(CONFIGMAP, "full", "default")
            return ([e["manager"] for e in bare["metadata"].get("managedFields") or []],
                    [e["manager"] for e in full["metadata"].get("managedFields") or []])
    bare, full = asyncio.run(bare_create())
    assert bare == [] and full == [f"{COPY_MANAGER}x@1"]

    sources = {k: o["metadata"]["uid"] for k, o in snapshot(eph).items()}
    move(eph, tgt)
    for key, obj in snapshot(tgt).items():
        # one record, naming the source; no annotation of ours (the seed has no object that needs one)
        assert list(copy_marks(obj)) == [sources[key]], key
        assert SOURCE_UID not in (obj["metadata"].get("annotations") or {}), key
    settle(tgt)

    # the next move killed a third of the way in: the copies made so far are recognised by their creator's name
    total = move(tgt, eph).writes
    settle(eph)
    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_after=total // 3))
    assert killed.returncode == -signal.SIGKILL
    half, sources = snapshot(tgt), {k: o["metadata"]["uid"] for k, o in snapshot(eph).items()}
    assert half and sources
    assert {k: list(copy_marks(o)) for k, o in half.items()} == {k: [sources[k]] for k in half}
    rerun = engine_cli(*cli_move_args(eph, tgt))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "removing the move's marks" not in rerun.stderr
    assert check(eph, tgt, expect="target").ok
    assert {key: canonical(o) for key, o in snapshot(tgt).items()} == original
    assert {k: list(copy_marks(o)) for k, o in snapshot(tgt).items()} == {k: [sources[k]] for k in original}


def test_copies_whose_managed_fields_are_restored_keep_one_record_and_a_run_killed_before_the_restore_is_finished(
        fresh_clusters, tmp_path) -> None:
    """Objects a server-side-apply manager owns fields of (the live controllers apply Machines, KubeadmConfigs,
    Metal3Machines: the benchmark's seed) get the source's managedFields, as clusterctl gives them, and the
    copy's record goes on as an entry of its own that owns no field of the object: nothing is left to strip
    (3,000 PATCHes at 1,000 hosts). A run killed between such a copy's create and its restore leaves a copy
    that the next run recognises and restores before it deletes the source, where the managedFields come from."""
    import asyncio
    import json

    from lab.cluster import kube_for
    from lab.data import crds, live_metadata
    from lab.data.seed import seed
    from lab.seams import seam_env
    from metal3_pivot.graph import ObjKey
    from metal3_pivot.plan import COPY_RECORD_FIELDS, restore_pending
    from tests.kit.move import TOPOLOGY
    from tests.kit.parity import everything, field_owners, our_marks

    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]

    async def seed_live() -> None:
        async with kube_for(eph) as k:
            await seed(k, TOPOLOGY, crds.bundle().resource_types(), live=live_metadata.load())
    asyncio.run(seed_live())
    ns = (TOPOLOGY.namespace,)

    def applied_in(cluster) -> dict:
        return {k: o for k, o in everything(cluster, ns).items()
                if any(e.get("operation") == "Apply" for e in o["metadata"].get("managedFields") or ())}

    sources = applied_in(eph)
    assert {"Machine", "KubeadmConfig", "Metal3Machine"} <= {k.kind for k in sources}
    journal = tmp_path / "writes.jsonl"
    out = engine_cli(*cli_move_args(eph, tgt), "--concurrency", "1", env_extra=seam_env(journal=journal))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "removing the move's marks" not in out.stderr
    record = json.dumps(COPY_RECORD_FIELDS, sort_keys=True)
    copies = everything(tgt, ns)
    assert our_marks(copies) == {}
    for key, src in sources.items():
        owners = field_owners(copies[key])
        mine = [o for o in owners if o[0].startswith(COPY_MANAGER)]
        assert [(m.partition("@")[0], op, f) for m, op, f in mine] == [
            (f"{COPY_MANAGER}{src['metadata']['uid']}", "Update", record)], key
        assert [o for o in owners if o not in mine] == field_owners(src), key
    # one write each in the target after its create: the restore (no strip)
    writes = [json.loads(line) for line in journal.read_text().splitlines()]
    to_target = [w for w in writes if w["server"] == tgt.server and w["method"] == "PATCH"]
    def path_of(key: ObjKey) -> str:          # the kinds applied have regular plurals
        return f"/{key.kind.lower()}s/{key.name}"
    for key in sources:
        assert sum(1 for w in to_target if w["path"].endswith(path_of(key))) == 1, key

    # the same move again, killed right after the first Machine's create, before its restore
    settle(tgt)
    move(tgt, eph)
    settle(eph)
    killed = engine_cli(*cli_move_args(eph, tgt), env_extra=seam_env(kill_on=r"^POST [^?]*/machines(\?|$)"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    sources = applied_in(eph)
    half = everything(tgt, ns)
    pending = [k for k in sources if k in half and restore_pending(sources[k], half[k])]
    assert pending, sorted(map(str, half))
    assert all(copy_marks(half[k]) == {sources[k]["metadata"]["uid"]: sources[k]["metadata"]["resourceVersion"]}
               for k in pending)
    rerun = engine_cli(*cli_move_args(eph, tgt))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "restoring the managedFields of" in rerun.stderr
    copies = everything(tgt, ns)
    for key, src in sources.items():
        # the sources are the move back's copies: their record of that move is not carried over
        owners = field_owners(copies[key])
        mine = [o for o in owners if o[0].startswith(COPY_MANAGER)]
        assert [m.partition("@")[0] for m, _, _ in mine] == [f"{COPY_MANAGER}{src['metadata']['uid']}"], key
        assert [o for o in owners if o not in mine] == [o for o in field_owners(src)
                                                         if not o[0].startswith(COPY_MANAGER)], key
    assert check(eph, tgt, expect="target").ok
