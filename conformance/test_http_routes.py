"""HTTP routes on every backend, over a real socket: methods and 405."""

from __future__ import annotations

import anyio
import pytest

from conformance.conftest import serving
from fastrapi import FastrAPI, Request

pytestmark = pytest.mark.anyio

GUARD = 10


def routes_app() -> FastrAPI:
    app = FastrAPI()

    @app.route("/things/{name}", methods=["GET", "DELETE"])
    async def things(request: Request, name: str) -> dict[str, str]:
        return {"method": request.method, "name": name}

    return app


async def exchange(url: str, head: str) -> bytes:
    host, port = url.removeprefix("ws://").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    async with stream:
        await stream.send(head.encode())
        reply = b""
        for _ in range(100):  # bounded: a short reply comes in a few reads
            try:
                reply += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return reply


async def test_a_method_route_answers_json_and_another_method_405(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with serving(routes_app(), backend) as url:
            deleted = await exchange(url, "DELETE /things/lamp HTTP/1.1\r\nHost: x\r\n\r\n")
            wrong = await exchange(url, "PUT /things/lamp HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert deleted.startswith(b"HTTP/1.1 200 ")
    assert deleted.endswith(b'{"method":"DELETE","name":"lamp"}')
    assert b"content-type: application/json" in deleted.lower()
    assert wrong.startswith(b"HTTP/1.1 405 ")
    assert b"allow: delete, get, head" in wrong.lower()
