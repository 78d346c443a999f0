"""Messages per second: fastrapi on each backend against that library used raw.

    .venv/bin/python bench/throughput.py [--messages N] [--size BYTES] [--window W] [--rounds R]

For each backend, the raw library's echo server and fastrapi's echo app on
it (bench/echo_server.py) run in turn as their own processes, `rounds` times,
alternating, so that both meet the same machine load. One client process
sends `messages` masked text frames of `size` bytes, keeping `window` of them
in flight, and counts the echoes. The client is a few lines of socket code
with pre-built frames, so the server is what is measured. The table gives the
best round of each (noise only ever slows a round down) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("wsproto", "websockets", "aiohttp")


def masked_text_frame(size: int) -> bytes:
    payload = b"x" * size
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return header + mask + masked


def frames_in(buffer: bytearray) -> int:
    """Count and remove the whole (unmasked, server) frames at the start of ``buffer``."""
    count = position = 0
    end = len(buffer)
    while end - position >= 2:
        length = buffer[position + 1] & 0x7F
        header = 2
        if length == 126:
            if end - position < 4:
                break
            length = struct.unpack_from("!H", buffer, position + 2)[0]
            header = 4
        elif length == 127:
            if end - position < 10:
                break
            length = struct.unpack_from("!Q", buffer, position + 2)[0]
            header = 10
        if end - position < header + length:
            break
        position += header + length
        count += 1
    del buffer[:position]
    return count


async def drive(port: int, messages: int, size: int, window: int) -> float:
    """Echo ``messages`` through the server; return messages per second."""
    for _ in range(200):  # the server may still be starting: 10 s at most
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"nothing listens on port {port}")
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head!r}")
    frame = masked_text_frame(size)
    buffer = bytearray()
    sent = received = 0
    started = time.perf_counter()
    while received < messages:
        burst = min(window - (sent - received), messages - sent)
        if burst > 0:
            writer.write(frame * burst)
            sent += burst
        data = await reader.read(262144)
        if not data:
            raise RuntimeError("the server closed the connection")
        buffer += data
        received += frames_in(buffer)
    elapsed = time.perf_counter() - started
    mask = os.urandom(4)
    writer.write(b"\x88\x82" + mask + bytes([0x03 ^ mask[0], 0xE8 ^ mask[1]]))  # Close 1000
    writer.close()
    return messages / elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(kind: str, backend: str, messages: int, size: int, window: int) -> float:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), kind, backend, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return asyncio.run(drive(port, messages, size, window))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    options = parser.parse_args()
    print(
        f"{options.messages} messages of {options.size} bytes, "
        f"{options.window} in flight, best of {options.rounds}"
    )
    print("| backend | raw library msg/s | fastrapi msg/s | ratio |")
    print("|---|---|---|---|")
    for backend in options.backend or BACKENDS:
        best = {"raw": 0.0, "fastrapi": 0.0}
        for _ in range(options.rounds):
            for kind in ("raw", "fastrapi"):
                rate = measure(kind, backend, options.messages, options.size, options.window)
                best[kind] = max(best[kind], rate)
        ratio = best["fastrapi"] / best["raw"]
        print(f"| {backend} | {best['raw']:,.0f} | {best['fastrapi']:,.0f} | {ratio:.0%} |", flush=True)


if __name__ == "__main__":
    main()
