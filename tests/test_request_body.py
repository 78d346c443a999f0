"""Request bodies in the core: what a handler reads, and the max_body_size bound."""

from __future__ import annotations

import pytest

from fastrapi import FastrAPI, Headers, InvalidJSON, Request, Settings
from fastrapi.core.body import BodyBuffer, check_announced, check_body
from fastrapi.testing import TestClient

LIMIT = 32


def body_app() -> tuple[FastrAPI, list[Request]]:
    app = FastrAPI(max_body_size=LIMIT)
    seen: list[Request] = []

    @app.post("/raw")
    async def raw(request: Request) -> bytes:
        seen.append(request)
        return request.body

    @app.route("/json", methods=["PUT", "PATCH"])
    async def parsed(request: Request) -> dict[str, object]:
        seen.append(request)
        return {"got": request.json(), "type": request.headers["content-type"]}

    return app, seen


def test_content_and_json_reach_the_handler() -> None:
    app, seen = body_app()
    with TestClient(app) as client:
        assert client.post("/raw", content=b"\x00bytes\xff").content == b"\x00bytes\xff"
        assert client.post("/raw", content="text é").content == "text é".encode()
        answer = client.put("/json", json={"a": [1, 2]})
        assert answer.json() == {"got": {"a": [1, 2]}, "type": "application/json"}
        assert client.post("/raw").content == b""
    assert [request.body for request in seen] == [b"\x00bytes\xff", "text é".encode(), b'{"a":[1,2]}', b""]
    assert seen[0].headers["content-length"] == str(len(b"\x00bytes\xff"))


def test_a_body_over_max_body_size_gets_413_and_never_reaches_the_handler() -> None:
    app, seen = body_app()
    with TestClient(app) as client:
        assert client.post("/raw", content=b"x" * LIMIT).status_code == 200
        too_big = client.post("/raw", content=b"x" * (LIMIT + 1))
        assert too_big.status_code == 413
        assert str(LIMIT) in too_big.text
        # Announced too big by the header alone: refused just the same.
        announced = client.post("/raw", headers={"content-length": str(LIMIT + 1)})
        assert announced.status_code == 413
    assert len(seen) == 1


def test_request_json_raises_invalid_json_for_a_body_that_is_not_json() -> None:
    request = Request("POST", "/", Headers(), body=b"{not json")
    with pytest.raises(InvalidJSON) as invalid:
        request.json()
    assert isinstance(invalid.value, ValueError)
    assert "not valid JSON" in str(invalid.value)


def test_an_unhandled_invalid_json_in_a_handler_is_a_500() -> None:
    app, _ = body_app()
    with TestClient(app) as client:
        assert client.patch("/json", content=b"{not json").status_code == 500


def test_check_announced_leaves_malformed_lengths_to_the_parser() -> None:
    settings = Settings(max_body_size=LIMIT)
    cases = [
        (str(LIMIT), False),
        (str(LIMIT + 1), True),
        ("nonsense", False),
        ("-5", False),
        ("\u00b2", False),
    ]
    for value, refused in cases:
        request = Request("POST", "/", Headers([("content-length", value)]))
        assert (check_announced(request, settings) is not None) is refused, value
    assert check_body(Request("POST", "/", Headers(), body=b"x" * (LIMIT + 1)), settings) is not None


def test_the_body_buffer_keeps_pieces_up_to_its_limit() -> None:
    buffer = BodyBuffer(5)
    assert buffer.add(b"abc") and buffer.add(memoryview(b"de"))
    assert not buffer.add(b"f")  # one byte past the limit
    assert buffer.take() == b"abcde"
    assert buffer.take() == b""


@pytest.mark.parametrize("value", [0, -1, 1.5, "1"])
def test_max_body_size_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(ValueError, match="max_body_size must be a positive int"):
        Settings(max_body_size=value)  # type: ignore[arg-type]
