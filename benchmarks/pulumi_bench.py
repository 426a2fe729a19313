"""Benchmark: what the Pulumi layer costs on top of the engine (issue 17, goal 4).

    make bench-pulumi                                   # 1000 hosts, 5 previews
    python -m benchmarks.pulumi_bench --hosts 100 1000 --previews 5 --json .bench/pulumi_bench.json

For each size: a fresh pair of local clusters (the target bare, as `make demo` finds it before the
install), the ephemeral one seeded with the move benchmark's topology, and a throw-away project running
this repository's program with the local stack's settings (`protect` and `awaitDeployments` off: no
kubelet runs the controllers here; the file:// backend). Then, timed from the CLI's start to its exit:
1. `pulumi up --yes --skip-preview` on the bare target: the install (CRDs, providers, Ironic);
2. `--previews` no-change `pulumi preview`s (the goal: at most 5 s at 1,000 hosts);
3. `pulumi preview` with `location: target`: the preview of the pivot, what a pull request shows;
4. `pulumi up --yes` with `location: target`: the pivot as an operator runs it (its preview included);
   the engine's own move time is ObjectLocation's `lastMove.seconds` in the state, and the overhead is
   the rest (the goal: at most 10 % of the move);
5. the target settled as the move benchmark settles it (what its controllers would report), then
   `pulumi up --yes --skip-preview` with `location: ephemeral`: the move back without the preview.
Progress goes to stderr as it happens; the table to stdout; every figure to the JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.move_bench import say, settle_after_move, topology_for
from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster
from lab.data.seed_objects import Topology, build
from tools.preview_config import preview_config

ROOT = Path(__file__).resolve().parent.parent
STACK = "bench"
PASSPHRASE = "metal3-pivot-bench"


class Project:
    """A throw-away Pulumi project that runs this repository's program against two local clusters."""

    def __init__(self, directory: Path, ephemeral: LocalCluster, target: LocalCluster) -> None:
        self.directory = directory
        directory.mkdir(parents=True)
        (directory / "state").mkdir()
        (directory / "Pulumi.yaml").write_text(
            f"name: metal3-pivot\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n")
        (directory / "__main__.py").write_text(
            f"import runpy\nrunpy.run_path({str(ROOT / '__main__.py')!r}, run_name='__main__')\n")
        self.env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{directory / 'state'}",
                    "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_SKIP_UPDATE_CHECK": "true",
                    "PATH": f"{ROOT / '.tools' / 'bin'}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}"
                            f"{os.environ.get('PATH', '')}"}
        self.config = preview_config(ROOT / "stacks" / "Pulumi.local.yaml", ephemeral.kubeconfig, target.kubeconfig)
        self.config["config"].update({"metal3-pivot:protect": "false", "metal3-pivot:awaitDeployments": "false"})
        self.run("stack", "init", STACK)
        self.set_location("ephemeral")

    def set_location(self, location: str) -> None:
        self.config["config"]["metal3-pivot:location"] = location
        (self.directory / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(self.config))

    def run(self, *args: str) -> float:
        """One CLI call, timed from start to exit; a failure stops the benchmark with the CLI's output."""
        cmd = ["pulumi", *args, "--non-interactive", "--cwd", str(self.directory)]
        if args[:2] != ("stack", "init"):
            cmd += ["--stack", STACK]
        started = time.monotonic()
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=3600)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"pulumi_bench: `{' '.join(cmd)}` failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
        return seconds

    def last_move(self) -> dict[str, Any]:
        """ObjectLocation's `lastMove` output: the engine's own figures of the move it ran."""
        proc = subprocess.run(["pulumi", "stack", "export", "--cwd", str(self.directory), "--stack", STACK],
                              env=self.env, capture_output=True, text=True, check=True)
        resources = json.loads(proc.stdout)["deployment"]["resources"]
        (loc,) = [r for r in resources if r["type"].endswith(":ObjectLocation")]
        return dict(loc.get("outputs", {}).get("lastMove") or {})


def run_size(hosts: int, previews: int, base: Path) -> dict[str, Any]:
    topo: Topology = topology_for(hosts)
    objects = len(build(topo))
    say(f"{hosts} hosts: starting two clusters (the target bare)")
    eph = start_clusters(["ephemeral"], base / f"h{hosts}", attached=True)["ephemeral"]
    tgt = start_clusters(["target"], base / f"h{hosts}", attached=True, with_crds=False)["target"]
    try:
        say(f"{hosts} hosts: seeding {objects} objects")
        asyncio.run(seed_cluster(eph, topo, concurrency=64))
        project = Project(base / f"h{hosts}" / "project", eph, tgt)
        say(f"{hosts} hosts: install (`pulumi up --skip-preview` on the bare target)")
        install = project.run("up", "--yes", "--skip-preview")
        times = []
        for i in range(previews):
            times.append(project.run("preview"))
            say(f"{hosts} hosts: no-change preview {i + 1}/{previews}: {times[-1]:.1f} s")
        project.set_location("target")
        pivot_preview = project.run("preview")
        say(f"{hosts} hosts: preview of the pivot: {pivot_preview:.1f} s; now `pulumi up` to the target")
        up_fwd = project.run("up", "--yes")
        fwd = project.last_move()
        say(f"{hosts} hosts: pivot up {up_fwd:.1f} s, engine move {fwd.get('seconds')} s; settling the target")
        settle_after_move(tgt, topo)
        project.set_location("ephemeral")
        up_back = project.run("up", "--yes", "--skip-preview")
        back = project.last_move()
        say(f"{hosts} hosts: move back up {up_back:.1f} s (no preview), engine move {back.get('seconds')} s")
        fwd_s, back_s = float(fwd.get("seconds") or 0), float(back.get("seconds") or 0)
        return {"hosts": hosts, "objects": objects, "install_s": install, "previews_s": times,
                "preview_median_s": statistics.median(times), "pivot_preview_s": pivot_preview,
                "up_forward_s": up_fwd, "engine_forward_s": fwd_s, "moved_forward": fwd.get("moved"),
                "overhead_forward": (up_fwd - fwd_s) / fwd_s if fwd_s else None,
                "up_back_s": up_back, "engine_back_s": back_s, "moved_back": back.get("moved"),
                "overhead_back": (up_back - back_s) / back_s if back_s else None}
    finally:
        eph.stop()
        tgt.stop()


def table(rows: list[dict[str, Any]]) -> str:
    head = ["hosts", "objects", "install s", "no-change preview s (median, min-max)", "pivot preview s",
            "pivot up s", "engine s", "overhead", "back up s (no preview)", "engine s", "overhead"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("-" * (len(h) + 2) for h in head) + "|"]
    for r in rows:
        p = r["previews_s"]
        cells = [str(r["hosts"]), str(r["objects"]), f"{r['install_s']:.1f}",
                 f"{r['preview_median_s']:.1f} ({min(p):.1f}-{max(p):.1f})", f"{r['pivot_preview_s']:.1f}",
                 f"{r['up_forward_s']:.1f}", f"{r['engine_forward_s']:.1f}", _pct(r["overhead_forward"]),
                 f"{r['up_back_s']:.1f}", f"{r['engine_back_s']:.1f}", _pct(r["overhead_back"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f} %"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, nargs="+", default=[1000])
    p.add_argument("--previews", type=int, default=5, help="no-change previews per size")
    p.add_argument("--json", type=Path, default=ROOT / ".bench" / "pulumi_bench.json",
                   help="every figure, rewritten after each size")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="m3p-pbench-") as tmp:
        for hosts in args.hosts:
            rows.append(run_size(hosts, args.previews, Path(tmp)))
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(table(rows))
    print(f"\nfigures: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
