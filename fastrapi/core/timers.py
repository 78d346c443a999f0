"""Deadlines that share one loop timer: the per-connection timers of a server.

Every connection of a server waits with the same delays: ``open_timeout``
for its handshake, ``ping_interval`` between keepalive pings,
``ping_timeout`` for a pong. A loop timer per connection and per wait
costs a ``TimerHandle`` (about 150 bytes, held by the loop's heap until its
time even once cancelled) and a heap push and pop each time. Because the
delay is the same for everyone, the order in which deadlines are set is
also the order in which they fall due: an ordered dict is the queue, and
one loop timer, armed for the oldest entry, serves them all. Setting or
clearing a deadline is a dict operation. (An `OrderedDict`, not a plain
dict: taking from the front of a plain dict scans past every entry deleted
before, which a queue does all the time.)
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

from fastrapi.core.loop import Loop, Timer, running_loop


class Deadlines:
    """Callbacks due ``delay`` seconds after each was set, on one timer of ``loop``.

    ``set(key, callback)`` (again) moves ``key``'s deadline to ``delay`` from
    now; ``clear(key)`` forgets it. A callback runs at most once per ``set``,
    and may set deadlines itself.
    """

    __slots__ = ("__weakref__", "_delay", "_due", "_firing", "_loop", "_timer")

    def __init__(self, loop: Loop, delay: float) -> None:
        self._loop = loop
        self._delay = delay
        self._due: OrderedDict[object, tuple[float, Callable[[], object]]] = OrderedDict()
        self._timer: Timer | None = None
        self._firing = False

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: object, callback: Callable[[], object]) -> None:
        due = self._due
        deadline = self._loop.time() + self._delay
        due[key] = (deadline, callback)
        due.move_to_end(key)  # set again: to the end of the queue, where its new deadline belongs
        if self._timer is None and not self._firing:
            self._timer = self._loop.call_at(deadline, self._fire)

    def clear(self, key: object) -> None:
        # The timer stays armed: it fires once for nothing at worst, cheaper
        # than re-arming it on every clear.
        self._due.pop(key, None)

    def _fire(self) -> None:
        self._timer = None
        self._firing = True  # deadlines set by the callbacks wait for the re-arm below
        due = self._due
        now = self._loop.time()
        try:
            # At most the entries there now: one set again meanwhile, with a
            # zero delay, waits for the next round rather than loop for ever.
            for _ in range(len(due)):
                if not due:
                    break  # a callback cleared the rest
                key, (deadline, callback) = due.popitem(last=False)
                if deadline > now:
                    due[key] = (deadline, callback)
                    due.move_to_end(key, last=False)  # not due yet: back to the front
                    break
                callback()  # may set or clear others: they are looked up afresh
        finally:
            self._firing = False
            if due:
                self._timer = self._loop.call_at(next(iter(due.values()))[0], self._fire)

    def close(self) -> None:
        """Forget every deadline and the timer (the server stopped)."""
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_shared: weakref.WeakKeyDictionary[Loop, dict[float, Deadlines]] = weakref.WeakKeyDictionary()
# The last loop asked about and its table: nearly always the one asked about
# next, and cheaper to compare than a weak dictionary is to read. It keeps
# that one loop alive until another is asked about (a closed loop's tables
# hold no deadlines of any use, only their memory).
_last: tuple[Loop | None, dict[float, Deadlines]] = (None, {})


def deadlines(delay: float) -> Deadlines:
    """The running loop's `Deadlines` for ``delay``, shared by every caller."""
    global _last
    loop = running_loop()
    last_loop, by_delay = _last
    if loop is not last_loop:
        found = _shared.get(loop)
        if found is None:
            found = _shared[loop] = {}
        by_delay = found
        _last = (loop, by_delay)
    queue = by_delay.get(delay)
    if queue is None:
        queue = by_delay[delay] = Deadlines(loop, delay)
    return queue
