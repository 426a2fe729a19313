"""Shared facts of the toolchain: where the pinned versions, consumer modules and caches live.

Standard library only: this runs before the project's virtualenv exists.
"""

from __future__ import annotations

import json
import os
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


def module_dir(module: str, version: str) -> Path:
    """Download (or find in the module cache) one module version and return its folder."""
    env = go_env() | {"GONOSUMDB": "github.com/metal3-io", "GOFLAGS": "-mod=mod"}
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], env=env,
                         cwd="/", text=True, capture_output=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"cannot download Go module {module}@{version}: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])
