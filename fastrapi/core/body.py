"""Plain HTTP request bodies, bounded by ``max_body_size``: one answer on every backend.

A backend checks the announced length before it reads anything
(`check_announced`), then collects the body in a `BodyBuffer` as its parser
hands the pieces over, and gives up with `too_large` as soon as a chunked
body grows past the limit. The core checks the finished request once more
(`check_body`), so the ASGI adapter and the test client answer the same.
"""

from __future__ import annotations

from fastrapi.core.request import Request
from fastrapi.core.settings import Settings
from fastrapi.core.transport import Response


def too_large(settings: Settings) -> Response:
    return Response.text(413, f"Content Too Large: the body is over {settings.max_body_size} bytes\n")


def check_announced(request: Request, settings: Settings) -> Response | None:
    """413 if ``Content-Length`` announces more than ``max_body_size``, else None.

    A malformed length is left to the backend's parser, which refuses it with 400.
    """
    for value in request.headers.get_all("content-length"):
        value = value.strip()
        # ASCII digits only: isdigit() alone takes "²", which int() refuses.
        if value.isascii() and value.isdigit() and int(value) > settings.max_body_size:
            return too_large(settings)
    return None


def check_body(request: Request, settings: Settings) -> Response | None:
    """413 if the request's body is, or was announced as, over ``max_body_size``."""
    if len(request.body) > settings.max_body_size:
        return too_large(settings)
    return check_announced(request, settings)


class BodyBuffer:
    """A body's pieces as they arrive, up to ``limit`` bytes."""

    __slots__ = ("_data", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()

    def add(self, piece: bytes | bytearray | memoryview) -> bool:
        """Keep ``piece``; False once the body has grown past the limit (keep nothing more)."""
        if len(self._data) + len(piece) > self.limit:
            return False
        self._data += piece
        return True

    def take(self) -> bytes:
        data, self._data = bytes(self._data), bytearray()
        return data
