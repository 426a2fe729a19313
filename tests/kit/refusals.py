"""For the bad-input and edge-object tests: a seeded lab, and the "refused, zero writes" check.

"Zero writes" is proven by comparing the resourceVersion of every object of every candidate kind in
every namespace of every cluster of the lab before and after the command.
"""

from __future__ import annotations

from pathlib import Path

from lab.cli import start_clusters
from lab.cluster import LocalCluster
from tests.kit.env import SESSION_DIR, TEMPLATES
from tests.kit.move import TOPOLOGY, engine_cli, resource_versions, seed_pair


def start_lab(folder: str, *, bare: bool = False) -> dict[str, LocalCluster]:
    """A seeded ephemeral and target cluster, plus (`bare`) a cluster without the BareMetalHost CRD."""
    clusters = start_clusters(["ephemeral", "target"], SESSION_DIR / folder, attached=True, templates=TEMPLATES)
    if bare:
        clusters.update(start_clusters(["bare"], SESSION_DIR / folder, attached=True,
                                       without=frozenset({"baremetalhosts.metal3.io"})))
    seed_pair({"ephemeral": clusters["ephemeral"], "target": clusters["target"]})
    return clusters


def refused(lab: dict[str, LocalCluster], args: list[str], exit_code: int, *needles: str) -> str:
    before = {name: resource_versions(c) for name, c in lab.items()}
    result = engine_cli(*args)
    after = {name: resource_versions(c) for name, c in lab.items()}
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert after == before, "a refused command wrote to a cluster"
    assert "Traceback" not in result.stderr
    return result.stderr


def move_args(src: Path | str, dst: Path | str, *extra: str) -> list[str]:
    return ["move", "--kubeconfig", str(src), "--to-kubeconfig", str(dst), "--namespace", TOPOLOGY.namespace, *extra]
