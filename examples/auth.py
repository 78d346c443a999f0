"""Authenticated WebSocket endpoints: the token in the first message, in the
query string, in a cookie, or in an Authorization header.

Refusals before the handshake are HTTP responses made with ``ws.deny()``:
401 with ``WWW-Authenticate`` for a missing or wrong token, and 429 with
``Retry-After`` for a client that got it wrong too often. ``allowed_origins``
lets only this site's pages connect, which cookies need (a browser sends
them with a handshake from any site).

docs/how-to/authentication.md compares the four ways. Tokens here are fixed
strings; a real app would look up a hashed, expiring token in its store.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie

from fastrapi import FastrAPI, WebSocket

TOKENS = {"ada-3f9c2e7d": "ada", "bob-81d04b6a": "bob"}  # token -> user


# --8<-- [start:check]
def user_for(token: str | None) -> str | None:
    """The user a token belongs to, compared in constant time: how long a wrong
    guess takes says nothing about how close it came."""
    found = None
    for known, user in TOKENS.items():
        if token is not None and hmac.compare_digest(token.encode(), known.encode()):
            found = user
    return found


# --8<-- [end:check]


# --8<-- [start:limit]
class Attempts:
    """Failed logins per client address: after ``limit`` failures within
    ``window`` seconds, the address is refused until the oldest is that old."""

    def __init__(
        self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._sweep_at = 1024  # addresses kept before the old ones are swept out

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 if it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return 0
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0
        if len(failures) < self.limit:
            return 0
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, client: str) -> None:
        now = self.clock()
        self._failures.setdefault(client, deque()).append(now)
        if len(self._failures) >= self._sweep_at:
            # Addresses that failed once and never came back would stay forever:
            # forget those whose last failure is old. At most one sweep each
            # time the table doubles, so a failure costs O(1) on average.
            for old in [c for c, times in self._failures.items() if times[-1] <= now - self.window]:
                del self._failures[old]
            self._sweep_at = max(1024, 2 * len(self._failures))


attempts = Attempts()
# --8<-- [end:limit]

# --8<-- [start:app]
# Only this site's pages may open a connection (cross-site WebSocket hijacking).
ORIGINS = ("https://chat.example.com",)
app = FastrAPI(allowed_origins=ORIGINS)
# --8<-- [end:app]


# --8<-- [start:deny]
async def authenticate(ws: WebSocket, token: str | None) -> str | None:
    """The user, or None once the handshake was refused with 429 or 401."""
    client = ws.client.host if ws.client else "unknown"
    wait = attempts.retry_after(client)
    if wait:
        await ws.deny(429, {"retry-after": str(wait)}, b"too many failed logins; try again later\n")
        return None
    user = user_for(token)
    if user is None:
        attempts.failed(client)
        await ws.deny(401, {"www-authenticate": 'Bearer realm="chat"'}, b"a valid token is needed\n")
    return user


# --8<-- [end:deny]


# --8<-- [start:first-message]
AUTH_TIMEOUT = 10.0  # seconds a connection may stay open without a valid token


@app.websocket("/first-message")
async def first_message(ws: WebSocket) -> None:
    await ws.accept()
    try:
        hello = await ws.receive_json(timeout=AUTH_TIMEOUT)
    except TimeoutError:
        await ws.close(1008, "no token in time")
        return
    except ValueError:  # not JSON
        hello = None
    user = user_for(hello.get("token") if isinstance(hello, dict) else None)
    if user is None:
        await ws.close(1008, "authentication failed")
        return
    await ws.send_json({"hello": user})
    await serve_user(ws, user)


# --8<-- [end:first-message]


# --8<-- [start:query]
@app.websocket("/query")
async def query(ws: WebSocket) -> None:
    user = await authenticate(ws, ws.query_params.get("token"))
    if user is None:
        return
    await ws.accept()
    await ws.send_json({"hello": user})
    await serve_user(ws, user)


# --8<-- [end:query]


# --8<-- [start:cookie]
def cookie(ws: WebSocket, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(ws.headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


@app.websocket("/cookie")
async def with_cookie(ws: WebSocket) -> None:
    user = await authenticate(ws, cookie(ws, "session"))
    if user is None:
        return
    await ws.accept()
    await ws.send_json({"hello": user})
    await serve_user(ws, user)


# --8<-- [end:cookie]


# --8<-- [start:header]
@app.websocket("/header")
async def header(ws: WebSocket) -> None:
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    user = await authenticate(ws, token if scheme.lower() == "bearer" else None)
    if user is None:
        return
    await ws.accept()
    await ws.send_json({"hello": user})
    await serve_user(ws, user)


# --8<-- [end:header]


async def serve_user(ws: WebSocket, user: str) -> None:
    """What an authenticated connection gets: its messages back, signed."""
    async for text in ws.iter_text():
        await ws.send_json({"from": user, "text": text})


if __name__ == "__main__":
    app.serve()
