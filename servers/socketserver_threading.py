"""``socketserver`` ``ThreadingMixIn`` + ``TCPServer`` + ``StreamRequestHandler``.

Where the concurrency comes from: the standard library's ``socketserver``
puts the model in one overridable method, ``process_request``.
``ThreadingMixIn`` overrides it to start a thread per connection -- the same
model as ``thread_per_client``, in one line of mixins.  The handler reads
through ``rfile`` (a buffered reader over the socket).

What it costs: as ``thread_per_client`` -- a thread and its stack per client,
the GIL -- plus ``serve_forever``'s ``selector.select(poll_interval)`` before
every ``accept`` and the buffered file objects per connection.

How it fails: as ``thread_per_client``.  Out of descriptors, plain
``socketserver`` spins: the listener stays readable, ``get_request``'s
``accept()`` fails with ``EMFILE`` and ``_handle_request_noblock`` swallows
the error and selects again, at 100% of a core.  ``daemon_threads = True`` so
that a client that never leaves cannot block shutdown (``server_close``
would otherwise join every thread).  A long WORK request too: a wait, a
block or an offload (served as block) holds only the client's own thread,
with the GIL released; a compute holds the GIL, so the threads share one
core.  Measured (a full run on a busy 2-core VM, README's 'What the handler
does'): beside one client's 20,000-unit computes (about 16 ms here) the
other clients' p50 was 225 µs; under cpu-bound it used 1.01 cores; beside a
10 ms blocking call their p50 was 462 µs, 1.4 ms offloaded.

How it is protected, in socketserver's hooks: ``get_request`` accepts through
a descriptor held in reserve (:class:`~servers._blocking.SpareDescriptor`):
out of descriptors, the excess client is answered ``ERROR server busy`` and
closed, the backlog drains and the loop sleeps in ``select`` instead of
spinning.  ``verify_request`` refuses client ``--max-clients`` + 1 (default
1,024) with the same frame, counting the live handler threads with a
semaphore.  Timeouts are the blocking family's socket timeouts
(servers/_blocking.py, :class:`~servers._blocking.TimedSocket`), set before
each read: socketserver's own ``StreamRequestHandler.timeout`` is one fixed
value for every read, which cannot say "what is left of this request's
time".  Replies go straight to the socket, not through ``wfile``: its
``write`` is ``sendall``, whose timeout bounds the whole reply rather than
each step of progress.  The cost is one more system call per read and per
write (the ``poll`` behind a socket timeout).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable

from servers._blocking import SpareDescriptor, refuse, send_if_room, serve_timed
from servers.protocol import BUSY_REPLY, Session
from servers.tuning import STOP_CHECK, Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run socketserver's ``serve_forever`` on the listener we were given."""
    server = Server(listener, new_session, limits)
    try:
        server.serve_forever(poll_interval=STOP_CHECK)  # 0.5 s, its default
    finally:
        server.server_close()
        server.spare.close()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The whole concurrency model is the first base class; the rest is protection."""

    daemon_threads = True

    def __init__(
        self, listener: socket.socket, new_session: Callable[[], Session], limits: Limits
    ) -> None:
        super().__init__(listener.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # TCPServer made its own socket; use the one we were given
        self.socket = listener
        self.new_session = new_session
        self.limits = limits
        self.spare = SpareDescriptor()
        # A semaphore with no limit never blocks: one code path for both cases.
        self.slots = threading.Semaphore(limits.max_clients or 2**31 - 1)

    def get_request(self) -> tuple[socket.socket, object]:
        accepted = self.spare.accept(self.socket)
        if accepted is None:  # refused or nobody: socketserver skips an OSError quietly
            raise OSError("no client to serve")
        return accepted

    def verify_request(self, request: socket.socket, client_address: object) -> bool:
        if self.slots.acquire(blocking=False):
            return True
        send_if_room(request, BUSY_REPLY)  # socketserver closes it (shutdown_request)
        return False

    def process_request(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # can't start new thread: give the place back, refuse
            self.slots.release()
            refuse(request)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class Handler(socketserver.StreamRequestHandler):
    server: Server

    def handle(self) -> None:
        server = self.server
        serve_timed(self.connection, server.new_session(), server.limits, self.rfile.read1)
