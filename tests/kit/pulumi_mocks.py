"""Pulumi's unit-test mocks on an event loop of their own, for the fixtures of the component unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TypeVar

import pulumi

M = TypeVar("M", bound=pulumi.runtime.Mocks)


def mocks_on_own_loop(mocks: M) -> Iterator[M]:
    """`yield from` this in a fixture. Pulumi's mocks expect a current event loop, and earlier tests ran
    `asyncio.run()`, which leaves none; the loop made here is closed after the test (left open, each was a
    ResourceWarning under `-W default`). A test that builds resources without `@pulumi.runtime.test` leaves
    their Outputs' tasks unstarted on this loop: they are cancelled and drained before it closes, or the
    next `@pulumi.runtime.test` drops them and Python warns that their coroutines were never awaited."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.set_mocks(mocks, preview=False)
        yield mocks
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
