"""``wss://`` and ``https://`` on every backend: a throw-away CA, verification on."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import trustme
from websockets.asyncio.client import connect

from conformance.conftest import http_exchange, run_script
from fastrapi import FastrAPI, WebSocket

pytestmark = pytest.mark.anyio

GUARD = 10


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()  # verifies the certificate and the host name
    authority.configure_trust(context)
    return context


def tls_app() -> FastrAPI:
    app = FastrAPI()

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(text)

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


@asynccontextmanager
async def serving_tls(backend: str, context: ssl.SSLContext) -> AsyncIterator[int]:
    async with tls_app().run_server("127.0.0.1", 0, backend=backend, ssl=context) as server:
        yield server.addresses[0].port


async def test_wss_echoes_with_the_certificate_verified(
    backend: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with anyio.fail_after(GUARD):
        async with serving_tls(backend, server_tls) as port:
            async with connect(f"wss://127.0.0.1:{port}/ws", ssl=client_tls) as ws:
                await ws.send("over tls")
                assert await ws.recv() == "over tls"
                assert ws.transport.get_extra_info("ssl_object") is not None


async def test_https_serves_the_http_routes(
    backend: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with anyio.fail_after(GUARD):
        async with serving_tls(backend, server_tls) as port:
            request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            reply = await http_exchange(port, request, client_tls)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\nok")


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    backend: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    untrusting = ssl.create_default_context()  # the system's CAs only
    with anyio.fail_after(GUARD):
        async with serving_tls(backend, server_tls) as port:
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(f"wss://127.0.0.1:{port}/ws", ssl=untrusting):
                    pass
            # The server is unharmed by the failed handshake.
            async with connect(f"wss://127.0.0.1:{port}/ws", ssl=client_tls) as ws:
                await ws.send("still up")
                assert await ws.recv() == "still up"


@pytest.fixture(scope="module")
def pem_files(authority: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("pem")
    issued = authority.issue_cert("127.0.0.1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    issued.private_key_pem.write_to_path(str(keyfile))
    yield certfile, keyfile


SCRIPT = """
from fastrapi import FastrAPI

app = FastrAPI()

@app.websocket("/ws")
async def echo(ws):
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)

app.serve("127.0.0.1", {port}, backend={backend!r}, certfile={certfile!r}, keyfile={keyfile!r})
"""


async def test_serve_with_certfile_and_keyfile_says_https(
    backend: str, tmp_path: Path, pem_files: tuple[Path, Path], client_tls: ssl.SSLContext
) -> None:
    certfile, keyfile = pem_files

    def render(port: int) -> str:
        return SCRIPT.format(port=port, backend=backend, certfile=str(certfile), keyfile=str(keyfile))

    with run_script(tmp_path, "server.py", render) as server, anyio.fail_after(GUARD):
        async with connect(f"wss://127.0.0.1:{server.port}/ws", ssl=client_tls) as ws:
            await ws.send("from files")
            assert await ws.recv() == "from files"
    assert f"serving on https://127.0.0.1:{server.port}" in server.output


def test_ssl_and_certfile_together_are_refused(pem_files: tuple[Path, Path]) -> None:
    certfile, keyfile = pem_files
    script = (
        "import ssl\nfrom fastrapi import FastrAPI\n"
        "context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
        f"FastrAPI().serve(ssl=context, certfile={str(certfile)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=GUARD, check=False
    )
    assert result.returncode != 0
    assert "ValueError: pass either ssl= (a context) or certfile=/keyfile=, not both" in result.stderr


async def test_the_command_line_serves_wss_from_pem_files(
    tmp_path: Path, pem_files: tuple[Path, Path], client_tls: ssl.SSLContext
) -> None:
    certfile, keyfile = pem_files
    (tmp_path / "app.py").write_text(SCRIPT.split("app.serve(")[0])

    def render(port: int) -> str:
        argv = ["run", "app:app", "--port", str(port), "--ssl-certfile", str(certfile)]
        argv += ["--ssl-keyfile", str(keyfile)]
        return f"import sys\nfrom fastrapi.cli import main\nsys.exit(main({argv!r}))\n"

    with run_script(tmp_path, "cli.py", render) as server, anyio.fail_after(GUARD):
        async with connect(f"wss://127.0.0.1:{server.port}/ws", ssl=client_tls) as ws:
            await ws.send("from the command line")
            assert await ws.recv() == "from the command line"
    assert server.process.returncode == 0
    assert f"serving on https://127.0.0.1:{server.port}" in server.output
