"""The engine's contracts that need no cluster: exit codes, the findings codes, the injected test seams."""

from __future__ import annotations

import subprocess
import sys

import pytest

import metal3_pivot
from lab.seams import seam_env
from metal3_pivot import cli, errors
from metal3_pivot.findings import Code, Finding

pytestmark = pytest.mark.unit


def test_exit_codes_tell_a_held_lock_from_a_lost_one_and_a_late_block_from_a_refusal() -> None:
    assert errors.LockHeldError.exit_code != errors.LockLostError.exit_code
    # raised after the source was paused: not the "nothing changed" of bad input / the pre-flight
    assert not issubclass(errors.BlockMoveTimeoutError, errors.InputError)
    assert errors.BlockMoveTimeoutError.exit_code == errors.MoveTimeoutError.exit_code
    documented = " ".join((cli.__doc__ or "").split())
    for cls in (errors.InputError, errors.UnreachableClusterError, errors.ApiError, errors.MoveTimeoutError,
                errors.LockHeldError, errors.LockLostError, errors.MoveAbandonedError, errors.SourceChangedError):
        assert f" {cls.exit_code} " in documented, cls


def test_every_preflight_code_has_its_error_and_findings_round_trip() -> None:
    preflight_codes = {c for c in Code if c not in {Code.MOVE_IN_PROGRESS, Code.DUPLICATE, Code.LOCATION,
                                                    Code.PAUSED, Code.SECRET, Code.IRONIC}}
    assert set(errors.PREFLIGHT_ERRORS) == preflight_codes
    f = Finding(Code.OWNER_CHAIN, "Secret ns/x", "its owner is gone")
    assert Finding.from_dict(f.to_dict()) == f
    assert f.tagged() == "[owner-chain] Secret ns/x: its owner is gone"


def test_the_public_face_exports_what_it_lists() -> None:
    assert all(hasattr(metal3_pivot, name) for name in metal3_pivot.__all__)


def _hooks_in_child(env_extra: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", "import metal3_pivot.kube as k; print(len(k.WRITE_HOOKS))"],
                         capture_output=True, text=True, check=True, env={**__import__("os").environ, **env_extra})
    return int(out.stdout)


def test_seams_are_injected_into_a_child_and_absent_otherwise(tmp_path) -> None:
    assert _hooks_in_child({}) == 0
    assert _hooks_in_child(seam_env(kill_after=5)) == 1
    assert _hooks_in_child(seam_env(journal=tmp_path / "j", delay=0.1, kill_after=5)) == 3
