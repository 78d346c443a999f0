"""HTTP routes beside the sockets: methods, return types, 405 with Allow, 426, 404."""

from __future__ import annotations

import logging

import pytest

from fastrapi import FastrAPI, HTMLResponse, JSONResponse, Request, Response, RouteError, WebSocket
from fastrapi.testing import TestClient

app = FastrAPI()


@app.get("/text")
async def text() -> str:
    return "plain"


@app.get("/items/{item_id:int}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.post("/items")
async def create(request: Request) -> Response:
    return JSONResponse({"created": request.method}, status=201)


@app.route("/items/{item_id:int}", methods=["PUT", "PATCH", "DELETE"])
async def change(request: Request, item_id: int) -> list[object]:
    return [request.method, item_id]


@app.get("/page")
async def page() -> Response:
    return HTMLResponse("<h1>hi</h1>")


@app.get("/raw")
async def raw() -> bytes:
    return b"\x00\x01"


@app.get("/odd")
async def odd() -> object:
    return 3.5


@app.websocket("/ws")
async def ws(socket: WebSocket) -> None:
    await socket.accept()


def test_each_method_reaches_its_handler_and_each_return_type_its_content_type() -> None:
    with TestClient(app) as client:
        assert (client.get("/text").text, client.get("/text").headers["content-type"]) == (
            "plain",
            "text/plain; charset=utf-8",
        )
        assert client.get("/items/7").json() == {"id": 7}
        assert client.get("/items/7").headers["content-type"] == "application/json"
        created = client.post("/items")
        assert (created.status_code, created.json()) == (201, {"created": "POST"})
        for method in ("PUT", "PATCH", "DELETE"):
            assert client.request(method, "/items/3").json() == [method, 3]
        assert client.get("/page").headers["content-type"] == "text/html; charset=utf-8"
        assert client.get("/raw").content == b"\x00\x01"
        assert client.head("/text").status_code == 200


def test_a_wrong_method_gets_405_with_allow() -> None:
    with TestClient(app) as client:
        wrong = client.post("/items/3")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "DELETE, GET, HEAD, PATCH, PUT"
        only_post = client.get("/items")
        assert (only_post.status_code, only_post.headers["allow"]) == (405, "POST")


def test_websocket_paths_get_426_and_unknown_paths_404() -> None:
    with TestClient(app) as client:
        assert client.get("/ws").status_code == 426
        assert client.get("/nowhere").status_code == 404


def test_a_return_value_of_another_kind_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="fastrapi")
    with TestClient(app) as client:
        assert client.get("/odd").status_code == 500
    assert any("not a Response, str, bytes, dict or list" in r.getMessage() for r in caplog.records)


def test_a_duplicate_route_for_one_method_is_refused() -> None:
    other = FastrAPI()
    other.post("/a")(create)
    other.get("/a")(text)  # another method on the same path is fine
    with pytest.raises(RouteError):
        other.route("/a", methods=["POST"])(create)
