"""Property tests of the message paths: whatever goes in comes back out, intact."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrapi import BytesMessage, FastrAPI, TextMessage, WebSocket
from fastrapi.backends.memory import memory_connection
from fastrapi.core.channel import Assembler, MessageTooBig
from fastrapi.core.events import Closed

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)
texts = st.text(st.characters(codec="utf-8"))  # astral code points and "" included
big_bytes = st.integers(min_value=0, max_value=MiB).flatmap(
    lambda size: st.binary(min_size=size, max_size=size) if size <= 64 else st.builds(_pattern, st.just(size))
)


def _pattern(size: int) -> bytes:
    # Large payloads: a cheap, position-dependent pattern (a shifted or lost
    # byte would show), since hypothesis draws at most a few KiB of random data.
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def echo_app() -> FastrAPI:
    app = FastrAPI()

    @app.websocket("/echo/{kind}")
    async def echo(ws: WebSocket, kind: str) -> None:
        await ws.accept()
        if kind == "text":
            async for text in ws.iter_text():
                await ws.send_text(text)
        elif kind == "bytes":
            async for data in ws.iter_bytes():
                await ws.send_bytes(data)
        else:
            async for value in ws.iter_json():
                await ws.send_json(value, mode="binary" if kind == "json-binary" else "text")

    return app


async def round_trip(kind: str, messages: list[TextMessage | BytesMessage]) -> list[Any]:
    replies: list[Any] = []
    with anyio.fail_after(10):
        async with memory_connection(echo_app(), f"/echo/{kind}") as client:
            await client.wait_handshake()
            for message in messages:
                await client.send(message)
                replies.append(await client.receive())
            await client.close()
            assert await client.receive() == Closed(1000, "")
    return replies


@PROPERTY
@given(st.lists(texts, max_size=5))
async def test_text_round_trips(values: list[str]) -> None:
    replies = await round_trip("text", [TextMessage(value) for value in values])
    assert replies == [TextMessage(value) for value in values]


@PROPERTY
@given(st.lists(big_bytes, max_size=3))
async def test_bytes_up_to_1_mib_round_trip(values: list[bytes]) -> None:
    replies = await round_trip("bytes", [BytesMessage(value) for value in values])
    assert replies == [BytesMessage(value) for value in values]


@PROPERTY
@given(st.lists(json_values, max_size=4), st.sampled_from(["json-text", "json-binary"]))
async def test_json_round_trips(values: list[Any], kind: str) -> None:
    import orjson

    replies = await round_trip(kind, [TextMessage(orjson.dumps(value).decode()) for value in values])
    decoded = [orjson.loads(reply.data) for reply in replies]
    assert decoded == values
    wanted = TextMessage if kind == "json-text" else BytesMessage
    assert all(type(reply) is wanted for reply in replies)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=20), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=100),
)
def test_the_assembler_joins_fragments_or_refuses_over_the_limit(parts: list[bytes], limit: int) -> None:
    assembler = Assembler(limit, text=False)
    total = 0
    result: str | bytes | None = None
    for index, part in enumerate(parts):
        final = index == len(parts) - 1
        total += len(part)
        if total > limit:
            with pytest.raises(MessageTooBig):
                assembler.feed(part, final)
            return
        result = assembler.feed(part, final)
        assert (result is None) == (not final)
    assert result == b"".join(parts)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6), st.integers(min_value=1, max_value=80))
def test_the_assembler_counts_text_in_utf8_bytes(parts: list[str], limit: int) -> None:
    assembler = Assembler(limit, text=True)
    total = 0
    result: str | bytes | None = None
    for index, part in enumerate(parts):
        final = index == len(parts) - 1
        total += len(part.encode())
        if total > limit:
            with pytest.raises(MessageTooBig):
                assembler.feed(part, final)
            return
        result = assembler.feed(part, final)
    assert result == "".join(parts)


@settings(max_examples=200, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_text_as_bytes_is_decoded_across_fragment_boundaries(text: str, cuts: list[int]) -> None:
    # A character may span two fragments: the assembler decodes incrementally.
    payload = text.encode()
    points = sorted({min(cut, len(payload)) for cut in cuts})
    pieces = [payload[start:end] for start, end in zip([0, *points], [*points, len(payload)], strict=True)]
    assembler = Assembler(10_000, text=True)
    for piece in pieces[:-1]:
        assert assembler.feed(piece, final=False) is None
    assert assembler.feed(pieces[-1], final=True) == text


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_invalid_utf8_in_text_fragments_raises_or_decodes_exactly(payload: bytes) -> None:
    # The documented outcomes only: the exact text, or UnicodeDecodeError (1007 on the wire).
    assembler = Assembler(10_000, text=True)
    try:
        result = assembler.feed(payload, final=True)
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            payload.decode()
        return
    assert result == payload.decode()
