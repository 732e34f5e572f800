"""``socketserver`` ``ForkingMixIn`` + ``TCPServer`` + ``StreamRequestHandler``.

Where the concurrency comes from: the standard library's ``socketserver``
puts the model in one overridable method, ``process_request``.
``ForkingMixIn`` overrides it to ``fork()`` a child per connection -- the same
model as ``fork_per_client``, in one line of mixins.  The handler reads
through ``rfile`` (a buffered reader over the socket) and writes through
``wfile``.

What it costs: as ``fork_per_client`` -- a fork per connection, a process per
client -- plus ``serve_forever``'s ``selector.select(poll_interval)`` before
every ``accept``.

How it fails: children are reaped in ``service_actions`` (every
``poll_interval``, 0.5 s, and after each request) with ``waitpid(WNOHANG)``,
so a finished child is a zombie for up to half a second.  ``max_children``
is 40: with 40 live children the server *blocks* in ``waitpid`` until one
exits, so the 41st simultaneous client waits.  On shutdown we terminate the
children ourselves: ``server_close`` waits for every child, and a child
serving an idle client would never finish.  Not available without ``fork()``.
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
from collections.abc import Callable

from servers._blocking import serve_stream
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run socketserver's ``serve_forever`` on the listener we were given."""
    server = Server(listener, new_session)
    try:
        server.serve_forever()
    finally:
        stop_children(server)
        server.server_close()


class Server(socketserver.ForkingMixIn, socketserver.TCPServer):
    """The whole concurrency model is the first base class."""

    def __init__(self, listener: socket.socket, new_session: Callable[[], Session]) -> None:
        super().__init__(listener.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # TCPServer made its own socket; use the one we were given
        self.socket = listener
        self.new_session = new_session


class Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        # In the child: default signal dispositions, so SIGTERM ends it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        super().setup()

    def handle(self) -> None:
        serve_stream(self.rfile.read1, self.wfile.write, self.server.new_session())


def stop_children(server: Server) -> None:
    """Terminate the children still serving clients; server_close then reaps them."""
    for pid in list(server.active_children or ()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
