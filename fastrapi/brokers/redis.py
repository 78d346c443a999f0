"""Groups across processes through Redis pub/sub: `RedisBroker`.

    app = FastrAPI(broker="redis://127.0.0.1:6379/0")
    app = FastrAPI(broker=RedisBroker("rediss://:secret@redis.internal:6380/0", prefix="chat:"))

Each serving process holds two connections of its own to Redis: one that
publishes its broadcasts (on channel ``<prefix><group>``), in the order they
were made, and one subscribed to the channels of the groups that have
members in this process, and to no other (a process does not receive the
traffic of every room). A process skips its own broadcasts when Redis hands
them back: its members got them directly.

Guarantees, which are Redis pub/sub's:

- at most once: a process that is disconnected, or too slow for Redis's
  output buffer limits, misses what was published meanwhile, and nothing
  tells the members; Redis keeps no history to replay;
- in order per publisher: one process's broadcasts reach each member
  elsewhere in the order that process made them (no order between two
  publishers is promised);
- ``add`` returns once Redis confirmed the group's subscription, so a
  broadcast published after that reaches the new member.

Connection loss: a supervised task keeps the connections up. When they
fail it reconnects with exponential backoff (``reconnect_min_delay``,
doubling, capped at ``reconnect_max_delay``, jittered so that many processes
do not reconnect in step), subscribes again to every group still in use, and
then runs the `Groups.on_reconnect` hooks: that is where the app tells its
members they may have missed messages. A subscriber connection quiet for
``health_check_interval`` seconds is sent a PING; no answer within as long
again counts as a loss (a half-open TCP connection is otherwise silent).

Failures: while Redis is unreachable, a broadcast still reaches the members
in this process; what it could not publish (disconnected, or more than
``max_pending`` waiting to be written) is counted in
``app.groups.stats().publish_failures`` and logged at most once every 10 s
with the count since the last line. ``published`` counts only what Redis
acknowledged; a batch whose acknowledgement never came is a failure, though
Redis may have passed it on. ``send_*`` never raises for Redis: a chat then
degrades to each process's own members instead of failing every handler.

Security: payloads are bytes, never pickle; Redis should sit on a private
network with a password (``redis://:password@host``, or ``username`` and
``password`` options) and TLS (``rediss://``, with ``ssl_ca_certs=...``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

try:
    from redis.asyncio import ConnectionPool
except ImportError as missing:  # the redis package is an optional extra
    raise ImportError(
        "fastrapi's Redis broker needs the redis package: pip install 'fastrapi[redis]'"
    ) from missing

from fastrapi.core.broker import BrokerStats, Deliver, Reconnected, ThrottledWarning

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("fastrapi.brokers.redis")

DEFAULT_PREFIX = "fastrapi:"
CONNECT_TIMEOUT = 5.0  # seconds, for a URL without socket_connect_timeout
BATCH = 512  # PUBLISH commands written at once: one round trip for many broadcasts
CLOSE_FLUSH = 2.0  # seconds that close() gives what is waiting to be published
SUBSCRIBE_CHUNK = 1000  # channels per SUBSCRIBE when resubscribing


class _Connection(Protocol):
    """The part of redis-py's asyncio connection used here (it is untyped)."""

    @property
    def is_connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def disconnect(self, nowait: bool = False) -> None: ...

    async def send_command(self, *args: bytes | str, check_health: bool = True) -> None: ...

    async def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def pack_commands(self, commands: Iterable[Iterable[bytes | str]]) -> list[bytes]: ...

    async def read_response(
        self, disable_decoding: bool = False, timeout: float | None = None, *, push_request: bool = False
    ) -> Any: ...


def channel_of(prefix: bytes, group: str) -> bytes:
    """The Redis channel of ``group``: any str, lone surrogates included."""
    return prefix + group.encode("utf-8", "surrogatepass")


def group_of(prefix: bytes, channel: bytes) -> str:
    """The group whose channel is ``channel`` (the inverse of `channel_of`)."""
    return channel[len(prefix) :].decode("utf-8", "surrogatepass")


def backoff(first: float, cap: float) -> Iterator[float]:
    """Delays before each reconnection: doubling from ``first`` up to ``cap``,
    each drawn between half and all of that (jitter)."""
    delay = first
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, cap)


class RedisBroker:
    """Carries ``app.groups``' broadcasts between processes through Redis pub/sub.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for
            TLS, or ``unix:///path/to/socket``; or give ``client`` instead.
        client: a ``redis.asyncio.Redis`` whose connection settings (host,
            TLS, credentials) are used for the broker's own two connections.
        prefix: put before each group's name to make its channel, so that
            apps sharing one Redis keep apart.
        reconnect_min_delay, reconnect_max_delay: the reconnection backoff,
            in seconds (see the module's documentation).
        health_check_interval: seconds of silence before a PING checks the
            subscriber connection.
        subscribe_timeout: how long ``add`` waits at most for Redis to confirm
            a group's subscription (after which it returns, and logs).
        max_pending: broadcasts waiting to be written to Redis beyond which
            new ones fail (counted) instead of piling up in memory.
        **options: connection options for a ``url`` (``password=``,
            ``ssl_ca_certs=``, ``socket_connect_timeout=`` ...), as
            ``redis.asyncio.ConnectionPool.from_url`` takes them.

    Raises:
        ValueError: the URL is malformed or not a Redis URL.
        TypeError: both or neither of ``url`` and ``client``.
    """

    shared = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        reconnect_min_delay: float = 0.1,
        reconnect_max_delay: float = 30.0,
        health_check_interval: float = 15.0,
        subscribe_timeout: float = 5.0,
        max_pending: int = 10_000,
        **options: Any,
    ) -> None:
        if (url is None) == (client is None):
            raise TypeError("RedisBroker takes a URL or client=, one of the two")
        if client is not None:
            if options:
                raise TypeError("RedisBroker(client=...) takes its options from the client, not as keywords")
            pool = client.connection_pool
        else:
            assert url is not None
            pool = ConnectionPool.from_url(url, **{"socket_connect_timeout": CONNECT_TIMEOUT, **options})
        if not 0 < reconnect_min_delay <= reconnect_max_delay:
            raise ValueError("RedisBroker needs 0 < reconnect_min_delay <= reconnect_max_delay")
        self._pool = pool
        self._prefix = prefix.encode("utf-8", "surrogatepass")
        self._min_delay = reconnect_min_delay
        self._max_delay = reconnect_max_delay
        self._health_interval = health_check_interval
        self._subscribe_timeout = subscribe_timeout
        self._max_pending = max_pending
        kwargs = pool.connection_kwargs
        # For the log: where, never the credentials.
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        self._where = str(kwargs.get("path") or f"{host}:{port}")

        self._wanted: dict[str, None] = {}  # the groups with members here, as Groups told
        self._published = 0
        self._publish_failures = 0
        self._reconnects = 0
        self._failed = ThrottledWarning(logger)
        self._unreachable = ThrottledWarning(logger)
        self._deliver: Deliver | None = None
        self._reconnected: Reconnected | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # unsubscribes and hooks, cancelled by close()
        # One subscription change at a time, so SUBSCRIBE and UNSUBSCRIBE stay in order.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()  # something to publish
        self._idle = asyncio.Event()  # nothing left to publish
        self._reset_session()

    def _reset_session(self) -> None:
        # What lives only as long as one pair of connections.
        self._opened: list[_Connection] = []  # to close, connected or not
        self._subscriber: _Connection | None = None  # once connected and subscribed
        self._subscribed: set[str] = set()  # groups a SUBSCRIBE was sent for on this connection
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}  # channel -> its subscribe's reply
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._connected = False

    def __repr__(self) -> str:
        return f"RedisBroker({self._where!r}, prefix={self._prefix.decode('utf-8', 'replace')!r})"

    # -- life -------------------------------------------------------------------

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        """Connect, or log why not and keep trying in the background."""
        if self._supervisor is not None:
            raise RuntimeError("this RedisBroker is serving already: one broker serves one app at a time")
        self._deliver = deliver
        self._reconnected = reconnected
        # Made on the loop that serves: a broker may serve again on another one.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()  # something to publish
        self._idle = asyncio.Event()  # nothing left to publish
        loop = asyncio.get_running_loop()
        first_attempt = loop.create_future()
        self._supervisor = loop.create_task(self._supervise(first_attempt))
        try:
            # Bounded for a client without a connect timeout: retries go on behind.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.shield(first_attempt)
        except TimeoutError:
            pass

    async def close(self) -> None:
        """Publish what is waiting (for up to 2 s), then disconnect."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        # A batch already taken from the outbox, its acknowledgements not yet
        # read, is waited for too: cancelled, it would count as failed, and
        # a cancellation that lands inside redis-py's command can be lost.
        if self._connected and (self._outbox or not self._idle.is_set()):
            if self._outbox:
                self._idle.clear()  # set again by the publisher once the outbox is empty
            try:
                async with asyncio.timeout(CLOSE_FLUSH):
                    await self._idle.wait()
            except TimeoutError:
                pass
        tasks = [supervisor, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def stats(self) -> BrokerStats:
        return BrokerStats(
            published=self._published,
            publish_failures=self._publish_failures,
            connected=self._connected,
            reconnects=self._reconnects,
        )

    # -- what Groups calls ----------------------------------------------------------

    async def subscribe(self, group: str) -> None:
        self._wanted[group] = None
        if self._subscriber is None:
            return  # disconnected: subscribed with the others on reconnection
        channel = channel_of(self._prefix, group)
        if group in self._subscribed and channel not in self._confirmations:
            return  # confirmed already
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                async with self._lock:
                    connection = self._subscriber
                    # Never sent on a lost connection: redis-py would quietly
                    # open a new one, subscribed to nothing else.
                    if connection is None or not connection.is_connected or group not in self._wanted:
                        return
                    confirmed = self._confirmations.get(channel)
                    if confirmed is None:
                        if group in self._subscribed:
                            return
                        confirmed = asyncio.get_running_loop().create_future()
                        self._confirmations[channel] = confirmed
                        self._subscribed.add(group)
                        await connection.send_command("SUBSCRIBE", channel, check_health=False)
                # Shielded: a caller cancelled meanwhile must not cancel the
                # reply every other caller for this group waits for too.
                await asyncio.shield(confirmed)
        except TimeoutError:
            logger.warning(
                "Redis at %s did not confirm the subscription to group %r within %s s",
                self._where,
                group,
                self._subscribe_timeout,
            )
        except Exception as error:
            # The connection failed under us: the supervisor reconnects and
            # subscribes again to every group in use, this one included.
            logger.debug("subscribing to group %r failed: %r", group, error)

    def unsubscribe(self, group: str) -> None:
        self._wanted.pop(group, None)
        if self._subscriber is not None and group in self._subscribed:
            self._spawn(self._unsubscribe(group))

    async def _unsubscribe(self, group: str) -> None:
        async with self._lock:
            connection = self._subscriber
            # Someone may have joined again since, or the session ended.
            if group in self._wanted or group not in self._subscribed:
                return
            if connection is None or not connection.is_connected:
                return
            self._subscribed.discard(group)
            try:
                await connection.send_command(
                    "UNSUBSCRIBE", channel_of(self._prefix, group), check_health=False
                )
            except Exception as error:
                logger.debug("unsubscribing from group %r failed: %r", group, error)

    def publish(self, group: str, payload: bytes) -> None:
        if not self._connected:
            self._publish_failures += 1
            if self._supervisor is None:
                self._failed("broadcasts not published: the Redis broker is not started (no lifespan ran)")
            else:
                self._failed(f"broadcasts not published: Redis at {self._where} is unreachable")
            return
        if len(self._outbox) >= self._max_pending:
            self._publish_failures += 1
            self._failed(f"broadcasts not published: {self._max_pending} wait for Redis at {self._where}")
            return
        self._outbox.append((channel_of(self._prefix, group), payload))
        self._wake.set()

    # -- the supervised connections ----------------------------------------------------

    async def _supervise(self, first_attempt: asyncio.Future[None]) -> None:
        delays = backoff(self._min_delay, self._max_delay)
        while True:
            was_connected = False
            try:
                await self._session(first_attempt)
            except Exception as error:
                was_connected = self._connected
                reason = f"{type(error).__name__}: {error}"
                if was_connected:
                    logger.warning("lost Redis at %s (%s); reconnecting", self._where, reason)
                elif not first_attempt.done():
                    logger.warning("cannot reach Redis at %s (%s); retrying behind", self._where, reason)
                else:
                    self._unreachable(f"Redis at {self._where} is still unreachable ({reason})")
            finally:
                await self._end_session()
            if not first_attempt.done():
                first_attempt.set_result(None)
            if was_connected:
                delays = backoff(self._min_delay, self._max_delay)  # each outage starts from the short delay
            await asyncio.sleep(next(delays))

    async def _session(self, first_attempt: asyncio.Future[None]) -> None:
        """One pair of connections, from connecting until either fails (it always raises)."""
        # Any connection but the one start() waited for comes after members
        # could have joined and broadcasts been missed: the hooks run for it.
        reconnect = first_attempt.done()
        subscriber = self._new_connection()
        publisher = self._new_connection()
        self._opened = [subscriber, publisher]
        await subscriber.connect()
        await publisher.connect()
        async with self._lock:
            groups = list(self._wanted)
            channels = [channel_of(self._prefix, group) for group in groups]
            for start in range(0, len(channels), SUBSCRIBE_CHUNK):
                chunk = channels[start : start + SUBSCRIBE_CHUNK]
                await subscriber.send_command("SUBSCRIBE", *chunk, check_health=False)
            self._subscribed = set(groups)
            self._subscriber = subscriber
        self._connected = True
        logger.info("%s to Redis at %s", "reconnected" if reconnect else "connected", self._where)
        if not first_attempt.done():
            first_attempt.set_result(None)
        loop = asyncio.get_running_loop()
        listener = loop.create_task(self._listen(subscriber, set(channels), reconnect))
        publishing = loop.create_task(self._publish_all(publisher))
        try:
            done, _ = await asyncio.wait((listener, publishing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listener, publishing):
                task.cancel()
            await asyncio.gather(listener, publishing, return_exceptions=True)
        for task in done:
            task.result()  # the failure that ended the session
        raise ConnectionError("the connection ended")  # not reached: both loops run until they fail

    def _new_connection(self) -> _Connection:
        # The pool's settings, but a connection of the broker's own: the pool
        # never hands it out, and no retry of a client command reconnects it
        # behind the supervisor's back.
        return cast(_Connection, self._pool.connection_class(**self._pool.connection_kwargs))

    async def _end_session(self) -> None:
        lost = len(self._outbox)
        if lost:
            self._publish_failures += lost
            self._failed(f"broadcasts not published: the connection to Redis at {self._where} was lost", lost)
        for confirmed in self._confirmations.values():
            if not confirmed.done():
                confirmed.set_result(None)  # add() returns; the group is subscribed on reconnection
        connections = self._opened
        self._reset_session()
        self._idle.set()
        for connection in connections:
            try:
                await connection.disconnect(nowait=True)
            except Exception as error:
                logger.debug("closing a Redis connection failed: %r", error)

    async def _listen(self, connection: _Connection, resubscribing: set[bytes], reconnect: bool) -> None:
        if not resubscribing:
            self._resubscribed(reconnect)
        deliver = self._deliver
        assert deliver is not None
        prefix = self._prefix
        pinged = False
        while True:
            # push_request: under RESP3 the messages are push frames, which
            # the parser would otherwise hand to a handler of its own.
            reply = await connection.read_response(
                disable_decoding=True, timeout=self._health_interval, push_request=True
            )
            if reply is None:  # silence for a whole interval
                if pinged:
                    raise ConnectionError(f"no answer to a PING within {self._health_interval} s")
                pinged = True
                await connection.send_command("PING", check_health=False)
                continue
            pinged = False
            if not isinstance(reply, list):
                continue  # PING's answer under RESP3 (under RESP2 it is [b"pong", b""])
            kind = reply[0]
            if kind == b"message":
                try:
                    deliver(group_of(prefix, reply[1]), reply[2])
                except Exception:
                    logger.exception("delivering a broadcast from Redis failed")
            elif kind == b"subscribe":
                channel = reply[1]
                confirmed = self._confirmations.pop(channel, None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                if resubscribing:
                    resubscribing.discard(channel)
                    if not resubscribing:
                        self._resubscribed(reconnect)

    def _resubscribed(self, reconnect: bool) -> None:
        # Every group in use at the reconnection is subscribed again.
        if reconnect:
            self._reconnects += 1
            assert self._reconnected is not None
            self._spawn(self._reconnected())

    async def _publish_all(self, connection: _Connection) -> None:
        outbox = self._outbox
        task = asyncio.current_task()
        assert task is not None
        while True:
            if not outbox:
                self._idle.set()
                if task.cancelling():
                    # Cancelled during a command, and redis-py went on with
                    # it: waiting now would never end, and close() with it.
                    raise asyncio.CancelledError
                self._wake.clear()
                await self._wake.wait()
                continue
            if not connection.is_connected:
                raise ConnectionError("the publishing connection was closed")  # sending would reopen it
            self._idle.clear()
            batch = [outbox.popleft() for _ in range(min(len(outbox), BATCH))]
            try:
                await connection.send_packed_command(
                    connection.pack_commands([(b"PUBLISH", channel, payload) for channel, payload in batch]),
                    check_health=False,
                )
                for _ in batch:
                    await connection.read_response(disable_decoding=True)
            except BaseException:
                # Maybe passed on, maybe not: never counted as published.
                self._publish_failures += len(batch)
                self._failed(
                    f"broadcasts not published: the connection to Redis at {self._where} failed", len(batch)
                )
                raise
            self._published += len(batch)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
