"""Stress mode of the concurrency tests: each race N times (default 10), then a table of outcomes.

    python -m benchmarks.concurrency_stress [--repeat N] [-k EXPR]

Runs tests/test_concurrency.py with METAL3_PIVOT_STRESS=N (every race parametrised N times, each on
fresh clusters, alternating direction where a test moves twice) and collects one line per attempt:
who moved, who was refused and by which lock, how many processes wrote, interleavings (goal: 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("-k", default="", help="pytest -k expression to pick races")
    a = ap.parse_args()
    report = Path(tempfile.mkstemp(prefix="m3p-concurrency-", suffix=".jsonl")[1])
    env = dict(os.environ, METAL3_PIVOT_STRESS=str(a.repeat), METAL3_PIVOT_CONCURRENCY_REPORT=str(report))
    cmd = [sys.executable, "-m", "pytest", "tests/test_concurrency.py", "-q", "-p", "no:cacheprovider"]
    if a.k:
        cmd += ["-k", a.k]
    start = time.monotonic()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    minutes = (time.monotonic() - start) / 60
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in report.read_text().splitlines():
        r = json.loads(line)
        row = rows[r["scenario"]]
        row["attempts"] += 1
        row["exactly one moved"] += len(r["winners"]) == 1
        row["refused by our lock"] += sum(1 for v in r["refusals"].values() if v == "our lock")
        row["refused by pulumi's stack lock"] += sum(1 for v in r["refusals"].values() if v != "our lock")
        row["interleavings"] += r["interleavings"]
    cols = ["attempts", "exactly one moved", "refused by our lock", "refused by pulumi's stack lock", "interleavings"]
    print(f"\n| race | {' | '.join(cols)} |")
    print("|---" * (len(cols) + 1) + "|")
    for scenario, row in rows.items():
        print(f"| {scenario} | {' | '.join(str(row[c]) for c in cols)} |")
    print(f"\npytest exit {rc}; {minutes:.1f} minutes; raw lines: {report}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
