"""Two movers started together, with the real pulumi CLI, the real PostgreSQL backend and real clusters.

Three races: two `pulumi up` of one stack; two stacks pointed at the same clusters; the engine CLI
against `pulumi up`. Each is judged by its invariants, not by who was quicker to start: at most one
moves; every other is refused with a message that says who moves (our lock) or that the stack is locked
(Pulumi's) or, started late, finds the move done and writes nothing; the write journal shows no
interleaving; when both were refused (on a loaded machine both `pulumi up`s can meet each other's stack
lock), a retry then moves; and the invariant checker passes.
The stacks only move (providers pre-installed, `ironic.install: false`) so that the race is about the
move. Every write pauses a little (the write-delay seam, lab/seams.py) so a move lasts long enough for
the second mover to meet it.

Each race runs once in the suite, alternating direction; `python -m benchmarks.concurrency_stress`
runs each 10 times (METAL3_PIVOT_STRESS) and prints the table of outcomes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.cli import start_clusters
from lab.cluster import LocalCluster
from tests.kit.concurrency import (
    interleavings,
    journal_env,
    lease,
    move_spans,
    repeats,
    report_attempt,
    start_cli,
    wait_for_lease,
)
from tests.kit.env import PROGRAM, SESSION_DIR
from tests.kit.move import canonical_snapshot, check, cli_move_args, seed_pair, settle
from tests.kit.pulumi_cli import PulumiProject, Result

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

OUR_LOCK = "another move is in progress"
PULUMI_LOCK = "the stack is currently locked"


@dataclass
class Race:
    """One cluster pair for the module; the races take turns on it, each from where the last left off."""

    clusters: dict[str, LocalCluster]
    original: dict
    base: Path
    location: str = "ephemeral"
    stacks: dict[tuple[str, str], PulumiProject] = field(default_factory=dict)

    @property
    def eph(self) -> LocalCluster:
        return self.clusters["ephemeral"]

    @property
    def tgt(self) -> LocalCluster:
        return self.clusters["target"]

    def flip(self) -> str:
        """The next destination; the controllers of the current side reconcile first (as after a pivot)."""
        settle(self.eph if self.location == "ephemeral" else self.tgt)
        self.location = "target" if self.location == "ephemeral" else "ephemeral"
        return self.location

    def assert_settled(self) -> None:
        dst = self.tgt if self.location == "target" else self.eph
        assert check(self.eph, self.tgt, expect=self.location).ok
        assert canonical_snapshot(dst) == self.original
        assert lease(self.eph) is None and lease(self.tgt) is None


@pytest.fixture(scope="module")
def race(tmp_path_factory) -> Iterator[Race]:
    clusters = start_clusters(["ephemeral", "target"], SESSION_DIR / "concurrency", attached=True)
    yield Race(clusters, seed_pair(clusters), tmp_path_factory.mktemp("races"))
    for c in clusters.values():
        c.stop()


def move_only_stack(project: str, stack: str, race: Race, backend: str) -> PulumiProject:
    """A stack that only moves (made once per module, then reused by every attempt)."""
    if (project, stack) in race.stacks:
        return race.stacks[(project, stack)]
    directory = race.base / project
    if not (directory / "Pulumi.yaml").exists():
        p = PulumiProject.create(directory, "metal3-pivot", PROGRAM, stack=stack, backend=backend)
    else:
        p = PulumiProject(directory, stack, backend)
        p.run("stack", "init", stack, check=True)
    race.stacks[(project, stack)] = p
    p.set_kubeconfigs(race.eph.kubeconfig, race.tgt.kubeconfig)
    for path, value in (("providers.install", "false"), ("ironic.install", "false"), ("protect", "false"),
                        ("skipAwait", "true")):
        p.run("config", "set", "--path", path, value, check=True)
    p.set_config("location", race.location)
    p.run("up", "--yes", check=True)                    # adopts where the objects are: nothing moves
    return p


def moved(result: Result) -> bool:
    """The mover's summary line: on the ObjectLocation resource's diagnostics (the engine's log service), or
    on stderr with the `metal3-pivot:` prefix when no engine connection is available."""
    return result.returncode == 0 and re.search(r"^\s*(metal3-pivot: )?moved \d+ objects from ", result.output,
                                                re.MULTILINE) is not None


def judge(scenario: str, results: dict[str, Result], journal: Path, race: Race,
          retry: Callable[[], Result] | None = None) -> None:
    """At most one moved; every other was refused with a clear message; no interleaving; nothing lost.
    Zero winners (both refused) is safe, and passes when `retry` is given and then moves."""
    winners = [name for name, r in results.items() if moved(r)]
    refusals = {}
    for name, r in results.items():
        if name in winners:
            continue
        if r.returncode == 0 and winners:
            # on a loaded machine it may start only once the other has finished: it then finds the objects
            # where it wants them and moves nothing (that it wrote nothing is checked on the journal below)
            refusals[name] = "found the move done"
            continue
        assert r.returncode != 0, f"{name} neither moved nor was refused:\n{r.output[-3000:]}"
        text = r.output
        assert OUR_LOCK in text or PULUMI_LOCK in text, f"{name}: unclear refusal:\n{text[-3000:]}"
        refusals[name] = "our lock" if OUR_LOCK in text else "pulumi's stack lock"
    spans = move_spans(journal)
    report_attempt(scenario, {"direction": race.location, "winners": winners, "refusals": refusals,
                              "writers": len(spans), "interleavings": interleavings(journal)})
    assert len(winners) <= 1, {n: r.output[-2000:] for n, r in results.items()}
    assert len(spans) <= 1, spans                               # at most one process wrote the move
    assert interleavings(journal) == 0
    if not winners:
        assert retry is not None, {n: r.output[-2000:] for n, r in results.items()}
        again = retry()
        assert moved(again), f"the retry after two refusals did not move:\n{again.output[-3000:]}"
        assert len(move_spans(journal)) == 1 and interleavings(journal) == 0
    race.assert_settled()


@pytest.mark.parametrize("attempt", range(repeats()))
def test_two_ups_of_one_stack_on_the_team_backend(race, postgres, tmp_path, attempt) -> None:
    p = move_only_stack("team", "team", race, postgres.url.replace("pulumi_state", "race_one_stack"))
    journal = tmp_path / "journal"
    p.set_config("location", race.flip())
    env = journal_env(journal)
    procs = {"first": p.start("up", "--yes", env_extra=env), "second": p.start("up", "--yes", env_extra=env)}
    judge("two ups, one stack", {n: p.finish(proc) for n, proc in procs.items()}, journal, race,
          retry=lambda: p.finish(p.start("up", "--yes", env_extra=env)))


@pytest.mark.parametrize("attempt", range(repeats()))
def test_two_stacks_on_the_same_clusters(race, postgres, tmp_path, attempt) -> None:
    backend = postgres.url.replace("pulumi_state", "race_two_stacks")
    a = move_only_stack("two", "alice", race, backend)
    b = move_only_stack("two", "bob", race, backend)
    journal = tmp_path / "journal"
    destination = race.flip()
    for p in (a, b):
        p.set_config("location", destination)
    env = journal_env(journal)
    procs = {"alice": a.start("up", "--yes", env_extra=env), "bob": b.start("up", "--yes", env_extra=env)}
    judge("two stacks, same clusters", {"alice": a.finish(procs["alice"]), "bob": b.finish(procs["bob"])},
          journal, race, retry=lambda: a.finish(a.start("up", "--yes", env_extra=env)))


@pytest.mark.parametrize("attempt", range(repeats()))
def test_engine_cli_against_pulumi_up(race, tmp_path, attempt) -> None:
    """Twice: both started at once (the CLI, quicker to start, usually wins and `pulumi up` is refused by
    its check), then the CLI started once `pulumi up` holds the lock (the CLI is refused)."""
    p = move_only_stack("cli", "dev", race, "")
    for cli_waits in (False, True):
        journal = tmp_path / f"journal-{cli_waits}"
        destination = race.flip()
        p.set_config("location", destination)
        src, dst = (race.eph, race.tgt) if destination == "target" else (race.tgt, race.eph)
        env = journal_env(journal)
        up = p.start("up", "--yes", env_extra=env)
        if cli_waits:
            wait_for_lease(race.eph, up, timeout=120)
        engine = start_cli(*cli_move_args(src, dst), env_extra=env)
        out, err = engine.communicate(timeout=300)
        # the CLI prints "moved N objects ..." on stdout, as the pulumi program's progress does on stderr
        engine_result = Result(["metal3-pivot", "move"], engine.returncode, "", err + out.replace(
            "moved ", "metal3-pivot: moved ", 1))
        judge("engine CLI against pulumi up", {"pulumi up": p.finish(up), "engine CLI": engine_result}, journal,
              race)
