"""Start, watch and stop the live plane's local processes the way lab/cluster.py does its components.

`attached=True` (tests): the child gets PR_SET_PDEATHSIG, so a SIGKILLed test run leaves nothing behind;
it must then be spawned from the thread that lives as long as the child (the signal fires when the
forking *thread* exits). `attached=False` (`metal3-lab up`): the child gets its own session and outlives
the command; it is stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from lab.cluster import _alive, _pdeathsig, _tail

_KEEP: dict[int, subprocess.Popen[bytes]] = {}  # our Popen objects, so their zombies are reaped


class PlaneProcessError(Exception):
    """A plane process did not start or answer in time; the message names it and shows its log's tail."""


def spawn(argv: Sequence[str], *, log: Path, cwd: Path, attached: bool, env: dict[str, str] | None = None) -> int:
    """Start one process, its output appended to `log`; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=not attached,
                                preexec_fn=_pdeathsig if attached else None)
    _KEEP[proc.pid] = proc
    return proc.pid


def alive(pid: int) -> bool:
    return _alive(pid)


def tail(log: Path) -> str:
    """The last lines of a log, for error messages."""
    return _tail(log)


def wait_http(url: str, *, what: str, pid: int, log: Path, deadline: float, ok: Sequence[int] = (200,)) -> None:
    """Poll `url` until it answers one of `ok`; fail at once if the process exits."""
    last = ""
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise PlaneProcessError(f"{what} exited during start-up; see {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as err:
            if err.code in ok:
                return
            last = f"HTTP {err.code}"
        except OSError as err:  # not listening yet
            last = str(err)
        time.sleep(0.2)
    raise PlaneProcessError(f"{what} did not answer {url} in time ({last}); see {log}:\n{_tail(log)}")


def stop(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, SIGKILL after `grace`; returns once the process and every process it forked are gone
    (Ironic's master process forks its API + conductor worker). Safe on a dead pid."""
    family = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in family:
        if _alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    while any(_alive(p) for p in family):
        time.sleep(0.02)
    proc = _KEEP.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def _parents() -> dict[int, int]:
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if stat[0] != "Z":
                parents[int(proc.name)] = int(stat[1])
    return parents


def descendants(pid: int) -> list[int]:
    parents = _parents()
    out: list[int] = []
    frontier = {pid}
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier and p not in out]
        out.extend(children)
        frontier = set(children)
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it at once, as a lost machine or an OOM kill of the group
    would end them: all listed before the first signal, so that none is reparented out of reach, and the
    process group too when `pid` leads one (a child in a session of its own is found by the listing)."""
    pids = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    for each in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), for the docs' figures."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def processes_mentioning(directory: Path, programs: Sequence[str]) -> list[int]:
    """Live pids of plane processes (running one of `programs`) started for anything below `directory`:
    their command line mentions it, or their working directory is in it. The second catches Ironic's
    forked worker, which retitles itself ("ironic: ServiceWrapper worker(0)"), names no folder, and is
    re-parented to init when its master is killed. The orphan check."""
    needle = str(directory.resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().rsplit(") ", 1)[1][0]
            cwd = os.readlink(proc / "cwd")
        except (OSError, IndexError):
            continue
        # Ironic retitles itself ("ironic: master process [...]"), hence the split on ":"
        names = {Path(a).name for a in argv[:3]} | {argv[0].split(":", 1)[0]}
        inside = needle in " ".join(argv) or cwd == needle or cwd.startswith(needle + "/")
        if state != "Z" and inside and names & set(programs):
            found.append(int(proc.name))
    return sorted(found)


# -- a group of named processes (Ironic + its httpd, the BMCs + theirs) ---------------------------------------

def stop_group(pids: MutableMapping[str, int], order: Sequence[str], grace: float = 10.0) -> None:
    """Stop the named processes in `order`, forgetting each; safe to call twice."""
    for component in order:
        pid = pids.pop(component, None)
        if pid:
            stop(pid, grace)


def group_running(pids: MutableMapping[str, int]) -> bool:
    return bool(pids) and all(alive(p) for p in pids.values())


def group_rss_mib(pids: MutableMapping[str, int]) -> dict[str, float]:
    """Resident memory per process, forked children included (Ironic's worker: `ironic/1`)."""
    out = {}
    for component, pid in pids.items():
        family = [pid, *descendants(pid)] if alive(pid) else []
        out.update({component if i == 0 else f"{component}/{i}": rss_mib(p) for i, p in enumerate(family)})
    return out
