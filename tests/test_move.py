"""The move engine on real clusters: parity, round trip, resume after SIGKILL, no writes on dry-run.

Every scenario seeds a fresh pair (lab/data/seed_objects.py: 1 workload cluster, 3 control planes, 2 workers,
1 spare host), moves with the real engine (its CLI where the user-facing path matters), and checks the
invariants with metal3_pivot.verify plus direct comparisons against the original objects.
"""

from __future__ import annotations

import base64
import json

import pytest

from metal3_pivot import BMH_STATUS
from metal3_pivot.graph import ObjKey
from tests.kit.move import (
    OTHER_NS,
    TOPOLOGY,
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
    import asyncio

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
    assert check(eph, tgt, expect="target").ok
    assert set(snapshot(tgt)) == set(original)
    settle(tgt)

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
