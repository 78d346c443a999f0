"""app.static() on every backend, over a real socket: files with their
validators, 304, and no target that reaches outside the directory."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from conformance.conftest import http_exchange, serving
from fastrapi import FastrAPI

pytestmark = pytest.mark.anyio

GUARD = 10
PAGE = b"<h1>static</h1>"


def request(target: str, *headers: str) -> str:
    return "".join([f"GET {target} HTTP/1.1\r\nHost: x\r\n", *(f"{line}\r\n" for line in headers), "\r\n"])


def head_value(reply: bytes, name: str) -> str:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name} header in {reply!r}")


async def test_a_file_with_its_type_and_validators_then_304(backend: str, tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    (root / "page.html").write_bytes(PAGE)
    app = FastrAPI()
    app.static("/static", root)
    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url:
            port = int(url.rpartition(":")[2])
            first = await http_exchange(port, request("/static/page.html"))
            etag = head_value(first, "etag")
            cached = await http_exchange(port, request("/static/page.html", f"If-None-Match: {etag}"))
            since = head_value(first, "last-modified")
            unchanged = await http_exchange(port, request("/static/page.html", f"If-Modified-Since: {since}"))
    assert first.startswith(b"HTTP/1.1 200 "), first
    assert first.endswith(b"\r\n\r\n" + PAGE)
    assert head_value(first, "content-type") == "text/html; charset=utf-8"
    assert head_value(first, "content-length") == str(len(PAGE))
    for reply in (cached, unchanged):
        assert reply.startswith(b"HTTP/1.1 304 "), reply
        assert reply.endswith(b"\r\n\r\n")  # no content
        assert head_value(reply, "etag") == etag


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/public/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2f{secret}",
        "/static//{secret}",
        "/static/..%5csecret.txt",
        "/static/page.html%00",
        "/static/leak.txt",
    ],
)
async def test_no_target_reaches_outside_the_directory(backend: str, tmp_path: Path, target: str) -> None:
    root = tmp_path / "public"
    root.mkdir()
    (root / "page.html").write_bytes(PAGE)
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    (root / "leak.txt").symlink_to(secret)  # a symlink inside that points outside
    app = FastrAPI()
    app.static("/static", root)
    target = target.format(secret=str(secret).lstrip("/").replace("/", "%2f"))
    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url:
            reply = await http_exchange(int(url.rpartition(":")[2]), request(target))
    assert reply.startswith(b"HTTP/1.1 404 "), reply
    assert b"secret" not in reply.partition(b"\r\n\r\n")[2]
