"""The request-target's forms (RFC 9112 section 3.2): routes match the path whichever form came."""

from __future__ import annotations

import pytest

from fastrapi import FastrAPI, Headers, Request

pytestmark = pytest.mark.anyio


def request(target: str) -> Request:
    return Request("GET", target, Headers([("host", "x")]))


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/chat/lobby?user=ann", "/chat/lobby", "user=ann"),
        ("http://example.com/chat/lobby?user=ann", "/chat/lobby", "user=ann"),
        ("https://example.com:8443/chat", "/chat", ""),
        ("ws://example.com/chat", "/chat", ""),
        ("HTTP://EXAMPLE.COM/Chat", "/Chat", ""),
        ("http://user@example.com:80/a%20b", "/a%20b", ""),
        ("http://example.com", "/", ""),
        ("http://example.com?x=1", "/", "x=1"),
        ("http://[::1]:8000/v6", "/v6", ""),
    ],
)
def test_absolute_form_routes_on_its_path_and_query(target: str, path: str, query: str) -> None:
    assert request(target).raw_path == path
    assert request(target).query_string == query


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/a?next=http://example.com/b", "/a"),  # "://" in the query is not a scheme
        ("//example.com/b", "//example.com/b"),  # origin-form, however odd
        ("*", "*"),  # asterisk-form is left alone
        ("", "/"),
    ],
)
def test_other_forms_are_left_as_they_are(target: str, path: str) -> None:
    assert request(target).raw_path == path


def test_the_raw_target_is_kept() -> None:
    assert request("http://example.com/chat?x=1").target == "http://example.com/chat?x=1"
    assert request("http://example.com/a%2Fb").path == "/a/b"


async def test_an_absolute_form_http_request_reaches_its_route() -> None:
    app = FastrAPI()

    @app.get("/hello")
    async def hello() -> str:
        return "hi"

    response = await app.handle_http(request("http://example.com/hello"))
    assert response.status == 200
    assert response.body == b"hi"
