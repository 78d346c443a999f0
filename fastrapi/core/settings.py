"""Limits and timeouts: one object, the same meaning on every backend.

A backend maps each value onto its library's own knob, or enforces nothing
itself and leaves it to the core; it never keeps a default of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """Server settings, passed to ``FastrAPI(settings=...)`` or ``serve(settings=...)``.

    Attributes:
        max_message_size: largest message accepted, in bytes, counted after
            fragments are joined. A bigger one closes the connection with 1009
            before it is buffered whole.
        max_frame_size: largest payload of one data frame, in bytes, as it
            arrives (compressed, if it is). A bigger frame closes the
            connection with 1009 as soon as its header is read, before any of
            its payload. None (the default) means ``max_message_size``.
        max_queue: messages received but not yet read by the handler. When
            full, the server stops reading that socket, so TCP pushes back on
            the client instead of memory growing.
        write_limit: high-water mark of a connection's outgoing buffer, in
            bytes. A ``send_*`` that finds more than this not yet taken by the
            network waits for it to drain, so a client that reads slowly slows
            its handler down instead of making the server buffer for it.
        max_request_size: largest opening HTTP request (request line and
            headers) a backend buffers while it arrives, in bytes.
        max_line_size: longest request line or header line, in bytes; a
            longer request line gets HTTP 414, a longer header line 431.
        max_headers: most header lines in a request; more get HTTP 431.
        max_body_size: largest body of a plain HTTP request, in bytes. One
            announced bigger by Content-Length gets HTTP 413 before any of it
            is read; a chunked one gets 413 as soon as it grows past this.
        open_timeout: seconds for the opening handshake: the client's whole
            request must arrive, and the handler must accept or refuse it,
            within this time; otherwise the connection is dropped (a
            slowloris client holds nothing for long).
        ping_interval: seconds between the server's keepalive pings; None
            turns keepalive off.
        ping_timeout: seconds a keepalive ping waits for its pong before the
            connection is closed with 1011; a dead peer is noticed within
            ``ping_interval + ping_timeout``.
        idle_timeout: seconds without a message either way (pings do not
            count) after which the connection is closed with 1001; None
            (the default) never closes an idle connection.
        close_timeout: seconds to wait for the peer's half of the closing
            handshake before the TCP connection is dropped.
        shutdown_timeout: seconds open connections get, after the server
            sent them 1001 on shutdown, before their handlers are cancelled.
        compression: negotiate permessage-deflate (RFC 7692) with clients
            that offer it. Off by default: it costs CPU on every message and
            memory on every connection, and pays only for large, repetitive
            text. When on, the server compresses with a 4 KiB window (12 bits)
            where the library lets us choose, and decompression is bounded by
            ``max_message_size`` on every backend (a zip bomb closes with 1009).
        allowed_origins: if set, the handshake's ``Origin`` must match one of
            these (exact, like ``"https://example.com"``, or with ``*`` for
            any subdomain, like ``"https://*.example.com"``); a missing or
            other Origin gets HTTP 403 before the handler runs. This is the
            defence against cross-site WebSocket hijacking: browsers send
            cookies with a WebSocket handshake from any site.
    """

    max_message_size: int = 1 * MiB
    max_frame_size: int | None = None
    max_queue: int = 16
    write_limit: int = 32 * 1024
    max_request_size: int = 16 * 1024
    max_line_size: int = 8192
    max_headers: int = 128
    max_body_size: int = 1 * MiB
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    idle_timeout: float | None = None
    close_timeout: float = 10.0
    shutdown_timeout: float = 10.0
    compression: bool = False
    allowed_origins: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.allowed_origins is not None:
            if isinstance(self.allowed_origins, str):
                raise TypeError('allowed_origins takes a sequence of origins, e.g. ("https://example.com",)')
            object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        for name in (
            "max_message_size",
            "max_queue",
            "write_limit",
            "max_request_size",
            "max_line_size",
            "max_headers",
            "max_body_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if self.max_frame_size is not None and (
            not isinstance(self.max_frame_size, int) or self.max_frame_size < 1
        ):
            raise ValueError(f"max_frame_size must be a positive int or None, not {self.max_frame_size!r}")
        for name in ("open_timeout", "close_timeout", "shutdown_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        for name in ("ping_interval", "ping_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ValueError(f"{name} must be a number of seconds > 0 or None, not {value!r}")

    @property
    def frame_limit(self) -> int:
        """The largest data frame accepted: ``max_frame_size``, else ``max_message_size``."""
        return self.max_message_size if self.max_frame_size is None else self.max_frame_size
