"""Test seams for the engine, injected from outside: a journal of writes, a pause after each, a SIGKILL.

The engine only offers a hook (`metal3_pivot.kube.add_write_hook`); it never reads these settings. A
test or benchmark that wants them in a child process (the engine CLI, a `pulumi up` whose dynamic
provider moves) passes `seam_env(...)`: the variables below plus a PYTHONPATH that puts
lab/seams_site first, whose sitecustomize.py calls `install_from_env` when that interpreter starts.
In-process users call `install` directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from metal3_pivot import Write, add_write_hook

#: SIGKILL the process right after this many accepted writes (across every client of the process)
KILL_AFTER_WRITES_ENV = "METAL3_PIVOT_KILL_AFTER_WRITES"
#: SIGKILL the process right after the first accepted write whose "METHOD path" or "METHOD serverpath" (the URL:
#: to tell two clusters' writes to the same path apart) matches this regular expression
KILL_ON_WRITE_ENV = "METAL3_PIVOT_KILL_ON_WRITE"
#: append one JSON line per accepted write (time answered, time sent, pid, server, verb, path) to this file, so that the
#: writes of several movers can be checked for interleaving
WRITE_JOURNAL_ENV = "METAL3_PIVOT_WRITE_JOURNAL"
#: sleep this many seconds after each write, so that a move lasts long enough to be raced
WRITE_DELAY_ENV = "METAL3_PIVOT_WRITE_DELAY"

SITE_DIR = Path(__file__).resolve().parent / "seams_site"
ROOT = SITE_DIR.parent.parent


def install(*, journal: str | Path | None = None, delay: float = 0.0,
            kill_after: int | None = None, kill_on: str | None = None) -> Callable[[], None]:
    """Install the seams asked for in this process; returns the function that removes them."""
    removers: list[Callable[[], None]] = []
    if journal:
        path = str(journal)

        async def record(w: Write) -> None:
            line = json.dumps({"t": time.time(), "started": w.started, "pid": os.getpid(), "server": w.server,
                               "method": w.method, "path": w.path})
            with open(path, "a") as f:
                f.write(line + "\n")
        removers.append(add_write_hook(record))
    if kill_after is not None:
        count = 0

        async def kill(_: Write) -> None:
            nonlocal count
            count += 1
            if count >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        removers.append(add_write_hook(kill))
    if kill_on:
        pattern = re.compile(kill_on)

        async def kill_at(w: Write) -> None:
            if pattern.search(f"{w.method} {w.path}") or pattern.search(f"{w.method} {w.server}{w.path}"):
                os.kill(os.getpid(), signal.SIGKILL)
        removers.append(add_write_hook(kill_at))
    if delay > 0:
        async def pause(_: Write) -> None:
            await asyncio.sleep(delay)
        removers.append(add_write_hook(pause))

    def remove() -> None:
        for r in removers:
            r()
    return remove


def install_from_env(environ: Mapping[str, str] = os.environ) -> None:
    """What sitecustomize.py runs at interpreter start in a child given `seam_env`."""
    kill = environ.get(KILL_AFTER_WRITES_ENV)
    install(journal=environ.get(WRITE_JOURNAL_ENV) or None, delay=float(environ.get(WRITE_DELAY_ENV) or 0),
            kill_after=int(kill) if kill else None, kill_on=environ.get(KILL_ON_WRITE_ENV) or None)


def seam_env(*, journal: str | Path | None = None, delay: float | str = 0.0, kill_after: int | None = None,
             kill_on: str | None = None, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Environment entries that make a child Python process install these seams at start-up."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(SITE_DIR), str(ROOT), base.get("PYTHONPATH", "")) if p)}
    if journal:
        env[WRITE_JOURNAL_ENV] = str(journal)
    if float(delay) > 0:
        env[WRITE_DELAY_ENV] = str(delay)
    if kill_after is not None:
        env[KILL_AFTER_WRITES_ENV] = str(kill_after)
    if kill_on:
        env[KILL_ON_WRITE_ENV] = kill_on
    return env
