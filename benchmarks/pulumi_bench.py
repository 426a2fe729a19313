"""Benchmark: what the Pulumi layer costs on top of the engine (issue 17, goal 4).

    make bench-pulumi                                   # 1000 hosts, 5 previews
    python -m benchmarks.pulumi_bench --hosts 100 1000 --previews 5 --json .bench/pulumi_bench.json

For each size: a fresh pair of local clusters (the target bare, as `make demo` finds it before the
install), the ephemeral one seeded with the move benchmark's topology, and a throw-away project running
this repository's program with the local stack's settings (`protect` and `awaitDeployments` off: no
kubelet runs the controllers here; the file:// backend). Then, timed from the CLI's start to its exit:
1. `pulumi up --yes --skip-preview` on the bare target: the install (CRDs, providers, Ironic);
2. `--previews` no-change `pulumi preview`s (the goal: at most 5 s at 1,000 hosts), then one more with the
   engine's log, split (not in the median: the log costs a little);
3. the bare engine move, there and back, on the same clusters and objects (the move benchmark's
   `engine_move`: the Mover in a process of its own, at the stack's concurrency, each side settled first):
   what `metal3-pivot move` takes without Pulumi, the baseline of goal 4's overhead;
4. `pulumi preview` with `location: target`: the preview of the pivot, what a pull request shows;
5. `pulumi up --yes` with `location: target`: the pivot as an operator runs it (its preview included);
   its overhead is its time over the bare move's (the goal: at most 10 %). The engine's own time inside
   the `up` (ObjectLocation's `lastMove.seconds`) is kept too: since ObjectLocation's update skips the
   Mover's read-only first reading, which its `check` just made, it is shorter than the bare move;
6. the target settled as the move benchmark settles it (what its controllers would report), then
   `pulumi up --yes --skip-preview` with `location: ephemeral`: the move back without the preview.
Both `up`s of a move run with the engine's log (`-v=7`, one line per provider call) so that the overhead
is split where it goes (`where_it_went`): the start and the program, MovePreflight's reading, the installs
and the Ironic handover, what ObjectLocation's update does around the engine's move, the exit. Their
times include the log's own cost (some 3,000 lines at `-v=7`; the 18:04 run of 2026-12-01, logged, and
the 17:42 one, not, were within the machine's noise of each other: docs/performance.md).
Progress goes to stderr as it happens; the tables to stdout; every figure to the JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.move_bench import engine_move, machine_speed, say, settle_after_move, speed_line, topology_for
from components import file_backend_url
from lab.cli import seed_cluster, start_clusters
from lab.data.seed_objects import Topology, build
from tools.preview_config import preview_config

ROOT = Path(__file__).resolve().parent.parent
STACK = "bench"
#: the stack's move concurrency (components/config.py's default), which the bare move uses too
CONCURRENCY = 32
PASSPHRASE = "metal3-pivot-bench"


class Project:
    """A throw-away Pulumi project that runs this repository's program against two local clusters."""

    def __init__(self, directory: Path, ephemeral: Path, target: Path, *, await_deployments: bool = False) -> None:
        """`ephemeral` and `target` are the clusters' kubeconfigs; `await_deployments` only where something
        runs the Deployments (the live lab's node agents)."""
        self.directory = directory
        directory.mkdir(parents=True)
        (directory / "state").mkdir()
        (directory / "Pulumi.yaml").write_text(
            f"name: metal3-pivot\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n")
        (directory / "__main__.py").write_text(
            f"import runpy\nrunpy.run_path({str(ROOT / '__main__.py')!r}, run_name='__main__')\n")
        self.env = {**os.environ, "PULUMI_BACKEND_URL": file_backend_url(directory / "state"),
                    "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_SKIP_UPDATE_CHECK": "true",
                    "PATH": f"{ROOT / '.tools' / 'bin'}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}"
                            f"{os.environ.get('PATH', '')}"}
        self.config = preview_config(ROOT / "stacks" / "Pulumi.local.yaml", ephemeral, target)
        self.config["config"].update({"metal3-pivot:protect": "false",
                                      "metal3-pivot:awaitDeployments": str(await_deployments).lower()})
        self.run("stack", "init", STACK)
        self.set_location("ephemeral")

    def set_location(self, location: str) -> None:
        self.config["config"]["metal3-pivot:location"] = location
        (self.directory / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(self.config))

    def run(self, *args: str, log: Path | None = None) -> float:
        """One CLI call, timed from start to exit; a failure stops the benchmark with the CLI's output.
        With `log`, the engine's own log (`-v=7`: one line per provider call, with its time) goes there."""
        cmd = ["pulumi", *args, "--non-interactive", "--cwd", str(self.directory)]
        if args[:2] != ("stack", "init"):
            cmd += ["--stack", STACK]
        if log is not None:
            cmd += ["--logtostderr", "--logflow", "-v=7"]
        started = time.monotonic()
        with log.open("w") if log is not None else contextlib.nullcontext() as err:
            proc = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, text=True, timeout=3600,
                                  stderr=err or subprocess.PIPE)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            stderr = log.read_text()[-4000:] if log is not None else (proc.stderr or "")[-4000:]
            raise SystemExit(f"pulumi_bench: `{' '.join(cmd)}` failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}{stderr}")
        return seconds

    def last_move(self) -> dict[str, Any]:
        """ObjectLocation's `lastMove` output: the engine's own figures of the move it ran."""
        proc = subprocess.run(["pulumi", "stack", "export", "--cwd", str(self.directory), "--stack", STACK],
                              env=self.env, capture_output=True, text=True, check=True)
        resources = json.loads(proc.stdout)["deployment"]["resources"]
        (loc,) = [r for r in resources if r["type"].endswith(":ObjectLocation")]
        return dict(loc.get("outputs", {}).get("lastMove") or {})


def log_time(entry: dict[str, Any]) -> float | None:
    """An engine log line's time (it writes nanoseconds and a Z), as a Unix timestamp."""
    stamp, _, frac = str(entry.get("time", "")).rstrip("Z").partition(".")
    if not stamp:
        return None
    return datetime.fromisoformat(stamp + "+00:00").timestamp() + float("0." + (frac or "0"))


_CALL = re.compile(r"Provider\[[^\]]+\]\.(?P<op>Check|Update|Create)\((?:[\w-]+,)?urn:[^)]*"
                   r"::(?P<name>preflight|objects)(?:,[\w-]+)?\):? (?P<what>executing|success)")


def where_it_went(log: Path, total_s: float, engine_s: float | None = None) -> dict[str, float]:
    """Split one CLI run by the engine's log (`Project.run(log=...)`), at the last `check` of MovePreflight
    (an update's; a preview's comes earlier) and, in an `up` of a move (`engine_s` given), ObjectLocation's
    update:
    - `to pre-flight`: CLI start, its preview if any, the language host and the program up to the gate;
    - `pre-flight`: MovePreflight's check (both clusters read, the plan, the findings);
    - `installs and handover`: the installs' diffs and the Ironic handover, to the move's start;
    - `move`: the engine's own move (ObjectLocation's `lastMove.seconds`);
    - `around the move`: the rest of ObjectLocation's update (the clients, the outputs' reading);
    - `to exit`: after the update, to the CLI's exit (the state written).
    In a preview (no `engine_s`): `to pre-flight`, `pre-flight`, `installs' diffs` to ObjectLocation's
    check, that `check`, and `to exit`."""
    first: float | None = None
    marks: dict[tuple[str, str, str], float] = {}
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        t = log_time(entry)
        if t is None:
            continue
        first = t if first is None else first
        m = _CALL.match(str(entry.get("msg", "")))
        if m:
            op = "Write" if m["op"] in ("Update", "Create") else m["op"]
            marks[(op, m["name"], m["what"])] = t - first   # the last of each: the update's, after any preview
    second = ("Write", "objects") if engine_s is not None else ("Check", "objects")
    need = [("Check", "preflight", "executing"), ("Check", "preflight", "success"),
            (*second, "executing"), (*second, "success")]
    if any(k not in marks for k in need):
        return {}
    pf0, pf1, ol0, ol1 = (marks[k] for k in need)
    if engine_s is None:
        return {"to pre-flight": pf0, "pre-flight": pf1 - pf0, "installs' diffs": ol0 - pf1,
                "ObjectLocation's check": ol1 - ol0, "to exit": total_s - ol1}
    return {"to pre-flight": pf0, "pre-flight": pf1 - pf0, "installs and handover": ol0 - pf1,
            "move": engine_s, "around the move": ol1 - ol0 - engine_s, "to exit": total_s - ol1}


def run_size(hosts: int, previews: int, base: Path) -> dict[str, Any]:
    topo: Topology = topology_for(hosts)
    objects = len(build(topo))
    say(f"{hosts} hosts: starting two clusters (the target bare)")
    eph = start_clusters(["ephemeral"], base / f"h{hosts}", attached=True)["ephemeral"]
    tgt = start_clusters(["target"], base / f"h{hosts}", attached=True, with_crds=False)["target"]
    try:
        say(f"{hosts} hosts: seeding {objects} objects")
        asyncio.run(seed_cluster(eph, topo, concurrency=64))
        project = Project(base / f"h{hosts}" / "project", eph.kubeconfig, tgt.kubeconfig)
        say(f"{hosts} hosts: install (`pulumi up --skip-preview` on the bare target)")
        install = project.run("up", "--yes", "--skip-preview")
        times = []
        for i in range(previews):
            times.append(project.run("preview"))
            say(f"{hosts} hosts: no-change preview {i + 1}/{previews}: {times[-1]:.1f} s")
        logs = base / f"h{hosts}" / "logs"
        logs.mkdir()
        logged = project.run("preview", log=logs / "preview.log")    # one more, not in the median: logging
        preview_parts = where_it_went(logs / "preview.log", logged)
        say(f"{hosts} hosts: a no-change preview with the engine's log, {logged:.1f} s: {_parts(preview_parts)}")
        say(f"{hosts} hosts: the bare engine move there and back (the baseline)")
        bare = {"forward": engine_move(eph, tgt, CONCURRENCY, "bare forward")}
        settle_after_move(tgt, topo)
        bare["back"] = engine_move(tgt, eph, CONCURRENCY, "bare back")
        settle_after_move(eph, topo)
        bare_fwd, bare_back = bare["forward"]["seconds"], bare["back"]["seconds"]
        say(f"{hosts} hosts: bare engine move {bare_fwd:.1f} s forward, {bare_back:.1f} s back")
        project.set_location("target")
        pivot_preview = project.run("preview")
        say(f"{hosts} hosts: preview of the pivot: {pivot_preview:.1f} s; now `pulumi up` to the target")
        up_fwd = project.run("up", "--yes", log=logs / "pivot.log")
        fwd = project.last_move()
        fwd_s = float(fwd.get("seconds") or 0)
        fwd_parts = where_it_went(logs / "pivot.log", up_fwd, fwd_s)
        say(f"{hosts} hosts: pivot up, where it went: {_parts(fwd_parts)}")
        say(f"{hosts} hosts: pivot up {up_fwd:.1f} s, engine move {fwd.get('seconds')} s; settling the target")
        settle_after_move(tgt, topo)
        project.set_location("ephemeral")
        up_back = project.run("up", "--yes", "--skip-preview", log=logs / "back.log")
        back = project.last_move()
        back_s = float(back.get("seconds") or 0)
        back_parts = where_it_went(logs / "back.log", up_back, back_s)
        say(f"{hosts} hosts: move back up, where it went: {_parts(back_parts)}")
        say(f"{hosts} hosts: move back up {up_back:.1f} s (no preview), engine move {back.get('seconds')} s")
        return {"hosts": hosts, "objects": objects, "install_s": install, "previews_s": times,
                "preview_median_s": statistics.median(times), "pivot_preview_s": pivot_preview,
                "bare_forward_s": bare_fwd, "bare_back_s": bare_back,
                "bare_phases_s": {way: m["phases"] for way, m in bare.items()},
                "phases_forward_s": fwd.get("phases"), "phases_back_s": back.get("phases"),
                "up_forward_s": up_fwd, "engine_forward_s": fwd_s, "moved_forward": fwd.get("moved"),
                "overhead_forward": (up_fwd - bare_fwd) / bare_fwd,
                "overhead_forward_vs_engine_in_up": (up_fwd - fwd_s) / fwd_s if fwd_s else None,
                "up_back_s": up_back, "engine_back_s": back_s, "moved_back": back.get("moved"),
                "overhead_back": (up_back - bare_back) / bare_back,
                "overhead_back_vs_engine_in_up": (up_back - back_s) / back_s if back_s else None,
                "parts_preview_s": preview_parts, "parts_forward_s": fwd_parts, "parts_back_s": back_parts}
    finally:
        eph.stop()
        tgt.stop()


def table(rows: list[dict[str, Any]]) -> str:
    head = ["hosts", "objects", "install s", "no-change preview s (median, min-max)", "pivot preview s",
            "pivot up s", "bare move s", "engine in up s", "overhead", "back up s (no preview)", "bare move s",
            "engine in up s", "overhead"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("-" * (len(h) + 2) for h in head) + "|"]
    for r in rows:
        p = r["previews_s"]
        cells = [str(r["hosts"]), str(r["objects"]), f"{r['install_s']:.1f}",
                 f"{r['preview_median_s']:.1f} ({min(p):.1f}-{max(p):.1f})", f"{r['pivot_preview_s']:.1f}",
                 f"{r['up_forward_s']:.1f}", f"{r['bare_forward_s']:.1f}", f"{r['engine_forward_s']:.1f}",
                 _pct(r["overhead_forward"]), f"{r['up_back_s']:.1f}", f"{r['bare_back_s']:.1f}",
                 f"{r['engine_back_s']:.1f}", _pct(r["overhead_back"])]
        lines.append("| " + " | ".join(cells) + " |")
    for title, runs in (("a no-change `preview`", [("preview", "preview")]),
                        ("each `up` of a move", [("pivot `up`", "forward"), ("back `up --skip-preview`", "back")])):
        parts = [(r["hosts"], what, r.get(f"parts_{way}_s") or {}) for r in rows for what, way in runs]
        names = list(next((p for *_, p in parts if p), {}))
        if names:
            lines += ["", f"where {title} went (s, from the engine's log):", "",
                      "| hosts | run | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
            lines += [f"| {h} | {what} | " + " | ".join(f"{p[n]:.1f}" if n in p else "-" for n in names) + " |"
                      for h, what, p in parts]
    return "\n".join(lines)


def _parts(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()) or "(not found in the engine's log)"


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
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), **machine_speed()}
    say(f"machine: {speed_line(meta)}")
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
