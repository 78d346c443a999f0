"""The broker contract (`fastrapi.core.broker`) and `RedisBroker` against a real redis-server.

Several processes sharing one Redis, on every backend, are in
``conformance/test_broker.py``; here two apps in one process stand for two.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.redis_server import RedisServer, free_port
from fastrapi import FastrAPI, LifespanStartupError, WebSocket
from fastrapi.brokers import Broker, BrokerStats, LocalBroker
from fastrapi.brokers.redis import RedisBroker, backoff, channel_of, group_of
from fastrapi.core.broker import (
    BINARY,
    HEADER_SIZE,
    ORIGIN_SIZE,
    TEXT,
    Deliver,
    Reconnected,
    ThrottledWarning,
    pack,
    pack_encoded,
    unpack,
)
from fastrapi.core.groups import Groups
from fastrapi.testing import AsyncTestClient, AsyncTestWebSocket
from tests.test_groups import Member, group_app

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds: a hang guard, never a timing assertion
any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates too


def fresh_prefix() -> str:
    # One session-wide redis-server: each test keeps to channels of its own.
    return f"test-{uuid.uuid4().hex[:12]}:"


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds: polled, bounded (and the test's fail_after guards it)."""
    for _ in range(2000):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError("the condition never held")


# -- the envelope ---------------------------------------------------------------


@settings(max_examples=300)
@given(origin=st.binary(min_size=ORIGIN_SIZE, max_size=ORIGIN_SIZE), message=any_text | st.binary())
def test_an_envelope_round_trips(origin: bytes, message: str | bytes) -> None:
    payload = pack(origin, message)
    assert payload[0] == (TEXT if isinstance(message, str) else BINARY)
    assert unpack(payload) == (origin, message)


@given(origin=st.binary(min_size=ORIGIN_SIZE, max_size=ORIGIN_SIZE), message=st.text())
def test_serialised_json_is_packed_as_it_is(origin: bytes, message: str) -> None:
    encoded = message.encode()
    assert unpack(pack_encoded(TEXT, origin, encoded)) == (origin, message)
    assert unpack(pack_encoded(BINARY, origin, encoded)) == (origin, encoded)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "at least"),
        (b"t" + bytes(ORIGIN_SIZE - 1), "at least"),
        (b"x" + bytes(ORIGIN_SIZE), "kind 0x78"),
    ],
)
def test_a_malformed_envelope_is_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        unpack(payload)


@given(prefix=any_text, group=any_text)
def test_a_group_round_trips_through_its_channel(prefix: str, group: str) -> None:
    encoded = prefix.encode("utf-8", "surrogatepass")
    channel = channel_of(encoded, group)
    assert channel.startswith(encoded)
    assert group_of(encoded, channel) == group


# -- Groups and the contract, with a broker that records ----------------------------


class RecordingBroker:
    """A shared broker that records what Groups asks of it (no Redis involved)."""

    shared = True

    def __init__(self) -> None:
        self.subscribed: set[str] = set()
        self.published: list[tuple[str, bytes]] = []
        self.deliver: Deliver | None = None
        self.reconnected: Reconnected | None = None
        self.closed = 0

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        self.deliver, self.reconnected = deliver, reconnected

    async def subscribe(self, group: str) -> None:
        self.subscribed.add(group)

    def unsubscribe(self, group: str) -> None:
        self.subscribed.remove(group)  # KeyError if Groups unsubscribes what it never subscribed

    def publish(self, group: str, payload: bytes) -> None:
        self.published.append((group, payload))

    async def close(self) -> None:
        self.closed += 1

    def stats(self) -> BrokerStats:
        return BrokerStats(published=len(self.published), connected=False, reconnects=2)


def test_the_brokers_fulfil_the_contract() -> None:
    assert isinstance(LocalBroker(), Broker)
    assert isinstance(RecordingBroker(), Broker)
    assert isinstance(RedisBroker("redis://127.0.0.1:1/0"), Broker)
    assert LocalBroker.shared is False and RedisBroker.shared is True
    assert Groups().broker.shared is False
    assert repr(LocalBroker()) == "LocalBroker()"
    import fastrapi.brokers

    assert fastrapi.brokers.RedisBroker is RedisBroker  # imported on first use


class FailingBroker(LocalBroker):
    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        raise OSError("no route to the broker")


async def test_a_broker_that_fails_to_start_fails_the_start_up() -> None:
    ran: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastrAPI) -> AsyncIterator[None]:
        ran.append("lifespan")
        yield

    app = FastrAPI(broker=FailingBroker(), lifespan=lifespan)
    with anyio.fail_after(GUARD), pytest.raises(LifespanStartupError, match="no route to the broker"):
        async with AsyncTestClient(app):
            pass
    assert ran == []  # the app's own start-up never ran


async def test_the_local_broker_does_nothing() -> None:
    broker = LocalBroker()

    async def never() -> None:
        raise AssertionError("no reconnection in-process")

    await broker.start(lambda group, payload: None, never)
    await broker.subscribe("room")
    broker.publish("room", b"t" + bytes(ORIGIN_SIZE))
    broker.unsubscribe("room")
    await broker.close()
    assert broker.stats() == BrokerStats()


async def test_an_in_process_broker_is_never_asked_to_publish() -> None:
    broker = LocalBroker()
    calls: list[str] = []
    broker.publish = lambda group, payload: calls.append(group)  # type: ignore[method-assign]  # a spy
    app, sockets = group_app(broker=broker)
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, client.websocket_connect("/join/room") as ws:
            assert await ws.receive_text() == "joined"
            assert await app.groups.send_text("room", "hi") == 1
            assert await ws.receive_text() == "hi"
    assert calls == []
    stats = app.groups.stats()
    assert (stats.published, stats.publish_failures, stats.received, stats.broker_connected) == (
        0,
        0,
        0,
        True,
    )


async def test_broadcasts_are_published_once_and_others_delivered_here() -> None:
    broker = RecordingBroker()
    app, sockets = group_app(broker=broker)
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, client.websocket_connect("/join/room") as ws:
            assert await ws.receive_text() == "joined"
            assert broker.subscribed == {"room"}
            assert await app.groups.send_text("room", "one") == 1
            assert await app.groups.send_bytes("room", bytearray(b"two")) == 1
            assert await app.groups.send_json("room", {"n": 3}) == 1
            assert await app.groups.send_json("room", [4], mode="binary", exclude=sockets[0]) == 0
            assert await app.groups.send_text("nobody here", "five") == 0  # published all the same
            assert [await ws.receive_text(), await ws.receive_bytes(), await ws.receive_json()] == [
                "one",
                b"two",
                {"n": 3},
            ]
            origin = broker.published[0][1][1:HEADER_SIZE]
            assert [(group, unpack(payload)) for group, payload in broker.published] == [
                ("room", (origin, "one")),
                ("room", (origin, b"two")),
                ("room", (origin, '{"n":3}')),
                ("room", (origin, b"[4]")),
                ("nobody here", (origin, "five")),
            ]
            # From another process: delivered to the members here (exclude is
            # the sender's, so nobody is left out); our own is skipped.
            assert broker.deliver is not None
            broker.deliver("room", pack(b"\x01" * ORIGIN_SIZE, "from elsewhere"))
            broker.deliver("room", pack(origin, "our own, back"))
            broker.deliver("room", pack(b"\x01" * ORIGIN_SIZE, b"\xff"))
            assert await ws.receive_text() == "from elsewhere"
            assert await ws.receive_bytes() == b"\xff"
            stats = app.groups.stats()
            assert (stats.published, stats.received, stats.broker_connected, stats.reconnects) == (
                5,
                2,
                False,
                2,
            )
    assert broker.subscribed == set()  # the member's session ended: the group is unsubscribed
    assert broker.closed == 1


async def test_a_malformed_message_from_the_broker_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = RecordingBroker()
    groups = Groups(broker=broker)
    await groups.start()
    assert broker.deliver is not None
    with caplog.at_level(logging.WARNING, "fastrapi.groups"):
        broker.deliver("room", b"not an envelope")
        broker.deliver("room", b"again")
    assert groups.stats().received == 0
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1  # throttled
    assert "ignored a message for group 'room'" in lines[0]


async def test_reconnect_hooks_run_in_turn_and_one_failing_stops_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = RecordingBroker()
    groups = Groups(broker=broker)
    ran: list[str] = []

    @groups.on_reconnect
    async def first() -> None:
        ran.append("first")
        raise RuntimeError("resync failed")

    async def second() -> None:
        ran.append("second")

    assert groups.on_reconnect(second) is second
    await groups.start()
    assert broker.reconnected is not None
    with caplog.at_level(logging.ERROR, "fastrapi.groups"):
        await broker.reconnected()
    assert ran == ["first", "second"]
    assert "on_reconnect hook" in caplog.text and "resync failed" in caplog.text


NAMES = ["a", "b", "c"]
operations = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "forget"]), st.sampled_from(NAMES), st.integers(0, 4)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_a_group_is_subscribed_exactly_while_it_has_members(steps: list[tuple[str, str, int]]) -> None:
    people = [cast(WebSocket, Member()) for _ in range(5)]
    broker = RecordingBroker()
    groups = Groups(broker=broker)

    async def run() -> None:
        for operation, name, who in steps:
            if operation == "add":
                await groups.add(name, people[who])
            elif operation == "discard":
                groups.discard(name, people[who])
            else:
                groups.forget(people[who])
            assert broker.subscribed == set(groups.stats().groups)

    anyio.run(run)


# -- throttled warnings and backoff ---------------------------------------------------


def test_a_throttled_warning_says_how_often_it_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    warn = ThrottledWarning(logging.getLogger("test.throttle"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.throttle"):
        assert warn("publish failed")
        now[0] += 5
        assert not warn("publish failed", 3)
        now[0] += 5
        assert warn("publish failed")
    assert [record.getMessage() for record in caplog.records] == [
        "publish failed (1 since the last warning)",
        "publish failed (4 since the last warning)",
    ]


def test_the_backoff_doubles_up_to_its_cap() -> None:
    delays = backoff(0.1, 2.0)
    taken = [next(delays) for _ in range(40)]
    assert all(0.05 <= delay <= 2.0 for delay in taken)
    assert taken[0] <= 0.1
    assert all(1.0 <= delay <= 2.0 for delay in taken[6:])  # capped, and jittered within half of it


# -- RedisBroker: construction --------------------------------------------------------


def test_bad_urls_and_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisBroker("http://127.0.0.1:6379")
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:port/0")
    with pytest.raises(TypeError, match="one of the two"):
        RedisBroker()
    with pytest.raises(ValueError, match="reconnect_min_delay"):
        RedisBroker("redis://127.0.0.1", reconnect_min_delay=5, reconnect_max_delay=1)
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        FastrAPI(broker="http://127.0.0.1:6379")
    with pytest.raises(TypeError, match="a URL or a Broker"):
        FastrAPI(broker=6379)  # type: ignore[arg-type]  # what this checks


def test_a_client_lends_its_settings() -> None:
    from redis.asyncio import Redis

    client = Redis(host="127.0.0.1", port=1, password="secret")  # never connects: nothing to close
    broker = RedisBroker(client=client, prefix="chat:")
    assert repr(broker) == "RedisBroker('127.0.0.1:1', prefix='chat:')"
    assert "secret" not in repr(broker)
    with pytest.raises(TypeError, match="one of the two"):
        RedisBroker("redis://127.0.0.1", client=client)
    with pytest.raises(TypeError, match="from the client"):
        RedisBroker(client=client, password="other")


def test_a_url_builds_a_redis_broker_and_tls_and_sockets_are_understood() -> None:
    app = FastrAPI(broker="redis://:secret@127.0.0.1:6390/2")
    assert isinstance(app.groups.broker, RedisBroker)
    assert repr(app.groups.broker) == "RedisBroker('127.0.0.1:6390', prefix='fastrapi:')"
    assert "127.0.0.1:6391" in repr(RedisBroker("rediss://127.0.0.1:6391/0"))
    assert "/tmp/redis.sock" in repr(RedisBroker("unix:///tmp/redis.sock"))


@pytest.fixture
def without_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # As if the [redis] extra were not installed: the import fails.
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.delitem(sys.modules, "fastrapi.brokers.redis")
    yield


@pytest.mark.usefixtures("without_redis")
def test_a_missing_redis_package_says_which_extra_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'fastrapi\[redis\]'"):
        FastrAPI(broker="redis://127.0.0.1:6379/0")
    FastrAPI()  # the core needs no redis
    import fastrapi.brokers

    with pytest.raises(ImportError, match="fastrapi"):
        fastrapi.brokers.RedisBroker  # noqa: B018  # the lazy import is what this checks
    with pytest.raises(AttributeError, match="Nothing"):
        fastrapi.brokers.Nothing  # noqa: B018  # what this checks


# -- RedisBroker against a real server ------------------------------------------------


def redis_app(url: str, prefix: str, **options: Any) -> tuple[FastrAPI, list[WebSocket]]:
    """tests/test_groups.py's app with a RedisBroker: short backoff and health checks for tests."""
    options = {"reconnect_min_delay": 0.02, "reconnect_max_delay": 0.2, **options}
    return group_app(broker=RedisBroker(url, prefix=prefix, **options))


@asynccontextmanager
async def joined(client: AsyncTestClient, name: str, count: int) -> AsyncIterator[list[AsyncTestWebSocket]]:
    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            ws = await stack.enter_async_context(client.websocket_connect(f"/join/{name}"))
            assert await ws.receive_text() == "joined"  # added: subscribed, confirmed by Redis
            opened.append(ws)
        yield opened


async def test_a_broadcast_reaches_every_member_of_both_apps_once(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    app_a, sockets_a = redis_app(redis_server.url, prefix)
    app_b, sockets_b = redis_app(redis_server.url, prefix)
    with anyio.fail_after(GUARD):
        async with (
            AsyncTestClient(app_a) as client_a,
            AsyncTestClient(app_b) as client_b,
            joined(client_a, "room", 2) as on_a,
            joined(client_b, "room", 1) as on_b,
        ):
            assert redis_server.numsub(f"{prefix}room") == 2  # one subscription per app, not per member
            assert await app_a.groups.send_text("room", "hello", exclude=sockets_a[1]) == 1
            assert await on_b[0].receive_text() == "hello"  # Redis passed it on
            # B answers through Redis; had A's own broadcast come back to A's
            # members, it would arrive before this (Redis keeps one order).
            assert await app_b.groups.send_json("room", {"from": "b"}) == 1
            for ws, expected in ((on_a[0], ["hello"]), (on_a[1], []), (on_b[0], [])):
                assert [await ws.receive_text() for _ in expected] == expected
                assert await ws.receive_json() == {"from": "b"}
            assert await app_a.groups.send_bytes("room", b"\x00bytes") == 2
            for ws in (*on_a, *on_b):
                assert await ws.receive_bytes() == b"\x00bytes"
            # Counted as published once Redis acknowledged, which may come
            # after the other app got the message.
            await eventually(lambda: app_a.groups.stats().published == 2)
            await eventually(lambda: app_b.groups.stats().published == 1)
            stats_a, stats_b = app_a.groups.stats(), app_b.groups.stats()
            assert (stats_a.received, stats_a.publish_failures, stats_a.broker_connected) == (1, 0, True)
            assert (stats_b.received, stats_b.publish_failures, stats_b.broker_connected) == (2, 0, True)
        # The last member of each app left: neither listens to the room any more.
        await _unsubscribed(redis_server, f"{prefix}room")


async def _unsubscribed(server: RedisServer, channel: str) -> None:
    await eventually(lambda: server.numsub(channel) == 0)


async def test_a_group_is_unsubscribed_when_its_last_member_leaves(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    app, sockets = redis_app(redis_server.url, prefix)
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client:
            async with joined(client, "room", 2), joined(client, "other", 1):
                assert redis_server.channels(f"{prefix}*") == [f"{prefix}other", f"{prefix}room"]
                app.groups.discard("room", sockets[0])
                assert redis_server.numsub(f"{prefix}room") == 1  # one member left
            await _unsubscribed(redis_server, f"{prefix}room")
            await _unsubscribed(redis_server, f"{prefix}other")
            assert redis_server.channels(f"{prefix}*") == []
            # Joining again subscribes again.
            async with joined(client, "room", 1):
                assert redis_server.numsub(f"{prefix}room") == 1


async def test_rejoining_at_once_keeps_the_subscription(redis_server: RedisServer) -> None:
    # The unsubscribe is scheduled; a member that joins before it runs keeps
    # the group subscribed (SUBSCRIBE and UNSUBSCRIBE stay in order).
    prefix = fresh_prefix()
    app, sockets = redis_app(redis_server.url, prefix)
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, joined(client, "room", 1):
            ws = sockets[0]
            for _ in range(20):
                app.groups.discard("room", ws)
                assert await app.groups.add("room", ws)
            await asyncio.sleep(0.05)  # let any scheduled unsubscribe run: none may win
            assert redis_server.numsub(f"{prefix}room") == 1
            app.groups.discard("room", ws)
            assert await app.groups.add("other", ws)
            await _unsubscribed(redis_server, f"{prefix}room")
            assert redis_server.numsub(f"{prefix}other") == 1


async def test_the_broker_reconnects_resubscribes_and_runs_the_hooks(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = fresh_prefix()
    app_a, _ = redis_app(redis_server.url, prefix)
    app_b, _ = redis_app(redis_server.url, prefix)
    resynced: list[str] = []

    @app_b.groups.on_reconnect
    async def resync() -> None:
        resynced.append("b")

    with anyio.fail_after(GUARD), caplog.at_level(logging.INFO, "fastrapi.brokers.redis"):
        async with (
            AsyncTestClient(app_a) as client_a,
            AsyncTestClient(app_b) as client_b,
            joined(client_a, "room", 1) as on_a,
            joined(client_b, "room", 1) as on_b,
        ):
            redis_server.kill()
            try:
                await eventually(lambda: not app_a.groups.stats().broker_connected)
                # Redis is gone: the member here gets it, the failure is counted.
                assert await app_a.groups.send_text("room", "during the outage") == 1
                assert await on_a[0].receive_text() == "during the outage"
                assert app_a.groups.stats().publish_failures == 1
            finally:
                redis_server.start()
            await eventually(lambda: resynced == ["b"])
            await eventually(lambda: app_a.groups.stats().reconnects == 1)
            assert redis_server.numsub(f"{prefix}room") == 2  # both subscribed again
            assert await app_a.groups.send_text("room", "after") == 1
            assert await on_b[0].receive_text() == "after"
            await eventually(lambda: app_a.groups.stats().published == 1)
            stats = app_a.groups.stats()
            assert (stats.publish_failures, stats.broker_connected) == (1, True)
    messages = caplog.text
    assert "lost Redis at 127.0.0.1" in messages
    assert "reconnected to Redis at 127.0.0.1" in messages
    assert "broadcasts not published: Redis at 127.0.0.1" in messages


async def test_an_unreachable_redis_at_start_up_is_retried_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there yet
    prefix = fresh_prefix()
    broker = RedisBroker(
        f"redis://127.0.0.1:{port}/0", prefix=prefix, reconnect_min_delay=0.01, reconnect_max_delay=0.02
    )
    groups = Groups(broker=broker)
    resynced: list[bool] = []

    @groups.on_reconnect
    async def resync() -> None:
        resynced.append(True)

    late = RedisServer(port, tmp_path)
    with anyio.fail_after(GUARD), caplog.at_level(logging.WARNING, "fastrapi.brokers.redis"):
        await groups.start()
        try:
            assert not groups.stats().broker_connected
            assert await groups.add("room", cast(WebSocket, Member()))  # membership needs no Redis
            assert await groups.send_text("nobody here", "x") == 0
            assert groups.stats().publish_failures == 1
            await anyio.sleep(0.1)  # a few retries, each held back from the log
            # Redis comes up: the member that joined meanwhile may have missed
            # broadcasts, so this first connection runs the hooks too.
            late.start()
            await eventually(lambda: resynced == [True])
            assert groups.stats().broker_connected and groups.stats().reconnects == 1
            assert late.numsub(f"{prefix}room") == 1
        finally:
            await groups.close()
            late.stop()
        await groups.close()  # twice is harmless
    assert f"cannot reach Redis at 127.0.0.1:{port}" in caplog.text
    assert f"Redis at 127.0.0.1:{port} is still unreachable" in caplog.text


async def test_publishing_without_a_start_or_beyond_max_pending_fails_and_is_counted(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(redis_server.url, prefix=fresh_prefix(), max_pending=2)
    with caplog.at_level(logging.WARNING, "fastrapi.brokers.redis"):
        broker.publish("room", b"never started")
        assert broker.stats().publish_failures == 1
        assert "the Redis broker is not started" in caplog.text
    received: list[tuple[str, bytes]] = []

    async def nothing() -> None:
        pass

    with anyio.fail_after(GUARD):
        await broker.start(lambda group, payload: received.append((group, payload)), nothing)
        try:
            with pytest.raises(RuntimeError, match="serving already"):
                await broker.start(lambda group, payload: None, nothing)
            for index in range(5):  # no await between: the publisher cannot take any yet
                broker.publish("room", str(index).encode())
            assert broker.stats().publish_failures == 1 + 3
        finally:
            await broker.close()  # what waits is published before the connections close
    assert broker.stats() == BrokerStats(published=2, publish_failures=4, connected=False, reconnects=0)


async def test_close_right_after_a_broadcast_was_taken_for_redis_neither_hangs_nor_loses_it(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The last broadcasts of an app that stops (a member's "left", sent as
    # its connection closes) are often on their way when close() comes: out
    # of the outbox, their acknowledgement not read yet. Cancelled there, the
    # publisher lost the cancellation inside redis-py and close() never returned.
    broker = RedisBroker(redis_server.url, prefix=fresh_prefix())

    async def nothing() -> None:
        pass

    with anyio.fail_after(GUARD), caplog.at_level(logging.WARNING, "fastrapi.brokers.redis"):
        await broker.start(lambda group, payload: None, nothing)
        try:
            broker.publish("room", b"last words")
            for _ in range(1000):  # bounded: the publisher takes it within a loop turn or two
                if not broker._outbox:
                    break  # taken: being written, or its acknowledgement awaited
                await asyncio.sleep(0)
        finally:
            await broker.close()
    assert broker.stats() == BrokerStats(published=1, publish_failures=0, connected=False, reconnects=0)
    assert "not published" not in caplog.text


async def test_a_silent_connection_is_found_out_by_ping(redis_server: RedisServer) -> None:
    # CLIENT PAUSE holds every command, PING included: for the broker, a
    # connection that went silent, as a half-open one does.
    prefix = fresh_prefix()
    app, _ = redis_app(redis_server.url, prefix, health_check_interval=0.05, subscribe_timeout=0.05)
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, joined(client, "room", 1):
            await anyio.sleep(0.3)  # quiet: a few PINGs go out, and their answers come back
            assert redis_server.command("CLIENT", "PAUSE", "400", "ALL") == "OK"
            await eventually(lambda: not app.groups.stats().broker_connected)
            await eventually(lambda: app.groups.stats().reconnects >= 1)
            assert redis_server.numsub(f"{prefix}room") == 1


async def test_add_returns_when_redis_does_not_confirm_in_time(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = fresh_prefix()
    app, sockets = redis_app(redis_server.url, prefix, subscribe_timeout=0.05)
    with anyio.fail_after(GUARD), caplog.at_level(logging.WARNING, "fastrapi.brokers.redis"):
        async with AsyncTestClient(app) as client, joined(client, "room", 1):
            assert redis_server.command("CLIENT", "PAUSE", "300", "ALL") == "OK"
            assert await app.groups.add("late", sockets[0])  # returns, and says so
            assert "did not confirm the subscription to group 'late'" in caplog.text
            await eventually(lambda: redis_server.numsub(f"{prefix}late") == 1)


async def test_a_client_speaking_resp2_with_decoded_responses_still_carries_bytes(
    redis_server: RedisServer,
) -> None:
    from redis.asyncio import Redis

    # The broker's connections take the client's settings; its replies are
    # read raw whatever the client decodes, and RESP2 works as RESP3 does.
    client = Redis.from_url(redis_server.url, protocol=2, decode_responses=True)
    prefix = fresh_prefix()
    app_a, sockets_a = group_app(broker=RedisBroker(client=client, prefix=prefix, health_check_interval=0.05))
    app_b, sockets_b = redis_app(redis_server.url, prefix)
    with anyio.fail_after(GUARD):
        async with (
            AsyncTestClient(app_a) as client_a,
            AsyncTestClient(app_b) as client_b,
            joined(client_a, "room", 1) as (on_a,),
            joined(client_b, "room", 1) as (on_b,),
        ):
            await anyio.sleep(0.2)  # quiet: PINGs under RESP2 are answered as [b"pong", b""]
            assert await app_b.groups.send_bytes("room", b"\xff\x00not utf-8", exclude=sockets_b[0]) == 0
            assert await on_a.receive_bytes() == b"\xff\x00not utf-8"
            assert await app_a.groups.send_text("room", "é ✨", exclude=sockets_a[0]) == 0
            assert await on_b.receive_text() == "é ✨"
            assert app_a.groups.stats().broker_connected
