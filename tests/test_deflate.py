"""The wsproto backend's bounded permessage-deflate: a bomb never inflates past the limit."""

from __future__ import annotations

import os
import struct
import zlib

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection

from fastrapi.backends.wsproto import BoundedPerMessageDeflate


def compressed_frame(payload: bytes, *, fin: bool = True, opcode: int = 0x2) -> bytes:
    """A masked client frame with RSV1 set, carrying ``payload`` deflated (RFC 7692)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]  # the 00 00 ff ff tail is implied (RFC 7692 section 7.2.1)
    key = os.urandom(4)
    masked = bytes(byte ^ key[index % 4] for index, byte in enumerate(body))
    first = (0x80 if fin else 0) | 0x40 | opcode
    length = len(body)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    return header + key + masked


def server_with(limit: int) -> Connection:
    extension = BoundedPerMessageDeflate(limit)
    assert extension.accept("permessage-deflate") is not None  # as negotiated in the handshake
    return Connection(ConnectionType.SERVER, extensions=[extension])


def test_a_bomb_is_refused_with_1009_before_it_inflates() -> None:
    limit = 64 * 1024
    connection = server_with(limit)
    connection.receive_data(compressed_frame(b"\x00" * (64 * 1024 * 1024)))  # 64 MiB from ~64 KiB
    events = list(connection.events())
    inflated = sum(len(event.data) for event in events if isinstance(event, BytesMessage))
    assert inflated <= limit + 1
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009


def test_messages_within_the_limit_inflate_whole_and_the_count_restarts() -> None:
    limit = 100_000
    connection = server_with(limit)
    for _ in range(3):  # each message counts from zero
        connection.receive_data(compressed_frame(b"abc" * 30_000))
        data = b"".join(event.data for event in connection.events() if isinstance(event, BytesMessage))
        assert data == b"abc" * 30_000


def test_a_message_over_the_limit_across_fragments_is_refused() -> None:
    limit = 1000
    connection = server_with(limit)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(b"x" * 800) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"y" * 800) + compressor.flush(zlib.Z_SYNC_FLUSH)
    key = b"\x00\x00\x00\x00"
    frames = struct.pack("!BB", 0x42, 0x80 | len(first)) + key + first  # RSV1, binary, not final
    frames += struct.pack("!BB", 0x80, 0x80 | len(second[:-4])) + key + second[:-4]  # continuation
    connection.receive_data(frames)
    events = list(connection.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009
