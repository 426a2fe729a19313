"""Backups as clusterctl makes them (issue 15, rule 2): `--to-directory` pauses like a move and writes the
files clusterctl writes; `--from-directory` creates, then unpauses; a restored host keeps its
provisioning status; and the two tools restore each other's backups."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kit.env import tool_env
from tests.kit.move import engine_cli, resource_versions, seed_pair, snapshot
from tests.kit.parity import BMH, CLUSTER, WORKLOAD_NS, get, kube, our_marks, strict

pytestmark = pytest.mark.cluster


def clusterctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["clusterctl", "move", *args],
                          env=tool_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")),
                          capture_output=True, text=True, timeout=600)


def files(directory: Path) -> dict[str, dict]:
    """The backup's objects by file name (clusterctl writes JSON into `.yaml` files; YAML reads both)."""
    import yaml

    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(directory.iterdir())}


def test_our_backup_writes_what_clusterctl_writes(fresh_clusters, tmp_path: Path) -> None:
    theirs = fresh_clusters()
    ours = fresh_clusters()
    seed_pair(theirs)
    seed_pair(ours)
    d_theirs, d_ours = tmp_path / "theirs", tmp_path / "ours"
    d_theirs.mkdir()
    ref = clusterctl(tmp_path, "--kubeconfig", str(theirs["ephemeral"].kubeconfig), "-n", WORKLOAD_NS,
                     "--to-directory", str(d_theirs))
    assert ref.returncode == 0, ref.stdout + ref.stderr
    out = engine_cli("move", "--kubeconfig", str(ours["ephemeral"].kubeconfig), "-n", WORKLOAD_NS,
                     "--to-directory", str(d_ours))
    assert out.returncode == 0, out.stderr[-3000:]

    a, b = files(d_theirs), files(d_ours)
    assert sorted(a) == sorted(b)
    for name in a:
        assert strict(a[name]) == strict(b[name]), name
        assert a[name].get("status") == b[name].get("status"), name
    # the files were written while paused (as clusterctl's are), the source is unpaused afterwards
    assert next(o for n, o in b.items() if n.startswith("Cluster_"))["spec"]["paused"] is True
    cluster = get(ours["ephemeral"], CLUSTER, "test1", WORKLOAD_NS)
    assert cluster is not None and not cluster["spec"].get("paused")
    assert our_marks(b) == {}
    assert our_marks({str(k): o for k, o in snapshot(ours["ephemeral"]).items()}) == {}


def test_a_clusterctl_backup_restores_with_ours_as_with_clusterctl(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters(("ephemeral", "target", "third"))
    eph, tgt, third = clusters["ephemeral"], clusters["target"], clusters["third"]
    seed_pair({"ephemeral": eph, "target": tgt})
    backup = tmp_path / "backup"
    backup.mkdir()
    made = clusterctl(tmp_path, "--kubeconfig", str(eph.kubeconfig), "-n", WORKLOAD_NS, "--to-directory", str(backup))
    assert made.returncode == 0, made.stdout + made.stderr

    out = engine_cli("move", "--from-directory", str(backup), "--to-kubeconfig", str(tgt.kubeconfig))
    assert out.returncode == 0, out.stderr[-3000:]
    ref = clusterctl(tmp_path, "--from-directory", str(backup), "--to-kubeconfig", str(third.kubeconfig))
    assert ref.returncode == 0, ref.stdout + ref.stderr

    ours = {k: strict(o) for k, o in snapshot(tgt).items()}
    theirs = {k: strict(o) for k, o in snapshot(third).items()}
    assert sorted(map(str, set(ours) ^ set(theirs))) == []
    assert {str(k): v for k, v in ours.items() if v != theirs[k]} == {}
    cluster = get(tgt, CLUSTER, "test1", WORKLOAD_NS)
    assert cluster is not None and not cluster["spec"].get("paused")
    # a host restored by us keeps its provisioning status (from the file), so BMO never re-registers it
    source_hosts = {k.name: o for k, o in snapshot(eph).items() if k.kind == "BareMetalHost"}
    for name, original in source_hosts.items():
        restored = get(tgt, BMH, name, WORKLOAD_NS)
        assert restored is not None
        want = original["status"]["provisioning"]["state"]
        assert restored.get("status", {}).get("provisioning", {}).get("state") == want, name


def test_our_backup_restores_with_clusterctl(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    backup = tmp_path / "backup"
    out = engine_cli("move", "--kubeconfig", str(eph.kubeconfig), "-n", WORKLOAD_NS, "--to-directory", str(backup))
    assert out.returncode == 0, out.stderr[-3000:]
    original = {k: strict(o) for k, o in snapshot(eph).items()}
    ref = clusterctl(tmp_path, "--from-directory", str(backup), "--to-kubeconfig", str(tgt.kubeconfig))
    assert ref.returncode == 0, ref.stdout + ref.stderr
    restored = {k: strict(o) for k, o in snapshot(tgt).items()}
    assert sorted(map(str, set(original) ^ set(restored))) == []
    assert {str(k): v for k, v in restored.items() if v != original[k]} == {}


def test_backup_runs_the_checks_of_a_move(fresh_clusters, tmp_path: Path) -> None:
    import asyncio

    clusters = fresh_clusters()
    eph = clusters["ephemeral"]
    seed_pair(clusters)

    async def unprovision() -> None:
        async with kube(eph) as k:
            await k.patch(CLUSTER, "test1", WORKLOAD_NS,
                          {"status": {"initialization": {"infrastructureProvisioned": False}}}, sub="status")
    asyncio.run(unprovision())
    before = resource_versions(eph)
    backup = tmp_path / "backup"
    out = engine_cli("move", "--kubeconfig", str(eph.kubeconfig), "-n", WORKLOAD_NS, "--to-directory", str(backup))
    assert out.returncode == 2, out.stderr
    assert "infrastructureProvisioned" in out.stderr
    assert resource_versions(eph) == before
    assert not backup.exists() or not any(backup.iterdir())
