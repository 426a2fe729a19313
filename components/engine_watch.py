"""Whether the pulumi engine that started this dynamic-provider plugin still answers.

Why: the plugin outlives its CLI when the CLI alone dies (SIGKILL, an OOM kill, a fatal error of the Go
runtime such as Pulumi's own map race in the Ironic handover, docs/pulumi-layer.md), and nothing then
ends it. Before this watch, a move running in it went on until its next progress line, whose fallback
print to the dead CLI's pipe raised inside the move: a stop by accident (the lock was released on the
way out), after however many writes fell before that line; the process then served its gRPC port to
nobody, forever (tests/test_pulumi_cli_death.py on the code before it: 34 writes in the 1.8 s after the
kill, the provider, our language host and the program all still running 30 s later). Upstream's Go
plugins check the engine's health for the same reason (every five minutes); the SDK's Python dynamic
provider does not. So, once the engine is gone:
- ObjectLocation's move stops before its next write (`MoveOptions.abandoned`, asked by the move lock's
  write guard; the lock is released as at any stop, and the next `up` finishes the move);
- the process exits as soon as no call that asked to be waited for (`call`) is running. Other calls
  (a CrdSet's apply, a certificate) are cut where they are, as a SIGKILL of the whole tree would cut
  them: each is finished by the next `up` (tests/test_pulumi_handover_kill.py).

How: a TCP connect to the engine's address (the plugin's last argument) every `period` seconds; two
refusals in a row mean it is gone (nothing listens on that port once the CLI is dead). A timeout or any
other error (a busy machine) proves nothing and counts as an answer. Not the parent's pid: the SDK's
plugin launcher is a shell script that does not `exec`, so this process's parent is a shell, which
outlives the CLI too. The watch starts when one of our provider modules is imported in a plugin process
(`start`); in the program and in tests there is no engine address and nothing starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


class EngineWatch:
    def __init__(self, address: str, period: float = 0.25, exit: Callable[[int], Any] = os._exit) -> None:
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.period = period
        self.exit = exit
        self.gone: str | None = None
        self.calls = 0
        self.mutex = threading.Lock()
        threading.Thread(target=self._watch, name="engine-watch", daemon=True).start()

    def answers(self) -> bool:
        try:
            with socket.create_connection(self.address, timeout=2):
                return True
        except ConnectionRefusedError:
            return False
        except OSError:
            return True

    def _watch(self) -> None:
        refused = 0
        while True:
            time.sleep(self.period)
            refused = 0 if self.answers() else refused + 1
            if refused >= 2 and self.gone is None:
                self.gone = f"the pulumi engine that asked for this move ({self.address[0]}:{self.address[1]}) is gone"
            if self.gone is not None:
                with self.mutex:
                    if self.calls == 0:
                        self.exit(0)     # nobody will call again; a normal exit could block on a dead pipe
                        return

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Around a call that must end before the process may (a move releases its lock at its end)."""
        with self.mutex:
            self.calls += 1
        try:
            yield
        finally:
            with self.mutex:
                self.calls -= 1

    def abandoned(self) -> str | None:
        """MoveOptions.abandoned: a reason to stop, once the engine is gone."""
        return self.gone


_WATCH: EngineWatch | None = None
_LOCK = threading.Lock()


def engine_address() -> str | None:
    """The engine's address, which the engine passes every plugin as its last argument (after any logging
    flags), or None when this process is not such a plugin."""
    last = sys.argv[-1] if len(sys.argv) > 1 else ""
    return last if re.fullmatch(r"[\w.\-]+:\d+", last) else None


def start() -> EngineWatch | None:
    """The process's watch, started once; None outside a provider plugin (no engine address to watch)."""
    global _WATCH
    address = engine_address()
    if address is None:
        return None
    with _LOCK:
        if _WATCH is None:
            _WATCH = EngineWatch(address)
        return _WATCH


@contextlib.contextmanager
def call() -> Iterator[EngineWatch | None]:
    """A provider call the process must not exit in the middle of; yields the watch (None outside a plugin)."""
    watch = start()
    if watch is None:
        yield None
        return
    with watch.held():
        yield watch
