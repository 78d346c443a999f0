"""The channel between one transport and one handler: the per-connection engine.

The backend pushes each event here as its library produces it (see
`fastrapi.core.transport.Receiver`), and everything a handler should never
have to do happens right there, in the callback: a Ping is answered, a Pong
matched to its ``ping()``, fragments joined under the size limit, a Close
answered, a protocol error held until the handler has read what came before.

Messages wait in a bounded inbox. A handler's ``receive`` takes the first at
once when there is one and otherwise waits on a single future that the next
message resolves: one wake-up per message, as the libraries' own ``recv()``
costs. When the inbox reaches ``max_queue`` the channel pauses reading the
socket, so TCP pushes back on the client ("backpressure is propagated", as
websockets' sans-I/O guide puts it); it resumes once the handler has taken
the inbox down to a quarter of that.

There is no task besides the handler's: keepalive pings, the idle timeout
and the closing handshake's deadline are timer callbacks on the event loop.

Broadcasts (`fastrapi.core.groups`) never wait either: `offer` writes a
message at once, or, while the write buffer is over ``write_limit`` or a
fragmented message is going out, puts it in a small outbox that the channel
writes out itself once the buffer drains. The outbox exists only while a
member is behind, and its bound is the group's.
"""

from __future__ import annotations

import codecs
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import IntEnum

from fastrapi.core.codes import CloseCode, is_sendable
from fastrapi.core.exceptions import ConcurrentReceiveError, TransportClosed, WebSocketDisconnect
from fastrapi.core.loop import Timer, Waiter, running_loop, watch
from fastrapi.core.settings import Settings
from fastrapi.core.state import ConnectionState, Transition, WebSocketState
from fastrapi.core.timers import Deadlines, deadlines
from fastrapi.core.transport import Transport

_CONNECTED = WebSocketState.CONNECTED


class Offered(IntEnum):
    """What `Channel.offer` did with a message."""

    WRITTEN = 0  # in the transport's buffer now
    QUEUED = 1  # in the outbox: written by the channel once the buffer drains
    DISPLACED = 2  # queued, and the outbox's oldest message dropped to make room
    FULL = 3  # not taken: the outbox is full
    CLOSED = 4  # not taken: the connection is closing or gone


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class MessageTooBig(Exception):
    """A message grew past ``max_message_size`` while its fragments were joined."""


def fits(data: str | bytes, limit: int) -> bool:
    """Whether ``data`` is at most ``limit`` bytes on the wire, encoding text only if needed."""
    if len(data) > limit:
        return False  # a character is at least one byte
    if isinstance(data, bytes) or data.isascii() or 4 * len(data) <= limit:
        return True  # ASCII, or short enough that even 4 bytes a character fit
    return len(data.encode()) <= limit


class Assembler:
    """Joins the fragments of one message, refusing it once it outgrows the limit.

    The size is checked on every fragment, so an oversized message is
    refused before it is held whole. Text that comes as bytes is decoded as
    it arrives, so invalid UTF-8 is found at the fragment that holds it.
    """

    __slots__ = ("_decoder", "_limit", "_parts", "_size", "_text")

    def __init__(self, limit: int, text: bool) -> None:
        self._limit = limit
        self._text = text
        self._parts: list[str] | list[bytes] = []
        self._size = 0
        self._decoder = _utf8_decoder() if text else None

    def feed(self, data: str | bytes | bytearray, final: bool) -> str | bytes | None:
        """The whole message once ``data`` finishes it, else None.

        Raises:
            MessageTooBig: the message so far exceeds the limit.
            UnicodeDecodeError: a text message's bytes are not UTF-8.
            TypeError: a fragment is of the other type than the message.
        """
        # Text is counted in UTF-8 bytes; ASCII (checked in C) needs no encoding to count.
        self._size += len(data) if not isinstance(data, str) or data.isascii() else len(data.encode())
        if self._size > self._limit:
            raise MessageTooBig(f"message exceeds {self._limit} bytes")
        if self._decoder is not None:
            if not isinstance(data, str):
                data = self._decoder.decode(data, final)
            self._parts.append(data)  # type: ignore[arg-type]  # text parts are all str
        elif not isinstance(data, str):
            self._parts.append(data)  # type: ignore[arg-type]  # binary parts are all bytes-like
        else:
            raise TypeError("a text fragment continues a binary message")
        if not final:
            return None
        if self._text:
            return "".join(self._parts)  # type: ignore[arg-type]  # text parts are all str
        return b"".join(self._parts)  # type: ignore[arg-type]  # binary parts are all bytes


class Channel:
    """One connection's engine: the `Receiver` its backend pushes to, and
    the receive and send paths its `WebSocket` calls."""

    __slots__ = (
        "_assembler",
        "_closer",
        "_done",
        "_draining",
        "_ended",
        "_failure",
        "_fragmenting",
        "_high",
        "_idle",
        "_keepalive",
        "_keepalive_payload",
        "_last_activity",
        "_loop",
        "_low",
        "_max_size",
        "_outbox",
        "_paused",
        "_pongs",
        "_settings",
        "_size_check_above",
        "_state",
        "_track_idle",
        "_turns",
        "_waiter",
        "close_code",
        "close_reason",
        "inbox",
        "transport",
    )

    def __init__(self, transport: Transport, settings: Settings, state: ConnectionState) -> None:
        self.transport = transport
        self._settings = settings
        self._state = state
        self._loop = running_loop()
        # A list, not a deque: an empty deque costs 600 bytes on every idle connection.
        self.inbox: list[str | bytes] = []
        self._high = settings.max_queue
        self._low = settings.max_queue // 4
        self._paused = False
        self._waiter: Waiter | None = None  # the handler's receive, waiting
        self._max_size = settings.max_message_size
        # Below this length a message fits however it is encoded: no check at all.
        self._size_check_above = settings.max_message_size // 4
        self._assembler: Assembler | None = None  # a fragmented message is arriving
        # Sent pings (None for keepalive's) and sends waiting for a fragmented
        # message to end: made when first needed, not on every connection.
        self._pongs: dict[bytes, Waiter | None] | None = None
        # Keepalive waits on the server's shared deadlines: the next ping
        # (ping_interval) and, once it is out, its pong (ping_timeout).
        self._keepalive: Deadlines | None = None  # the one this channel waits on now
        self._keepalive_payload: bytes | None = None
        self._idle: Timer | None = None
        self._track_idle = settings.idle_timeout is not None  # else no clock per message
        self._last_activity = 0.0
        self._closer: Timer | None = None  # the deadline of a closing handshake or failure
        self._failure: tuple[int, str] | None = None  # reported, not acted on yet
        self._ended: Waiter | None = None  # made by wait_closed(), resolved at the end
        self._done = False
        self._fragmenting = False  # a fragmented message is being sent
        self._turns: list[Waiter] | None = None
        # Set while a write that `offer` made left the transport over its
        # write_limit: offers are refused until it drains.
        self._draining: Waiter | None = None
        # Broadcasts that came while the buffer was over the limit or a
        # fragmented message was going out; made then, dropped once empty.
        self._outbox: deque[str | bytes] | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    def start(self) -> None:
        """The 101 is out: start the keepalive and idle timers."""
        settings = self._settings
        if settings.ping_interval is not None:
            self._wait_keepalive(settings.ping_interval, self._ping_due)
        if settings.idle_timeout is not None:
            self._last_activity = self._loop.time()
            self._idle = self._loop.call_later(settings.idle_timeout, self._idle_check)

    # -- the Receiver: called by the backend, in order, never raising ------

    def message_received(self, data: str | bytes) -> None:
        if self._state.state is not _CONNECTED:
            return  # after our Close nothing more is delivered (RFC 6455 7.1.2)
        if len(data) > self._size_check_above and not fits(data, self._max_size):
            self.start_close(CloseCode.MESSAGE_TOO_BIG, f"message exceeds {self._max_size} bytes")
            return
        inbox = self.inbox
        inbox.append(data)
        if len(inbox) >= self._high and not self._paused:
            self._paused = True
            self.transport.pause_reading()  # the handler is behind: TCP pushes back
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._track_idle:
            self._last_activity = self._loop.time()

    def fragment_received(self, data: str | bytes | bytearray, final: bool, text: bool | None) -> None:
        if self._state.state is not _CONNECTED:
            return
        assembler = self._assembler
        if assembler is None:
            if final and not (text and isinstance(data, bytes)):
                # A whole message after all (a final piece is str or bytes).
                self.message_received(data)  # type: ignore[arg-type]
                return
            assembler = self._assembler = Assembler(self._max_size, bool(text))
        try:
            message = assembler.feed(data, final)
        except MessageTooBig as error:
            self.start_close(CloseCode.MESSAGE_TOO_BIG, str(error))
            return
        except UnicodeDecodeError as error:
            self.protocol_error(CloseCode.INVALID_FRAME_PAYLOAD_DATA, f"invalid UTF-8: {error.reason}")
            return
        if message is not None:
            self._assembler = None
            # Within the limit already (the assembler counted it): only
            # checked again when over a quarter of it, in C for bytes and ASCII.
            self.message_received(message)

    def ping_received(self, data: bytes) -> None:
        if self._state.state is _CONNECTED:
            self.transport.send_pong(data)

    def pong_received(self, data: bytes) -> None:
        # A Pong answers the Ping with the same payload and, as websockets
        # has it, every Ping sent before it; an unsolicited Pong is ignored (5.5.3).
        pongs = self._pongs
        if pongs is None or data not in pongs:
            return
        for payload, waiter in list(pongs.items()):
            del pongs[payload]
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if payload == self._keepalive_payload:
                self._keepalive_answered()
            if payload == data:
                break

    def close_received(self, code: int | None, reason: str) -> None:
        if self._done:
            return
        if code is None:
            code = CloseCode.NO_STATUS_RCVD
        elif not is_sendable(code):  # 1005, 1006, 1015 and unassigned codes never go on the wire (7.4.1)
            self._failure = (CloseCode.PROTOCOL_ERROR, "invalid close code")
            self._fail()
            return
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self._state.state is _CONNECTED:
            self.transport.send_close(code, reason)  # echo the peer's code (5.5.1)
        self._finish()  # the server closes TCP first (7.1.1)

    def protocol_error(self, code: int, reason: str) -> None:
        if self._done or self._failure is not None:
            return
        if self._state.state is not _CONNECTED:
            self._finish()  # our Close is out already; wait no longer for an answer
            return
        self._failure = (code, reason)
        # The messages before the error are the peer's last words: the handler
        # may read (and answer) them first. One already waiting with nothing
        # queued has read them all; else wait at most close_timeout for it.
        if self._waiter is not None and not self.inbox:
            self._fail()
        else:
            self._arm_closer(self._fail)

    def connection_lost(self, code: int = CloseCode.ABNORMAL_CLOSURE, reason: str = "") -> None:
        if self._done:
            return
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._finish()

    # -- the handler's side -------------------------------------------------

    @property
    def queued(self) -> int:
        """Messages received and waiting for the handler."""
        return len(self.inbox)

    def disconnect_error(self) -> WebSocketDisconnect:
        code = CloseCode.ABNORMAL_CLOSURE if self.close_code is None else self.close_code
        return WebSocketDisconnect(code, self.close_reason)

    def take(self) -> str | bytes:
        """The first queued message; call only while `inbox` is not empty."""
        inbox = self.inbox
        data = inbox.pop(0)
        if self._paused and len(inbox) <= self._low:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message; messages that came before the end are delivered first.

        Raises:
            WebSocketDisconnect: the connection ended and every message was read.
            ConcurrentReceiveError: another task is already receiving.
            TimeoutError: nothing came within ``timeout`` seconds; nothing is
                lost, since a message only ever waits in the inbox.
        """
        if self.inbox:
            return self.take()
        if self._waiter is not None:
            raise ConcurrentReceiveError(
                "another task is already waiting in a receive call on this WebSocket; "
                "receive from one task and hand messages to others (e.g. with a queue)"
            )
        loop = self._loop
        timer: Timer | None = None
        deadline = 0.0
        try:
            while not self.inbox:
                if self._failure is not None:
                    self._fail()  # caught up: every message before the error was read
                if self._state.state is not _CONNECTED:
                    raise self.disconnect_error()
                waiter = self._waiter = loop.create_future()
                if timeout is not None and timer is None:
                    deadline = loop.time() + timeout
                    timer = loop.call_at(deadline, self._wake)
                await waiter
                if timer is not None and not self.inbox and loop.time() >= deadline:
                    raise TimeoutError(f"no message within {timeout} seconds")
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self.take()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, data: str | bytes) -> None:
        """Send a whole message.

        Raises:
            WebSocketDisconnect: the connection is closing or gone.
        """
        while self._fragmenting:  # a message in fragments goes on: wait for its end (5.4)
            await self._wait_turn()
        if self._state.state is not _CONNECTED:
            raise self.disconnect_error()
        try:
            pending = self.transport.send(data)
            if pending is not None:  # the write buffer is full: wait for it to drain
                await pending
        except TransportClosed:
            raise self.disconnect_error() from None
        if self._track_idle:
            self._last_activity = self._loop.time()

    def offer(self, data: str | bytes, room: int, displace: bool = False) -> Offered:
        """Take a broadcast message now, without ever waiting.

        Written at once when this connection can take it. While it cannot (an
        earlier write left the buffer over ``write_limit`` and it has not
        drained yet, or a fragmented message is going out and nothing may come
        between its frames, RFC 6455 section 5.4), the message waits in the
        outbox, up to ``room`` messages, and the channel writes them out in
        order as soon as it can. With the outbox full, ``displace`` drops its
        oldest message to make room (`Offered.DISPLACED`); otherwise this
        message is not taken (`Offered.FULL`).
        """
        if self._state.state is not _CONNECTED:
            return Offered.CLOSED
        outbox = self._outbox
        if outbox is not None or self._draining is not None or self._fragmenting:
            if outbox is None:
                outbox = self._outbox = deque()
            if len(outbox) < room:
                outbox.append(data)
                return Offered.QUEUED
            if displace and outbox:
                outbox.popleft()
                outbox.append(data)
                return Offered.DISPLACED
            return Offered.FULL
        try:
            pending = self.transport.send(data)
        except TransportClosed:
            return Offered.CLOSED
        if pending is not None:
            self._watch_drain(pending)
        if self._track_idle:
            self._last_activity = self._loop.time()
        return Offered.WRITTEN

    def _watch_drain(self, pending: Awaitable[None]) -> None:
        # Nobody waits here: the wait goes on by itself, only as long as the
        # buffer is over its limit, and later offers queue meanwhile (a
        # transport whose writes are awaited makes the write in it).
        draining = self._draining = watch(pending)
        draining.add_done_callback(self._drained)

    @property
    def congested(self) -> bool:
        """Whether broadcasts queue instead of being written: the buffer is over its limit."""
        return self._draining is not None

    @property
    def outbox_size(self) -> int:
        """Broadcast messages waiting in the outbox."""
        return 0 if self._outbox is None else len(self._outbox)

    def _drained(self, draining: Waiter) -> None:
        if self._draining is draining:
            self._draining = None
        if draining.cancelled():
            return
        if draining.exception() is None:  # TransportClosed once the connection is lost: seen, not logged
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        """Write what the outbox holds, in order, until the buffer is over its limit again."""
        outbox = self._outbox
        while outbox and self._draining is None and not self._fragmenting:
            if self._state.state is not _CONNECTED:
                outbox.clear()  # never a message after our Close
                break
            try:
                pending = self.transport.send(outbox.popleft())
            except TransportClosed:
                outbox.clear()
                break
            if pending is not None:
                self._watch_drain(pending)
        if not outbox:
            self._outbox = None

    async def send_fragments(self, fragments: AsyncIterator[str | bytes | bytearray | memoryview]) -> None:
        """Send one message, a frame for each item, as each comes.

        An empty final frame ends the message (its length was not known in
        advance). Other messages wait; control frames may go between
        fragments (RFC 6455 section 5.4). Should ``fragments`` raise, or the
        call be cancelled, after a fragment went out, the message can never be
        finished: the connection is closed with 1011 and the error re-raised.

        Raises:
            TypeError: a fragment is neither str nor bytes, or differs in type from the first.
            WebSocketDisconnect: the connection is closing or gone.
        """
        while self._fragmenting:
            await self._wait_turn()
        self._fragmenting = True
        kind: type[str] | type[bytes] | None = None
        try:
            async for item in fragments:
                data = _fragment(item)
                first = kind is None
                if first:
                    kind = type(data)
                elif type(data) is not kind:
                    raise TypeError("the fragments of one message must be all str or all bytes")
                await self._send_fragment(data, first, final=False)
            if kind is not None:
                await self._send_fragment("" if kind is str else b"", first=False, final=True)
        except BaseException:
            if kind is not None:
                self.start_close(CloseCode.INTERNAL_ERROR, "a fragmented message was abandoned")
            raise
        finally:
            self._fragmenting = False
            self._release_turns()
            self._flush_outbox()  # broadcasts that waited for the message's end
        if self._track_idle:
            self._last_activity = self._loop.time()

    async def _send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        if self._state.state is not _CONNECTED:
            raise self.disconnect_error()
        try:
            await self.transport.send_fragment(data, first, final)
        except TransportClosed:
            raise self.disconnect_error() from None

    async def _wait_turn(self) -> None:
        waiter: Waiter = self._loop.create_future()
        if self._turns is None:
            self._turns = []
        self._turns.append(waiter)
        try:
            await waiter
        finally:
            if self._turns is not None and waiter in self._turns:
                self._turns.remove(waiter)

    def _release_turns(self) -> None:
        turns, self._turns = self._turns, None
        for waiter in turns or ():
            if not waiter.done():
                waiter.set_result(None)

    async def ping(self, data: bytes) -> None:
        """Send a Ping and return when its Pong arrives (RFC 6455 section 5.5.2).

        Raises:
            ValueError: a ping with the same payload is still waiting.
            WebSocketDisconnect: the connection ended before the Pong came.
        """
        if self._pongs is None:
            self._pongs = {}
        if data in self._pongs:
            raise ValueError(
                "a ping with this payload is still waiting for its pong; "
                "use another payload, or call ping() without one"
            )
        waiter: Waiter = self._loop.create_future()
        self._pongs[data] = waiter
        self.transport.send_ping(data)
        try:
            await waiter  # raises WebSocketDisconnect if the connection ends first
        finally:
            if self._pongs is not None:
                self._pongs.pop(data, None)

    # -- timers: keepalive and idle --------------------------------------------

    def _wait_keepalive(self, delay: float, then: Callable[[], None]) -> None:
        if self._keepalive is not None:
            self._keepalive.clear(self)
        self._keepalive = deadlines(delay)
        self._keepalive.set(self, then)

    def _ping_due(self) -> None:
        self._keepalive = None
        if self._state.state is not _CONNECTED:
            return
        settings = self._settings
        assert settings.ping_interval is not None
        if len(self.inbox) >= self._high:
            # The handler is behind and the peer plainly alive; its pong
            # would wait unread behind its messages anyway.
            self._wait_keepalive(settings.ping_interval, self._ping_due)
            return
        payload = os.urandom(4)
        if self._pongs is None:
            self._pongs = {}
        self._pongs[payload] = None
        self._keepalive_payload = payload
        self.transport.send_ping(payload)
        if settings.ping_timeout is None:
            self._wait_keepalive(settings.ping_interval, self._ping_due)
        else:
            self._wait_keepalive(settings.ping_timeout, self._pong_overdue)

    def _pong_overdue(self) -> None:
        self._keepalive = None
        if self._state.state is not _CONNECTED:
            return
        if len(self.inbox) >= self._high:  # its pong waits unread behind its messages
            assert self._settings.ping_timeout is not None
            self._wait_keepalive(self._settings.ping_timeout, self._pong_overdue)
            return
        self.start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _keepalive_answered(self) -> None:
        self._keepalive_payload = None
        interval = self._settings.ping_interval
        if interval is not None and self._state.state is _CONNECTED:
            self._wait_keepalive(interval, self._ping_due)
        elif self._keepalive is not None:
            self._keepalive.clear(self)
            self._keepalive = None

    def _idle_check(self) -> None:
        self._idle = None
        timeout = self._settings.idle_timeout
        if self._state.state is not _CONNECTED or timeout is None:
            return
        now = self._loop.time()
        if self.inbox:  # messages wait for a slow handler: not idle
            self._last_activity = now
        idle = now - self._last_activity
        if idle >= timeout:
            self.start_close(CloseCode.GOING_AWAY, "idle timeout")
            return
        self._idle = self._loop.call_later(timeout - idle, self._idle_check)

    # -- closing ------------------------------------------------------------

    def start_close(self, code: int, reason: str) -> None:
        """Send our Close frame (RFC 6455 section 7.1.2) unless one was sent or the peer's came.

        Receivers see the end at once; TCP is dropped if the peer's Close
        does not come within ``close_timeout``.
        """
        if self._failure is not None:
            self._fail()
            return
        if not self._state.try_apply(Transition.LOCAL_CLOSE):
            return
        self.close_code, self.close_reason = code, reason
        self._stop_delivery()
        self.transport.send_close(code, reason)
        self._arm_closer(self._finish)

    def _fail(self) -> None:
        # Fail the WebSocket connection (RFC 6455 section 7.1.7): send the
        # Close, then drop TCP without waiting for the peer's answer.
        assert self._failure is not None
        if not self._state.try_apply(Transition.LOCAL_CLOSE):
            return
        self.close_code, self.close_reason = self._failure
        self._stop_delivery()
        self.transport.send_close(*self._failure)
        self._finish()

    def _stop_delivery(self) -> None:
        # After our Close no message reaches the handler (RFC 6455 allows
        # discarding them); reading goes on, to see the peer's Close.
        self.inbox.clear()
        self._assembler = None
        self._outbox = None  # broadcasts not written yet never will be
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        self._cancel_timers()
        self._wake()

    def _arm_closer(self, then: Callable[[], None]) -> None:
        if self._closer is None:
            self._closer = self._loop.call_later(self._settings.close_timeout, then)

    def _finish(self) -> None:
        """The end: TCP is closed (or closing), everyone waiting is told."""
        if self._done:
            return
        self._done = True
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        self._state.try_apply(Transition.PEER_CLOSED)
        self._cancel_timers()
        self._outbox = None
        self.transport.abort()
        self._wake()
        if self._pongs is not None:
            for waiter in self._pongs.values():
                if waiter is not None and not waiter.done():
                    waiter.set_exception(self.disconnect_error())
            self._pongs = None
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        self._release_turns()

    def _cancel_timers(self) -> None:
        if self._keepalive is not None:
            self._keepalive.clear(self)
            self._keepalive = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None

    async def wait_closed(self) -> None:
        """Wait until the connection is over: at most ``close_timeout`` after our Close."""
        if self._done:
            return
        if self._closer is None:  # nothing bounds the wait yet
            self._arm_closer(self._finish)
        if self._ended is None:
            self._ended = self._loop.create_future()
        await self._ended

    def refused(self) -> None:
        """The handshake was answered with an HTTP error: there is nothing to close."""
        self.close_code, self.close_reason = CloseCode.ABNORMAL_CLOSURE, "the handshake was refused"
        self._done = True

    def release(self) -> None:
        """The session is over: free what is left."""
        self._cancel_timers()
        if self._draining is not None:  # nobody is left to offer more
            self._draining.cancel()
        self._outbox = None
        self.inbox.clear()


def _fragment(data: str | bytes | bytearray | memoryview) -> str | bytes:
    if isinstance(data, str | bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"a fragment is a str or bytes, not {type(data).__name__}")
