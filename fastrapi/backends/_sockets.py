"""What the asyncio-based backends share about dropping a connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from socket import socket
from ssl import SSLContext

from fastrapi.core.request import Address


async def listen(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    tls: SSLContext | None,
    sock: socket | None,
) -> asyncio.Server:
    """``loop.create_server`` on ``host:port``, or on the socket the core bound (`Backend.run`)."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(factory, sock=sock, ssl=tls)
    return await loop.create_server(factory, host, port, ssl=tls)


def drop(transport: asyncio.BaseTransport | None, grace: float) -> None:
    """Close ``transport`` now, letting frames still queued (a Close, say) go out
    first for at most ``grace`` seconds; a peer that reads nothing is cut off
    then all the same. Idempotent.
    """
    if transport is None or transport.is_closing():
        return
    if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        transport.close()  # asyncio closes the socket only once the buffer is flushed
        asyncio.get_running_loop().call_later(grace, _cut_if_stuck, transport)
    else:
        transport.close()


def _cut_if_stuck(transport: asyncio.WriteTransport) -> None:
    # Flushed and closed meanwhile, the transport is gone: aborting it then fails.
    if transport.get_write_buffer_size():
        transport.abort()


def peer_address(transport: asyncio.BaseTransport | None) -> Address | None:
    """The client's host and port; None for a UNIX socket or a transport already gone."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peer, tuple):
        return None
    # tuple.__new__ straight: a NamedTuple's own __new__ is a Python call, on every connection.
    return tuple.__new__(Address, (str(peer[0]), int(peer[1])))
