"""A real browser for end-to-end tests: headless Chromium driven over its DevTools protocol.

Only loopback: Chromium starts with every background service off, and pages
are local files or the test's own server.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from websockets.asyncio.client import ClientConnection, connect

WAIT = 10  # seconds for anything a test waits for in the page
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


class Page:
    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools protocol command to the page; its result."""
        call_id = next(self._ids)
        await self._connection.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._connection.recv())
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise AssertionError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self) -> bytes:
        """The page as it looks now, as PNG."""
        result = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])

    async def wait_for(self, expression: str) -> Any:
        """Poll ``expression`` until it is truthy, within a hang guard (not a timing claim)."""
        with anyio.fail_after(WAIT):
            while not (value := await self.evaluate(expression)):  # noqa: ASYNC110  # a page offers no event to await
                await anyio.sleep(0.05)
        return value


class Browser:
    def __init__(self, port: int) -> None:
        self.port = port

    def _json(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    @asynccontextmanager
    async def page(self, url: str) -> AsyncIterator[Page]:
        target = await anyio.to_thread.run_sync(self._json, f"/json/new?{quote(url, safe='')}", "PUT")
        async with connect(target["webSocketDebuggerUrl"], max_size=None) as connection:
            page = Page(connection)
            # A new tab starts on about:blank; wait until it shows ``url``, loaded.
            await page.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")
            yield page


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with a fresh profile; stop it on exit."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed (Debian: apt-get install chromium)")
    process = await anyio.open_process(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        with anyio.fail_after(20):
            while not port_file.exists() or not port_file.read_text().strip():  # a file: no event to await
                if process.returncode is not None:
                    raise RuntimeError(f"Chromium exited with {process.returncode}")
                await anyio.sleep(0.05)
        yield Browser(int(port_file.read_text().split()[0]))
    finally:
        with anyio.CancelScope(shield=True):
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
