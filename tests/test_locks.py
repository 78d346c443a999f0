"""FastLock: mutual exclusion, arrival order, and cancellation while waiting."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi.core.locks import FastLock

pytestmark = pytest.mark.anyio

GUARD = 5


async def take(lock: FastLock, taken: list[str], name: str) -> None:
    """Hold ``lock`` for one turn of the loop, recording that ``name`` had it."""
    async with lock:
        taken.append(name)
        await anyio.lowlevel.checkpoint()


async def test_a_free_lock_is_taken_without_yielding() -> None:
    lock = FastLock()
    with anyio.CancelScope() as scope:
        scope.cancel()  # a yield would raise Cancelled here
        async with lock:
            assert lock.locked()
    assert not lock.locked()


async def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = FastLock()
    order: list[str] = []
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            async with lock:
                for name in "01234":
                    tg.start_soon(take, lock, order, name)
                    await anyio.wait_all_tasks_blocked()
    assert order == ["0", "1", "2", "3", "4"]
    assert not lock.locked()


async def test_a_waiter_cancelled_in_line_leaves_the_line() -> None:
    lock = FastLock()
    got: list[str] = []
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            async with lock:
                async with anyio.create_task_group() as doomed:
                    doomed.start_soon(take, lock, got, "cancelled")
                    await anyio.wait_all_tasks_blocked()
                    doomed.cancel_scope.cancel()
                tg.start_soon(take, lock, got, "next")
                await anyio.wait_all_tasks_blocked()
    assert got == ["next"] and not lock.locked()


async def test_a_waiter_cancelled_as_it_is_handed_the_lock_never_loses_it() -> None:
    lock = FastLock()
    got: list[str] = []
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as doomed:
                await lock.acquire()
                doomed.start_soon(take, lock, got, "handed then cancelled")
                tg.start_soon(take, lock, got, "second")
                await anyio.wait_all_tasks_blocked()
                lock.release()  # hands it to the first waiter...
                doomed.cancel_scope.cancel()  # ...which is cancelled before it runs
    # It either ran its turn or passed the lock on; either way the next one got it.
    assert got in (["second"], ["handed then cancelled", "second"])
    assert not lock.locked()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=12))
def test_never_two_holders_whatever_the_schedule(plan: list[tuple[int, bool]]) -> None:
    async def main() -> None:
        lock = FastLock()
        inside = 0
        entered = 0

        async def worker(yields: int, cancel: bool) -> None:
            nonlocal inside, entered
            with anyio.move_on_after(0 if cancel else GUARD):
                async with lock:
                    inside += 1
                    entered += 1
                    assert inside == 1
                    try:
                        for _ in range(yields):
                            await anyio.lowlevel.checkpoint()
                    finally:
                        inside -= 1

        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                for yields, cancel in plan:
                    tg.start_soon(worker, yields, cancel)
        assert not lock.locked() and inside == 0
        assert entered >= sum(1 for _, cancel in plan if not cancel)

    anyio.run(main)
