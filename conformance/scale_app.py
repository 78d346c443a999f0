"""The app of conformance/test_scale_out.py: one group across worker processes.

    python conformance/scale_app.py PORT BACKEND WORKERS BROKER [PREFIX]

BROKER is a Redis URL (its channels under PREFIX) or ``memory`` for the
in-process default. Each connection to ``/room`` joins the group "room", is
told the pid of the worker that serves it, and each text it sends goes to
the whole group. ``/stats`` answers with the pid and that worker's
``app.groups.stats()``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from fastrapi import FastrAPI, WebSocket
from fastrapi.brokers.redis import RedisBroker
from fastrapi.core.broker import Broker


def make_app(broker: Broker | None) -> FastrAPI:
    app = FastrAPI(broker=broker, shutdown_timeout=2, close_timeout=2)

    @app.websocket("/room")
    async def room(ws: WebSocket) -> None:
        await ws.accept()
        await app.groups.add("room", ws)  # returns once Redis confirmed the subscription
        await ws.send_text(str(os.getpid()))
        async for text in ws.iter_text():
            await app.groups.send_text("room", text)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        counted = app.groups.stats()
        return {
            "pid": os.getpid(),
            "members": counted.members,
            "sent": counted.sent,
            "dropped": counted.dropped,
            "published": counted.published,
            "publish_failures": counted.publish_failures,
            "received": counted.received,
            "connected": counted.broker_connected,
        }

    return app


if __name__ == "__main__":
    port, backend, workers, broker, *prefix = sys.argv[1:]
    # Short reconnection delays: a test does not wait out the defaults.
    shared = None if broker == "memory" else RedisBroker(broker, prefix=prefix[0], reconnect_max_delay=0.5)
    make_app(shared).serve("127.0.0.1", int(port), backend=backend, workers=int(workers))
