"""Our engine against the reference: the same seed moved by `clusterctl move` and by us must give the
same target (differences we intend are listed in docs/architecture.md), and each tool must be able to
move back what the other moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.move import canonical, check, clusterctl_move, diff_paths, move, seed_pair, settle, snapshot

pytestmark = pytest.mark.cluster


def test_differential_against_clusterctl(fresh_clusters, tmp_path: Path) -> None:
    theirs = fresh_clusters()
    ours = fresh_clusters()
    seed_pair(theirs)
    seed_pair(ours)
    ref = clusterctl_move(theirs["ephemeral"], theirs["target"], tmp_path)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    move(ours["ephemeral"], ours["target"])
    # clusterctl rewrites ownerReferences in Go map order, we keep the source's order: compare as sets
    a = {k: canonical(o, sort_owners=True) for k, o in snapshot(theirs["target"]).items()}
    b = {k: canonical(o, sort_owners=True) for k, o in snapshot(ours["target"]).items()}
    assert sorted(set(a) ^ set(b)) == []
    different = {str(k): diff_paths(a[k], b[k]) for k in a if a[k] != b[k]}
    assert different == {}
    assert snapshot(theirs["ephemeral"]) == snapshot(ours["ephemeral"]) == {}


def test_interop_each_tool_moves_back_what_the_other_moved(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    original = {k: canonical(o, sort_owners=True) for k, o in snapshot(eph).items()}

    move(eph, tgt)                                           # ours forward
    settle(tgt)
    back = clusterctl_move(tgt, eph, tmp_path)               # clusterctl back
    assert back.returncode == 0, back.stdout + back.stderr
    assert check(eph, tgt, expect="ephemeral").ok
    assert {k: canonical(o, sort_owners=True) for k, o in snapshot(eph).items()} == original

    settle(eph)
    fwd = clusterctl_move(eph, tgt, tmp_path)                # clusterctl forward
    assert fwd.returncode == 0, fwd.stdout + fwd.stderr
    settle(tgt)
    move(tgt, eph)                                           # ours back
    assert check(eph, tgt, expect="ephemeral").ok
    assert {k: canonical(o, sort_owners=True) for k, o in snapshot(eph).items()} == original
