from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.redis_server import RedisServer, free_port


@pytest.fixture
def anyio_backend() -> str:
    # Handlers run on asyncio (the seed uses asyncio.create_task directly).
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session's broker tests (tests/ and conformance/).

    A test that kills it starts it again; each test keeps to channels of its
    own prefix. Missing redis-server fails the tests that need it, loudly.
    """
    try:
        server = RedisServer(free_port(), Path(tmp_path_factory.mktemp("redis")))
    except RuntimeError as missing:
        pytest.fail(str(missing), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
