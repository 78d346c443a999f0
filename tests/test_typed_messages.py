"""Typed messages: receive_json(model=...), iter_json(model=...) and send_json of models.

Through the real core over the in-memory transport: a payload goes in as the
client's frame and comes out as the handler's value (or the client's frame).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, assert_type

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, field_validator

# pydantic reads TypedDicts from typing_extensions before Python 3.12.
from typing_extensions import TypedDict

from fastrapi import BytesMessage, FastrAPI, InvalidJSON, InvalidMessage, TextMessage, WebSocket
from fastrapi.backends.memory import Accepted, MemoryClient, memory_connection
from fastrapi.core import json
from fastrapi.core.events import Closed

pytestmark = pytest.mark.anyio

GUARD = 5  # seconds: a hang guard, never a timing claim


class Author(BaseModel):
    name: str
    id: int


class ChatMessage(BaseModel):
    room: str
    text: str
    author: Author | None = None
    tags: list[str] = []


class Thread(BaseModel):
    title: str
    messages: list[ChatMessage]


class Event(BaseModel):
    # Strict: only JSON's own rules let a UUID and a datetime come as strings.
    model_config = ConfigDict(strict=True)
    id: uuid.UUID
    at: datetime


class Username(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def no_spaces(cls, value: str) -> str:
        if " " in value:
            raise ValueError("no spaces in a username")
        return value


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Move(TypedDict):
    piece: str
    to: list[int]


Handler = Callable[[WebSocket], Awaitable[None]]


def app_with(handler: Handler) -> FastrAPI:
    app = FastrAPI()
    app.websocket("/ws")(handler)
    return app


async def handshake(client: MemoryClient) -> None:
    assert isinstance(await client.wait_handshake(), Accepted)


async def received_by(handler: Handler, *messages: TextMessage | BytesMessage) -> None:
    """Send ``messages``, then wait for the handler's close."""
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            for message in messages:
                await client.send(message)
            assert await client.receive() == Closed(1000, "")


# -- receiving -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "payload", "expected"),
    [
        (ChatMessage, '{"room": "lobby", "text": "hi"}', ChatMessage(room="lobby", text="hi")),
        (Point, '{"x": 1, "y": -2}', Point(1, -2)),
        (Move, '{"piece": "knight", "to": [2, 3]}', Move(piece="knight", to=[2, 3])),
        (
            Thread,
            '{"title": "t", "messages": [{"room": "a", "text": "b", "author": {"name": "ann", "id": 7}}]}',
            Thread(title="t", messages=[ChatMessage(room="a", text="b", author=Author(name="ann", id=7))]),
        ),
        (list[Point], '[{"x": 0, "y": 0}]', [Point(0, 0)]),
        (
            Event,
            '{"id": "12345678-1234-5678-1234-567812345678", "at": "2024-05-01T12:00:00Z"}',
            Event(
                id=uuid.UUID(int=0x12345678123456781234567812345678), at=datetime(2024, 5, 1, 12, tzinfo=UTC)
            ),
        ),
    ],
    ids=["pydantic-model", "dataclass", "typeddict", "nested-models", "list-of-dataclasses", "strict-model"],
)
async def test_receive_json_validates_into_the_model(model: Any, payload: str, expected: Any) -> None:
    received: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        received.append(await ws.receive_json(model=model))
        received.append(await ws.receive_json(model=model))  # binary frames too
        await ws.close()

    await received_by(handler, TextMessage(payload), BytesMessage(payload.encode()))
    assert received == [expected, expected]
    assert type(received[0]) is type(expected)


async def test_an_invalid_message_raises_with_errors_and_raw_then_the_next_is_read() -> None:
    caught: list[InvalidMessage] = []
    received: list[ChatMessage] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for _ in range(2):
            try:
                await ws.receive_json(model=ChatMessage)
            except ValueError as error:
                assert isinstance(error, InvalidMessage)
                caught.append(error)
        received.append(await ws.receive_json(model=ChatMessage))
        await ws.close()

    bad_text = '{"room": "lobby", "author": {"name": "ann", "id": "seven"}}'
    bad_binary = b'{"room": 1, "text": "x"}'
    await received_by(
        handler,
        TextMessage(bad_text),
        BytesMessage(bad_binary),
        TextMessage('{"room": "lobby", "text": "back"}'),
    )
    text_error, binary_error = caught
    assert text_error.raw == bad_text and text_error.message == TextMessage(bad_text)
    assert binary_error.raw == bad_binary and binary_error.message == BytesMessage(bad_binary)
    assert [(error["type"], error["loc"]) for error in text_error.errors] == [
        ("missing", ["text"]),
        ("int_parsing", ["author", "id"]),
    ]
    assert [(error["type"], error["loc"]) for error in binary_error.errors] == [("string_type", ["room"])]
    assert "ChatMessage" in str(text_error) and "(and 1 more)" in str(text_error)
    assert received == [ChatMessage(room="lobby", text="back")]


async def test_validation_errors_can_be_sent_back_as_they_are() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_json(model=Username)
        except InvalidMessage as error:
            # A custom validator's ValueError sits in ctx: it must be JSON too.
            await ws.send_json({"error": error.errors})
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.send(TextMessage('{"name": "a b"}'))
            reply = await client.receive()
            assert await client.receive() == Closed(1000, "")
    assert isinstance(reply, TextMessage)
    (error,) = orjson.loads(reply.data)["error"]
    assert error["type"] == "value_error" and error["loc"] == ["name"]
    assert error["ctx"] == {"error": "no spaces in a username"}


async def test_invalid_json_with_a_model_raises_invalid_json_then_the_next_is_read() -> None:
    caught: list[InvalidJSON] = []
    received: list[Point] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for _ in range(2):
            try:
                await ws.receive_json(model=Point)
            except InvalidJSON as error:
                caught.append(error)
        received.append(await ws.receive_json(model=Point))
        await ws.close()

    await received_by(
        handler, TextMessage('{"x": 1,'), BytesMessage(b"\xff"), TextMessage('{"x": 1, "y": 2}')
    )
    assert [error.message for error in caught] == [TextMessage('{"x": 1,'), BytesMessage(b"\xff")]
    assert all(not isinstance(error, InvalidMessage) for error in caught)
    assert str(caught[0]).startswith("message is not valid JSON: ")
    assert received == [Point(1, 2)]


async def test_iter_json_with_a_model_until_a_normal_close() -> None:
    received: list[Point] = []
    caught: list[InvalidMessage] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for point in ws.iter_json(model=Point):
                received.append(point)
        except InvalidMessage as error:
            caught.append(error)
        # The connection is still open: a new loop reads on.
        received.extend([point async for point in ws.iter_json(model=Point)])

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            for payload in ('{"x": 1, "y": 2}', '{"x": "no"}', '{"x": 3, "y": 4}', '{"x": 5, "y": 6}'):
                await client.send(TextMessage(payload))
            await client.close()
            assert await client.receive() == Closed(1000, "")
    assert received == [Point(1, 2), Point(3, 4), Point(5, 6)]
    assert [error.raw for error in caught] == ['{"x": "no"}']


async def test_without_pydantic_model_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if pydantic were not installed: importing it fails, and no adapter is cached.
    monkeypatch.setitem(sys.modules, "pydantic", None)
    monkeypatch.setattr(json, "_ADAPTERS", {})
    caught: list[ImportError] = []
    received: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_json(model=Point)
        except ImportError as error:
            caught.append(error)
        received.append(await ws.receive_json())  # plain JSON needs no pydantic
        await ws.send_json({"plain": [Point(1, 2)]})
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.send(TextMessage('{"x": 1, "y": 2}'))
            await client.send(TextMessage('{"x": 3}'))
            assert await client.receive() == TextMessage('{"plain":[{"x":1,"y":2}]}')
            assert await client.receive() == Closed(1000, "")
    assert "pip install 'fastrapi[pydantic]'" in str(caught[0])
    assert received == [{"x": 3}]


def test_importing_fastrapi_does_not_import_pydantic() -> None:
    # A fresh interpreter, since this one has imported pydantic for the models above.
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "import fastrapi, fastrapi.core.json, fastrapi.core.websocket\n"
        "print(fastrapi.InvalidMessage.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "InvalidMessage", "")


async def test_receive_json_is_typed_by_its_model() -> None:
    # mypy checks these assert_type calls; at run time they pass values through.
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        assert_type(await ws.receive_json(), Any)
        assert_type(await ws.receive_json(model=ChatMessage), ChatMessage)
        assert_type(await ws.receive_json(1.0, model=Move), Move)
        async for point in ws.iter_json(model=Point):
            assert_type(point, Point)
            assert point == Point(0, 0)

    await_messages = ('{"a": 1}', '{"room": "r", "text": "t"}', '{"piece": "p", "to": []}', '{"x":0,"y":0}')
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            for payload in await_messages:
                await client.send(TextMessage(payload))
            await client.close()
            assert await client.receive() == Closed(1000, "")


# -- sending ---------------------------------------------------------------------


class Stamped(BaseModel):
    id: uuid.UUID
    at: datetime


async def test_send_json_sends_models_and_dataclasses_as_objects() -> None:
    errors: list[TypeError] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(ChatMessage(room="r", text="t", author=Author(name="ann", id=7)))
        await ws.send_json(Point(1, 2))
        await ws.send_json([ChatMessage(room="a", text="1"), ChatMessage(room="b", text="2", tags=["x"])])
        await ws.send_json({"point": Point(0, 1), "thread": Thread(title="t", messages=[])}, mode="binary")
        at = datetime(2024, 5, 1, 12, tzinfo=UTC)
        await ws.send_json(Stamped(id=uuid.UUID(int=1), at=at))
        try:
            await ws.send_json({"not json": object()})
        except TypeError as error:
            errors.append(error)
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            replies = [await client.receive() for _ in range(5)]
            assert await client.receive() == Closed(1000, "")
    assert replies == [
        TextMessage('{"room":"r","text":"t","author":{"name":"ann","id":7},"tags":[]}'),
        TextMessage('{"x":1,"y":2}'),
        TextMessage(
            '[{"room":"a","text":"1","author":null,"tags":[]},'
            '{"room":"b","text":"2","author":null,"tags":["x"]}]'
        ),
        BytesMessage(b'{"point":{"x":0,"y":1},"thread":{"title":"t","messages":[]}}'),
        TextMessage('{"id":"00000000-0000-0000-0000-000000000001","at":"2024-05-01T12:00:00Z"}'),
    ]
    assert "cannot send dict as JSON" in str(errors[0])


# -- the property: whatever fits the model comes back as it went ----------------

texts = st.text(st.characters(codec="utf-8"), max_size=20)
authors = st.fixed_dictionaries({"name": texts, "id": st.integers(min_value=-(2**63), max_value=2**63 - 1)})
chat_messages = st.fixed_dictionaries(
    {"room": texts, "text": texts},
    optional={"author": st.none() | authors, "tags": st.lists(texts, max_size=4)},
)


def echo_models() -> FastrAPI:
    app = FastrAPI()

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_json(model=ChatMessage):
            await ws.send_json(message)

    return app


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_messages, st.booleans())
async def test_any_dict_for_the_model_round_trips(value: dict[str, Any], binary: bool) -> None:
    payload = orjson.dumps(value)
    with anyio.fail_after(GUARD):
        async with memory_connection(echo_models(), "/ws") as client:
            await handshake(client)
            await client.send(BytesMessage(payload) if binary else TextMessage(payload.decode()))
            reply = await client.receive()
            await client.close()
            assert await client.receive() == Closed(1000, "")
    assert isinstance(reply, TextMessage)
    assert orjson.loads(reply.data) == {"author": None, "tags": [], **value}
