"""What the concurrency tests measure: who wrote, and whether two movers' writes ever interleaved.

Every mover of a test runs with the write journal seam (lab/seams.py) pointing at one shared file: it
appends a line per successful API write (time answered, time sent, pid, server, verb, path). Writes
to the move lock itself are set apart; every other write is the move. Two movers *interleave* when the
time spans of their move writes overlap: the thing the lock exists to prevent (goal: 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cluster import LocalCluster
from lab.seams import seam_env
from metal3_pivot.kube import LEASE
from metal3_pivot.lock import LOCK_NAME, LOCK_NAMESPACE
from tests.kit.env import ROOT, tool_env
from tests.kit.move import kube

LEASE_PATH = f"/namespaces/{LOCK_NAMESPACE}/leases"
#: how long each write of a slowed mover pauses: long enough that a move of the test topology lasts
#: ~10 s, so that a second mover started at the same time meets it
SLOW = "0.25"


@dataclass(frozen=True)
class Span:
    pid: int
    first: float           # answer times (time.time()) of the process's first and last move write
    last: float
    writes: int
    last_sent: float       # when the last move write to be sent was sent
    slowest: float         # the longest a write of the process (the lock's included) waited for its answer


def stamped_lines(stream: Any) -> tuple[list[tuple[float, str]], threading.Thread]:
    """Read a child's output in a thread, noting when each line arrived (the child flushes each line)."""
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in stream:
            lines.append((time.time(), line))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def journal_env(journal: Path, slow: bool = True, **extra: str) -> dict[str, str]:
    return {**seam_env(journal=journal, delay=SLOW if slow else 0), **extra}


def move_spans(journal: Path) -> dict[int, Span]:
    """Per writing process, the span of its writes other than the lock's."""
    by_pid: dict[int, list[tuple[float, float]]] = defaultdict(list)
    waits: dict[int, float] = defaultdict(float)
    if journal.exists():
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            pid, t, sent = int(entry["pid"]), float(entry["t"]), float(entry["started"])
            waits[pid] = max(waits[pid], t - sent)
            if LEASE_PATH in entry["path"]:
                continue
            by_pid[pid].append((t, sent))
    return {pid: Span(pid, min(t for t, _ in ws), max(t for t, _ in ws), len(ws), max(s for _, s in ws), waits[pid])
            for pid, ws in by_pid.items()}


def interleavings(journal: Path) -> int:
    """Pairs of movers whose move writes overlap in time."""
    spans = sorted(move_spans(journal).values(), key=lambda s: s.first)
    return sum(1 for i, a in enumerate(spans) for b in spans[i + 1:] if b.first <= a.last)


def lease(cluster: LocalCluster) -> dict[str, Any] | None:
    async def go() -> dict[str, Any] | None:
        async with kube(cluster) as k:
            return await k.get(LEASE, LOCK_NAME, LOCK_NAMESPACE)
    return asyncio.run(go())


def start_cli(*args: str, env_extra: dict[str, str]) -> subprocess.Popen[str]:
    """The engine CLI in the background (engine_cli's twin)."""
    return subprocess.Popen([sys.executable, "-m", "metal3_pivot.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env(**env_extra))


def wait_for_lease(cluster: LocalCluster, proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> None:
    """Until a mover holds the lock in `cluster` (fails early if the mover exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lease(cluster) is not None:
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the mover exited ({proc.returncode}) before taking the lock: {proc.stderr}")
        time.sleep(0.1)
    raise AssertionError("no mover took the lock")


def report_attempt(scenario: str, outcome: dict[str, Any]) -> None:
    """Stress mode (benchmarks/concurrency_stress.py) collects one JSON line per attempt."""
    path = os.environ.get("METAL3_PIVOT_CONCURRENCY_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"scenario": scenario, **outcome}) + "\n")


def repeats() -> int:
    """How many times each concurrency scenario runs: 1 in the suite, 10 in stress mode."""
    return max(1, int(os.environ.get("METAL3_PIVOT_STRESS") or 1))
