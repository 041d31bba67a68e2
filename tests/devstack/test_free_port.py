"""The dev stack's port picking (pure unit: sockets on the loopback only).

Binding port 0 let the kernel hand two services of one stack the same port; the second one could
not bind, and its absence went unseen because the first one answered on that port."""

from __future__ import annotations

import socket

from rnpc_devstack.stack import _ephemeral_port_floor, free_port


def test_ports_are_never_handed_out_twice_and_stay_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < _ephemeral_port_floor() for port in ports)


def test_a_port_handed_out_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert sock.getsockname()[1] == port
