"""The examples of the how-to guides, run in-process through the test client.

Each example is imported afresh from examples/ (its own app, its own state),
as the docs include it. The ones that need a real server or a browser are
tested in conformance/ (test_examples.py, test_browser.py).
"""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from conformance.redis_server import RedisServer
from fastrapi import WebSocketDisconnect
from fastrapi.testing import TestClient, WebSocketDenied

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered as an import would: pydantic resolves a model's annotations in its module.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- json_rpc.py ---------------------------------------------------------------


def test_json_rpc_answers_each_call_by_id() -> None:
    rpc = load("json_rpc")
    with TestClient(rpc.app) as client, client.websocket_connect("/rpc") as ws:
        ws.send_json({"id": 1, "method": "add", "params": {"a": 2, "b": 3}})
        assert ws.receive_json() == {"id": 1, "result": 5.0}
        ws.send_json({"id": "u", "method": "upper", "params": {"text": "héllo"}})
        assert ws.receive_json() == {"id": "u", "result": "HÉLLO"}
        ws.send_json({"id": 2, "method": "divide", "params": {"a": 1, "b": 0}})
        assert ws.receive_json() == {
            "id": 2,
            "error": {"code": -32000, "message": "float division by zero", "data": None},
        }


@pytest.mark.parametrize(
    ("sent", "reply_id", "code", "where"),
    [
        ('{"id": 1, "method": "add", "params": {"a": 1}}', 1, -32602, ["b"]),
        ('{"id": 1, "method": "add", "params": {"a": "x", "b": 2}}', 1, -32602, ["a"]),
        ('{"id": 7, "method": "nope"}', 7, -32601, None),
        ('{"method": "add"}', None, -32600, ["id"]),
        ("[1, 2]", None, -32600, []),
        ("not json", None, -32700, None),
    ],
    ids=["missing-param", "wrong-param-type", "no-such-method", "no-id", "not-an-object", "not-json"],
)
def test_json_rpc_answers_bad_calls_with_an_error_and_stays_open(
    sent: str, reply_id: Any, code: int, where: list[str] | None
) -> None:
    rpc = load("json_rpc")
    with TestClient(rpc.app) as client, client.websocket_connect("/rpc") as ws:
        ws.send_text(sent)
        reply = ws.receive_json()
        assert reply["id"] == reply_id
        assert reply["error"]["code"] == code
        if where is not None:
            assert [error["loc"] for error in reply["error"]["data"]][0] == where
        ws.send_json({"id": 2, "method": "add", "params": {"a": 1, "b": 1}})
        assert ws.receive_json() == {"id": 2, "result": 2.0}


# -- auth.py ---------------------------------------------------------------------

SITE = {"origin": "https://chat.example.com"}


def test_auth_each_way_of_sending_the_token_lets_the_user_in() -> None:
    auth = load("auth")
    ways: list[tuple[str, dict[str, str]]] = [
        ("/query?token=ada-3f9c2e7d", SITE),
        ("/cookie", {**SITE, "cookie": "theme=dark; session=ada-3f9c2e7d"}),
        ("/header", {**SITE, "authorization": "Bearer ada-3f9c2e7d"}),
    ]
    with TestClient(auth.app) as client:
        for path, headers in ways:
            with client.websocket_connect(path, headers=headers) as ws:
                assert ws.receive_json() == {"hello": "ada"}
                ws.send_text("hi")
                assert ws.receive_json() == {"from": "ada", "text": "hi"}
        with client.websocket_connect("/first-message", headers=SITE) as ws:
            ws.send_json({"token": "bob-81d04b6a"})
            assert ws.receive_json() == {"hello": "bob"}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/query", SITE),
        ("/query?token=ada-3f9c2e7e", SITE),
        ("/cookie", {**SITE, "cookie": "session=nope"}),
        ("/cookie", {**SITE, "cookie": 'session="unterminated'}),
        ("/header", {**SITE, "authorization": "Basic ada-3f9c2e7d"}),
    ],
    ids=["no-token", "wrong-token", "wrong-cookie", "malformed-cookie", "not-bearer"],
)
def test_auth_a_missing_or_wrong_token_gets_401_with_www_authenticate(
    path: str, headers: dict[str, str]
) -> None:
    auth = load("auth")
    with TestClient(auth.app) as client, pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect(path, headers=headers):
            pass
    assert denied.value.status == 401
    assert denied.value.headers["www-authenticate"] == 'Bearer realm="chat"'


def test_auth_too_many_failures_get_429_with_retry_after_until_the_window_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = load("auth")
    now = [1000.0]
    monkeypatch.setattr(auth.attempts, "clock", lambda: now[0])

    def status(token: str) -> int:
        try:
            with client.websocket_connect(f"/query?token={token}", headers=SITE):
                return 101
        except WebSocketDenied as denied:
            if denied.status == 429:
                assert int(denied.headers["retry-after"]) == retry_after
            return denied.status

    with TestClient(auth.app) as client:
        retry_after = 60
        assert [status("guess") for _ in range(5)] == [401] * 5
        assert status("guess") == 429
        assert status("ada-3f9c2e7d") == 429  # even the right token, until it may try again
        now[0] += 30
        retry_after = 30
        assert status("ada-3f9c2e7d") == 429
        now[0] += 30
        assert status("ada-3f9c2e7d") == 101
    assert auth.attempts._failures == {}  # old failures are forgotten


def test_auth_first_message_closes_with_1008_on_a_wrong_token_or_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = load("auth")
    with TestClient(auth.app) as client:
        for first in ('{"token": "nope"}', "not json", "[1]"):
            with client.websocket_connect("/first-message", headers=SITE) as ws:
                ws.send_text(first)
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert (closed.value.code, closed.value.reason) == (1008, "authentication failed")
        monkeypatch.setattr(auth, "AUTH_TIMEOUT", 0.05)
        with client.websocket_connect("/first-message", headers=SITE) as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert (closed.value.code, closed.value.reason) == (1008, "no token in time")


def test_auth_other_sites_pages_are_refused_before_any_token_check() -> None:
    auth = load("auth")
    with TestClient(auth.app) as client:
        for headers in ({"origin": "https://evil.example"}, {}):
            with pytest.raises(WebSocketDenied) as denied:
                with client.websocket_connect("/query?token=ada-3f9c2e7d", headers=headers):
                    pass
            assert denied.value.status == 403
    assert auth.attempts._failures == {}


# -- streaming.py ----------------------------------------------------------------


def test_streaming_report_arrives_as_one_message() -> None:
    streaming = load("streaming")
    with TestClient(streaming.app) as client:
        with client.websocket_connect("/report?rows=2500") as ws:
            lines = ws.receive_text().splitlines()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1000
    assert lines[0] == "id,name,score"
    assert len(lines) == 2501
    assert lines[-1] == "2499,player-2499,93"


@pytest.mark.parametrize("rows", ["-1", "x", "1000001"])
def test_streaming_report_refuses_a_bad_row_count(rows: str) -> None:
    streaming = load("streaming")
    with TestClient(streaming.app) as client, pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect(f"/report?rows={rows}"):
            pass
    assert denied.value.status == 400


def test_streaming_download_sends_the_file_as_one_binary_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streaming = load("streaming")
    content = bytes(range(256)) * 1000  # 250 KiB: four fragments of 64 KiB
    (tmp_path / "data.bin").write_bytes(content)
    monkeypatch.setattr(streaming, "DOWNLOAD", tmp_path / "data.bin")
    with TestClient(streaming.app) as client, client.websocket_connect("/download") as ws:
        assert ws.receive_bytes() == content


# -- dashboard.py -------------------------------------------------------------------


def test_dashboard_sends_the_history_then_each_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard = load("dashboard")
    monkeypatch.setattr(dashboard, "INTERVAL", 0.01)
    with TestClient(dashboard.app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<canvas" in page.text
        time.sleep(0.1)  # a few readings before the page connects: they come as history
        with client.websocket_connect("/readings") as ws:
            readings: list[dict[str, float]] = []
            while len(readings) < 20:  # each receive is bounded by the client's timeout
                message = ws.receive_json()
                readings += message["history"] if "history" in message else [message]
    assert len({reading["t"] for reading in readings}) >= 19  # a reading may come live and in history
    assert all(0 <= reading["value"] <= 100 for reading in readings)
    assert dashboard.app.groups.overflow == "drop_oldest"


# -- keepalive.py -------------------------------------------------------------------


def test_keepalive_settings_and_latency() -> None:
    keepalive = load("keepalive")
    settings = keepalive.app.settings
    assert (settings.ping_interval, settings.ping_timeout, settings.idle_timeout) == (15.0, 10.0, 600.0)
    with TestClient(keepalive.app) as client:
        with client.websocket_connect("/latency") as ws:
            ws.send_text("how far?")
            assert ws.receive_json()["round_trip_ms"] >= 0
        with client.websocket_connect("/echo") as ws:
            ws.send_text("still here")
            assert ws.receive_text() == "still here"


def test_auth_attempts_forget_addresses_whose_failures_are_old() -> None:
    auth = load("auth")
    now = [0.0]
    attempts = auth.Attempts(limit=5, window=60.0, clock=lambda: now[0])
    for number in range(5000):  # 5,000 addresses that fail once and never come back
        attempts.failed(f"10.0.{number // 256}.{number % 256}")
        now[0] += 0.1  # 500 s in all: most of them are long past the window
    assert len(attempts._failures) < 2048  # swept as it grew, never all 5,000
    now[0] = 1000.0
    for _ in range(4):
        attempts.failed("192.0.2.1")
    assert attempts.retry_after("192.0.2.1") == 0
    attempts.failed("192.0.2.1")
    assert attempts.retry_after("192.0.2.1") == 60


def test_redis_broker_takes_the_password_and_tls_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from redis.asyncio.connection import SSLConnection

    ca = tmp_path / "redis-ca.pem"
    monkeypatch.setenv("REDIS_URL", "rediss://redis.internal:6380/0")
    monkeypatch.setenv("REDIS_PASSWORD", "secret")
    monkeypatch.setenv("REDIS_CA", str(ca))
    broker = load("redis_broker").broker
    pool = broker._pool  # never connected: the settings its connections will use
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["password"] == "secret"
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    assert repr(broker) == "RedisBroker('redis.internal:6380', prefix='chat:')"  # no password


def test_redis_broker_carries_a_room_between_two_apps_and_counts(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    first, second = load("redis_broker").app, load("redis_broker").app  # two workers, as it were
    with (
        TestClient(first) as one,
        TestClient(second) as other,
        one.websocket_connect("/rooms/scale-example") as ada,
        other.websocket_connect("/rooms/scale-example") as bob,
    ):
        for _ in range(500):  # a hang guard: both subscribe within a few loop turns
            if redis_server.numsub("chat:scale-example") == 2:
                break
            time.sleep(0.01)
        ada.send_text("hi")
        assert ada.receive_text() == bob.receive_text() == "hi"
        counted = one.get("/stats").json()
        assert (counted["published"], counted["publish_failures"]) == (1, 0)
        assert other.get("/stats").json()["received"] == 1
