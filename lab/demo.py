"""`make demo`: the main job on the local lab, with visible progress.

Starts the two local management clusters (kept running afterwards: `make clusters-down` stops them),
seeds the ephemeral one like metal3-dev-env leaves it, and runs the local Pulumi stack against them.
State goes to a file:// backend in .state/; the passphrase defaults to a demo value that protects
nothing but these throw-away local clusters (set PULUMI_CONFIG_PASSPHRASE to use your own).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster
from lab.seed_objects import Topology

ROOT = Path(__file__).resolve().parent.parent
STACK = "local"


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def pulumi_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PULUMI_BACKEND_URL", f"file://{ROOT / '.state'}")
    env.setdefault("PULUMI_CONFIG_PASSPHRASE", "metal3-pivot-local-demo")
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def pulumi(*args: str, check: bool = True) -> int:
    cmd = ["pulumi", *args, "--cwd", str(ROOT), "--non-interactive"]
    print(f"$ {' '.join(cmd[:-3])}", flush=True)
    rc = subprocess.run(cmd, env=pulumi_env()).returncode
    if check and rc != 0:
        raise SystemExit(f"demo: `pulumi {' '.join(args)}` failed (exit {rc})")
    return rc


def main() -> int:
    t0 = time.monotonic()
    lab = ROOT / ".lab"
    step("starting the local management clusters (etcd + kube-apiserver + kube-controller-manager each)")
    for name in ("ephemeral", "target"):
        if (lab / name / "cluster.json").exists():
            LocalCluster.load(lab / name).stop()
    clusters = start_clusters(["ephemeral", "target"], lab, attached=False)
    topology = Topology(namespace="metal3", clusters=1, control_planes=3, workers=2)
    step(f"seeding the ephemeral cluster like metal3-dev-env: {topology}")
    asyncio.run(seed_cluster(clusters["ephemeral"], topology))
    (ROOT / ".state").mkdir(exist_ok=True)
    step(f"pulumi stack {STACK} on the file:// backend in .state/")
    if pulumi("stack", "select", STACK, check=False) != 0:
        pulumi("stack", "init", STACK)
    step("pulumi preview --diff (what an `up` would do)")
    pulumi("preview", "--diff", "--stack", STACK)
    step(f"done in {time.monotonic() - t0:.0f} s; clusters keep running: kubeconfigs in .lab/*/kubeconfig, "
         "`make clusters-down` stops them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
