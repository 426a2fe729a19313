"""The mover's scheduler (Mover._in_order): each object is written once everything it waits for is done,
never more than `concurrency` at a time, ownerReference cycles still go, and the first error stops the
phase and comes out as the engine's own exception. Unit level: no cluster; the writes are coroutines
that record what they saw."""

from __future__ import annotations

import asyncio
import random
from typing import cast

import pytest

from metal3_pivot.errors import PivotError
from metal3_pivot.graph import Node, ObjKey, TypeInfo
from metal3_pivot.kube import SECRET, Kube
from metal3_pivot.mover import MoveOptions, Mover

pytestmark = pytest.mark.unit


def node(name: str, owners: tuple[str, ...] = ()) -> Node:
    def key(n: str) -> ObjKey:
        return ObjKey("", "Secret", "ns", n)
    return Node(key(name), TypeInfo(SECRET), {"metadata": {"name": name, "namespace": "ns"}},
                owners={key(o) for o in owners})


def mover(concurrency: int) -> Mover:
    return Mover(cast(Kube, None), cast(Kube, None), MoveOptions(concurrency=concurrency))


def run(nodes: list[Node], concurrency: int = 4, fail: str | None = None) -> tuple[list[str], list[str], int]:
    """Owners first, as the creates go: returns (start order, finish order, most in flight at once)."""
    started: list[str] = []
    finished: list[str] = []
    peak = 0

    async def write(n: Node) -> None:
        nonlocal peak
        started.append(n.key.name)
        peak = max(peak, len(started) - len(finished))
        await asyncio.sleep(random.random() / 1000)
        if n.key.name == fail:
            raise PivotError(f"refused {n.key.name}")
        finished.append(n.key.name)

    asyncio.run(mover(concurrency)._in_order(nodes, lambda n: n.owners, write, "create"))
    return started, finished, peak


def test_every_object_starts_after_what_it_waits_for_and_concurrency_is_bounded() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i}", tuple(f"n{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 3)))))
             for i in range(300)]
    rng.shuffle(nodes)
    started, finished, peak = run(nodes, concurrency=8)
    assert sorted(started) == sorted(finished) == sorted(n.key.name for n in nodes)
    for n in nodes:
        for owner in n.owners:
            assert finished.index(owner.name) < started.index(n.key.name), (owner.name, n.key.name)
    assert 1 < peak <= 8


def test_an_object_does_not_wait_for_the_slowest_of_a_level() -> None:
    """a (slow) and b are both roots; c is owned by b only: c starts before a finishes."""
    order: list[str] = []

    async def write(n: Node) -> None:
        order.append(f"start {n.key.name}")
        await asyncio.sleep(0.05 if n.key.name == "a" else 0)
        order.append(f"end {n.key.name}")

    nodes = [node("a"), node("b"), node("c", ("b",))]
    asyncio.run(mover(4)._in_order(nodes, lambda n: n.owners, write, "create"))
    assert order.index("start c") < order.index("end a")


def test_a_cycle_and_what_it_owns_go_once_nothing_else_can() -> None:
    nodes = [node("x", ("y",)), node("y", ("x",)), node("z", ("x",)), node("root"), node("leaf", ("root",))]
    log: list[str] = []

    async def write(n: Node) -> None:
        log.append(f"start {n.key.name}")
        await asyncio.sleep(random.random() / 1000)
        log.append(f"end {n.key.name}")

    asyncio.run(mover(4)._in_order(nodes, lambda n: n.owners, write, "create"))
    assert sorted(e for e in log if e.startswith("end")) == ["end leaf", "end root", "end x", "end y", "end z"]
    # what is left (the cycle and what hangs below it) starts once nothing else can, as levels() puts it in
    # one last level; the plan leaves such objects in the source (plan.stuck), so this is the safety net
    assert min(log.index(f"start {n}") for n in "xyz") > max(log.index("end root"), log.index("end leaf"))


def test_the_first_error_stops_the_phase_as_the_engines_own_exception() -> None:
    nodes = [node("root"), node("child", ("root",)), node("grandchild", ("child",)), node("other")]
    with pytest.raises(PivotError, match="refused child"):
        run(nodes, fail="child")


def test_nothing_to_do_returns() -> None:
    assert run([]) == ([], [], 0)
