"""In a real browser, on every backend: the guide's client.html, the chat page
(demo.py, chat_groups.py) and the dashboard (dashboard.py)."""

from __future__ import annotations

import importlib.util
import json
import os
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from conformance.browser import CHROMIUM, chromium
from conformance.conftest import EXAMPLES, free_port, run_example, run_script, serving

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (the CI script installs it)"),
]


async def test_the_guides_client_html_talks_to_main_py(backend: str, tmp_path: Path) -> None:
    with run_example("main.py", backend, tmp_path) as server:
        page_file = tmp_path / "client.html"
        source = (EXAMPLES / "client.html").read_text()
        assert source.count("ws://localhost:8000/ws") == 1
        page_file.write_text(source.replace("ws://localhost:8000/ws", f"ws://localhost:{server.port}/ws"))
        async with chromium(tmp_path / "profile") as browser, browser.page(page_file.as_uri()) as page:
            log = "document.getElementById('messages').innerText"
            await page.wait_for(f"{log}.includes('Connected to server')")
            await page.evaluate(
                "document.getElementById('messageInput').value = 'hello from a browser é😀'; sendMessage()"
            )
            reply = {"reply": "Message received", "echo": "hello from a browser é😀"}
            text = await page.wait_for(f"{log}.includes('Server: ') && {log}")
    assert "You: hello from a browser é😀" in text
    assert "Server: " + json.dumps(reply, ensure_ascii=False, separators=(",", ":")) in text


def load_chat(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"fastrapi_{name}_in_browser", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("example", ["demo", "chat_groups"])
async def test_the_chat_page_in_two_tabs(backend: str, example: str, tmp_path: Path) -> None:
    demo = load_chat(example)
    async with serving(demo.app, backend) as url:  # type: ignore[attr-defined]
        await chat_in_two_tabs(url.replace("ws://", "http://"), tmp_path)


async def test_the_groups_chat_page_mounted_in_starlette_under_uvicorn(tmp_path: Path) -> None:
    launcher = (
        "import sys\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "import uvicorn\n"
        "from starlette.applications import Starlette\n"
        "from starlette.routing import Mount\n"
        "from chat_groups import app\n"
        "outer = Starlette(routes=[Mount('/', app=app)], lifespan=lambda outer: app.lifespan_context())\n"
        "uvicorn.run(outer, host='127.0.0.1', port={port}, log_level='warning')\n"
    )
    with run_script(tmp_path, "mounted.py", lambda port: launcher.replace("{port}", str(port))) as server:
        screenshot = await chat_in_two_tabs(f"http://127.0.0.1:{server.port}", tmp_path)
    assert screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    # The documentation's picture of the chat is this test's: FASTRAPI_SCREENSHOT=path keeps it.
    keep = os.environ.get("FASTRAPI_SCREENSHOT")
    if keep:
        await anyio.Path(keep).write_bytes(screenshot)


async def chat_in_two_tabs(http: str, tmp_path: Path) -> bytes:
    """Ada and Bob chat in the lobby, then Bob leaves for another room; Ada's tab as PNG at the end."""
    async with (
        chromium(tmp_path / "profile") as browser,
        browser.page(f"{http}/") as ada,
        browser.page(f"{http}/") as bob,
    ):
        log = "document.getElementById('log').innerText"
        for page, name in ((ada, "Ada"), (bob, "Bob")):
            await page.evaluate(
                f"document.getElementById('name').value = '{name}';"
                "document.getElementById('join').requestSubmit()"
            )
            await page.wait_for(f"{log}.includes('Connected to room lobby as {name}')")
        await ada.wait_for(f"{log}.includes('Bob joined')")
        await ada.evaluate(
            "document.getElementById('message').value = '<b>hi</b> Bob';"
            "document.getElementById('send').requestSubmit()"
        )
        await bob.wait_for(f"{log}.includes('Ada: <b>hi</b> Bob')")
        # Shown as text, never as markup.
        assert await bob.evaluate("document.querySelectorAll('#log b').length") == 0
        await bob.evaluate(
            "document.getElementById('room').value = 'elsewhere';"
            "document.getElementById('join').requestSubmit()"
        )
        await bob.wait_for(f"{log}.includes('Connected to room elsewhere as Bob')")
        await ada.wait_for(f"{log}.includes('Bob left')")
        await ada.evaluate(
            "document.getElementById('message').value = 'anyone?';"
            "document.getElementById('send').requestSubmit()"
        )
        await ada.wait_for(f"{log}.includes('Ada: anyone?')")
        await anyio.sleep(0.2)
        assert "anyone?" not in await bob.evaluate(log)
        return await ada.screenshot()


# Pixels of the chart's line colour (#1565c0, blended at its edges): the plot was drawn.
LINE_PIXELS = """(() => {
  const canvas = document.getElementById('chart');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 2] > 150 && data[i] < 120 && data[i + 2] - data[i] > 80) count += 1;
  }
  return count;
})()"""


async def test_the_dashboard_plots_pushed_readings_and_reconnects_after_a_restart(
    backend: str, tmp_path: Path
) -> None:
    dashboard = load_chat("dashboard")
    dashboard.INTERVAL = 0.02  # type: ignore[attr-defined]  # the example's module constant
    app = dashboard.app  # type: ignore[attr-defined]
    port = free_port()
    count = "Number(document.getElementById('count').textContent)"
    status = "document.getElementById('status').textContent"
    async with chromium(tmp_path / "profile") as browser, AsyncExitStack() as pages:
        async with app.run_server("127.0.0.1", port, backend=backend):
            page = await pages.enter_async_context(browser.page(f"http://127.0.0.1:{port}/"))
            await page.wait_for(f"{status} === 'live' && {count} >= 20")
            assert await page.wait_for(LINE_PIXELS) > 50
            value = await page.evaluate("document.getElementById('value').textContent")
            assert 0 <= float(value) <= 100
        # The server stopped (a Close with 1001 to the page); the page stays open.
        await page.wait_for(f"{status}.startsWith('reconnecting in')")
        seen = await page.evaluate(count)
        async with app.run_server("127.0.0.1", port, backend=backend):  # the same port, as after a deploy
            await page.wait_for(f"{status} === 'live' && {count} > {seen}")
