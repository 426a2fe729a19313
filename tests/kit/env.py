"""The checkout's paths and the environment the project's commands run with (the Makefile's)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS_BIN = ROOT / ".tools" / "bin"
VENV_BIN = ROOT / ".venv" / "bin"

# every cluster of the session lives below this folder (the orphan check in conftest.py scans for it)
SESSION_DIR = Path(tempfile.mkdtemp(prefix="m3p-test-"))
#: this process's etcd data of clusters with the CRDs and inventory installed, made on first use
#: (lab/cli.py: start_clusters): a cluster starts from a copy in ~5 s instead of ~13
TEMPLATES = SESSION_DIR / "templates"
# PostgreSQL runs as its own user, which cannot enter SESSION_DIR: its folders carry the session's name
PG_PREFIX = f"m3p-pg-{SESSION_DIR.name}-"

#: the pulumi program of this repository, run from a throw-away project folder
PROGRAM = f"""
    import runpy
    runpy.run_path({str(ROOT / "__main__.py")!r}, run_name="__main__")
"""


def tool_env(**extra: str) -> dict[str, str]:
    """The environment the project's commands run with (the Makefile's)."""
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(PULUMI_SKIP_UPDATE_CHECK="true", CLUSTERCTL_DISABLE_VERSIONCHECK="true")
    env.update(extra)
    return env
