"""`pulumi up` pivots and moves back: the real pulumi CLI, our program, real clusters.

One scenario, in order, on one stack (each step depends on the previous one):
up at location=ephemeral (providers + Ironic installed) -> preview shows no changes -> preview of
location=target shows one ObjectLocation update with the per-kind counts -> up pivots (a watcher sees
at most one Ironic at every moment) -> up again changes nothing -> refresh shows no drift -> move back ->
drift made by hand with the engine CLI shows after refresh and the next up repairs it. Secrets are
searched for in the state and every output at the end. The state lives in PostgreSQL, the team backend.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import re
from pathlib import Path

import pytest

from lab.cli import seed_cluster
from lab.cluster import LocalCluster
from tests.kit.env import PROGRAM
from tests.kit.ironic import IronicWatcher, ironic_on
from tests.kit.move import (
    TOPOLOGY,
    canonical_snapshot,
    check,
    cli_move_args,
    engine_cli,
    resource_versions,
    settle,
    snapshot,
)
from tests.kit.pulumi_cli import PulumiProject, pivot_stack

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

@pytest.mark.timeout(1800)        # one long scenario: ~11 min alone, up to 19 beside the live tests
def test_pivot_and_move_back_with_pulumi_up(fresh_clusters, postgres, tmp_path: Path) -> None:
    """The team setup: the stack state lives in a real PostgreSQL (lab/postgres.py), not in files."""
    eph = fresh_clusters(("ephemeral",))["ephemeral"]
    tgt = fresh_clusters(("target",), with_crds=False)["target"]     # a bare target: the stack installs it
    asyncio.run(seed_cluster(eph, TOPOLOGY))
    original = canonical_snapshot(eph)
    bmc_password = _bmc_password(eph)

    p = pivot_stack(tmp_path / "proj", eph.kubeconfig, tgt.kubeconfig, stack="pivot", backend=postgres.url)

    # 1. install: providers on the target, Ironic on the ephemeral cluster; nothing moves
    p.run("up", "--yes", check=True, timeout=900)      # ~190 s alone: 120 resources, a 6 MB state per checkpoint
    assert ironic_on(eph) and not ironic_on(tgt)
    p.run("preview", "--expect-no-changes", check=True)

    # 2. the pivot, previewed
    p.set_config("location", "target")
    preview = p.run("preview", "--diff", check=True)
    assert '~ location              : "ephemeral" => "target"' in preview.output, preview.output[-3000:]
    hosts = TOPOLOGY.clusters * (TOPOLOGY.control_planes + TOPOLOGY.workers + TOPOLOGY.spare_hosts)
    assert re.search(rf"\+ BareMetalHost\s+: {hosts}\b", preview.output), preview.output[-3000:]
    assert "~ 1 to update" in preview.output

    # 3. the pivot, with an Ironic watcher
    watcher = IronicWatcher([eph, tgt])
    watcher.start()
    p.run("up", "--yes", check=True)
    watcher.stop()
    assert watcher.samples > 10 and watcher.max_seen == 1
    assert check(eph, tgt, expect="target").ok
    assert canonical_snapshot(tgt) == original
    assert ironic_on(tgt) and not ironic_on(eph)
    p.run("up", "--yes", "--expect-no-changes", check=True)
    p.run("refresh", "--yes", "--expect-no-changes", check=True)

    # 4. move back (the target's controllers have reconciled first)
    settle(tgt)
    p.set_config("location", "ephemeral")
    watcher = IronicWatcher([eph, tgt])
    watcher.start()
    p.run("up", "--yes", check=True)
    watcher.stop()
    assert watcher.max_seen == 1
    assert check(eph, tgt, expect="ephemeral").ok
    assert canonical_snapshot(eph) == original
    assert ironic_on(eph) and not ironic_on(tgt)
    settle(eph)

    # 5. drift: somebody pivots the objects by hand; refresh shows it, up puts them back where the stack says.
    #    (An up whose mover is killed mid-move, finished by the next up, is tests/test_live_pivot.py's
    #    five kill points and test_move_lock.py's takeover; this file keeps what only the team backend adds.)
    by_hand = engine_cli(*cli_move_args(eph, tgt))
    assert by_hand.returncode == 0, by_hand.stderr
    drift = p.run("refresh", "--yes", "--expect-no-changes", "--diff")
    # --diff: without it the non-interactive display may fold the changed row into "~ ... updated", the
    # property name left out (CI, 2026-11-30); the detailed diff always names it
    assert drift.returncode != 0 and re.search(r'location\s*:.*"target"', drift.output), \
        drift.output[-3000:]
    settle(tgt)
    p.run("up", "--yes", check=True)
    assert check(eph, tgt, expect="ephemeral").ok
    assert canonical_snapshot(eph) == original

    # 6. secrets: no kubeconfig key and no BMC password anywhere in state or output, the state being the
    #    PostgreSQL table (queried, every row) and the project's files
    rows = state_rows(postgres)
    assert "pulumi/.pulumi/stacks/metal3-pivot/pivot.json" in rows
    assert '"ciphertext"' in rows["pulumi/.pulumi/stacks/metal3-pivot/pivot.json"]      # secrets sealed in it
    everything = p.all_text() + "\n".join(rows.values())
    for cluster in (eph, tgt):
        key = next(line.split(":", 1)[1].strip() for line in cluster.kubeconfig.read_text().splitlines()
                   if "client-key-data" in line)
        assert key[:40] not in everything
    assert bmc_password not in everything


def test_bad_config_fails_preview_and_writes_nothing(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    before = {c.name: resource_versions(c) for c in (eph, tgt)}
    p = PulumiProject.create(tmp_path / "proj", "metal3-pivot", PROGRAM)
    p.set_kubeconfigs(eph.kubeconfig, tgt.kubeconfig)
    p.set_config("skipAwait", "true")

    # config errors end the program with pulumi.RunError: the message, no traceback of the program
    p.set_config("location", "elsewhere")
    bad = p.run("preview")
    assert bad.returncode != 0
    assert ("invalid stack configuration: metal3-pivot:location: Input should be 'ephemeral' or 'target' "
            "(got 'elsewhere')") in bad.output, bad.output
    assert "Traceback" not in bad.output

    p.set_config("location", "target")
    p.set_config("lcoation", "target")
    typo = p.run("preview")
    assert typo.returncode != 0 and "metal3-pivot:lcoation: not a setting of this program" in typo.output
    assert "Traceback" not in typo.output
    p.run("config", "rm", "lcoation", check=True)

    # a manifest error (a components file that does not exist) likewise
    p.run("config", "set-all", "--path", "--plaintext",
          f"providers.source[0].path={tmp_path / 'missing-components.yaml'}", "--plaintext",
          "providers.source[0].name=metal3", "--plaintext", "providers.source[0].type=InfrastructureProvider",
          "--plaintext", "providers.source[0].version=v1.13.2", check=True)
    manifest = p.run("preview")
    assert manifest.returncode != 0 and "providers.source" in manifest.output and "missing-components.yaml" in \
        manifest.output, manifest.output
    assert "Traceback" not in manifest.output
    p.run("config", "rm", "--path", "providers.source", check=True)

    p.run("config", "rm", "--path", "target.kubeconfig", check=True)
    missing = p.run("preview")
    assert missing.returncode != 0 and "metal3-pivot:target" in missing.output
    assert "Traceback" not in missing.output

    dead = tgt.kubeconfig.read_text().replace(f"127.0.0.1:{tgt.api_port}", "127.0.0.1:1")
    p.run("config", "set", "--secret", "--path", "target.kubeconfig", stdin=dead, check=True)
    unreachable = p.run("preview")
    assert unreachable.returncode != 0 and "metal3-pivot:target: the target cluster is not usable" in unreachable.output
    assert "cannot reach https://127.0.0.1:1" in unreachable.output and "Traceback" not in unreachable.output
    after = {c.name: resource_versions(c) for c in (eph, tgt)}
    assert after == before
    assert "client-key-data" not in p.all_text()


def state_rows(postgres) -> dict[str, str]:
    """Every row of the backend's table, as the file it stands for: the backend keeps each file's bytes
    base64-encoded in a JSON column (`{"data": "..."}`), some gzip-compressed; decoded here, so that the
    search below reads what the state really says, not its encoding."""
    out = {}
    listing = postgres.sql("SELECT key || ' ' || (data->>'data') FROM pulumi_state", database=postgres.database)
    for line in listing.splitlines():
        key, _, encoded = line.partition(" ")
        raw = base64.b64decode(encoded)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        out[key] = raw.decode(errors="replace")
    assert out, "the PostgreSQL state table is empty"
    return out


def _bmc_password(cluster: LocalCluster) -> str:
    secret = next(o for k, o in snapshot(cluster).items() if k.kind == "Secret" and k.name.endswith("-bmc-secret"))
    return base64.b64decode(secret["data"]["password"]).decode()
