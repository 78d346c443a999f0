"""Deadlines on one shared timer (fastrapi.core.timers), on a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi.core.loop import Loop
from fastrapi.core.timers import Deadlines, deadlines


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The two loop calls `Deadlines` makes, on a clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move the clock, running each timer that falls due, in order."""
        until = self.now + seconds
        for _ in range(10_000):  # bounded: each round runs one timer
            due = [t for t in self.timers if not t.cancelled and t.when <= until]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = until

    @property
    def armed(self) -> int:
        return sum(not t.cancelled for t in self.timers)


def queue(delay: float) -> tuple[FakeLoop, Deadlines]:
    loop = FakeLoop()
    return loop, Deadlines(cast(Loop, loop), delay)


def test_a_deadline_fires_once_after_its_delay() -> None:
    loop, deadlines_ = queue(10)
    fired: list[str] = []
    deadlines_.set("a", lambda: fired.append("a"))
    loop.advance(9.9)
    assert fired == []
    loop.advance(0.2)
    assert fired == ["a"]
    loop.advance(100)
    assert fired == ["a"]
    assert len(deadlines_) == 0


def test_one_loop_timer_serves_every_deadline() -> None:
    loop, deadlines_ = queue(5)
    for key in range(1000):
        deadlines_.set(key, lambda: None)
    assert loop.armed == 1


def test_set_again_moves_the_deadline_and_the_old_callback_never_runs() -> None:
    loop, deadlines_ = queue(10)
    fired: list[str] = []
    deadlines_.set("a", lambda: fired.append("first"))
    loop.advance(6)
    deadlines_.set("a", lambda: fired.append("second"))
    loop.advance(6)  # the first deadline (10) has passed
    assert fired == []
    loop.advance(4.1)
    assert fired == ["second"]


def test_a_cleared_deadline_never_fires() -> None:
    loop, deadlines_ = queue(1)
    fired: list[str] = []
    deadlines_.set("a", lambda: fired.append("a"))
    deadlines_.set("b", lambda: fired.append("b"))
    deadlines_.clear("a")
    deadlines_.clear("missing")  # no error
    loop.advance(2)
    assert fired == ["b"]


def test_a_callback_may_clear_another_due_deadline() -> None:
    loop, deadlines_ = queue(1)
    fired: list[str] = []

    def first() -> None:
        fired.append("a")
        deadlines_.clear("b")

    deadlines_.set("a", first)
    deadlines_.set("b", lambda: fired.append("b"))
    loop.advance(2)
    assert fired == ["a"]


def test_a_callback_that_sets_itself_again_runs_once_per_delay() -> None:
    loop, deadlines_ = queue(1)
    fired: list[float] = []

    def tick() -> None:
        fired.append(loop.now)
        deadlines_.set("tick", tick)

    deadlines_.set("tick", tick)
    loop.advance(3.5)
    assert fired == [1.0, 2.0, 3.0]


def test_a_zero_delay_callback_that_sets_itself_again_waits_for_the_next_round() -> None:
    loop, deadlines_ = queue(0)
    fired: list[float] = []

    def again() -> None:
        fired.append(loop.now)
        if len(fired) < 3:
            deadlines_.set("x", again)

    deadlines_.set("x", again)
    loop.advance(0)
    assert len(fired) == 3  # each in a round of its own, not a loop inside one firing


def test_close_forgets_everything() -> None:
    loop, deadlines_ = queue(1)
    fired: list[str] = []
    deadlines_.set("a", lambda: fired.append("a"))
    deadlines_.close()
    loop.advance(5)
    assert fired == [] and loop.armed == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.integers(0, 5)),
            st.tuples(st.just("clear"), st.integers(0, 5)),
            st.tuples(st.just("wait"), st.floats(0, 3, allow_nan=False)),
        ),
        max_size=40,
    )
)
def test_each_key_fires_exactly_when_its_latest_deadline_falls(ops: list[tuple[str, Any]]) -> None:
    """Against a model: the last set of each key, not cleared since, fires
    once at set time + delay, and keys fire in the order of their deadlines."""
    delay = 2.0
    loop, deadlines_ = queue(delay)
    fired: list[tuple[int, float]] = []
    pending: dict[int, float] = {}  # the model: key -> deadline
    expected: list[tuple[int, float]] = []

    def run_model_until(until: float) -> None:
        for key, deadline in sorted(pending.items(), key=lambda item: item[1]):
            if deadline <= until:
                expected.append((key, deadline))
                del pending[key]

    for op, arg in ops:
        if op == "set":
            pending.pop(arg, None)  # set again: behind the others of its deadline
            pending[arg] = loop.now + delay
            deadlines_.set(arg, _recorder(fired, arg, loop))
        elif op == "clear":
            pending.pop(arg, None)
            deadlines_.clear(arg)
        else:
            run_model_until(loop.now + arg)
            loop.advance(arg)
    run_model_until(loop.now + 10)
    loop.advance(10)
    assert [key for key, _ in fired] == [key for key, _ in expected]
    for (_, at), (_, deadline) in zip(fired, expected, strict=True):
        assert at >= deadline  # never early
    assert len(deadlines_) == 0


def _recorder(fired: list[tuple[int, float]], key: int, loop: FakeLoop) -> Callable[[], None]:
    return lambda: fired.append((key, loop.now))


def test_deadlines_are_shared_per_loop_and_delay() -> None:
    async def main() -> tuple[Deadlines, Deadlines, Deadlines]:
        return deadlines(3.0), deadlines(3.0), deadlines(4.0)

    first, again, other = asyncio.run(main())
    assert first is again
    assert other is not first
    assert asyncio.run(main())[0] is not first  # another loop, other deadlines
