"""HTTP routes on every backend, over a real socket: methods and 405."""

from __future__ import annotations

import anyio
import pytest

from conformance.conftest import http_exchange, serving
from fastrapi import FastrAPI, Request

pytestmark = pytest.mark.anyio

GUARD = 10


def routes_app() -> FastrAPI:
    app = FastrAPI()

    @app.route("/things/{name}", methods=["GET", "DELETE"])
    async def things(request: Request, name: str) -> dict[str, str]:
        return {"method": request.method, "name": name}

    return app


async def test_a_method_route_answers_json_and_another_method_405(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with serving(routes_app(), backend) as url:
            port = int(url.rpartition(":")[2])
            deleted = await http_exchange(port, "DELETE /things/lamp HTTP/1.1\r\nHost: x\r\n\r\n")
            wrong = await http_exchange(
                port, "PUT /things/lamp HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            )
    assert deleted.startswith(b"HTTP/1.1 200 ")
    assert deleted.endswith(b'{"method":"DELETE","name":"lamp"}')
    assert b"content-type: application/json" in deleted.lower()
    assert wrong.startswith(b"HTTP/1.1 405 ")
    assert b"allow: delete, get, head" in wrong.lower()
