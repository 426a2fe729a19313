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
