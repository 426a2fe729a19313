"""`make demo`: the main job on the local lab, with visible progress.

1. start two local management clusters: `ephemeral` seeded like metal3-dev-env leaves it after
   provisioning a workload cluster (CRDs labelled, providers in clusterctl's inventory), `target` bare;
2. `pulumi up` of the local stack with location=ephemeral: installs the providers on the target
   (move.yml's `clusterctl init`) and Ironic + BMO on the ephemeral cluster;
3. location=target: `pulumi preview --diff`, then `pulumi up`: Ironic hands over, the objects pivot;
4. the target's controllers reconcile (played by lab.seed.settle: no controller images run here);
5. location=ephemeral: preview, then `pulumi up`: the move back; then `metal3-pivot verify`;
6. a `metal3-pivot move --to-directory` backup, then the secrets audit (lab/audit.py): the state, every
   log this run wrote, the captured output (.lab/demo-output.log) searched for the kubeconfigs'
   credentials and the BMC passwords; the backup folder must be 0700 with 0600 files.

State goes to a file:// backend in .state/; the passphrase defaults to the demo value the committed
local stack was created with (it protects nothing but these throw-away clusters). The clusters keep
running afterwards (`make clusters-down` stops them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab import audit, crds
from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster, kube_for
from lab.seed import settle
from lab.seed_objects import Topology

ROOT = Path(__file__).resolve().parent.parent
STACK = "local"
TOPOLOGY = Topology(namespace="metal3", clusters=1, control_planes=3, workers=2, spare_hosts=1)


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def pulumi_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PULUMI_BACKEND_URL", f"file://{ROOT / '.state'}")
    env.setdefault("PULUMI_CONFIG_PASSPHRASE", "metal3-pivot-local-demo")
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


TRANSCRIPT = ROOT / ".lab" / "demo-output.log"


def run(*cmd: str, check: bool = True) -> int:
    """Run a command, its output shown and kept in TRANSCRIPT (which the secrets audit searches)."""
    print(f"$ {' '.join(cmd)}", flush=True)
    with subprocess.Popen(list(cmd), env=pulumi_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc, TRANSCRIPT.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
    rc = proc.returncode
    if check and rc != 0:
        raise SystemExit(f"demo: `{' '.join(cmd)}` failed (exit {rc})")
    return rc


def pulumi(*args: str, check: bool = True) -> int:
    return run("pulumi", *args, "--stack", STACK, "--non-interactive", check=check)


def reconcile(cluster: LocalCluster) -> None:
    async def go() -> int:
        async with kube_for(cluster) as kube:
            return await settle(kube, TOPOLOGY, crds.bundle().resource_types())
    print(f"(controllers in {cluster.name} reconcile: {asyncio.run(go())} statuses rebuilt)", flush=True)


def relocate(what: str, location: str, eph: LocalCluster, tgt: LocalCluster) -> None:
    """Set `location`, show the preview a pull request would show (policy pack included), `pulumi up`, verify."""
    step(f"{what}: location={location} -- what would happen")
    pulumi("config", "set", "location", location)
    pulumi("preview", "--diff", "--policy-pack", "policies")
    step(f"{what}: pulumi up")
    pulumi("up", "--yes", "--skip-preview")
    run("metal3-pivot", "verify", "--kubeconfig", str(eph.kubeconfig), "--to-kubeconfig", str(tgt.kubeconfig),
        "-n", TOPOLOGY.namespace, "--expect", "target" if location == "target" else "source")


def move_log_dir() -> Path:
    """Where the ObjectLocation provider writes its move logs (components/object_location.py)."""
    base = os.environ.get("METAL3_PIVOT_CACHE") or os.path.join(os.path.expanduser("~/.cache"), "metal3-pivot")
    return Path(base) / "logs" / "moves"


def secrets_audit(eph: LocalCluster, tgt: LocalCluster, since: float, backup: Path) -> audit.AuditReport:
    needles = {**audit.kubeconfig_needles(eph.kubeconfig, "ephemeral kubeconfig"),
               **audit.kubeconfig_needles(tgt.kubeconfig, "target kubeconfig"), **audit.bmc_needles(TOPOLOGY)}
    files = [*audit.files_under(ROOT / ".state"), *audit.files_under(move_log_dir(), since=since),
             *audit.files_under(ROOT / ".lab", suffixes=(".log",))]
    return audit.audit(files, needles, [backup])


def main() -> int:
    t0 = time.monotonic()
    started = time.time()
    lab = ROOT / ".lab"
    lab.mkdir(exist_ok=True)
    TRANSCRIPT.write_text("")
    step("starting the local management clusters (etcd + kube-apiserver + kube-controller-manager each)")
    for name in ("ephemeral", "target"):
        if (lab / name / "cluster.json").exists():
            LocalCluster.load(lab / name).stop()
    eph = start_clusters(["ephemeral"], lab, attached=False)["ephemeral"]
    tgt = start_clusters(["target"], lab, attached=False, with_crds=False)["target"]
    step(f"seeding the ephemeral cluster like metal3-dev-env: {TOPOLOGY}")
    asyncio.run(seed_cluster(eph, TOPOLOGY))

    step(f"pulumi stack {STACK} (file:// backend in .state/; fresh, since the clusters are new)")
    shutil.rmtree(ROOT / ".state", ignore_errors=True)
    (ROOT / ".state").mkdir()
    pulumi("stack", "init", check=False)
    pulumi("config", "set", "location", "ephemeral")
    step("pulumi up, location=ephemeral: providers onto the target, Ironic + BMO onto the ephemeral cluster")
    pulumi("up", "--yes", "--skip-preview")

    relocate("pivot", "target", eph, tgt)
    reconcile(tgt)
    relocate("move back", "ephemeral", eph, tgt)
    reconcile(eph)   # the backup runs a move's checks: the Clusters must be provisioned again
    pulumi("stack", "output")
    backup = lab / "backup"
    step(f"a --to-directory backup into {backup.relative_to(ROOT)} (holds Secrets: 0700 folder, 0600 files)")
    shutil.rmtree(backup, ignore_errors=True)
    run("metal3-pivot", "move", "--kubeconfig", str(eph.kubeconfig), "-n", TOPOLOGY.namespace,
        "--to-directory", str(backup))
    step("secrets audit: state, logs, output and backup searched for kubeconfig credentials and BMC passwords")
    report = secrets_audit(eph, tgt, started, backup)
    for finding in report.findings:
        print(f"  {finding}")
    print(report.summary(), flush=True)
    step(f"done in {time.monotonic() - t0:.0f} s: the objects pivoted to the target and came back. Clusters keep "
         "running (kubeconfigs in .lab/*/kubeconfig); `make clusters-down` stops them")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
