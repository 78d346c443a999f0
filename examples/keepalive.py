"""Keepalive: notice dead peers, keep quiet connections open through proxies,
and measure a connection's round trip with ``ws.ping()``.

The server pings every connection every ``ping_interval`` seconds; one that
does not answer within ``ping_timeout`` is closed with 1011 "keepalive ping
timeout", and its handler's next receive or send raises
``WebSocketDisconnect``. ``idle_timeout`` closes a connection over which no
message went either way for that long (pings do not count), with 1001.

Run ``python examples/keepalive.py``.
"""

from __future__ import annotations

import logging
import time

from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect

logger = logging.getLogger("keepalive")

# --8<-- [start:settings]
# A dead peer is noticed within ping_interval + ping_timeout (25 s here); a
# ping every 15 s also keeps proxies that drop quiet connections after 60 s
# (nginx's proxy_read_timeout) from dropping this one.
app = FastrAPI(ping_interval=15.0, ping_timeout=10.0, idle_timeout=600.0)
# --8<-- [end:settings]


# --8<-- [start:feed]
@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        async for text in ws.iter_text():  # ends quietly on 1000 and 1001 (idle timeout too)
            await ws.send_text(text)
    except WebSocketDisconnect as gone:
        # 1011 "keepalive ping timeout": the peer stopped answering (a dead
        # network, a laptop asleep); 1006: the connection was cut.
        logger.info("%s left: %s", ws.client, gone)


# --8<-- [end:feed]


# --8<-- [start:latency]
@app.websocket("/latency")
async def latency(ws: WebSocket) -> None:
    await ws.accept()
    async for _ in ws.iter_text():  # each message asks for one measurement
        started = time.perf_counter()
        await ws.ping()  # returns when the client's Pong arrives
        elapsed = time.perf_counter() - started
        await ws.send_json({"round_trip_ms": round(elapsed * 1000, 3)})


# --8<-- [end:latency]

if __name__ == "__main__":
    app.serve()
