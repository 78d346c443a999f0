"""The bridge between one transport and one handler.

A single reader task (the pump) moves events from the transport into a
bounded memory stream that the handler reads. The bound is the point: when a
handler falls behind, the stream fills, the pump stops reading the socket, and
TCP pushes back on the client instead of messages piling up in memory
("backpressure is propagated", as websockets' sans-I/O guide puts it).

The pump also does everything a handler should never have to: it answers
pings, matches pongs to `ping()` calls, joins fragments under the size limit,
and notices the end of the connection. Sends from any number of tasks take
turns: one lock per frame on the wire, one per data message, so the
fragments of two messages never interleave while pongs, pings and the Close
may still go between the fragments of one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from fastrapi.core.codes import CloseCode
from fastrapi.core.events import BytesMessage, Closed, Message, Ping, Pong, ProtocolError, TextMessage
from fastrapi.core.exceptions import ConcurrentReceiveError, TransportClosed, WebSocketDisconnect
from fastrapi.core.locks import FastLock
from fastrapi.core.settings import Settings
from fastrapi.core.state import ConnectionState, Transition, WebSocketState
from fastrapi.core.transport import Transport


class MessageTooBig(Exception):
    """A message grew past ``max_message_size`` while its fragments were joined."""


class MessageAssembler:
    """Joins fragments into messages, refusing any that outgrow the limit.

    Whole messages pass through untouched (no copy); only fragmented ones are
    buffered, and the size is checked on every fragment, so an oversized
    message is refused before it is held in memory whole.
    """

    __slots__ = ("_limit", "_parts", "_size")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[TextMessage | BytesMessage] = []
        self._size = 0

    def feed(self, fragment: Message) -> Message | None:
        """The complete message once ``fragment`` finishes one, else None.

        Raises:
            MessageTooBig: the message so far exceeds the limit.
        """
        if fragment.final and not self._parts:
            if not _fits(fragment.data, self._limit):
                raise MessageTooBig(f"message exceeds {self._limit} bytes")
            return fragment
        data = fragment.data
        size = self._size + (len(data) if isinstance(data, bytes) else len(data.encode()))
        if size > self._limit:
            raise MessageTooBig(f"message exceeds {self._limit} bytes")
        self._parts.append(fragment)
        self._size = size
        if not fragment.final:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(parts[0], TextMessage):
            return TextMessage("".join(part.data for part in parts))  # type: ignore[misc]  # all parts share the first part's type
        return BytesMessage(b"".join(part.data for part in parts))  # type: ignore[misc]  # all parts share the first part's type


def _fits(data: str | bytes, limit: int) -> bool:
    """Whether ``data`` is at most ``limit`` bytes on the wire, encoding text only if needed."""
    if len(data) > limit:
        return False  # a character is at least one byte
    if isinstance(data, bytes) or data.isascii() or 4 * len(data) <= limit:
        return True  # ASCII, or short enough that even 4 bytes a character fit
    return len(data.encode()) <= limit


@dataclass(slots=True)
class _PongWaiter:
    arrived: anyio.Event = field(default_factory=anyio.Event)
    acknowledged: bool = False


def _fragment(data: str | bytes, final: bool) -> Message:
    if isinstance(data, str):
        return TextMessage(data, final)
    if isinstance(data, bytes | bytearray | memoryview):
        return BytesMessage(bytes(data), final)
    raise TypeError(f"a fragment is a str or bytes, not {type(data).__name__}")


class Bridge:
    """Moves one connection's events between its transport and its handler."""

    def __init__(self, transport: Transport, settings: Settings, state: ConnectionState) -> None:
        self.transport = transport
        self._state = state
        self._settings = settings
        # None is the wake-up call for a receiver waiting when we close.
        self._inbox_writer, self._inbox = anyio.create_memory_object_stream[Message | None](
            settings.max_queue
        )
        self._send_lock = FastLock()  # one frame at a time on the wire
        # One data message at a time: held across the fragments of a fragmented
        # send, between which control frames (pongs, pings, Close) may still go.
        self._message_lock = FastLock()
        self._receiving = False
        self._pongs: dict[bytes, _PongWaiter] = {}
        self._ended = anyio.Event()
        self._failure: ProtocolError | None = None  # reported, not acted on yet
        self._caught_up = anyio.Event()  # the handler has read every queued message
        self._delivered = 0  # messages handed to the inbox
        self._last_message = anyio.current_time()  # received or sent, for idle_timeout
        self._track_idle = settings.idle_timeout is not None  # else skip the clock per message
        self._taken = 0  # messages the handler's receive calls returned
        self.close_code: int | None = None
        self.close_reason = ""

    # -- the handler's side ------------------------------------------------

    @property
    def queued(self) -> int:
        """Messages received and waiting for the handler; never above ``max_queue``."""
        return self._inbox.statistics().current_buffer_used

    def disconnect_error(self) -> WebSocketDisconnect:
        return WebSocketDisconnect(
            CloseCode.ABNORMAL_CLOSURE if self.close_code is None else self.close_code,
            self.close_reason,
        )

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message; messages that came before the end are delivered first.

        Raises:
            WebSocketDisconnect: the connection ended and every message was read.
            ConcurrentReceiveError: another task is already receiving.
            TimeoutError: nothing came within ``timeout`` seconds; nothing is lost,
                since a memory stream's receive gives up its place when cancelled.
        """
        try:
            # Fast path: a queued message needs no trip through the event loop.
            message = self._inbox.receive_nowait()
        except anyio.WouldBlock:
            if self._receiving:
                raise ConcurrentReceiveError(
                    "another task is already waiting in a receive call on this WebSocket; "
                    "receive from one task and hand messages to others (e.g. with a queue)"
                ) from None
            self._receiving = True
            if self._failure is not None and self._taken == self._delivered:
                self._caught_up.set()
            try:
                if timeout is None:
                    message = await self._inbox.receive()
                else:
                    with anyio.fail_after(timeout):
                        message = await self._inbox.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                message = None
            finally:
                self._receiving = False
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            message = None
        if message is None:
            raise self.disconnect_error()
        self._taken += 1
        return message

    async def send(self, message: Message) -> None:
        """Send a whole message; concurrent senders take turns.

        Raises:
            WebSocketDisconnect: the connection is closing or gone.
        """
        # Per message, so without the context managers' calls when the locks are free.
        message_lock, send_lock = self._message_lock, self._send_lock
        if not message_lock.try_acquire():
            await message_lock.acquire()
        try:
            if not send_lock.try_acquire():
                await send_lock.acquire()
            try:
                await self._send_frame(message)
            finally:
                send_lock.release()
        finally:
            message_lock.release()
        if self._track_idle:
            self._last_message = anyio.current_time()

    async def send_fragments(self, fragments: AsyncIterator[str | bytes]) -> None:
        """Send one message, a fragment (a frame) for each item, as each comes.

        An empty final frame ends the message (its length was not known in
        advance). Other messages wait; control frames may go between fragments
        (RFC 6455 section 5.4). Should ``fragments`` raise, or the call be
        cancelled, after a fragment went out, the message can never be
        finished: the connection is closed with 1011 and the error re-raised.

        Raises:
            TypeError: a fragment is neither str nor bytes, or differs in type from the first.
            WebSocketDisconnect: the connection is closing or gone.
        """
        async with self._message_lock:
            kind: type[Message] | None = None
            try:
                async for data in fragments:
                    fragment = _fragment(data, final=False)
                    if kind is None:
                        kind = type(fragment)
                    elif type(fragment) is not kind:
                        raise TypeError("the fragments of one message must be all str or all bytes")
                    async with self._send_lock:
                        await self._send_frame(fragment)
                if kind is not None:
                    async with self._send_lock:
                        await self._send_frame(TextMessage("") if kind is TextMessage else BytesMessage(b""))
            except BaseException:
                if kind is not None:
                    with anyio.CancelScope(shield=True):
                        await self.start_close(CloseCode.INTERNAL_ERROR, "a fragmented message was abandoned")
                raise
        if self._track_idle:
            self._last_message = anyio.current_time()

    async def _send_frame(self, event: Message | Ping | Pong) -> None:
        # Called with the send lock held. The state is checked here, not only
        # by the caller, because it can change while a sender waits its turn.
        if self._state.state is not WebSocketState.CONNECTED:
            raise self.disconnect_error()
        try:
            await self.transport.send(event)
        except TransportClosed:
            # Not the end yet: the pump reads why (a Close may be queued behind
            # this send) and records the real code.
            raise self.disconnect_error() from None

    async def ping(self, data: bytes) -> None:
        """Send a Ping and return when its Pong arrives (RFC 6455 section 5.5.2).

        Raises:
            ValueError: a ping with the same payload is still waiting.
            WebSocketDisconnect: the connection ended before the Pong came.
        """
        if data in self._pongs:
            raise ValueError(
                "a ping with this payload is still waiting for its pong; "
                "use another payload, or call ping() without one"
            )
        await self._ping_within(data, None)

    async def start_close(self, code: int, reason: str) -> None:
        """Send our Close frame (RFC 6455 section 7.1.2) unless one was sent or the peer's came.

        Receivers see the end at once; the frame itself waits for a send in
        progress, at most ``close_timeout``, after which TCP is dropped.
        """
        if self._failure is not None:
            await self._fail(self._failure)
            return
        if not self._state.try_apply(Transition.LOCAL_CLOSE):
            return
        self.close_code, self.close_reason = code, reason
        self._stop_delivery()
        if not await self._send_close_frame(code, reason):
            await self.transport.abort()
            self._end(Closed(CloseCode.ABNORMAL_CLOSURE))

    async def _fail(self, failure: ProtocolError) -> None:
        # Fail the WebSocket connection (RFC 6455 section 7.1.7): send the
        # Close, then drop TCP without waiting for the peer's answer.
        if not self._state.try_apply(Transition.LOCAL_CLOSE):
            return
        self.close_code, self.close_reason = failure.code, failure.reason
        self._stop_delivery()
        await self._send_close_frame(failure.code, failure.reason)
        await self.transport.abort()
        self._end(Closed(failure.code, failure.reason))

    async def _send_close_frame(self, code: int, reason: str) -> bool:
        """Send our Close once a send in progress is done; False if it could not go out.

        Bounded by ``close_timeout``: a send stuck on a peer that reads
        nothing must not hold the close forever.
        """
        with anyio.move_on_after(self._settings.close_timeout) as waited:
            try:
                async with self._send_lock:
                    await self.transport.close(code, reason)
            except TransportClosed:
                return False
        return not waited.cancelled_caught

    async def _fail_when_caught_up(self, failure: ProtocolError) -> None:
        # The messages before the error are the peer's last words: let the
        # handler read (and answer) them before the connection fails, but
        # wait no longer than close_timeout for a handler that reads nothing.
        self._failure = failure
        # A receiver already waiting with nothing undelivered is caught up; one
        # that was just handed a message has not answered it yet.
        if not (self._receiving and self._taken == self._delivered):
            with anyio.move_on_after(self._settings.close_timeout):
                await self._caught_up.wait()
        await self._fail(failure)

    async def keepalive(self) -> None:
        """Ping every ``ping_interval``; close with 1011 when a pong is ``ping_timeout`` late.

        Runs as its own task beside the pump. While the handler is behind (its
        queue full) the peer is plainly alive, and its pongs wait unread
        behind its messages, so a late pong is not held against it then.
        """
        interval, timeout = self._settings.ping_interval, self._settings.ping_timeout
        if interval is None:
            return
        while True:
            await anyio.sleep(interval)
            if self._state.state is not WebSocketState.CONNECTED:
                return
            if self.queued >= self._settings.max_queue:
                continue
            try:
                await self._ping_within(os.urandom(4), timeout)
            except WebSocketDisconnect:
                return
            except TimeoutError:
                await self.start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                return

    async def idle_watch(self) -> None:
        """Close with 1001 once no message went either way for ``idle_timeout``."""
        timeout = self._settings.idle_timeout
        if timeout is None:
            return
        while self._state.state is WebSocketState.CONNECTED:
            idle = anyio.current_time() - self._last_message
            if self.queued:  # messages wait for a slow handler: not idle
                idle = 0
                self._last_message = anyio.current_time()
            if idle >= timeout:
                await self.start_close(CloseCode.GOING_AWAY, "idle timeout")
                return
            await anyio.sleep(timeout - idle)

    async def _ping_within(self, data: bytes, timeout: float | None) -> None:
        waiter = self._pongs[data] = _PongWaiter()
        try:
            # The timeout runs from here: a peer that reads nothing keeps a
            # send stuck and the lock held, and the ping never even goes out.
            with anyio.move_on_after(timeout) as sending:
                async with self._send_lock:
                    await self._send_frame(Ping(data))
            if sending.cancelled_caught:
                raise TimeoutError
            while not waiter.arrived.is_set():
                with anyio.move_on_after(timeout):
                    await waiter.arrived.wait()
                if not waiter.arrived.is_set() and self.queued < self._settings.max_queue:
                    raise TimeoutError
        finally:
            self._pongs.pop(data, None)
        if not waiter.acknowledged:
            raise self.disconnect_error()

    async def wait_closed(self) -> None:
        """Wait up to ``close_timeout`` for the closing handshake, then drop TCP."""
        with anyio.move_on_after(self._settings.close_timeout):
            await self._ended.wait()
        if not self._ended.is_set():
            await self.transport.abort()
            self._end(Closed(CloseCode.ABNORMAL_CLOSURE))

    def refused(self) -> None:
        """The handshake was answered with an HTTP error: there is nothing to close."""
        self.close_code, self.close_reason = CloseCode.ABNORMAL_CLOSURE, "the handshake was refused"
        self._inbox_writer.close()  # a receive call raises WebSocketDisconnect at once
        self._ended.set()

    def release(self) -> None:
        """Close both ends of the inbox: the session is over."""
        self._inbox_writer.close()
        self._inbox.close()

    def _stop_delivery(self) -> None:
        # After our Close no message reaches the handler (RFC 6455 allows
        # discarding them): wake a waiting receiver and unblock the pump.
        if self._inbox.statistics().tasks_waiting_receive:
            self._inbox_writer.send_nowait(None)  # a waiting receiver means the buffer is empty
        self._inbox.close()

    def _end(self, closed: Closed) -> None:
        if self._ended.is_set():
            return
        if self.close_code is None:
            self.close_code, self.close_reason = closed.code, closed.reason
        self._state.try_apply(Transition.PEER_CLOSED)
        self._inbox_writer.close()  # receivers read what is queued, then EndOfStream
        for waiter in self._pongs.values():
            waiter.arrived.set()
        self._ended.set()

    # -- the transport's side ----------------------------------------------

    async def pump(self) -> None:
        """Read the transport until the connection ends; runs as its own task."""
        assembler = MessageAssembler(self._settings.max_message_size)
        transport = self.transport
        while True:
            try:
                event = await transport.receive()
            except TransportClosed:
                event = Closed(CloseCode.ABNORMAL_CLOSURE)
            if isinstance(event, TextMessage | BytesMessage):
                try:
                    message = assembler.feed(event)
                except MessageTooBig as error:
                    await self.start_close(CloseCode.MESSAGE_TOO_BIG, str(error))
                    continue
                if message is not None and self._state.state is WebSocketState.CONNECTED:
                    await self._deliver(message)
            elif isinstance(event, Ping):
                if self._state.state is WebSocketState.CONNECTED:
                    async with self._send_lock:
                        try:
                            await self._send_frame(Pong(event.data))
                        except WebSocketDisconnect:
                            pass  # the pump sees the end as its next event
            elif isinstance(event, Pong):
                self._acknowledge(event.data)
            elif isinstance(event, ProtocolError):
                await self._fail_when_caught_up(event)
                return
            else:
                self._end(event)  # Closed: nothing follows
                return

    async def _deliver(self, message: Message) -> None:
        self._delivered += 1
        if self._track_idle:
            self._last_message = anyio.current_time()
        try:
            self._inbox_writer.send_nowait(message)
        except anyio.WouldBlock:
            try:
                await self._inbox_writer.send(message)  # the handler is behind: stop reading
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # we closed meanwhile; the message is discarded
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _acknowledge(self, data: bytes) -> None:
        # A Pong answers the Ping with the same payload and, like websockets
        # does, every Ping sent before it; an unsolicited Pong is ignored (5.5.3).
        if data not in self._pongs:
            return
        for payload, waiter in list(self._pongs.items()):
            waiter.acknowledged = True
            waiter.arrived.set()
            del self._pongs[payload]
            if payload == data:
                break
