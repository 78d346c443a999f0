"""A lock that costs nothing while it is free.

Every message a handler sends takes the send lock, so its price is paid per
message. anyio's Lock looks for a pending cancellation on every acquire,
even of a free lock (``fast_acquire`` only skips the yield), and that costs
more than handing a small frame to the transport. Here a free lock is taken
by setting a flag; a task that finds it held waits in line and is handed the
lock directly when it is released, in arrival order.
"""

from __future__ import annotations

from collections import deque

import anyio


class FastLock:
    """A FIFO lock for tasks of one event loop; taking it when free never yields."""

    __slots__ = ("_held", "_waiting")

    def __init__(self) -> None:
        self._held = False
        self._waiting: deque[anyio.Event] = deque()  # each is set when the lock is handed over

    def locked(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits. Pair with `release`."""
        if self._held:
            return False
        self._held = True
        return True

    def release(self) -> None:
        """Give the lock up: to the first in line, or free it."""
        self._release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    async def acquire(self) -> None:
        """Take the lock, waiting in line if it is held. Pair with `release`."""
        if not self._held:  # held stays true while anyone waits: release hands over
            self._held = True
            return
        turn = anyio.Event()
        self._waiting.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():
                self._release()  # handed the lock just as it was cancelled: pass it on
            else:
                self._waiting.remove(turn)
            raise

    def _release(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()
        else:
            self._held = False
