"""``socketserver`` ``ForkingMixIn`` + ``TCPServer`` + ``StreamRequestHandler``.

Where the concurrency comes from: the standard library's ``socketserver``
puts the model in one overridable method, ``process_request``.
``ForkingMixIn`` overrides it to ``fork()`` a child per connection -- the same
model as ``fork_per_client``, in one line of mixins.  The handler reads
through ``rfile`` (a buffered reader over the socket).

What it costs: as ``fork_per_client`` -- a fork per connection, a process per
client -- plus ``serve_forever``'s ``selector.select(poll_interval)`` before
every ``accept``.

How it fails: children are reaped in ``service_actions`` (every
``poll_interval``, 0.5 s, and after each request) with ``waitpid(WNOHANG)``,
so a finished child is a zombie for up to half a second.  ``max_children``
is 40: with 40 live children ``collect_children`` *blocks* in ``waitpid``
until one exits, and the whole server with it -- 40 idle clients deny service
to everyone.  On shutdown we terminate the children ourselves:
``server_close`` waits for every child, and a child serving an idle client
would never finish.  Not available without ``fork()``.  A long WORK request
costs only its own client: a wait, a block or an offload (served as block: a
process per client needs no executor) sleeps in that child, and a compute
runs in that child alone, on any core -- the processes share no GIL.
Measured (a full run on a busy 2-core VM, README's 'What the handler does'):
beside one client's 20,000-unit computes (about 16 ms here) the other
clients' p50 was 306 µs; under cpu-bound it used 1.67 cores; beside a 10 ms
blocking call their p50 was 754 µs, 2.3 ms offloaded.

How it is protected, in socketserver's hooks: ``verify_request`` reaps the
children that have exited, then refuses a client with ``ERROR server busy``
(and socketserver closes it) when the live children reach the client limit:
``max_children`` - 1 = 39, so that the blocking wait above never happens, or
``--max-clients`` if lower (there is no other default).  A client whose
``fork()`` fails is refused the same way.  Each child's socket has the
blocking family's timeouts (servers/_blocking.py,
:class:`~servers._blocking.TimedSocket`), set before each read -- an idle
client is closed after ``--idle-timeout``, a request still incomplete
``--request-timeout`` after its first byte is answered ``ERROR request
timeout``, a send that makes no progress for as long gives up -- so a silent
client frees its place; socketserver's own ``StreamRequestHandler.timeout``
is one fixed value for every read and cannot say "what is left of this
request's time".  Replies go straight to the socket, not through ``wfile``,
whose ``sendall`` timeout would bound the whole reply rather than each step
of progress.  The cost is one more system call per read and per write (the
``poll`` behind a socket timeout), in the child.  The parent closes each
connection once it has forked; should it still run out of descriptors,
``get_request`` answers the excess client with a descriptor held in reserve
(:class:`~servers._blocking.SpareDescriptor`) instead of spinning.
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
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
        stop_children(server)
        server.server_close()
        server.spare.close()


class Server(socketserver.ForkingMixIn, socketserver.TCPServer):
    """The whole concurrency model is the first base class; the rest is protection."""

    max_children = 40  # ForkingMixIn's default, said out loud: it blocks at this many

    def __init__(
        self, listener: socket.socket, new_session: Callable[[], Session], limits: Limits
    ) -> None:
        super().__init__(listener.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # TCPServer made its own socket; use the one we were given
        self.socket = listener
        self.new_session = new_session
        self.limits = limits
        self.spare = SpareDescriptor()
        # One below max_children: at max_children live, collect_children blocks everyone.
        self.client_limit = min(limits.max_clients or self.max_children, self.max_children - 1)

    def get_request(self) -> tuple[socket.socket, object]:
        accepted = self.spare.accept(self.socket)
        if accepted is None:  # refused or nobody: socketserver skips an OSError quietly
            raise OSError("no client to serve")
        return accepted

    def verify_request(self, request: socket.socket, client_address: object) -> bool:
        self.collect_children()  # reap the exited, without blocking: below max_children
        if len(self.active_children or ()) < self.client_limit:
            return True
        send_if_room(request, BUSY_REPLY)  # socketserver closes it (shutdown_request)
        return False

    def process_request(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request(request, client_address)
        except OSError:  # fork failed (EAGAIN, ENOMEM): no process for this client
            refuse(request)


class Handler(socketserver.StreamRequestHandler):
    server: Server

    def setup(self) -> None:
        # In the child: default signal dispositions, so SIGTERM ends it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        self.server.spare.close()  # only the parent accepts
        super().setup()

    def handle(self) -> None:
        server = self.server
        serve_timed(self.connection, server.new_session(), server.limits, self.rfile.read1)


def stop_children(server: Server) -> None:
    """Terminate the children still serving clients; server_close then reaps them."""
    for pid in list(server.active_children or ()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
