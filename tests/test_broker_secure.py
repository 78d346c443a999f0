"""`RedisBroker` through a password-protected Redis and through TLS, real servers both.

Each test starts a redis-server of its own (``conformance/redis_server.py``):
with ``--requirepass``, or serving only TLS with a certificate from a CA made
for the test, so that trusting that CA, and nothing else, lets a client in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import trustme

from conformance.redis_server import RedisServer, free_port
from fastrapi import WebSocket
from fastrapi.brokers.redis import RedisBroker
from fastrapi.core.groups import Groups
from fastrapi.testing import AsyncTestClient
from tests.test_broker import GUARD, eventually, fresh_prefix, joined, redis_app
from tests.test_groups import Member

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-pass"


@contextmanager
def secure_server(
    directory: Path, *, password: str | None = None, tls: bool = False
) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), directory, password=password, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def crosses(url: str, server: RedisServer, **options: Any) -> None:
    """A broadcast made in one app reaches a member of the other through ``server``."""
    prefix = fresh_prefix()
    app_a, _ = redis_app(url, prefix, **options)
    app_b, _ = redis_app(url, prefix, **options)
    with anyio.fail_after(GUARD):
        async with (
            AsyncTestClient(app_a) as client_a,
            AsyncTestClient(app_b) as client_b,
            joined(client_a, "room", 1) as on_a,
            joined(client_b, "room", 1) as on_b,
        ):
            assert server.numsub(f"{prefix}room") == 2
            assert await app_a.groups.send_text("room", "hello") == 1
            assert await on_a[0].receive_text() == "hello"  # delivered here directly
            assert await on_b[0].receive_text() == "hello"  # through Redis
            await eventually(lambda: app_a.groups.stats().published == 1)
            stats = app_a.groups.stats()
            assert (stats.publish_failures, stats.broker_connected) == (0, True)


async def refused(url: str, caplog: pytest.LogCaptureFixture, **options: Any) -> None:
    """Groups whose broker could not get in: started, not connected, a broadcast counted as failed."""
    groups = Groups(broker=RedisBroker(url, prefix=fresh_prefix(), reconnect_min_delay=0.02, **options))
    with anyio.fail_after(GUARD), caplog.at_level(logging.WARNING, "fastrapi.brokers.redis"):
        await groups.start()  # returns after the first attempt failed: retries go on behind
        try:
            assert not groups.stats().broker_connected
            assert await groups.add("room", cast(WebSocket, Member()))  # membership needs no Redis
            # No member here, so none to reach, but it is still for Redis to pass on.
            assert await groups.send_text("elsewhere", "not through Redis") == 0
            stats = groups.stats()
            assert (stats.published, stats.publish_failures, stats.broker_connected) == (0, 1, False)
        finally:
            await groups.close()


# -- a password ----------------------------------------------------------------------


async def test_a_broadcast_crosses_a_password_protected_redis(tmp_path: Path) -> None:
    with secure_server(tmp_path, password=PASSWORD) as server:
        assert server.url.startswith(f"redis://:{PASSWORD}@127.0.0.1:")
        await crosses(server.url, server)
        # The password as an option instead of in the URL.
        await crosses(f"redis://127.0.0.1:{server.port}/0", server, password=PASSWORD)


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        (":wrong-pass@", "invalid username-password pair"),
        ("", "authenticated"),  # none given: Redis asks for them
    ],
)
async def test_a_wrong_or_missing_password_does_not_connect_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, credentials: str, reason: str
) -> None:
    with secure_server(tmp_path, password=PASSWORD) as server:
        await refused(f"redis://{credentials}127.0.0.1:{server.port}/0", caplog)
    first = next(record.getMessage() for record in caplog.records if "cannot reach" in record.getMessage())
    assert f"cannot reach Redis at 127.0.0.1:{server.port} (AuthenticationError: " in first
    assert reason in first
    assert "broadcasts not published" in caplog.text
    assert "wrong-pass" not in caplog.text and PASSWORD not in caplog.text  # never the credentials


# -- TLS -------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, PASSWORD])
async def test_a_broadcast_crosses_redis_over_tls_with_the_ca_trusted(
    tmp_path: Path, password: str | None
) -> None:
    with secure_server(tmp_path, password=password, tls=True) as server:
        assert server.url.startswith("rediss://")
        assert server.ca_file is not None
        await crosses(server.url, server, ssl_ca_certs=str(server.ca_file))


@pytest.mark.parametrize("trust", ["the system's CAs", "another CA"])
async def test_a_client_that_does_not_trust_the_ca_does_not_connect_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, trust: str
) -> None:
    options: dict[str, Any] = {}
    if trust == "another CA":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        options["ssl_ca_certs"] = str(other)
    server_directory = tmp_path / "redis"
    server_directory.mkdir()
    with secure_server(server_directory, tls=True) as server:
        await refused(server.url, caplog, **options)
        assert server.numsub("anything") == 0  # the server is up: only the client refused it
    assert f"cannot reach Redis at 127.0.0.1:{server.port}" in caplog.text
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
