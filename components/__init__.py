"""The Pulumi layer: stack config, cluster and provider components, the ObjectLocation resource.

Thin on purpose: the move itself lives in the engine (metal3_pivot), which never imports Pulumi.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def cache_dir() -> Path:
    """The project's per-user cache outside the checkout: `$METAL3_PIVOT_CACHE`, else
    `$XDG_CACHE_HOME/metal3-pivot` (`~/.cache/metal3-pivot`), the same rule as the tool builds'
    (tools/toolchain.py), so one variable moves all of it."""
    base = os.environ.get("METAL3_PIVOT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "metal3-pivot")
    return Path(base)


def file_backend_url(directory: Path) -> str:
    """The `file://` state backend URL for `directory`, with `metadata=skip`.

    Why the query: by default the backend's blob library writes a `.attrs` sidecar beside every state
    file (the stack's checkpoint, its lock, its history) by truncating it and then writing it, while the
    file itself is replaced atomically. A `pulumi` CLI killed between the two leaves an empty sidecar,
    and every later command on the stack fails with "failed to load checkpoint: EOF" (seen once in a
    clean-clone run of tests/test_pulumi_handover_kill.py). With `metadata=skip` no sidecar is written,
    so a kill at any point leaves the previous or the next checkpoint, both whole. Pulumi keeps nothing
    of its own in the sidecars; states written without the query are read with it as they are."""
    return f"file://{directory}?metadata=skip"


def sweep(directory: Path, older_than: float) -> None:
    """Best effort: removes the files in `directory` not modified for `older_than` seconds (another run
    may sweep the same folder at the same time; a file it cannot remove is left for the next sweep)."""
    cutoff = time.time() - older_than
    for path in directory.iterdir():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
