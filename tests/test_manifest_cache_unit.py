"""The manifest caches (.tools/manifests: rendered releases, parsed documents) are written whole or not at
all. Why it matters: they are keyed by version or content and never written again once present, so a
truncated file left by a process that died while writing would be installed by every later run."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import manifests

pytestmark = pytest.mark.unit


def _dies_half_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Path.write_text writes half its text, then fails, as a full disk or a killed process would."""
    real = Path.write_text

    def half(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[: len(text) // 2])
        raise OSError("No space left on device")
    monkeypatch.setattr(Path, "write_text", half)


def test_a_cache_write_that_dies_half_way_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifests" / "cluster-api-v1.10.8.yaml"
    manifests._write_whole(path, "kind: Namespace\n")
    assert path.read_text() == "kind: Namespace\n"

    with monkeypatch.context() as m:
        _dies_half_way(m)
        with pytest.raises(OSError):
            manifests._write_whole(path, "kind: Namespace\n---\nkind: Deployment\n")
    assert path.read_text() == "kind: Namespace\n"
    assert list(path.parent.iterdir()) == [path], "a partial file was left beside the cache"


def test_a_first_cache_write_that_dies_half_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifests" / "parsed" / "0123abcd.json"
    with monkeypatch.context() as m:
        _dies_half_way(m)
        with pytest.raises(OSError):
            manifests._write_whole(path, '[{"kind":"Namespace"}]')
    assert list(path.parent.iterdir()) == [], "a first write that failed left a file a later run would read"
