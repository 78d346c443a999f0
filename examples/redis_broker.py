"""A RedisBroker set up for production: a password, TLS, a prefix of the app's own.

    REDIS_URL=rediss://redis.internal:6380/0 REDIS_PASSWORD=... \
    REDIS_CA=/etc/ssl/redis-ca.pem python examples/redis_broker.py

Without the variables it connects to ``redis://127.0.0.1:6379/0``. The app
is a broadcast per room, and ``/stats`` shows what this worker's groups and
their broker counted.
"""

from __future__ import annotations

import os

from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect
from fastrapi.brokers.redis import RedisBroker

# --8<-- [start:broker]
url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# rediss:// is TLS; the CA that signed Redis's certificate is checked.
tls = {"ssl_ca_certs": os.environ["REDIS_CA"]} if url.startswith("rediss://") else {}
broker = RedisBroker(
    url,
    password=os.environ.get("REDIS_PASSWORD"),  # out of the URL, so out of any log line
    prefix="chat:",  # the channels are chat:<group>: apps that share a Redis stay apart
    reconnect_min_delay=0.1,  # seconds, doubling after each failed attempt...
    reconnect_max_delay=30.0,  # ...up to this
    health_check_interval=15.0,  # a PING after this long without traffic finds a dead link
    max_pending=10_000,  # broadcasts waiting for Redis beyond which new ones fail, counted
    **tls,
)
app = FastrAPI(broker=broker)
# --8<-- [end:broker]


@app.websocket("/rooms/{room}")
async def room(ws: WebSocket, room: str) -> None:
    await ws.accept()
    await app.groups.add(room, ws)
    try:
        async for text in ws.iter_text():
            await app.groups.send_text(room, text)
    except WebSocketDisconnect:
        pass


# --8<-- [start:stats]
@app.get("/stats")
async def stats() -> dict[str, object]:
    counted = app.groups.stats()  # this worker's: each process counts its own
    return {
        "worker": os.getpid(),
        "members": counted.members,  # connections here in at least one group
        "published": counted.published,  # broadcasts Redis acknowledged
        "publish_failures": counted.publish_failures,  # the other workers missed these
        "received": counted.received,  # broadcasts from the other workers
        "redis_connected": counted.broker_connected,
        "reconnects": counted.reconnects,  # each one ran the on_reconnect hooks
        "dropped": counted.dropped,  # messages a slow member here missed
    }
    # --8<-- [end:stats]


if __name__ == "__main__":
    app.serve("127.0.0.1", 8000, workers=4)
