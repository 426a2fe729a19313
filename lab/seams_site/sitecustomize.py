"""Loaded at start-up by a Python process whose PYTHONPATH puts this folder first (lab.seams.seam_env):
installs the engine's test seams the environment asks for. Never on the path in normal use."""

import os

if any(os.environ.get(v) for v in ("METAL3_PIVOT_KILL_AFTER_WRITES", "METAL3_PIVOT_KILL_ON_WRITE",
                                   "METAL3_PIVOT_WRITE_JOURNAL", "METAL3_PIVOT_WRITE_DELAY")):
    from lab.seams import install_from_env

    install_from_env()
