"""A deliberately small WebSocket client for frames no well-behaved client sends.

Independent of fastrapi and of the libraries under its backends: it writes
RFC 6455 frames byte by byte, so tests can send invalid UTF-8, reserved
opcodes, unmasked frames, and cut connections with a TCP reset.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


class RawClient:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    @classmethod
    async def open(
        cls, port: int, request: bytes, small_receive_buffer: bool = False
    ) -> tuple[RawClient, bytes]:
        """Connect, send ``request`` as is, return the client and the response head.

        ``small_receive_buffer`` keeps the kernel from buffering much for a
        client that stops reading (it is fixed before connecting, so TCP
        advertises a small window).
        """
        if small_receive_buffer:
            sock = socket.socket()
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                try:
                    sock.connect(("127.0.0.1", port))
                except BlockingIOError:
                    await anyio.wait_writable(sock)
                stream = await SocketStream.from_socket(sock)
            except BaseException:
                sock.close()
                raise
        else:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        client = cls(stream)
        try:
            await stream.send(request)
            head = await client.reader.receive_until(b"\r\n\r\n", 65536)
        except BaseException:
            await stream.aclose()
            raise
        return client, head

    @classmethod
    async def upgrade(
        cls, port: int, path: str = "/", extra: str = "", small_receive_buffer: bool = False
    ) -> RawClient:
        """Connect and complete a WebSocket handshake; raises unless the answer is 101."""
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n"
        ).encode()
        client, head = await cls.open(port, request, small_receive_buffer)
        if not head.startswith(b"HTTP/1.1 101"):
            await client.stream.aclose()
            raise AssertionError(f"handshake refused: {head!r}")
        return client

    async def send_frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0
    ) -> None:
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        length = len(payload)
        mask_bit = 0x80 if mask else 0
        if length < 126:
            header = struct.pack("!BB", first, mask_bit | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, length)
        if mask:
            key = os.urandom(4)
            payload = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
            header += key
        await self.stream.send(header + payload)

    async def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        await self.send_frame(CLOSE, payload)

    async def receive_frame(self) -> Frame:
        first, second = await self.reader.receive_exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.receive_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.receive_exactly(8))
        if second & 0x80:
            raise AssertionError("a server must not mask its frames (RFC 6455 5.1)")
        payload = await self.reader.receive_exactly(length) if length else b""
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    async def close_handshake(self, code: int = 1000) -> Frame:
        """Close as a well-behaved client does: send Close, read the answer, wait for
        the server to close TCP (RFC 6455 section 7.1.1), then close ours."""
        await self.send_close(code)
        answer = await self.receive_close()
        await self.at_eof()
        await self.aclose()
        return answer

    async def receive_close(self) -> Frame:
        """Skip data frames until the Close frame arrives."""
        while True:
            frame = await self.receive_frame()
            if frame.opcode == CLOSE:
                return frame

    async def at_eof(self) -> bool:
        """Whether the server closed TCP: true once a read finds the end."""
        try:
            await self.reader.receive(1)
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return True
        return False

    async def reset(self) -> None:
        """Vanish with a TCP RST instead of a FIN, as a crashed peer does."""
        raw = self.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()  # idempotent: a test may have closed it already
