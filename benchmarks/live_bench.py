"""Benchmark: the live pivot, ours against clusterctl on the same live lab in the same run (issue 17, goal 5).

    python -m benchmarks.live_bench                           # one round
    python -m benchmarks.live_bench --rounds 2 --json .bench/live.json

The lab is `make demo`'s (lab/workflow.py): the rack's fake BMCs, the ephemeral management cluster with
the real CAPI, kubeadm, CAPM3, IPAM and BMO managers and Ironic, and the target cluster provisioned
through them on two of the machines. A throw-away project running this repository's program (the local
stack's settings, Deployments awaited: the lab's node agents run them) installs the providers on the
target. Then, per round, in turns on the same lab:
- **ours**: `pulumi up --yes --skip-preview` with `location: target` (the Ironic handover and the move),
  then with `location: ephemeral`; each `up` logged at `-v=7` and split where it went (pulumi_bench's
  `where_it_went`: to the gate, the gate, the installs and the handover, the move, around it, the exit)
  and its handover timed step by step (`handover_timeline`);
- **clusterctl**: metal3-dev-env's move.yml by hand: Ironic and BMO deleted from the source, deployed on
  the destination and awaited `Available`, then `clusterctl move`; there and back.
Every move is timed from its start until the destination's controllers report everything reconciled
(lab/plane/checks.py, polled every second: what test_demo.py and test_live_pivot.py check, the machines'
own record that nothing was re-provisioned or power-cycled included). An `IronicWatch` looks at the
processes every 20 ms: never two Ironics. Progress goes to stderr as it happens (the checks still pending,
when they change); the table to stdout; every figure to the JSON file. The lab is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.move_bench import machine_speed, say, speed_line
from benchmarks.pulumi_bench import Project, log_time, where_it_went
from lab.cluster import LocalCluster, free_port
from lab.data.topology import LiveTopology
from lab.plane.checks import Check, IronicWatch
from lab.workflow import Lab

ROOT = Path(__file__).resolve().parent.parent
DIRECTIONS = (("pivot", "target"), ("move back", "ephemeral"))
OURS, CLUSTERCTL = "ours (`pulumi up`)", "clusterctl + handover by hand"


_STEP = re.compile(r"Provider\[[^\]]+\]\.(?P<op>Delete|Create|Update)\((?:[\w-]+,)?(?P<urn>urn:[^)]*?)\):? "
                   r"(?P<what>executing|success)")
#: the handover's resources that set its pace, by the end of their resource name (Ironic's children)
PACERS = {"ironic": "deployment-baremetal-operator-system-ironic",
          "bmo": "deployment-baremetal-operator-system-baremetal-operator-controller-manager",
          "webhook": "validatingwebhookconfiguration-baremetal-operator-validating-webhook-configuration"}


_PHASES = {("Delete", "executing"): "delete", ("Delete", "success"): "gone", ("Create", "executing"): "create",
           ("Create", "success"): "ready", ("Update", "executing"): "start", ("Update", "success"): "end"}


def handover_timeline(log: Path) -> dict[str, float]:
    """When the Ironic handover's slow steps ran, in seconds from its first delete (an `up` logged at
    `-v=7`): each Deployment's delete (the old process's exit, awaited) and create (the new one's start to
    `Available`), the webhook configuration's replacement, and the move's start. It shows what the split
    cannot: whether the two Deployments' replacements ran side by side or one waited for an engine worker
    (docs/performance.md, "Sixteenth session"). Empty when the log has no handover."""
    marks: dict[str, float] = {}
    start: float | None = None
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        m = _STEP.match(str(entry.get("msg", "")))
        t = log_time(entry)
        if m is None or t is None:
            continue
        urn = m["urn"]
        if "metal3:ironic:Ironic$" in urn and m["op"] == "Delete" and start is None:
            start = t
        name = urn.rsplit("::", 1)[-1].split(",")[0]       # a Delete's URN is followed by the object's id
        key = next((k for k, end in PACERS.items() if name.endswith(end)), "move" if name == "objects" else None)
        if key is not None:
            marks.setdefault(f"{key} {_PHASES[m['op'], m['what']]}", t)
    if start is None:
        return {}
    return {k: round(v - start, 2) for k, v in sorted(marks.items(), key=lambda kv: kv[1])}


class Timeline:
    """The lab's progress lines, passed on to stderr and kept with their time, so that a move's wait for
    its checks can say which check was the last to pass."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def __call__(self, text: str) -> None:
        self.lines.append((time.monotonic(), text))
        say(text)

    def since(self, t0: float) -> list[tuple[float, str]]:
        return [(round(t - t0, 1), text) for t, text in self.lines if t >= t0]


def failed(result: list[Check]) -> str:
    return "; ".join(str(c) for c in result if not c.ok)


def ours(project: Project, location: str, log: Path) -> dict[str, Any]:
    project.set_location(location)
    up = project.run("up", "--yes", "--skip-preview", log=log)
    engine = project.last_move().get("seconds")
    return {"up_s": up, "move_s": engine, "split": where_it_went(log, up, engine) if engine else {},
            "handover": handover_timeline(log)}


def reference(lab: Lab, source: LocalCluster, dest: LocalCluster, home: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    lab.handover_by_hand(source, dest)
    handover = time.monotonic() - t0
    moved = lab.clusterctl_move(source, dest, home)
    return {"up_s": time.monotonic() - t0, "move_s": moved, "split": {"handover": handover, "move": moved}}


def one_move(lab: Lab, timeline: Timeline, tool: str, what: str, location: str, project: Project,
             scratch: Path) -> dict[str, Any]:
    """One move with `tool`, from its start until the destination's controllers report everything reconciled."""
    eph, tgt = LocalCluster.load(lab.base / "ephemeral"), lab.target()
    source, dest = (eph, tgt) if location == "target" else (tgt, eph)
    say(f"{tool}: {what} (to {dest.name})")
    mark = lab.checkpoint()
    t0 = time.monotonic()
    with IronicWatch(lab.base) as watch:
        if tool == OURS:
            figures = ours(project, location, scratch / f"{what.replace(' ', '-')}.log")
        else:
            figures = reference(lab, source, dest, scratch / "clusterctl-home")
    result, waited = lab.verify(dest, mark)
    if not all(c.ok for c in result):
        raise SystemExit(f"live_bench: the checks after {tool}'s {what} failed on {dest.name}: {failed(result)}; "
                         f"logs under {lab.base}")
    if watch.max_seen != 1:
        raise SystemExit(f"live_bench: two Ironics at once during {tool}'s {what}: {watch.overlaps[:3]}")
    total = time.monotonic() - t0
    say(f"{tool}: {what}: {figures['up_s']:.1f} s, reconciled after {total:.1f} s")
    return {"tool": tool, "what": what, **figures, "reconciled_after_s": waited, "total_s": total,
            "waits": timeline.since(t0 + figures["up_s"])}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| round | tool | move | `up` / handover + move s | the move alone s | reconciled after s | "
           "start -> reconciled s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        move = f"{r['move_s']:.1f}" if r.get("move_s") is not None else "-"
        out.append(f"| {r['round']} | {r['tool']} | {r['what']} | {r['up_s']:.1f} | {move} | "
                   f"{r['reconciled_after_s']:.1f} | {r['total_s']:.1f} |")
    out.append("")
    out.append("where each `up` went (s):")
    for r in rows:
        if r["split"]:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in r["split"].items())
            out.append(f"- round {r['round']}, {r['tool']}, {r['what']}: {parts}")
    out.append("")
    out.append("the handover inside each `up`, s from its first delete:")
    for r in rows:
        if r.get("handover"):
            marks = ", ".join(f"{k} {v:.1f}" for k, v in r["handover"].items())
            out.append(f"- round {r['round']}, {r['what']}: {marks}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1, help="pivot + move back with each tool, this many times")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--base", type=Path, default=ROOT / ".bench" / "live", help="where the lab runs (emptied)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    # the lab's kubectl and clusterctl, and the CLI, from the project's tools first (as the Makefile's PATH)
    os.environ["PATH"] = os.pathsep.join((str(ROOT / ".tools" / "bin"), str(ROOT / ".venv" / "bin"),
                                          os.environ.get("PATH", "")))
    speed = machine_speed()
    say(speed_line(speed))
    shutil.rmtree(args.base, ignore_errors=True)
    args.base.mkdir(parents=True)
    timeline = Timeline()
    lab = Lab(args.base / "lab", LiveTopology(api_port=free_port()), attached=True, progress=timeline)
    rows: list[dict[str, Any]] = []
    try:
        say("dev-env: the rack, the ephemeral cluster, its controllers and Ironic")
        lab.dev_env()
        say("provisioning the target cluster through CAPI, CAPM3, BMO and Ironic")
        lab.provision()
        project = Project(args.base / "project", lab.base / "ephemeral" / "kubeconfig", lab.target_kubeconfig,
                          await_deployments=True)
        say("`pulumi up`: the providers onto the target")
        lab.timings["pulumi up: providers onto the target"] = project.run("up", "--yes", "--skip-preview")
        for n in range(1, args.rounds + 1):
            scratch = args.base / f"round-{n}"
            scratch.mkdir()
            for tool in (OURS, CLUSTERCTL):
                for what, location in DIRECTIONS:
                    rows.append({"round": n, **one_move(lab, timeline, tool, what, location, project, scratch)})
    finally:
        lab.stop()
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "when": datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "speed": speed, "lab": lab.timings, "moves": rows}, indent=1))
        say(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
