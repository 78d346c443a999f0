"""What an HTTP handler may return, made into a `Response`."""

from __future__ import annotations

from typing import Any

from fastrapi.core import json
from fastrapi.core.transport import HeaderList, Response


def JSONResponse(data: Any, status: int = 200, headers: HeaderList = ()) -> Response:
    """``data`` as JSON (orjson), ``application/json``."""
    return Response(status, [("content-type", "application/json"), *headers], json.dumps(data))


def HTMLResponse(html: str, status: int = 200, headers: HeaderList = ()) -> Response:
    """``html``, ``text/html; charset=utf-8``."""
    return Response(status, [("content-type", "text/html; charset=utf-8"), *headers], html.encode())


def as_response(result: object) -> Response | None:
    """A handler's return value as a response; None if it is not one of the
    kinds a handler may return (`Response`, str, bytes, dict, list)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response.text(200, result)
    if isinstance(result, bytes):
        return Response(200, [("content-type", "application/octet-stream")], result)
    if isinstance(result, dict | list):
        return JSONResponse(result)
    return None
