"""fastrapi: FastrAPI's WebSocket API on interchangeable transports."""

from fastrapi.core.app import FastrAPI
from fastrapi.core.codes import CloseCode
from fastrapi.core.events import BytesMessage, TextMessage
from fastrapi.core.exceptions import (
    BackendUnavailableError,
    ConcurrentReceiveError,
    InvalidJSON,
    InvalidMessage,
    MessageTypeError,
    UnknownBackendError,
    WebSocketDisconnect,
    WebSocketException,
    WebSocketStateError,
)
from fastrapi.core.groups import Groups, GroupStats
from fastrapi.core.lifespan import LifespanStartupError, State
from fastrapi.core.request import Headers, QueryParams, Request
from fastrapi.core.responses import FileResponse, HTMLResponse, JSONResponse
from fastrapi.core.routing import RouteError
from fastrapi.core.settings import Settings
from fastrapi.core.state import WebSocketState
from fastrapi.core.transport import Response
from fastrapi.core.websocket import WebSocket

__all__ = [
    "BackendUnavailableError",
    "BytesMessage",
    "CloseCode",
    "ConcurrentReceiveError",
    "FastrAPI",
    "FileResponse",
    "GroupStats",
    "Groups",
    "HTMLResponse",
    "Headers",
    "InvalidJSON",
    "JSONResponse",
    "LifespanStartupError",
    "InvalidMessage",
    "MessageTypeError",
    "QueryParams",
    "Request",
    "Response",
    "RouteError",
    "Settings",
    "State",
    "TextMessage",
    "UnknownBackendError",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "WebSocketStateError",
]
__version__ = "0.1.0"
