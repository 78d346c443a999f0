"""The application around the WebSocket: HTTP answers, the backend registry, requests."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest

import fastrapi.backends
from fastrapi import (
    BackendUnavailableError,
    FastrAPI,
    Headers,
    QueryParams,
    Request,
    Response,
    UnknownBackendError,
    WebSocket,
)
from fastrapi.backends import BACKENDS, describe, load_backend
from fastrapi.backends.memory import make_request
from fastrapi.core import transport
from fastrapi.websocket import websocket

pytestmark = pytest.mark.anyio


def http(target: str, method: str = "GET") -> Request:
    return Request(method, target, Headers([("host", "x")]))


def test_the_seed_import_path_is_the_websocket_class() -> None:
    assert websocket is WebSocket


async def test_http_answers_426_on_websocket_routes_and_404_elsewhere() -> None:
    app = FastrAPI()

    @app.websocket("/ws/{room}")
    async def handler(ws: WebSocket, room: str) -> None: ...

    upgrade = await app.handle_http(http("/ws/lobby"))
    assert upgrade.status == 426
    assert ("upgrade", "websocket") in upgrade.headers
    assert (await app.handle_http(http("/other"))).status == 404


async def test_http_routes_return_responses_str_or_bytes() -> None:
    app = FastrAPI()

    @app.get("/page")
    async def page() -> Response:
        return Response.html("<h1>hi</h1>")

    @app.get("/text/{name}")
    async def text(name: str) -> str:
        return f"hello {name}"

    @app.get("/bytes")
    async def raw(request: Request) -> bytes:
        return request.path.encode()

    @app.get("/broken")
    async def broken() -> str:
        raise ValueError("bug")

    @app.get("/wrong")
    async def wrong() -> int:
        return 42

    assert await app.handle_http(http("/page")) == Response(
        200, [("content-type", "text/html; charset=utf-8")], b"<h1>hi</h1>"
    )
    assert (await app.handle_http(http("/text/caf%C3%A9"))).body == "hello café".encode()
    assert (await app.handle_http(http("/bytes"))).body == b"/bytes"
    assert (await app.handle_http(http("/page", "POST"))).status == 405
    assert (await app.handle_http(http("/broken"))).status == 500
    assert (await app.handle_http(http("/wrong"))).status == 500


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(UnknownBackendError) as error:
        load_backend("tornado")
    for name in BACKENDS:
        assert repr(name) in str(error.value)
    with pytest.raises(LookupError):
        FastrAPI().serve(backend="tornado")


def test_a_backend_whose_library_is_missing_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.py").write_text("import library_that_is_not_installed\n")
    monkeypatch.setattr(fastrapi.backends, "__path__", [*fastrapi.backends.__path__, str(tmp_path)])
    monkeypatch.setitem(transport.BACKENDS, "broken", "a backend whose library is missing")
    monkeypatch.delitem(sys.modules, "fastrapi.backends.broken", raising=False)
    with pytest.raises(BackendUnavailableError) as error:
        load_backend("broken")
    assert "library_that_is_not_installed" in str(error.value)
    assert "pip install 'fastrapi[broken]'" in str(error.value)


def test_every_registered_backend_loads_and_is_described() -> None:
    for name in BACKENDS:
        backend = load_backend(name)
        assert isinstance(backend, type) and hasattr(backend, "run")
        assert f"{name}: " in describe()


def test_serve_takes_the_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[str] = []
    monkeypatch.setenv("FASTRAPI_BACKEND", "wsproto")
    monkeypatch.setattr(
        "fastrapi.core.server.serve", lambda app, live, host, port, backend, *options: chosen.append(backend)
    )
    FastrAPI().serve()
    FastrAPI().serve(backend="other")
    assert chosen == ["wsproto", "other"]


def test_serve_settings_replace_the_apps() -> None:
    from fastrapi import Settings

    app = FastrAPI(max_queue=3)
    assert app.settings.max_queue == 3
    assert FastrAPI(settings=Settings(max_queue=5), close_timeout=1).settings == Settings(
        max_queue=5, close_timeout=1
    )


def test_serve_configures_logging_only_when_nobody_did(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastrapi.core.server import _configure_logging

    package = logging.getLogger("fastrapi")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(package, "handlers", [])
    monkeypatch.setattr(package, "level", logging.NOTSET)
    _configure_logging()
    assert len(package.handlers) == 1 and package.level == logging.INFO
    _configure_logging()
    assert len(package.handlers) == 1


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2"), ("Host", "h")])
    assert headers["x-a"] == "1" and headers["X-A"] == "1"
    assert headers.get_all("X-a") == ["1", "2"]
    assert list(headers) == ["x-a", "host"] and len(headers) == 2
    assert headers.raw() == [("x-a", "1"), ("x-a", "2"), ("host", "h")]
    assert "missing" not in headers and headers.get("missing") is None
    assert "x-a" in repr(headers)


def test_query_params_take_the_last_value_and_keep_all() -> None:
    params = QueryParams("a=1&b=&a=2&c=%C3%A9")
    assert params["a"] == "2" and params.get_all("a") == ["1", "2"]
    assert params["b"] == "" and params["c"] == "é"
    assert list(params) == ["a", "b", "c"] and len(params) == 3
    with pytest.raises(KeyError):
        params["zzz"]
    assert "a" in repr(params)


def test_request_parses_target_and_upgrade() -> None:
    request = make_request("/a%20b?x=1", subprotocols=["one", "two"])
    assert (request.raw_path, request.path, request.query_string) == ("/a%20b", "/a b", "x=1")
    assert request.subprotocols == ["one", "two"]
    assert request.is_upgrade
    assert not http("/").is_upgrade
    assert Request("GET", "?x", Headers()).raw_path == "/"


def test_exceptions_describe_themselves() -> None:
    from fastrapi import WebSocketDisconnect, WebSocketException

    assert str(WebSocketException(4001, "nope")) == "4001 nope"
    assert str(WebSocketDisconnect(1000)) == "WebSocket disconnected with code 1000"
    assert str(WebSocketDisconnect(4002, "bye")).endswith(": bye")


def test_close_checks_types() -> None:
    from fastrapi.core.codes import check_close

    with pytest.raises(TypeError):
        check_close("1000", "")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_close(1000, b"")  # type: ignore[arg-type]
    check_close(1012, "restarting")
    check_close(4999, "")


def test_the_module_namespace_is_public() -> None:
    assert isinstance(fastrapi.backends, types.ModuleType)
    import fastrapi as package

    for name in package.__all__:
        assert hasattr(package, name)
