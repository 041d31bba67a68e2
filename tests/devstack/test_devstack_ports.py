"""The dev stack's ports and readiness wait (pure unit: sockets on the loopback only).

Binding port 0 let the kernel hand two services of one stack the same port; the second one could
not bind, and its absence went unseen because the first one answered on that port."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from rnpc_devstack.stack import _ephemeral_port_floor, _ready_as, free_port


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


def test_a_port_answered_by_another_service_fails_the_wait_at_once() -> None:
    """What hid the shared port: evidence's wait was satisfied by scoring answering on it."""
    class Scoring(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook
            body = b'{"service": "scoring", "status": "ready", "checks": {}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Scoring)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert _ready_as(base, "scoring") is True
        with pytest.raises(RuntimeError, match="answers as 'scoring', not 'evidence'"):
            _ready_as(base, "evidence")
    finally:
        server.shutdown()
        server.server_close()
