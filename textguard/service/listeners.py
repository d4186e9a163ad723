"""One listening socket per server process for `textguard serve --workers N`, joined by SO_REUSEPORT.

uvicorn's processes share the one socket their parent bound, and the process that wakes first accepts
every connection pending (uvloop and asyncio accept until the queue is empty). Clients that open their
connections together, as a proxy's pool or a load generator does, land unevenly: wrk's 32 connections
split 21:11, 21:11, 26:6 and 25:7 between two processes (2 AMD cores, MiniLM); in an earlier session its
4 connections all went to one process in 2 of 3 runs (the other process and its inference worker idle:
the bulk cell read 64% of offline). Here each process listens on a socket of its own, all bound to the
same address with SO_REUSEPORT, and the kernel spreads new connections between them by a hash of their
addresses.

How: the parent binds a `ReusePortListener` (which holds the port and is never listened on: the kernel
routes connections to listening sockets only) and hands it to uvicorn's supervisor as the socket to
serve; a process that unpickles it (each spawned worker process, and each replacement after a crash or
a SIGHUP restart) gets a new socket bound to the same address instead of a copy of the parent's.
A process's socket listens once its app is ready, so a process still loading gets no connections. A
port already in use is refused, even when its owner set SO_REUSEPORT too (a second server on the same
port would otherwise take a share of the first one's connections).

The price: connections still in a process's accept queue when that process stops are reset rather than
picked up by a sibling (the kernel does not move them unless `net.ipv4.tcp_migrate_req` is on, Linux
5.14+). Where SO_REUSEPORT does not spread connections (not Linux), or with `reuse_port` off, the
processes share the parent's socket as before.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

__all__ = ["ReusePortListener", "bind_reuse_port", "reuse_port_available"]


def reuse_port_available() -> bool:
    """SO_REUSEPORT that spreads connections between listeners: Linux 3.9+ (elsewhere the option exists
    with other meanings, e.g. the last socket bound takes every connection)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(family: int, address: Any, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A TCP socket of class `kind` bound to `address` with SO_REUSEPORT (and SO_REUSEADDR, as uvicorn
    binds), not yet listening, inheritable as uvicorn's own sockets are."""
    sock = kind(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortListener(socket.socket):
    """The parent's socket: bound with SO_REUSEPORT; pickled (into a spawned process), it becomes a new
    socket bound to the same address, so every process listens on its own."""

    @classmethod
    def for_address(cls, host: str, port: int) -> ReusePortListener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # SO_REUSEPORT lets any socket of the same user bind a port in use: a second server started on
        # the same port (or one not yet stopped) would silently take a share of the first one's
        # connections. A plain bind first makes a port in use an error, as it is without SO_REUSEPORT.
        with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]  # port 0: the one the kernel chose
        sock = bind_reuse_port(family, (host, port), cls)
        assert isinstance(sock, cls)
        return sock

    def __reduce__(self) -> tuple[Any, tuple[int, Any]]:
        # The address actually bound: with port 0 every process joins the port the parent was given.
        return bind_reuse_port, (int(self.family), self.getsockname())
