"""Shared facts of the toolchain: where the pinned versions, consumer modules and caches live.

Standard library only: this runs before the project's virtualenv exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent
ROOT = TOOLS_DIR.parent
GO_DIR = TOOLS_DIR / "go"
VERSIONS_FILE = TOOLS_DIR / "versions.toml"


def load_versions() -> dict[str, Any]:
    with VERSIONS_FILE.open("rb") as f:
        return tomllib.load(f)


def cache_root() -> Path:
    """Per-user cache outside the checkout, so a fresh clone on the same machine rebuilds nothing."""
    base = os.environ.get("METAL3_PIVOT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "metal3-pivot")
    return Path(base)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
    env["CGO_ENABLED"] = "0"
    return env


def _escaped(path: str) -> str:
    """A module path or version as the module cache spells it: each capital letter as `!` + lower case."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


def cached_module_dir(module: str, version: str) -> Path | None:
    """The module's folder if Go already extracted it into the module cache (`$GOMODCACHE`, else the first
    `$GOPATH` entry's pkg/mod, else ~/go/pkg/mod), else None. Go extracts a module whole or not at all
    (into a temporary folder it renames) and verified it against its checksum then."""
    base = os.environ.get("GOMODCACHE") or os.path.join(
        (os.environ.get("GOPATH") or os.path.expanduser("~/go")).split(os.pathsep)[0], "pkg", "mod")
    folder = Path(base) / f"{_escaped(module)}@{_escaped(version)}"
    return folder if folder.is_dir() else None


class GoMissingError(RuntimeError):
    """A module is needed that the module cache does not hold, and there is no Go to download it."""


def go_or_cached(module: str, version: str) -> Path | None:
    """Without Go on PATH, the cached folder (a warm machine needs no toolchain), or GoMissingError;
    with Go, None: the caller downloads, which also verifies the cache against its go.sum."""
    if shutil.which("go") is not None:
        return None
    cached = cached_module_dir(module, version)
    if cached is None:
        raise GoMissingError(f"{module}@{version} is not in the Go module cache and Go is not on PATH: "
                             "install Go >= 1.26 (or put it on PATH) and run `python3 tools/bootstrap.py` again")
    return cached


def module_dir(module: str, version: str) -> Path:
    """Download (or find in the module cache) one module version and return its folder."""
    cached = go_or_cached(module, version)
    if cached is not None:
        return cached
    env = go_env() | {"GONOSUMDB": "github.com/metal3-io", "GOFLAGS": "-mod=mod"}
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], env=env,
                         cwd="/", text=True, capture_output=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"cannot download Go module {module}@{version}: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])
