"""Helpers of the live workflow tests: the watcher that proves there never were two Ironics, and the
stack that pivots the live lab."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.workflow import Lab
from tests.kit.env import PROGRAM
from tests.kit.pulumi_cli import PulumiProject


def ironic_dirs(base: Path) -> set[str]:
    """The LocalIronic folders below `base` that have a live Ironic process (its master or its forked
    worker, which retitles itself but keeps the folder as its working directory)."""
    needle = str(base.resolve())
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if state == "Z" or not cwd.startswith(needle):
            continue
        first = argv[0]
        if Path(first).name == "ironic" or first.startswith("ironic:") or \
                (len(argv) > 1 and Path(argv[1]).name == "ironic"):
            found.add(cwd)
    return found


@dataclass
class IronicWatch:
    """Looks at every process under the lab every 20 ms for as long as it runs, and keeps every moment
    two Ironics were alive at once. An Ironic takes seconds to start and to stop, so an overlap cannot
    fall between two looks."""

    base: Path
    interval: float = 0.02
    samples: int = 0
    max_seen: int = 0
    overlaps: list[tuple[float, set[str]]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> IronicWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = ironic_dirs(self.base)
            self.samples += 1
            self.seen |= now
            self.max_seen = max(self.max_seen, len(now))
            if len(now) > 1:
                self.overlaps.append((time.time(), now))
            self._stop.wait(self.interval)


def live_stack(lab: Lab, directory: Path) -> PulumiProject:
    """The stack of the live workflow: both kubeconfigs as secret config, Deployments awaited."""
    p = PulumiProject.create(directory, "metal3-pivot", PROGRAM, stack="live")
    p.set_config("location", "ephemeral")
    p.run("config", "set", "--secret", "--path", "ephemeral.kubeconfig",
          stdin=(lab.base / "ephemeral" / "kubeconfig").read_text(), check=True)
    p.run("config", "set", "--secret", "--path", "target.kubeconfig", stdin=lab.target_kubeconfig.read_text(),
          check=True)
    p.run("config", "set", "--path", "namespaces[0]", lab.namespace, check=True)
    p.set_config("skipAwait", "true")
    p.set_config("awaitDeployments", "true")
    p.run("config", "set", "--path", "ironic.adopt", "true", check=True)   # dev-env installed them
    p.run("config", "set", "--path", "protect", "false", check=True)
    return p
