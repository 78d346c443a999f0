"""Typed messages over a real socket, once per backend: what a client sees is the same."""

from __future__ import annotations

import json

import anyio
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import connect

from conformance.conftest import serving
from fastrapi import FastrAPI, InvalidJSON, InvalidMessage, WebSocket

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds: hang guard only


class Author(BaseModel):
    name: str
    id: int


class ChatMessage(BaseModel):
    room: str
    text: str
    author: Author


def typed_echo() -> FastrAPI:
    app = FastrAPI()

    @app.websocket("/chat")
    async def chat(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            try:
                message = await ws.receive_json(model=ChatMessage)
            except InvalidMessage as error:
                await ws.send_json({"error": error.errors, "raw": error.raw})
            except InvalidJSON as error:
                await ws.send_json({"error": "not JSON", "raw": error.message.data})
            else:
                await ws.send_json({"echo": message}, mode="binary")

    return app


async def test_a_model_is_echoed_and_an_invalid_one_answered_on_the_same_connection(backend: str) -> None:
    valid = {"room": "lobby", "text": "hi", "author": {"name": "ann", "id": 7}}
    with anyio.fail_after(GUARD):
        async with serving(typed_echo(), backend) as url:
            async with connect(f"{url}/chat", open_timeout=GUARD, close_timeout=GUARD) as ws:
                await ws.send(json.dumps(valid))
                assert json.loads(await ws.recv()) == {"echo": valid}

                await ws.send('{"room": "lobby", "author": {"name": "ann", "id": "x"}}')
                answer = json.loads(await ws.recv())
                assert [(error["type"], error["loc"]) for error in answer["error"]] == [
                    ("missing", ["text"]),
                    ("int_parsing", ["author", "id"]),
                ]
                assert answer["raw"] == '{"room": "lobby", "author": {"name": "ann", "id": "x"}}'

                await ws.send("{not json")
                assert json.loads(await ws.recv()) == {"error": "not JSON", "raw": "{not json"}

                # Still open, and reading the next message as usual; binary frames too.
                await ws.send(json.dumps(valid).encode())
                assert json.loads(await ws.recv()) == {"echo": valid}
