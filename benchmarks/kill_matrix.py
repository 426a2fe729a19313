"""Kill matrix, full mode: SIGKILL the engine CLI after every k-th API write, over the whole move and the
whole move back, re-run, and check the invariants after each. The suite runs a sample of these points
(tests/test_move_resume.py); this script runs them all and prints the figures for docs/reliability.md.

    python -m benchmarks.kill_matrix [--step 1] [--hosts 6]
    python -m benchmarks.kill_matrix --via pulumi [--step 20]

`--via pulumi` does the same through the real `pulumi up` of this project's program (a throw-away stack on
a file:// backend, a bare target that the stack installs first): the kill seam fires in the dynamic
provider process that runs the move, the killed `pulumi up` fails, a plain `pulumi up` must finish the
move. Kill points alternate between the move and the move back (so no reset is needed between points);
a direction's points end when its `pulumi up` finishes before being killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from components import file_backend_url
from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster, kube_for
from lab.data import crds
from lab.data.seed import settle
from lab.data.seed_objects import Topology
from lab.seams import seam_env
from metal3_pivot import MoveOptions, Mover, verify

ROOT = Path(__file__).resolve().parent.parent


kube = kube_for


def cli(src: LocalCluster, dst: LocalCluster, kill_after: int | None) -> int:
    env = dict(os.environ)
    if kill_after:
        env.update(seam_env(kill_after=kill_after))
    return subprocess.run([sys.executable, "-m", "metal3_pivot.cli", "move", "--kubeconfig", str(src.kubeconfig),
                           "--to-kubeconfig", str(dst.kubeconfig), "-n", "metal3"], cwd=ROOT, env=env,
                          capture_output=True).returncode


async def writes_of(src: LocalCluster, dst: LocalCluster) -> int:
    async with kube(src, "source") as s, kube(dst, "target") as d:
        return (await Mover(s, d, MoveOptions(namespaces=("metal3",))).run()).writes


async def ok(a: LocalCluster, b: LocalCluster, expect: str) -> tuple[bool, int]:
    async with kube(a, "ephemeral") as ka, kube(b, "target") as kb:
        report = await verify(ka, kb, ("metal3",), expect=expect)
    return report.ok, sum(report.counts[expect].values())


async def reconcile(c: LocalCluster, topo: Topology) -> None:
    async with kube(c, c.name) as k:
        await settle(k, topo, crds.bundle().resource_types())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step", type=int, default=1, help="kill after every STEP-th write")
    p.add_argument("--hosts", type=int, default=6,
                   help="hosts in the seeded topology (3 control planes + workers + 1 spare)")
    p.add_argument("--via", choices=("cli", "pulumi"), default="cli",
                   help="kill the engine CLI (default) or the mover inside `pulumi up`")
    a = p.parse_args()
    topo = Topology(namespace="metal3", clusters=1, control_planes=3, workers=max(0, a.hosts - 4), spare_hosts=1)
    if a.via == "pulumi":
        return via_pulumi(a.step, topo)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="m3p-kill-") as tmp:
        clusters = start_clusters(["ephemeral", "target"], Path(tmp), attached=True)
        eph, tgt = clusters["ephemeral"], clusters["target"]
        try:
            asyncio.run(seed_cluster(eph, topo))
            objects = asyncio.run(ok(eph, tgt, "ephemeral"))[1]
            forward = asyncio.run(writes_of(eph, tgt))
            asyncio.run(reconcile(tgt, topo))
            backward = asyncio.run(writes_of(tgt, eph))
            asyncio.run(reconcile(eph, topo))
            tried = converged = 0
            lost = 0
            plan = (("move", (eph, tgt, forward)), ("move back", (tgt, eph, backward)))
            for direction, (src, dst, total) in plan:
                for k in range(1, total, a.step):
                    rc = cli(src, dst, k)
                    tried += 1
                    rerun = cli(src, dst, None)
                    good, count = asyncio.run(ok(eph, tgt, dst.name))
                    converged += int(rc == -9 and rerun == 0 and good)
                    lost += objects - count
                    asyncio.run(reconcile(dst, topo))
                    cli(dst, src, None)                  # back to the start of this direction
                    asyncio.run(reconcile(src, topo))
                    print(f"{direction}: killed after {k}/{total} writes -> re-run {'ok' if rerun == 0 else rerun}, "
                          f"invariants {'ok' if good else 'VIOLATED'}", file=sys.stderr, flush=True)
                # leave the objects where the next direction starts
                if direction == "move":
                    cli(src, dst, None)
                    asyncio.run(reconcile(dst, topo))
        finally:
            for c in clusters.values():
                c.stop()
    print("| objects | writes (move / back) | kill points tried | converged | objects lost | minutes |")
    print("|---|---|---|---|---|---|")
    minutes = (time.monotonic() - t0) / 60
    print(f"| {objects} | {forward} / {backward} | {tried} | {converged} | {lost} | {minutes:.1f} |")
    return 0 if converged == tried and lost == 0 else 1


# ---------------------------------------------------------------------------------------------- via pulumi

PASSPHRASE = "metal3-pivot-kill-matrix"


class Stack:
    """A throw-away project running this repository's program, driven through the real pulumi CLI."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "state").mkdir(exist_ok=True)
        (directory / "Pulumi.yaml").write_text(
            f"name: metal3-pivot\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n")
        (directory / "__main__.py").write_text(
            f"import runpy\nrunpy.run_path({str(ROOT / '__main__.py')!r}, run_name='__main__')\n")

    def run(self, *args: str, stdin: str | None = None, kill_after: int | None = None) -> int:
        env = dict(os.environ)
        env["PATH"] = f"{ROOT / '.tools' / 'bin'}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        env.update(PULUMI_BACKEND_URL=file_backend_url(self.dir / "state"), PULUMI_CONFIG_PASSPHRASE=PASSPHRASE,
                   PULUMI_SKIP_UPDATE_CHECK="true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
        if kill_after:
            env.update(seam_env(kill_after=kill_after))
        cmd = ["pulumi", *args, "--non-interactive", "--cwd", str(self.dir)]
        if args[:2] != ("stack", "init"):
            cmd += ["--stack", "kill"]
        proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 and kill_after is None:
            print(f"`pulumi {' '.join(args)}` failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}",
                  file=sys.stderr)
        return proc.returncode

    def up(self, kill_after: int | None = None) -> int:
        return self.run("up", "--yes", "--skip-preview", kill_after=kill_after)

    def locate(self, location: str) -> None:
        self.run("config", "set", "location", location)


def via_pulumi(step: int, topo: Topology) -> int:
    from benchmarks.fault_sweep import objects

    t0 = time.monotonic()
    ups = tried = converged = lost = 0
    writes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="m3p-kill-pulumi-") as tmp:
        eph = start_clusters(["ephemeral"], Path(tmp), attached=True)["ephemeral"]
        tgt = start_clusters(["target"], Path(tmp), attached=True, with_crds=False)["target"]
        try:
            asyncio.run(seed_cluster(eph, topo))
            original = asyncio.run(objects(eph))
            stack = Stack(Path(tmp) / "project")
            stack.run("stack", "init", "kill")
            stack.locate("ephemeral")
            for side, c in (("ephemeral", eph), ("target", tgt)):
                stack.run("config", "set", "--secret", "--path", f"{side}.kubeconfig", stdin=c.kubeconfig.read_text())
            stack.run("config", "set", "skipAwait", "true")
            stack.run("config", "set", "--path", "protect", "false")
            if stack.up() != 0:                                   # install: providers, Ironic; nothing moves
                return 1
            ups += 1
            where = "ephemeral"
            active = {"target": True, "ephemeral": True}           # directions that still have kill points
            k = 1
            while any(active.values()):
                for dest in ("target", "ephemeral"):
                    dst_c = tgt if dest == "target" else eph
                    stack.locate(dest)
                    rc = stack.up(kill_after=k) if active[dest] else stack.up()
                    ups += 1
                    killed = rc != 0
                    rerun = 0
                    if killed:
                        tried += 1
                        rerun = stack.up()
                        ups += 1
                    elif active[dest]:
                        active[dest] = False                       # finished before the k-th write
                        writes[dest] = k
                    good, _ = asyncio.run(ok(eph, tgt, dst_c.name))
                    moved = asyncio.run(objects(dst_c))
                    missing = sum(1 for key, o in original.items() if moved.get(key) != o)
                    lost += missing
                    if killed:
                        converged += int(rerun == 0 and good and missing == 0)
                        print(f"{where} -> {dest}: pulumi up killed after {k} writes -> re-run "
                              f"{'ok' if rerun == 0 else rerun}, invariants {'ok' if good else 'VIOLATED'}, "
                              f"objects differing {missing} ({(time.monotonic() - t0) / 60:.1f} min)",
                              file=sys.stderr, flush=True)
                    elif rc != 0 or not good or missing:
                        print(f"{where} -> {dest}: plain up rc={rc} invariants {good} missing {missing}",
                              file=sys.stderr, flush=True)
                        return 1
                    asyncio.run(reconcile(dst_c, topo))
                    where = dest
                k += step
        finally:
            eph.stop()
            tgt.stop()
    minutes = (time.monotonic() - t0) / 60
    print("| via | objects | kill step | kill points tried | converged | first k not reached (move / back) "
          "| objects lost | pulumi ups | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| pulumi up | {len(original)} | {step} | {tried} | {converged} | {writes.get('target')} / "
          f"{writes.get('ephemeral')} | {lost} | {ups} | {minutes:.1f} |")
    return 0 if converged == tried and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
