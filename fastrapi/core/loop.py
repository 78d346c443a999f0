"""The running event loop's own primitives, for the per-message path.

anyio runs the server's life (listeners, task groups, signals, shutdown),
but its primitives cost a backend lookup and a cancellation check on every
call, which a message cannot afford. The per-message path waits on a plain
future and times with the loop's timer callbacks instead, and gets both only
from here: the one place to change for another event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeAlias

Loop: TypeAlias = asyncio.AbstractEventLoop
Waiter: TypeAlias = "asyncio.Future[None]"
Timer: TypeAlias = asyncio.TimerHandle
Task: TypeAlias = "asyncio.Task[object]"


def running_loop() -> Loop:
    """The event loop running the calling task."""
    return asyncio.get_running_loop()


def current_task() -> Task:
    """The calling task, which `cancel` can stop later (an anyio cancel
    scope per connection would cost 760 bytes on each)."""
    task = asyncio.current_task()
    assert task is not None, "called outside a task"
    return task


def watch(awaitable: Awaitable[None]) -> Waiter:
    """Run ``awaitable`` on its own, as a future that callbacks can follow."""
    return asyncio.ensure_future(awaitable)


def cancel(task: Task) -> None:
    task.cancel()
