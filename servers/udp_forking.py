"""``socketserver`` ``ForkingUDPServer``: a process per datagram.

Where the concurrency comes from: ``ForkingMixIn`` overrides
``process_request`` to ``fork()`` a child for every request -- and over UDP a
request is one datagram, so a process is forked, runs one
:func:`servers.protocol.answer_datagram` (via ``new_session.datagram``) and a
``sendto``, and exits, per datagram.  The notes' ``ForkingUDPServer`` is
exactly ``ForkingMixIn`` + ``UDPServer``.  The parent only reads, forks and
reaps.

What it costs: a ``fork`` (the parent's page tables copied, copy-on-write
faults in the child), an ``exit`` and a ``waitpid`` for every datagram: the
dearest way there is to answer 64 bytes, and the ``udp-echo`` table's CPU µs
and system calls per request show by how much.  In exchange the children
use every core and share no GIL.  ``max_packet_size`` is raised from
socketserver's 8,192 to 65,535 bytes so that a 65,000-byte ECHO is read
whole.

How it fails: children are reaped in ``service_actions`` (after each
request and every ``poll_interval``, 0.5 s) with ``waitpid(WNOHANG)``, so a
finished child is a zombie until the next datagram or half a second.
``max_children`` is 40: with 40 live children ``collect_children`` *blocks*
in ``waitpid`` until one exits, and the whole server with it.  While the
parent forks, datagrams wait in the receive buffer, and a flood overflows it:
the kernel drops them (``RcvbufErrors``).  A long WORK request costs only
its own child: a wait, a block or an offload (served as block) sleeps there,
a compute runs there on any core.  Not available without ``fork()``.

How it is protected, in socketserver's hooks: ``verify_request`` reaps the
children that have exited, then answers the datagram ``ERROR server busy``
(no fork) when the live children reach the limit: ``max_children`` - 1 =
39, so that the blocking wait above never happens, or ``--max-clients`` if
lower.  The server's process tree therefore never holds more than 40
processes.  A datagram whose ``fork()`` fails is answered busy the same way.
On shutdown the children still waiting are terminated (``server_close``
waits for every child).  Malformed input: a datagram shorter than a header
is dropped, one whose length field disagrees with its size is answered
ERROR, LIST/GET/PUT/QUIT ``ERROR use TCP`` (docs/PROTOCOL.md, "Datagrams").
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import time
from collections.abc import Callable

from servers._datagram import datagram_entry, send_reply
from servers.protocol import BUSY_REPLY, Session, Work, work_reply
from servers.tuning import STOP_CHECK, Limits


def serve(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run socketserver's ``serve_forever`` on the UDP socket we were given."""
    server = Server(sock, new_session, limits)
    try:
        server.serve_forever(poll_interval=STOP_CHECK)  # 0.5 s, its default
    finally:
        stop_children(server)
        server.server_close()


class Server(socketserver.ForkingMixIn, socketserver.UDPServer):
    """The whole concurrency model is the first base class; the rest is protection."""

    max_children = 40  # ForkingMixIn's default, said out loud: it blocks at this many
    max_packet_size = 65_535  # socketserver reads 8,192 bytes unless told: a datagram is whole

    def __init__(
        self, sock: socket.socket, new_session: Callable[[], Session], limits: Limits
    ) -> None:
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # UDPServer made its own socket; use the one we were given
        self.socket = sock
        self.answer = datagram_entry(new_session)
        # One below max_children: at max_children live, collect_children blocks everyone.
        self.child_limit = min(limits.max_clients or self.max_children, self.max_children - 1)

    def verify_request(self, request: tuple[bytes, socket.socket], client_address: object) -> bool:
        self.collect_children()  # reap the exited, without blocking: below max_children
        if len(self.active_children or ()) < self.child_limit:
            return True
        send_reply(request[1], BUSY_REPLY, client_address)
        return False

    def process_request(self, request: tuple[bytes, socket.socket], client_address: object) -> None:
        try:
            super().process_request(request, client_address)
        except OSError:  # fork failed (EAGAIN, ENOMEM): no process for this datagram
            send_reply(request[1], BUSY_REPLY, client_address)


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def setup(self) -> None:
        # In the child: default signal dispositions, so SIGTERM ends it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.answer(data)
        if type(reply) is Work:  # only this datagram's process waits
            time.sleep(reply.seconds)
            reply = work_reply(reply)
        if reply is not None:
            send_reply(sock, reply, self.client_address)


def stop_children(server: Server) -> None:
    """Terminate the children still answering; server_close then reaps them."""
    for pid in list(server.active_children or ()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
