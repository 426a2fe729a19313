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

    python -m benchmarks.kill_matrix --via pulumi-cli [--kills 20] [--seed 7] [--plain-file-url]

`--via pulumi-cli` kills the `pulumi` CLI and every process it started (SIGKILL, all at once, as a lost
machine or an OOM kill of the group would) at a random moment of a pivot's or a move back's `pulumi up`,
drawn from how long a plain `up` of that direction takes: anywhere from the CLI's start through the
install pass, the Ironic handover, the move and the checkpoint saves. Then what an operator does: `pulumi
up`, and `pulumi cancel --yes` first when it names Pulumi's stale lock. `--plain-file-url` opens the
file:// backend without `metadata=skip` (components.file_backend_url says why we add it) to count how
often a kill leaves the state unreadable that way; such a state is repaired as docs/pulumi-layer.md says
(the empty `.attrs` deleted) and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import file_backend_url
from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster, kube_for
from lab.data import crds
from lab.data.seed import settle
from lab.data.seed_objects import Topology
from lab.plane.spawn import kill_tree
from lab.seams import seam_env
from metal3_pivot import DEPLOYMENTS, MoveOptions, Mover, ObjKey, verify

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
    p.add_argument("--via", choices=("cli", "pulumi", "pulumi-cli"), default="cli",
                   help="kill the engine CLI (default), the mover inside `pulumi up`, or the `pulumi` CLI's "
                        "whole process tree at a random moment")
    p.add_argument("--kills", type=int, default=20, help="--via pulumi-cli: how many `pulumi up`s to kill")
    p.add_argument("--seed", type=int, default=7, help="--via pulumi-cli: the kill moments' random seed")
    p.add_argument("--plain-file-url", action="store_true",
                   help="--via pulumi-cli: the file:// backend without metadata=skip (to count the damage)")
    a = p.parse_args()
    topo = Topology(namespace="metal3", clusters=1, control_planes=3, workers=max(0, a.hosts - 4), spare_hosts=1)
    if a.via == "pulumi":
        return via_pulumi(a.step, topo)
    if a.via == "pulumi-cli":
        return via_pulumi_cli(a.kills, a.seed, topo, plain_url=a.plain_file_url)
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

    def __init__(self, directory: Path, backend: str = "") -> None:
        self.dir = directory
        self.backend = backend or file_backend_url(directory / "state")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "state").mkdir(exist_ok=True)
        (directory / "Pulumi.yaml").write_text(
            f"name: metal3-pivot\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n")
        (directory / "__main__.py").write_text(
            f"import runpy\nrunpy.run_path({str(ROOT / '__main__.py')!r}, run_name='__main__')\n")

    def env(self, kill_after: int | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{ROOT / '.tools' / 'bin'}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        env.update(PULUMI_BACKEND_URL=self.backend, PULUMI_CONFIG_PASSPHRASE=PASSPHRASE,
                   PULUMI_SKIP_UPDATE_CHECK="true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
        if kill_after:
            env.update(seam_env(kill_after=kill_after))
        return env

    def command(self, *args: str) -> list[str]:
        cmd = ["pulumi", *args, "--non-interactive", "--cwd", str(self.dir)]
        if args[:2] != ("stack", "init"):
            cmd += ["--stack", "kill"]
        return cmd

    def call(self, *args: str, stdin: str | None = None, kill_after: int | None = None, quiet: bool = False,
             ) -> tuple[int, str]:
        """The exit code and output of one CLI run (the output printed when it failed unasked)."""
        proc = subprocess.run(self.command(*args), env=self.env(kill_after), input=stdin, capture_output=True,
                              text=True, timeout=900)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0 and kill_after is None and not quiet:
            print(f"`pulumi {' '.join(args)}` failed ({proc.returncode}):\n{output[-3000:]}", file=sys.stderr)
        return proc.returncode, output

    def run(self, *args: str, stdin: str | None = None, kill_after: int | None = None) -> int:
        return self.call(*args, stdin=stdin, kill_after=kill_after)[0]

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """In its own process group, so that it and what it starts can be killed together."""
        return subprocess.Popen(self.command(*args), env=self.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def up(self, kill_after: int | None = None) -> int:
        return self.run("up", "--yes", "--skip-preview", kill_after=kill_after)

    def locate(self, location: str) -> None:
        self.run("config", "set", "location", location)


@contextlib.contextmanager
def seeded_pair(topo: Topology, prefix: str) -> Iterator[tuple[Path, LocalCluster, LocalCluster, dict[ObjKey, Any]]]:
    """A temporary folder, the ephemeral cluster with its CRDs and `topo` seeded, a bare target (the stack
    installs it) and the seeded objects as they are; the clusters are stopped on the way out."""
    from benchmarks.fault_sweep import objects

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        eph = start_clusters(["ephemeral"], Path(tmp), attached=True)["ephemeral"]
        tgt = start_clusters(["target"], Path(tmp), attached=True, with_crds=False)["target"]
        try:
            asyncio.run(seed_cluster(eph, topo))
            yield Path(tmp), eph, tgt, asyncio.run(objects(eph))
        finally:
            eph.stop()
            tgt.stop()


def installed(stack: Stack, eph: LocalCluster, tgt: LocalCluster) -> bool:
    """The stack made and its first `up` done (providers and Ironic installed, nothing moved)."""
    stack.run("stack", "init", "kill")
    stack.locate("ephemeral")
    for side, c in (("ephemeral", eph), ("target", tgt)):
        stack.run("config", "set", "--secret", "--path", f"{side}.kubeconfig", stdin=c.kubeconfig.read_text())
    stack.run("config", "set", "skipAwait", "true")
    stack.run("config", "set", "--path", "protect", "false")
    return stack.up() == 0


def via_pulumi(step: int, topo: Topology) -> int:
    from benchmarks.fault_sweep import objects

    t0 = time.monotonic()
    ups = tried = converged = lost = 0
    writes: dict[str, int] = {}
    with seeded_pair(topo, "m3p-kill-pulumi-") as (tmp, eph, tgt, original):
        stack = Stack(tmp / "project")
        if not installed(stack, eph, tgt):
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
    minutes = (time.monotonic() - t0) / 60
    print("| via | objects | kill step | kill points tried | converged | first k not reached (move / back) "
          "| objects lost | pulumi ups | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| pulumi up | {len(original)} | {step} | {tried} | {converged} | {writes.get('target')} / "
          f"{writes.get('ephemeral')} | {lost} | {ups} | {minutes:.1f} |")
    return 0 if converged == tried and lost == 0 else 1


# ------------------------------------------------------------------------------------------ via pulumi-cli

def ironic_on(*clusters: LocalCluster) -> set[str]:
    """The names of the clusters that run an Ironic Deployment."""
    async def on(c: LocalCluster) -> bool:
        async with kube(c, c.name) as k:
            return await k.get(DEPLOYMENTS, "ironic", "baremetal-operator-system") is not None
    return {c.name for c in clusters if asyncio.run(on(c))}


def unreadable_repaired(state: Path) -> int:
    """Deletes the empty `.attrs` sidecars a kill left (docs/pulumi-layer.md's repair); how many."""
    empty = [p for p in state.rglob("*.attrs") if p.stat().st_size == 0]
    for path in empty:
        path.unlink()
    return len(empty)


def via_pulumi_cli(kills: int, seed: int, topo: Topology, *, plain_url: bool) -> int:
    from benchmarks.fault_sweep import objects

    rng = random.Random(seed)
    t0 = time.monotonic()
    tally = {"killed": 0, "finished first": 0, "needed cancel": 0, "recovered": 0, "unreadable": 0,
             "violated": 0, "lost": 0, "not one Ironic": 0}
    with seeded_pair(topo, "m3p-kill-cli-") as (tmp, eph, tgt, original):
        state = tmp / "project" / "state"
        stack = Stack(tmp / "project", backend=f"file://{state}" if plain_url else "")
        if not installed(stack, eph, tgt):
            return 1
        took: dict[str, float] = {}                  # a plain `up` of each direction: the kills' range
        for dest in ("target", "ephemeral"):
            stack.locate(dest)
            started = time.monotonic()
            if stack.up() != 0:
                return 1
            took[dest] = time.monotonic() - started
            asyncio.run(reconcile(tgt if dest == "target" else eph, topo))   # no controllers: statuses
        say = f"plain ups: pivot {took['target']:.1f} s, move back {took['ephemeral']:.1f} s"
        print(say, file=sys.stderr, flush=True)
        for i in range(kills):
            dest = ("target", "ephemeral")[i % 2]
            dst_c = tgt if dest == "target" else eph
            stack.locate(dest)
            at = rng.uniform(0.0, took[dest])
            proc = stack.start("up", "--yes", "--skip-preview")
            try:
                proc.wait(timeout=at)
                tally["finished first"] += 1
                what = f"finished before {at:.1f} s"
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait()
                tally["killed"] += 1
                what = f"killed at {at:.1f} s"
            rc, out = stack.call("up", "--yes", "--skip-preview", quiet=True)
            repaired = 0
            if "failed to load checkpoint" in out:
                repaired = unreadable_repaired(state)
                tally["unreadable"] += 1
                rc, out = stack.call("up", "--yes", "--skip-preview", quiet=True)
            if rc != 0 and "pulumi cancel" in out:
                tally["needed cancel"] += 1
                stack.run("cancel", "--yes")
                rc, out = stack.call("up", "--yes", "--skip-preview")
            good, _ = asyncio.run(ok(eph, tgt, dst_c.name))
            moved = asyncio.run(objects(dst_c))
            missing = sum(1 for key, o in original.items() if moved.get(key) != o)
            one_ironic = ironic_on(eph, tgt) == {dst_c.name}
            tally["recovered"] += int(rc == 0)
            tally["violated"] += int(not good)
            tally["lost"] += missing
            tally["not one Ironic"] += int(not one_ironic)
            print(f"{i + 1}/{kills} -> {dest}: {what}; next up {'ok' if rc == 0 else rc}"
                  f"{f', {repaired} empty sidecar(s) removed first' if repaired else ''}; invariants "
                  f"{'ok' if good else 'VIOLATED'}, objects differing {missing}, "
                  f"Ironic {'one, in the destination' if one_ironic else 'NOT ONE'} "
                  f"({(time.monotonic() - t0) / 60:.1f} min)", file=sys.stderr, flush=True)
            if rc != 0:
                print(out[-3000:], file=sys.stderr)
                break
            asyncio.run(reconcile(dst_c, topo))
    minutes = (time.monotonic() - t0) / 60
    url = "file:// (plain)" if plain_url else "file://…?metadata=skip"
    print("| backend | objects | `up`s killed | finished before the kill | needed `pulumi cancel` | state unreadable "
          "| recovered | invariants violated | objects lost | not one Ironic | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {url} | {len(original)} | {tally['killed']} | {tally['finished first']} | {tally['needed cancel']} "
          f"| {tally['unreadable']} | {tally['recovered']} | {tally['violated']} | {tally['lost']} "
          f"| {tally['not one Ironic']} | {minutes:.1f} |")
    bad = tally["violated"] + tally["lost"] + tally["not one Ironic"] + (plain_url is False) * tally["unreadable"]
    return 0 if tally["recovered"] == tally["killed"] + tally["finished first"] and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
