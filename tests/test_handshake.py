"""The opening handshake check (RFC 6455 section 4.2.1), without sockets."""

from __future__ import annotations

import pytest

from fastrapi import Headers, Request
from fastrapi.core.handshake import check_upgrade

VALID = [
    ("host", "example.com"),
    ("upgrade", "websocket"),
    ("connection", "keep-alive, Upgrade"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("sec-websocket-version", "13"),
]


def request(method: str = "GET", drop: str = "", **replace: str) -> Request:
    items = [(name, replace.get(name.replace("-", "_"), value)) for name, value in VALID if name != drop]
    return Request(method, "/", Headers(items))


def test_a_valid_handshake_passes() -> None:
    assert check_upgrade(request()) is None
    assert check_upgrade(request(upgrade="WebSocket")) is None


@pytest.mark.parametrize(
    ("bad", "status", "words"),
    [
        (request("POST"), 400, "GET"),
        (request(drop="host"), 400, "Host"),
        (request(upgrade="h2c"), 400, "Upgrade"),
        (request(connection="close"), 400, "Connection"),
        (request(drop="sec-websocket-key"), 400, "Sec-WebSocket-Key"),
        (request(sec_websocket_key="not base64!"), 400, "Sec-WebSocket-Key"),
        (request(sec_websocket_key="c2hvcnQ="), 400, "Sec-WebSocket-Key"),
        (request(drop="sec-websocket-version"), 400, "Sec-WebSocket-Version"),
        (request(sec_websocket_version="8"), 426, "Sec-WebSocket-Version"),
    ],
)
def test_a_broken_handshake_gets_a_clear_http_error(bad: Request, status: int, words: str) -> None:
    response = check_upgrade(bad)
    assert response is not None and response.status == status
    assert words in response.body.decode()
    if status == 426:
        assert ("sec-websocket-version", "13") in response.headers


def test_two_keys_are_refused() -> None:
    doubled = Request("GET", "/", Headers([*VALID, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]))
    response = check_upgrade(doubled)
    assert response is not None and response.status == 400


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ([("content-length", "0")], False),
        ([("content-length", "0"), ("content-length", "0")], False),
        ([("content-length", "5")], True),
        ([("content-length", "0"), ("content-length", "5")], True),
        ([("transfer-encoding", "chunked")], True),
    ],
    ids=["length-0", "twice-0", "length-5", "0-then-5", "chunked"],
)
def test_a_request_body_is_refused_with_400(extra: list[tuple[str, str]], refused: bool) -> None:
    response = check_upgrade(Request("GET", "/", Headers([*VALID, *extra])))
    if not refused:
        assert response is None
    else:
        assert response is not None and response.status == 400
        assert "body" in response.body.decode()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("HTTPS://EXAMPLE.COM", True),
        ("https://chat.example.com", True),
        ("https://a.b.example.com", True),
        ("http://localhost:8000", True),
        ("https://example.com.evil.com", False),
        ("https://evil.com", False),
        ("https://evilexample.com", False),
        ("http://example.com", False),
        ("http://localhost:8001", False),
        (None, False),
    ],
)
def test_origins_are_checked_exactly_or_by_subdomain(origin: str | None, allowed: bool) -> None:
    from fastrapi.core.handshake import check_origin

    headers = [*VALID, ("origin", origin)] if origin is not None else VALID
    answer = check_origin(
        Request("GET", "/", Headers(headers)),
        ("https://example.com", "https://*.example.com", "http://localhost:8000"),
    )
    if allowed:
        assert answer is None
    else:
        assert answer is not None and answer.status == 403
        assert ("no Origin" if origin is None else "not allowed") in answer.body.decode()


def test_no_origin_list_means_no_check() -> None:
    from fastrapi.core.handshake import check_origin

    assert check_origin(request(), None) is None


def test_an_empty_origin_list_refuses_everyone() -> None:
    from fastrapi.core.handshake import check_origin

    answer = check_origin(Request("GET", "/", Headers([*VALID, ("origin", "https://x")])), ())
    assert answer is not None and answer.status == 403


def test_allowed_origins_must_be_a_sequence() -> None:
    from fastrapi import Settings

    with pytest.raises(TypeError, match="sequence"):
        Settings(allowed_origins="https://example.com")  # type: ignore[arg-type]
    assert Settings(allowed_origins=["https://a"]).allowed_origins == ("https://a",)  # type: ignore[arg-type]


def test_request_size_limits() -> None:
    from fastrapi import Settings
    from fastrapi.core.handshake import check_size

    limits = Settings(max_line_size=100, max_headers=3)
    ok = Request("GET", "/" + "a" * 80, Headers([("host", "x"), ("a", "b" * 90)]))
    assert check_size(ok, limits) is None
    long_line = Request("GET", "/" + "a" * 95, Headers([("host", "x")]))
    assert (response := check_size(long_line, limits)) is not None and response.status == 414
    long_header = Request("GET", "/", Headers([("a", "b" * 99)]))
    assert (response := check_size(long_header, limits)) is not None and response.status == 431
    many = Request("GET", "/", Headers([("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]))
    assert (response := check_size(many, limits)) is not None and response.status == 431
    assert "more than 3" in response.body.decode()
