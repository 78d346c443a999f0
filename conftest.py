import pytest


@pytest.fixture
def anyio_backend() -> str:
    # Handlers run on asyncio (the seed uses asyncio.create_task directly).
    return "asyncio"
