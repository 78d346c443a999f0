"""Named groups of connections and broadcast to them, in this process.

    await app.groups.add("room:lobby", ws)
    delivered = await app.groups.send_json("room:lobby", {"text": "hi"}, exclude=ws)

A broadcast never waits for a member. It offers the message to each member
in turn (`Channel.offer`), which writes it into that connection's buffer at
once, as any send does, and never awaits. A member whose buffer is over
``write_limit`` (a slow or stuck reader) gets it in its outbox instead, a
queue of at most ``outbox`` messages (16 by default) that its channel writes
out, in order, as the buffer drains. When that outbox is full too, the
group's overflow policy says what happens:

``"drop_newest"`` (the default)
    The member misses this message; it gets the next ones again once its
    outbox has room.
``"drop_oldest"``
    The outbox's oldest message is dropped to make room for this one: a
    member that catches up gets the latest state (a ticker, a dashboard).
``"close_1008"`` / ``"close_1013"``
    The member is closed with 1008 (policy violation) or 1013 (try again
    later); what its outbox held is never sent.

Every drop is counted in `stats`, by policy. A member's buffer holds at most
``write_limit`` bytes plus ``outbox`` messages of broadcasts, however far
behind it is.

Guarantees: at most once per member (a member either
gets a message or misses it, never twice); a sender's broadcasts reach each
member in the order they were made (a handler's own ``send_*`` is not
ordered with broadcasts still in its outbox). A member leaves every group when its
session ends; a connection that is not open is not added.

Across processes: with a shared broker (`fastrapi.core.broker`, e.g.
``FastrAPI(broker="redis://...")``) each broadcast also goes to the members
connected to the other processes. The members here get it at once, as
without a broker; the broker carries it to the others, which subscribe to a
group only while it has members there. The guarantees become the broker's:
at most once, in order per sender, no history (a process that was
disconnected from the broker missed what was sent meanwhile: see
`Groups.on_reconnect`). A broadcast never waits for the broker, and the
members elsewhere are not in the count it returns; a broadcast the broker
could not pass on is counted in `stats` (``publish_failures``) and logged,
never raised, so that a broker outage degrades a chat to each process's own
members instead of failing every handler that broadcasts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from fastrapi.core import json
from fastrapi.core.broker import (
    BINARY,
    ORIGIN_SIZE,
    TEXT,
    Broker,
    LocalBroker,
    ThrottledWarning,
    pack,
    pack_encoded,
    unpack,
)
from fastrapi.core.channel import Offered
from fastrapi.core.codes import CloseCode
from fastrapi.core.state import WebSocketState

if TYPE_CHECKING:
    from fastrapi.core.websocket import WebSocket

Overflow = Literal["drop_newest", "drop_oldest", "close_1008", "close_1013"]
OVERFLOW_POLICIES: tuple[str, ...] = get_args(Overflow)
DEFAULT_OVERFLOW: Overflow = "drop_newest"
DEFAULT_OUTBOX = 16  # messages: as many as a connection's inbox holds (max_queue)
_CLOSE_CODES = {"close_1008": CloseCode.POLICY_VIOLATION, "close_1013": CloseCode.TRY_AGAIN_LATER}
_OVERFLOW_REASON = "too slow for the group's broadcasts"
_CONNECTED = WebSocketState.CONNECTED

logger = logging.getLogger("fastrapi.groups")

ReconnectHook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GroupStats:
    """A snapshot of `Groups.stats`.

    Attributes:
        members: connections in at least one group.
        groups: each group's name and how many members it has.
        sent: messages written to a member or waiting in its outbox (one per
            member reached; a message dropped from an outbox leaves this count).
        dropped: messages a member missed because its outbox was full.
        drops: ``dropped`` by the policy in force when each happened.
        overflow_closes: members closed by a ``close_*`` policy.
        published: broadcasts the broker passed on to the other processes.
        publish_failures: broadcasts it could not pass on (the members
            elsewhere missed them; those here got them).
        received: broadcasts that came from another process.
        broker_connected: whether the broker is connected (always True in-process).
        reconnects: how often the broker's connection came back after a loss.
    """

    members: int
    groups: dict[str, int]
    sent: int
    dropped: int
    drops: dict[str, int]
    overflow_closes: int
    published: int = 0
    publish_failures: int = 0
    received: int = 0
    broker_connected: bool = True
    reconnects: int = 0


class Groups:
    """Named sets of open connections, with broadcast to each set.

    Args:
        overflow: what happens to a member whose outbox is full (see the
            module's documentation); ``"drop_newest"`` by default.
        outbox: how many broadcast messages a member that is behind may have
            waiting, beyond the ``write_limit`` bytes in its buffer; 0 applies
            the policy as soon as the buffer is over its limit.
        broker: what carries broadcasts to the other processes; by default
            a `LocalBroker`, which carries nothing.

    Raises:
        ValueError: ``overflow`` names no policy, or ``outbox`` is negative.
    """

    __slots__ = (
        "_broker",
        "_dropped",
        "_drops",
        "_groups",
        "_joined",
        "_malformed",
        "_origin",
        "_outbox",
        "_overflow",
        "_overflow_closes",
        "_received",
        "_reconnect_hooks",
        "_sent",
        "_shared",
    )

    def __init__(
        self,
        overflow: Overflow = DEFAULT_OVERFLOW,
        outbox: int = DEFAULT_OUTBOX,
        broker: Broker | None = None,
    ) -> None:
        if not isinstance(outbox, int) or outbox < 0:
            raise ValueError(f"a group outbox holds a number of messages >= 0, not {outbox!r}")
        self._broker: Broker = LocalBroker() if broker is None else broker
        # Read once per broadcast: with an in-process broker nothing else happens.
        self._shared = self._broker.shared
        self._origin = b""  # this process's id in the envelope; made anew by each start
        self._received = 0
        self._malformed = ThrottledWarning(logger)
        self._reconnect_hooks: list[ReconnectHook] = []
        self._overflow: Overflow = _checked(overflow)
        self._outbox = outbox
        # Dicts, not sets: members are reached in the order they joined.
        self._groups: dict[str, dict[WebSocket, None]] = {}
        self._joined: dict[WebSocket, set[str]] = {}  # each member's groups, to forget it at once
        self._sent = 0
        self._dropped = 0
        self._drops: dict[str, int] = {}
        self._overflow_closes = 0

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @overflow.setter
    def overflow(self, policy: Overflow) -> None:
        self._overflow = _checked(policy)

    @property
    def broker(self) -> Broker:
        """What carries broadcasts to the other processes (``broker.shared``
        is False for the in-process default)."""
        return self._broker

    # -- the broker's life, driven by the app -----------------------------------

    async def start(self) -> None:
        """Start the broker; the app calls it when it starts serving."""
        # A fresh id per start: worker processes forked from one parent
        # must not share it, or each would skip the others' broadcasts.
        self._origin = os.urandom(ORIGIN_SIZE)
        await self._broker.start(self._deliver_remote, self._reconnected)

    async def close(self) -> None:
        """Stop the broker; the app calls it when it stops serving."""
        await self._broker.close()

    def on_reconnect(self, hook: ReconnectHook) -> ReconnectHook:
        """Call ``await hook()`` each time the broker's connection came back.

        By then every group with members here is subscribed again, but what
        was broadcast elsewhere while it was lost is gone: a hook is where
        the app resynchronises its members (sends them the current state, or
        tells them to fetch it). Hooks run one after the other in a task of
        their own; one that raises is logged and the next still runs. Usable
        as a decorator. Never called with the in-process broker.
        """
        self._reconnect_hooks.append(hook)
        return hook

    async def _reconnected(self) -> None:
        for hook in list(self._reconnect_hooks):
            try:
                await hook()
            except Exception:
                logger.exception("groups on_reconnect hook %r raised", hook)

    def _deliver_remote(self, name: str, payload: bytes) -> None:
        # A broadcast from another process, handed over by the broker.
        try:
            origin, message = unpack(payload)
        except ValueError as error:
            self._malformed(f"ignored a message for group {name!r} that is not a group broadcast: {error}")
            return
        if origin == self._origin:
            return  # our own broadcast, back from the broker: our members got it already
        self._received += 1
        self._deliver(name, message, None)

    # -- membership ---------------------------------------------------------

    async def add(self, name: str, ws: WebSocket) -> bool:
        """Put ``ws`` in group ``name``; True if it is a member now.

        A connection that is not open (not accepted yet, closing or closed)
        is ignored and False returned: its session may have ended already,
        and nothing would take it out again. Adding a member twice is a no-op.
        With a shared broker it returns once the group's broadcasts from
        other processes reach this one (`Broker.subscribe`).
        """
        if not isinstance(name, str):
            raise TypeError(f"a group's name is a str, not {type(name).__name__}")
        if ws.client_state is not _CONNECTED:
            return False
        self._groups.setdefault(name, {})[ws] = None
        self._joined.setdefault(ws, set()).add(name)
        if self._shared:
            # Member first, then the wait: the session may end meanwhile,
            # and forget() must find it to take it out again.
            await self._broker.subscribe(name)
        return True

    def discard(self, name: str, ws: WebSocket) -> None:
        """Take ``ws`` out of group ``name``, if it is in it; an empty group is forgotten."""
        if not self._leave(name, ws):
            return
        joined = self._joined.get(ws)
        if joined is not None:
            joined.discard(name)
            if not joined:
                del self._joined[ws]

    def forget(self, ws: WebSocket) -> None:
        """Take ``ws`` out of every group: its session has ended."""
        for name in self._joined.pop(ws, ()):
            self._leave(name, ws)

    def _leave(self, name: str, ws: WebSocket) -> bool:
        """Take ``ws`` out of group ``name``'s members; an emptied group is
        forgotten (and unsubscribed). False if it was not a member."""
        members = self._groups.get(name)
        if members is None or ws not in members:
            return False
        del members[ws]
        if not members:
            del self._groups[name]
            if self._shared:
                self._broker.unsubscribe(name)
        return True

    def members(self, name: str) -> list[WebSocket]:
        """The members of group ``name`` now, in the order they joined (a copy)."""
        return list(self._groups.get(name, ()))

    def count(self, name: str) -> int:
        members = self._groups.get(name)
        return 0 if members is None else len(members)

    # -- broadcast ------------------------------------------------------------

    async def send_text(self, name: str, message: str, exclude: WebSocket | None = None) -> int:
        """Send a text message to every member of ``name`` but ``exclude``.

        Returns how many members took it (written, or queued in their outbox);
        never waits for one.

        Raises:
            TypeError: ``message`` is not a str.
        """
        if not isinstance(message, str):
            raise TypeError(f"send_text() takes a str, not {type(message).__name__}")
        text = str(message)
        delivered = self._deliver(name, text, exclude)
        if self._shared:
            self._broker.publish(name, pack(self._origin, text))
        return delivered

    async def send_bytes(
        self, name: str, message: bytes | bytearray | memoryview, exclude: WebSocket | None = None
    ) -> int:
        """Send a binary message to every member of ``name`` but ``exclude``; as `send_text`."""
        if not isinstance(message, bytes | bytearray | memoryview):
            raise TypeError(f"send_bytes() takes bytes, not {type(message).__name__}")
        data = bytes(message)
        delivered = self._deliver(name, data, exclude)
        if self._shared:
            self._broker.publish(name, pack(self._origin, data))
        return delivered

    async def send_json(
        self,
        name: str,
        message: Any,
        exclude: WebSocket | None = None,
        mode: Literal["text", "binary"] = "text",
    ) -> int:
        """Send ``message`` as JSON to every member of ``name`` but ``exclude``.

        Serialised once for the whole group, not once per member.

        Raises:
            TypeError: ``message`` cannot be expressed as JSON.
            ValueError: ``mode`` is neither "text" nor "binary".
        """
        if mode not in ("text", "binary"):
            raise ValueError(f'send_json() mode must be "text" or "binary", not {mode!r}')
        payload = json.dumps(message)
        delivered = self._deliver(name, payload.decode() if mode == "text" else payload, exclude)
        if self._shared:
            # The serialised bytes as they are: a text envelope carries UTF-8 anyway.
            kind = TEXT if mode == "text" else BINARY
            self._broker.publish(name, pack_encoded(kind, self._origin, payload))
        return delivered

    def _deliver(self, name: str, data: str | bytes, exclude: WebSocket | None) -> int:
        members = self._groups.get(name)
        if not members:
            return 0
        policy = self._overflow
        room = self._outbox
        displace = policy == "drop_oldest"
        taken = displaced = dropped = 0
        gone: list[WebSocket] = []
        # Nothing below awaits, so no member can join or leave during the
        # loop; the copy is for the members this loop itself takes out.
        for ws in tuple(members):
            if ws is exclude:
                continue
            offered = ws._channel.offer(data, room, displace)
            if offered <= Offered.QUEUED:
                taken += 1
            elif offered is Offered.DISPLACED:
                # This one is queued; the oldest queued one will never be sent.
                displaced += 1
            elif offered is Offered.FULL:
                dropped += 1
                close_code = _CLOSE_CODES.get(policy)
                if close_code is not None:
                    ws._channel.start_close(close_code, _OVERFLOW_REASON)
                    self._overflow_closes += 1
            else:
                gone.append(ws)  # closing or closed: its session will end soon
        for ws in gone:
            self.discard(name, ws)
        self._sent += taken
        dropped += displaced
        if dropped:
            self._dropped += dropped
            self._drops[policy] = self._drops.get(policy, 0) + dropped
        return taken + displaced

    # -- statistics -----------------------------------------------------------

    def stats(self) -> GroupStats:
        broker = self._broker.stats()
        return GroupStats(
            members=len(self._joined),
            groups={name: len(members) for name, members in self._groups.items()},
            sent=self._sent,
            dropped=self._dropped,
            drops=dict(self._drops),
            overflow_closes=self._overflow_closes,
            published=broker.published,
            publish_failures=broker.publish_failures,
            received=self._received,
            broker_connected=broker.connected,
            reconnects=broker.reconnects,
        )


def _checked(policy: str) -> Overflow:
    if policy not in OVERFLOW_POLICIES:
        raise ValueError(
            f"group overflow policy must be one of {', '.join(OVERFLOW_POLICIES)}, not {policy!r}"
        )
    return policy  # type: ignore[return-value]  # one of the literal's values, checked above
