"""``socketserver`` ``ThreadingMixIn`` + ``TCPServer`` + ``StreamRequestHandler``.

Where the concurrency comes from: the standard library's ``socketserver``
puts the model in one overridable method, ``process_request``.
``ThreadingMixIn`` overrides it to start a thread per connection -- the same
model as ``thread_per_client``, in one line of mixins.  The handler reads
through ``rfile`` (a buffered reader over the socket) and writes through
``wfile``.

What it costs: as ``thread_per_client`` -- a thread and its stack per client,
the GIL -- plus ``serve_forever``'s ``selector.select(poll_interval)`` before
every ``accept`` and the buffered file objects per connection.

How it fails: as ``thread_per_client``.  ``daemon_threads = True`` so that a
client that never leaves cannot block shutdown (``server_close`` would
otherwise join every thread).
"""

from __future__ import annotations

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
        server.server_close()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The whole concurrency model is the first base class."""

    daemon_threads = True

    def __init__(self, listener: socket.socket, new_session: Callable[[], Session]) -> None:
        super().__init__(listener.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # TCPServer made its own socket; use the one we were given
        self.socket = listener
        self.new_session = new_session


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        serve_stream(self.rfile.read1, self.wfile.write, self.server.new_session())
