"""The port that the worker processes of ``serve(workers=N)`` share.

On Linux each worker binds a listening socket of its own with SO_REUSEPORT,
and the kernel spreads new connections across them by a hash of the
client's address and port: no worker accepts for the others, and a busy
one is not handed more than its share. The supervisor holds the port with
one more such socket, bound but never listening: it keeps the port (the
real one, when 0 was asked for) for the workers it starts later, and it
gets no connections.

Elsewhere (SO_REUSEPORT on the BSDs and macOS lets sockets share a port but
does not spread connections) the supervisor makes one listening socket and
every worker accepts on the copy it inherited.
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass
from typing import Any

from fastrapi.core.request import Address

logger = logging.getLogger("fastrapi.server")

REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
# asyncio's own default for create_server.
BACKLOG = 100
# (host, port), or (host, port, flowinfo, scope_id) for IPv6, as bind() takes it.
SocketAddress = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SharedPort:
    """The supervisor's socket on the port, and how each worker gets its own."""

    held: socket.socket  # bound; listening too unless reuse_port
    reuse_port: bool

    @property
    def address(self) -> Address:
        host, port = self.held.getsockname()[:2]
        return Address(str(host), int(port))

    def worker_socket(self) -> socket.socket:
        """In a worker process: the socket to serve on, bound to the shared port."""
        if not self.reuse_port:
            return self.held
        own = _bound(self.held.family, self.held.getsockname(), reuse_port=True)
        self.held.close()  # the worker's copy of the supervisor's hold on the port
        return own

    def close(self) -> None:
        self.held.close()


def share_port(host: str, port: int, reuse_port: bool | None = None) -> SharedPort:
    """Bind the port the workers will share (port 0: a free one), with
    SO_REUSEPORT where it spreads connections (`REUSE_PORT`) unless
    ``reuse_port`` says otherwise.

    Raises:
        OSError: the port is taken or not ours to use; ``socket.gaierror``
            when ``host`` does not resolve.
    """
    if reuse_port is None:
        reuse_port = REUSE_PORT
    family, address = _first_address(host, port)
    held = _bound(family, address, reuse_port)
    if not reuse_port:
        held.listen(BACKLOG)
    return SharedPort(held, reuse_port)


def _first_address(host: str, port: int) -> tuple[socket.AddressFamily, SocketAddress]:
    # One process serves every address of a name (asyncio binds each); a
    # socket shared with workers has one, so a name with several is served
    # on the first, and the log says so.
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = found[0]
    others = sorted({str(info[4][0]) for info in found} - {str(address[0])})
    if others:
        logger.warning(
            "%s is also %s; with workers, fastrapi listens on %s only", host, ", ".join(others), address[0]
        )
    return family, address


def _bound(family: int, address: SocketAddress, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As asyncio's create_server does: a restarted server need not wait
        # for the old connections' TIME_WAIT, and "::" is IPv6 only.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
