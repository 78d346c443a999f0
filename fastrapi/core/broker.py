"""The contract between `Groups` and a message broker, and the in-process default.

A broker carries a group's broadcasts to the other processes serving the
same app, so that ``app.groups.send_*`` reaches every member wherever it is
connected. `Groups` drives it:

- `Broker.start` when the app starts serving (before the app's own lifespan
  start-up), `Broker.close` when it stops (after the lifespan's shutdown);
- `Broker.subscribe` when a group gets a member in this process (awaited, so
  that a broadcast from another process right after ``add`` reaches it),
  `Broker.unsubscribe` when its last member here leaves;
- `Broker.publish` once per broadcast, after the members in this process got
  it directly (they never wait for a round trip through the broker).

A broker moves opaque bytes: the envelope (`pack`, `unpack`) is the groups'
business. It is one kind byte (text or binary, which doubles as the format's
version: a new format takes new kind bytes), the publishing process's
origin id, so that a process skips its own broadcasts when the broker hands
them back, then the message itself. Never pickle: whoever can publish on the
broker could run code in every process that unpickles.

`LocalBroker`, the default, connects nothing: ``shared`` is False, and
`Groups` calls none of the per-broadcast methods, so a one-process app pays
nothing for the option. `fastrapi.brokers.redis.RedisBroker` is the one that
crosses processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Deliver = Callable[[str, bytes], None]  # (group, payload) of a message from elsewhere
Reconnected = Callable[[], Awaitable[None]]

TEXT = ord("t")
BINARY = ord("b")
ORIGIN_SIZE = 16  # bytes of random id per serving process
HEADER_SIZE = 1 + ORIGIN_SIZE


@dataclass(frozen=True, slots=True)
class BrokerStats:
    """A snapshot of `Broker.stats`.

    Attributes:
        published: broadcasts the broker confirmed it passed on.
        publish_failures: broadcasts it could not pass on (unreachable,
            refused, or too many waiting); the other processes missed them.
        connected: whether it is connected now (always True in-process).
        reconnects: how often the connection came back after a loss.
    """

    published: int = 0
    publish_failures: int = 0
    connected: bool = True
    reconnects: int = 0


@runtime_checkable
class Broker(Protocol):
    """What `Groups` needs from a broker; see the module's documentation.

    ``shared`` is False for a broker that reaches no other process (so an app
    served by several workers should not rely on its groups).
    """

    shared: bool

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        """Connect; from now on call ``deliver(group, payload)`` for each
        message published to a subscribed group (this process's own may come
        back too: `Groups` skips them by their origin), and await
        ``reconnected()`` (in a task of its own) each time the connection came
        back and every group in use is subscribed again: messages may have
        been missed meanwhile. Unreachable at start is no error: the broker
        keeps trying."""
        ...

    async def subscribe(self, group: str) -> None:
        """Receive ``group``'s messages; returns once they will arrive (or at
        once while disconnected: the group is subscribed on reconnection)."""
        ...

    def unsubscribe(self, group: str) -> None:
        """Stop receiving ``group``'s messages (the work is scheduled, not awaited)."""
        ...

    def publish(self, group: str, payload: bytes) -> None:
        """Pass ``payload`` on to ``group``'s subscribers elsewhere; never waits.

        A payload that cannot be passed on is counted in `stats` as a failure,
        never as published.
        """
        ...

    async def close(self) -> None:
        """Disconnect; `start` may be called again afterwards."""
        ...

    def stats(self) -> BrokerStats: ...


class LocalBroker:
    """The in-process default: nothing crosses to another process."""

    shared = False

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        pass

    async def subscribe(self, group: str) -> None:
        pass

    def unsubscribe(self, group: str) -> None:
        pass

    def publish(self, group: str, payload: bytes) -> None:
        pass

    async def close(self) -> None:
        pass

    def stats(self) -> BrokerStats:
        return BrokerStats()

    def __repr__(self) -> str:
        return "LocalBroker()"


# -- the envelope ---------------------------------------------------------------


_KIND_BYTES = {TEXT: b"t", BINARY: b"b"}


def pack(origin: bytes, message: str | bytes) -> bytes:
    """The envelope of ``message``, published by the process ``origin``.

    A str is carried as UTF-8, lone surrogates included, so that it arrives
    as the very str that was sent.
    """
    if isinstance(message, str):
        return pack_encoded(TEXT, origin, message.encode("utf-8", "surrogatepass"))
    return pack_encoded(BINARY, origin, message)


def pack_encoded(kind: int, origin: bytes, body: bytes) -> bytes:
    """The envelope of a message already in bytes (UTF-8 for `TEXT`): JSON
    serialised once serves the members here and the envelope alike."""
    return b"".join((_KIND_BYTES[kind], origin, body))  # one copy of the body, not two


def unpack(payload: bytes) -> tuple[bytes, str | bytes]:
    """The origin and message of an envelope made by `pack`.

    Raises:
        ValueError: ``payload`` is no such envelope.
    """
    if len(payload) < HEADER_SIZE:
        raise ValueError(f"a group message has at least {HEADER_SIZE} bytes, not {len(payload)}")
    kind = payload[0]
    origin = payload[1:HEADER_SIZE]
    if kind == TEXT:
        return origin, payload[HEADER_SIZE:].decode("utf-8", "surrogatepass")
    if kind == BINARY:
        return origin, payload[HEADER_SIZE:]
    raise ValueError(f"unknown group message kind {kind:#04x}")


# -- logging --------------------------------------------------------------------


class ThrottledWarning:
    """A warning that is logged at most once every ``interval`` seconds.

    Each line says how many times it happened since the previous line, so a
    broker that stays unreachable fills no log while nothing goes uncounted.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._since = 0  # occurrences since the last line

    def __call__(self, what: str, count: int = 1) -> bool:
        """Count ``count`` occurrences of ``what``; True if a line was logged."""
        self._since += count
        now = self._clock()
        if now < self._next:
            return False
        self._logger.warning("%s (%d since the last warning)", what, self._since)
        self._since = 0
        self._next = now + self._interval
        return True
