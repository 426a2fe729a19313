"""The reference tool on our seed: a real `clusterctl move` (not only --dry-run) between local clusters.

This proves the seed is realistic enough for clusterctl's own pre-flight and object graph: every seeded
object of the workload namespace must arrive in the target, with ownerReferences rewritten to the
target's UIDs, and none may remain in the source.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from lab.cli import seed_cluster
from lab.data.seed_objects import Topology, build
from tests.kit.env import tool_env
from tests.kit.move import read_seeded

pytestmark = pytest.mark.cluster

TOPOLOGY = Topology(namespace="metal3", clusters=1, control_planes=3, workers=2)


def test_clusterctl_move_moves_every_seeded_object(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    source, target = clusters["ephemeral"], clusters["target"]
    asyncio.run(seed_cluster(source, TOPOLOGY))
    before = read_seeded(source.kubeconfig, TOPOLOGY)
    assert len(before) == len(build(TOPOLOGY))

    result = subprocess.run(
        ["clusterctl", "move", "--kubeconfig", str(source.kubeconfig), "--to-kubeconfig", str(target.kubeconfig),
         "--namespace", TOPOLOGY.namespace, "-v", "1"],
        env=tool_env(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config")),
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    after_target = read_seeded(target.kubeconfig, TOPOLOGY)
    after_source = read_seeded(source.kubeconfig, TOPOLOGY)
    assert sorted(set(before) - set(after_target)) == []
    assert sorted(after_source) == []
    uids = {key: obj["metadata"]["uid"] for key, obj in after_target.items()}
    for key, obj in after_target.items():
        assert obj["metadata"]["uid"] != before[key]["metadata"]["uid"]
        for ref in obj["metadata"].get("ownerReferences") or []:
            assert ref["uid"] == uids[(ref["kind"], ref["name"])], f"{key} -> {ref['kind']}/{ref['name']}"
