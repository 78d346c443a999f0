"""Checking an opening handshake (RFC 6455 section 4.2.1), the same on every backend.

Each library checks the request in its own way and words its own errors; the
core checks first, so a malformed handshake gets the same answer whichever
backend serves it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

from fastrapi.core.request import Request, has_token
from fastrapi.core.settings import Settings
from fastrapi.core.transport import Response

VERSION = "13"


def check_upgrade(request: Request) -> Response | None:
    """None if ``request`` is a valid opening handshake, else the HTTP error to answer.

    A wrong ``Sec-WebSocket-Version`` gets 426 naming the one we speak (4.2.2);
    anything else missing or malformed gets 400, a body too (a
    ``Content-Length`` other than 0, or any ``Transfer-Encoding``): what would
    follow the request is the client's first frames, not a body.
    """
    if request.method != "GET":
        return _bad("the method must be GET")
    # One pass over the fields: this runs on every handshake.
    host: str | None = None
    upgrade: list[str] = []
    connection: list[str] = []
    keys: list[str] = []
    versions: list[str] = []
    body = False
    for name, value in request.headers.fields():
        if name == "host":
            if host is None:
                host = value
        elif name == "upgrade":
            upgrade.append(value)
        elif name == "connection":
            connection.append(value)
        elif name == "sec-websocket-key":
            keys.append(value)
        elif name == "sec-websocket-version":
            versions.append(value)
        elif name == "transfer-encoding" or (name == "content-length" and value.strip() != "0"):
            body = True
    if not host:
        return _bad("missing Host header")
    if not has_token(upgrade, "websocket"):
        return _bad("the Upgrade header must be websocket")
    if not has_token(connection, "upgrade"):
        return _bad("the Connection header must include upgrade")
    if len(keys) != 1 or not _is_key(keys[0]):
        return _bad("Sec-WebSocket-Key must be one base64-encoded 16-byte value")
    if body:
        return _bad("an opening handshake has no body")
    if versions != [VERSION]:
        return Response.text(
            426 if versions else 400,
            f"Bad WebSocket handshake: Sec-WebSocket-Version must be {VERSION}\n",
            [("sec-websocket-version", VERSION)],
        )
    return None


def _is_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _bad(problem: str) -> Response:
    return Response.text(400, f"Bad WebSocket handshake: {problem}\n")


def check_origin(request: Request, allowed: Sequence[str] | None) -> Response | None:
    """None if ``request``'s Origin is allowed (or no list is set), else HTTP 403.

    Browsers send cookies with a WebSocket handshake from any site and leave
    the decision to the server (RFC 6455 section 10.2): without this check,
    any page a user visits can talk to the server as that user.
    """
    if allowed is None:
        return None
    origin = request.headers.get("origin")
    if origin is not None and _origin_pattern(tuple(allowed)).fullmatch(origin.lower()):
        return None
    shown = "no Origin header" if origin is None else f"Origin {origin!r} is not allowed"
    return Response.text(403, f"Forbidden: {shown}\n")


@lru_cache(maxsize=32)
def _origin_pattern(allowed: tuple[str, ...]) -> re.Pattern[str]:
    # "*" stands for one or more DNS labels, never for "/", ":" or "@".
    label = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    alternatives = [re.escape(origin.lower()).replace(r"\*", f"{label}(?:\\.{label})*") for origin in allowed]
    return re.compile("|".join(f"(?:{alternative})" for alternative in alternatives) or "(?!)")


def check_size(request: Request, settings: Settings) -> Response | None:
    """None if ``request`` is within the line and header limits, else 414 or 431.

    Each library parses with limits of its own; checking here again gives the
    same answer on every backend (websockets' own limits are these numbers).
    """
    if len(request.method) + len(request.target) + len(" HTTP/1.1") + 1 > settings.max_line_size:
        return Response.text(414, "URI Too Long\n")
    items = request.headers.fields()
    if len(items) > settings.max_headers:
        return Response.text(431, f"Request Header Fields Too Large: more than {settings.max_headers}\n")
    # ": " and the line's end add 2 bytes a line at most; when all the lines
    # together fit in one, none is too long (counted in C, without a loop).
    limit = settings.max_line_size
    if sum(map(len, chain.from_iterable(items))) + 2 * len(items) > limit:
        for name, value in items:
            if len(name) + len(value) + 2 > limit:
                return Response.text(431, "Request Header Fields Too Large: a header line is too long\n")
    return None
