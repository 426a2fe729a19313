"""Fixtures shared by the suite: real local clusters, PostgreSQL, the orphan check (helpers: tests/kit/).

Clusters are real etcd + kube-apiserver + kube-controller-manager processes (lab/cluster.py), started
attached to this process so that nothing survives the run, even a SIGKILLed one. At the end of the
session every process whose command line mentions the suite's cluster folder must be gone, or the
session fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.cluster import COMPONENTS, LocalCluster, processes_under
from lab.plane.ironic import processes_under as plane_processes_under
from lab.plane.managers import BINARIES as PLANE_BINARIES
from lab.postgres import LocalPostgres, server_processes
from tests.kit.env import PG_PREFIX, SESSION_DIR, TEMPLATES, tool_env

os.environ["PATH"] = tool_env()["PATH"]

#: fixtures that start clusters or servers: a test marked `unit` must use none of them
_HEAVY_FIXTURES = {"cluster_pair", "fresh_clusters", "postgres"}

#: The files that run longest, in the order they start. `make test` hands whole files to two workers in
#: collection order (`--dist loadfile --no-loadscope-reorder`) and a worker takes its next file once two
#: or fewer of its tests are left, so the long ones must start first or one of them ends the run alone
#: (the 50-minute CI run of 2026-11-30 started test_pulumi_pivot.py last). Times: docs/testing.md (the order
#: below is the 2026-12-01 14:39 run's, longest first, every file over 130 s).
LONG_FILES_FIRST = ("test_live_pivot.py", "test_demo.py", "test_parity_rules.py", "test_pulumi_pivot.py",
                    "test_live_ironic.py", "test_concurrency.py", "test_pulumi_types.py", "test_move_resume.py",
                    "test_backup_interop.py", "test_policies_preview.py", "test_pulumi_safety.py",
                    "test_pulumi_handover_kill.py")

_file_seconds: dict[str, float] = {}


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return SESSION_DIR


@pytest.fixture(scope="session")
def cluster_pair() -> Iterator[dict[str, LocalCluster]]:
    """An ephemeral and a target cluster with the CRDs and inventory, shared by read-only tests."""
    from lab.cli import start_clusters

    clusters = start_clusters(["ephemeral", "target"], SESSION_DIR / "shared", attached=True)
    yield clusters
    for c in clusters.values():
        c.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL on loopback for the team state backend, stopped completely at the end."""
    server = LocalPostgres(base=Path(tempfile.mkdtemp(prefix=PG_PREFIX))).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_clusters(request: pytest.FixtureRequest) -> Iterator[Callable[..., dict[str, LocalCluster]]]:
    """A factory of fresh clusters for tests that write; all killed when the test ends (nobody reads them
    again; the session's end checks that no process is left)."""
    started: list[LocalCluster] = []
    counter = iter(range(1000))

    from lab.cli import start_clusters

    def make(names: tuple[str, ...] = ("ephemeral", "target"), **kwargs: object) -> dict[str, LocalCluster]:
        base = SESSION_DIR / f"{request.node.name[:40]}-{next(counter)}"
        clusters = start_clusters(list(names), base, attached=True, templates=TEMPLATES,  # type: ignore[arg-type]
                                  **kwargs)
        started.extend(clusters.values())
        return clusters

    yield make
    for c in started:
        c.kill()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make unit` promises seconds: a `unit` test that starts a cluster is a mislabelled test.

    Then the long files go first (LONG_FILES_FIRST); the sort is stable, so each file keeps its order.
    """
    for item in items:
        heavy = _HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("unit") and heavy:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses {', '.join(sorted(heavy))}")
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds up each file's setup + call + teardown (with xdist, on the controller from the workers' reports)."""
    name = report.nodeid.split("::", 1)[0]
    _file_seconds[name] = _file_seconds.get(name, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the suite's time went, a file at a time: what LONG_FILES_FIRST and docs/testing.md are kept from."""
    if len(_file_seconds) < 2:
        return
    terminalreporter.section("seconds per test file (setup + tests + teardown, longest first)")
    for name, seconds in sorted(_file_seconds.items(), key=lambda kv: -kv[1])[:20]:
        terminalreporter.write_line(f"{seconds:8.1f}  {name}")
    terminalreporter.write_line(f"{sum(_file_seconds.values()):8.1f}  all files")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = (processes_under(SESSION_DIR, COMPONENTS + PLANE_BINARIES) + plane_processes_under(SESSION_DIR)
            + server_processes(Path(tempfile.gettempdir()) / PG_PREFIX))
    if left:
        print(f"\nORPHANS: cluster, manager, Ironic/BMC or PostgreSQL processes still running after the suite: {left}")
        session.exitstatus = 1
    else:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)

