"""`textguard serve --workers N`: each process gets a listening socket of its own in one SO_REUSEPORT
group (textguard.service.listeners), so the kernel spreads connections between the processes."""

from __future__ import annotations

import contextlib
import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import pytest
import uvicorn

from textguard.errors import ConfigError
from textguard.service.listeners import ReusePortListener, reuse_port_available

pytestmark = pytest.mark.skipif(
    not reuse_port_available(), reason="SO_REUSEPORT spreads connections on Linux"
)


def _as_spawned_process_gets_it(listener: ReusePortListener) -> socket.socket:
    """What a process spawned by uvicorn's supervisor unpickles (multiprocessing's own pickler)."""
    sock = pickle.loads(bytes(ForkingPickler.dumps(listener)))
    assert isinstance(sock, socket.socket)
    return sock


def test_each_process_listens_on_its_own_socket_and_connections_spread() -> None:
    parent = ReusePortListener.for_address("127.0.0.1", 0)  # port 0: the processes join the one given
    port = parent.getsockname()[1]
    children = [_as_spawned_process_gets_it(parent) for _ in range(2)]
    clients: list[socket.socket] = []
    try:
        for child in children:
            assert child.getsockname() == ("127.0.0.1", port)
            assert child.fileno() != parent.fileno()
            assert child.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            child.listen(128)
            child.setblocking(False)
        for _ in range(64):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(client)
        accepted = []
        for child in children:
            count = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    connection, _ = child.accept()
                    connection.close()
                    count += 1
            accepted.append(count)
    finally:
        for sock in [*clients, *children, parent]:
            sock.close()
    # Every connection reached a process (none went to the parent's socket, which never listens), and
    # both processes got some: all 64 on one would have odds of 2**-63 under the kernel's hash.
    assert sum(accepted) == 64
    assert min(accepted) > 0, accepted


@pytest.mark.parametrize("other_server", ["plain socket", "another reuse-port server"])
def test_a_port_already_taken_is_one_line_before_any_process_starts(other_server: str) -> None:
    """Even when the port's owner set SO_REUSEPORT too: a second server must not share its traffic."""
    from textguard.cli.serve import _run_processes

    if other_server == "plain socket":
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
    else:
        taken = ReusePortListener.for_address("127.0.0.1", 0)
    with taken:
        taken.listen(1)
        port = taken.getsockname()[1]
        config = uvicorn.Config("textguard.service.asgi:app_from_env", factory=True, workers=2, port=port)
        expected = rf"cannot listen on 127\.0\.0\.1:{port}: Address already in use"
        with pytest.raises(ConfigError, match=expected):
            _run_processes(config, reuse_port=True)
