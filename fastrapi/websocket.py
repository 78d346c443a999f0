"""The seed's import path: ``from fastrapi.websocket import websocket``.

``websocket`` is the `WebSocket` class itself, so it works as a type hint::

    @app.websocket("/ws")
    async def endpoint(ws: websocket) -> None: ...
"""

from fastrapi.core.state import WebSocketState
from fastrapi.core.websocket import WebSocket

websocket = WebSocket

__all__ = ["WebSocket", "WebSocketState", "websocket"]
