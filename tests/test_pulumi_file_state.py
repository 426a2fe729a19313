"""The `file://` state backend as this project opens it survives a `pulumi` CLI killed at any point.

Why: a clean-clone run of tests/test_pulumi_handover_kill.py (CI, 2026-12-04) killed the CLI while it
saved a checkpoint, and every later command on the stack failed with "failed to load checkpoint: EOF".
The checkpoint itself is replaced atomically (a temporary file, then a rename); what broke was the
`.attrs` sidecar the backend's blob library writes beside it by truncating and then writing, which a kill
between the two leaves empty. components.file_backend_url opens the backend with `metadata=skip`, so no
sidecar is ever written.

The real pulumi CLI, a program with no cloud resource (no cluster needed): the first test shows the
hazard on the backend's default URL (should an upgrade of the blob library make the sidecar write atomic,
this test says so and the query can go); the second that our URL writes no sidecar and reads a state
written without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components import file_backend_url
from tests.kit.pulumi_cli import PulumiProject

pytestmark = [pytest.mark.pulumi]

PROGRAM = """
import pulumi
pulumi.export("answer", pulumi.Config().get_int("answer") or 0)
"""


def _sidecars(state: Path) -> dict[Path, int]:
    """Every .attrs sidecar under `state`, with its modification time (ns)."""
    return {path: path.stat().st_mtime_ns for path in state.rglob("*.attrs")}


def test_an_emptied_sidecar_breaks_a_stack_on_the_backends_default_url(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    p = PulumiProject.create(tmp_path / "proj", "file-state", PROGRAM, backend=f"file://{state}")
    p.run("up", "--yes", "--skip-preview", check=True)
    checkpoint = next(state.rglob("stacks/*/dev.json.attrs"))

    checkpoint.write_bytes(b"")        # what a kill between the sidecar's truncate and its write leaves
    broken = p.run("up", "--yes", "--skip-preview")
    assert broken.returncode != 0 and "failed to load checkpoint: EOF" in broken.output, (
        "the backend's default URL no longer breaks on an empty .attrs sidecar; if the blob library now "
        f"writes it atomically, components.file_backend_url's metadata=skip can go:\n{broken.output[-2000:]}")


def test_our_url_writes_no_sidecar_and_reads_a_state_written_with_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    old = PulumiProject.create(tmp_path / "proj", "file-state", PROGRAM, backend=f"file://{state}")
    old.run("up", "--yes", "--skip-preview", check=True)
    written_before = _sidecars(state)
    assert written_before, "the default URL wrote no sidecar: the first test's premise is gone"

    p = PulumiProject(tmp_path / "proj", backend=file_backend_url(state))
    p.set_config("answer", "42")
    up = p.run("up", "--yes", "--skip-preview", check=True)
    assert "42" in p.run("stack", "output", "answer", check=True).output, up.output[-2000:]
    p.run("cancel", "--yes")           # takes and drops the stack's lock: a write path of its own
    p.run("up", "--yes", "--expect-no-changes", check=True)
    assert _sidecars(state) == written_before, "a command on our URL wrote or rewrote a .attrs sidecar"

    fresh_state = tmp_path / "fresh"
    fresh_state.mkdir()
    fresh = PulumiProject.create(tmp_path / "fresh-proj", "file-state", PROGRAM, backend=file_backend_url(fresh_state))
    fresh.run("up", "--yes", "--skip-preview", check=True)
    assert _sidecars(fresh_state) == {}, "a fresh stack on our URL has .attrs sidecars"
