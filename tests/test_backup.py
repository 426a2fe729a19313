"""--to-directory / --from-directory: readable YAML, private file modes, and a faithful restore."""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from tests.kit.move import TOPOLOGY, canonical, check, engine_cli, seed_pair, snapshot

pytestmark = pytest.mark.cluster


def test_backup_then_restore_into_an_empty_cluster(fresh_clusters, tmp_path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    original = snapshot(eph)
    backup = tmp_path / "backup"

    out = engine_cli("move", "--kubeconfig", str(eph.kubeconfig), "-n", TOPOLOGY.namespace,
                     "--to-directory", str(backup))
    assert out.returncode == 0, out.stderr
    files = sorted(backup.glob("*.yaml"))
    assert len(files) == len(original)
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    host = yaml.safe_load(next(f for f in files if f.name.startswith("BareMetalHost_")).read_text())
    assert host["kind"] == "BareMetalHost" and host["metadata"]["uid"]
    # a backup moves nothing; it pauses and unpauses the source, as clusterctl does (versions change)
    assert {k: canonical(o) for k, o in snapshot(eph).items()} == {k: canonical(o) for k, o in original.items()}

    restore = engine_cli("move", "--from-directory", str(backup), "--to-kubeconfig", str(tgt.kubeconfig))
    assert restore.returncode == 0, restore.stderr
    restored = snapshot(tgt)
    assert set(restored) == set(original)
    assert {k: canonical(o) for k, o in restored.items()} == {k: canonical(o) for k, o in original.items()}
    # both clusters now hold the objects: that is what a restore is; verify says so
    report = check(eph, tgt)
    assert {v.code for v in report.violations} == {"duplicate"}


@pytest.mark.parametrize(("content", "needle"), [
    (b"apiVersion: v1\nkind: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than a YAML parser follows"),
    (b"apiVersion: v1\nkind: Secret\n# caf\xe9\n", "not UTF-8 text"),
    (b"kind: [oops\n", "not valid YAML"),
])
def test_hostile_backup_files_are_refused_by_name(tmp_path, content: bytes, needle: str) -> None:
    """A --from-directory file nested 5,000 deep, not UTF-8, or broken: InputError naming the file."""
    from metal3_pivot.backup import read
    from metal3_pivot.errors import InputError

    (tmp_path / "x.yaml").write_bytes(content)
    with pytest.raises(InputError) as err:
        read(tmp_path, {})
    assert needle in str(err.value) and "x.yaml" in str(err.value)
