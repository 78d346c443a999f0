"""TLS for ``serve``: the server-side context, from a context or from PEM files."""

from __future__ import annotations

import os
import ssl


def server_context(
    context: ssl.SSLContext | None,
    certfile: str | os.PathLike[str] | None,
    keyfile: str | os.PathLike[str] | None,
) -> ssl.SSLContext | None:
    """The context to serve with: ``context`` as given, or one made from the
    files with the standard library's defaults for a server (TLS 1.2 or
    newer, its default ciphers); None for plain TCP."""
    if certfile is None:
        if keyfile is not None:
            raise ValueError("keyfile given without certfile; pass certfile= (and keyfile= if separate)")
        return context
    if context is not None:
        raise ValueError("pass either ssl= (a context) or certfile=/keyfile=, not both")
    made = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Only HTTP/1.1 exists here: a client that offers h2 must not get it.
    made.set_alpn_protocols(["http/1.1"])
    made.load_cert_chain(certfile, keyfile)
    return made
