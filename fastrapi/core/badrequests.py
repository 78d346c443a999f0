"""One short line per malformed request, and only a few of them a second.

Anyone who can reach the port can send garbage instead of HTTP, as often as
they like: a traceback, or even a line, for every bad request would let a
remote client fill the server's log at will. Backends report each request
their HTTP parser refused here; the first few in each window get one line
each, the rest are counted and summed up in one line when the window ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastrapi.core.request import Address

logger = logging.getLogger("fastrapi.http")

LINES_PER_WINDOW = 5
WINDOW = 10.0  # seconds
MAX_REASON = 120  # characters of the parser's complaint that are kept


class BadRequestLog:
    """Logs refused requests: at most ``lines`` every ``window`` seconds, then a count."""

    def __init__(
        self,
        lines: int = LINES_PER_WINDOW,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lines = lines
        self.window = window
        self._clock = clock
        self._window_end = 0.0
        self._logged = 0  # lines written in the current window
        self._suppressed = 0  # bad requests not written in the current window
        self._summary: asyncio.TimerHandle | None = None

    def __call__(self, client: Address | str | None, reason: str) -> None:
        now = self._clock()
        if now >= self._window_end:
            self.flush()
            self._window_end = now + self.window
            self._logged = 0
        if self._logged < self.lines:
            self._logged += 1
            logger.info("%s - bad request: %s", _client(client), shorten(reason))
            return
        self._suppressed += 1
        if self._summary is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop to wait on: the next bad request writes the summary
            self._summary = loop.call_later(max(self._window_end - now, 0.0), self.flush)

    def flush(self) -> None:
        """Write the count of bad requests not logged so far, if any."""
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        if self._suppressed:
            logger.info("%d more bad requests in %.0f seconds were not logged", self._suppressed, self.window)
            self._suppressed = 0


def shorten(reason: str) -> str:
    """The complaint on one line: whitespace runs become one space, control characters
    are escaped, and it is cut to `MAX_REASON` characters."""
    text = " ".join(reason.split())
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _client(client: Address | str | None) -> str:
    if client is None:
        return "-"
    if isinstance(client, Address):
        return f"{client.host}:{client.port}"
    return client


log_bad_request = BadRequestLog()
"""The process's one log of bad requests: ``log_bad_request(client, reason)``."""
