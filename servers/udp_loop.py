"""Socketserver.UDPServer: one datagram at a time (the notes' UDP loop server).

Where the concurrency comes from: nowhere, and over UDP that is less of a
loss than over TCP.  There is no connection to hold: ``serve_forever`` waits
for the socket to be readable, ``recvfrom`` takes one datagram, the handler
answers it with ``sendto`` to the address it came from, and the next
datagram -- from the same client or another -- is next.  No client can
occupy the server between two of its requests, so 64 flows are served in
turn where ``blocking_loop`` serves one client to the end.  The protocol is
:func:`servers.protocol.answer_datagram` (via ``new_session.datagram``): one
datagram is one frame, and this file holds only the loop.

What it costs: per datagram a ``select`` (``serve_forever``'s
``poll_interval`` wait), a ``recvfrom``, a ``sendto``, and socketserver's
Python around them (a handler object per datagram).  No accept, no
connection state, no per-client descriptor.  ``UDPServer.max_packet_size``
is 8,192 by default: a larger datagram would be cut short (and its length
field would then disagree with its size); it is raised to 65,535 here so
that a 65,000-byte ECHO is read whole.

How it fails: a long request stops everyone for its whole length -- a WORK
wait (the one thread sleeps), a compute, a block, an offload (served as
block: nothing to offload to).  Meanwhile datagrams queue in the socket's
receive buffer (``net.core.rmem_default``, about 208 KiB) and, once it is
full, the kernel drops them (``RcvbufErrors`` in ``/proc/net/snmp``): UDP
drops where TCP pushes back.  The client sees a lost request, not an error.

How it is protected: there is nothing per client to run out of -- no
descriptor, no thread, no memory -- so a flood costs only the datagrams the
kernel drops, and service resumes as soon as it stops.  Malformed input
never costs anyone else: a datagram shorter than a header is dropped, one
whose length field disagrees with its size is answered ERROR
(docs/PROTOCOL.md, "Datagrams"), and LIST, GET, PUT and QUIT are answered
``ERROR use TCP`` without touching the served directory.  A ``sendto`` that
fails (the client's port closed: ``ECONNREFUSED`` from an ICMP error, or a
full send buffer) loses that reply only.  There is no idle or request timeout
to enforce: a datagram is whole or absent.
"""

from __future__ import annotations

import socket
import socketserver
import time
from collections.abc import Callable

from servers._datagram import datagram_entry, send_reply
from servers.protocol import Session, Work, work_reply
from servers.tuning import STOP_CHECK, Limits


def serve(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run socketserver's ``serve_forever`` on the UDP socket we were given."""
    server = Server(sock, new_session)
    try:
        server.serve_forever(poll_interval=STOP_CHECK)  # 0.5 s, its default
    finally:
        server.server_close()


class Server(socketserver.UDPServer):
    """The whole model is the base class: one ``recvfrom``, one handler, the next."""

    max_packet_size = 65_535  # socketserver reads 8,192 bytes unless told: a datagram is whole

    def __init__(self, sock: socket.socket, new_session: Callable[[], Session]) -> None:
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # UDPServer made its own socket; use the one we were given
        self.socket = sock
        self.answer = datagram_entry(new_session)


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.answer(data)
        if type(reply) is Work:  # the one thread waits: everyone waits with it
            time.sleep(reply.seconds)
            reply = work_reply(reply)
        if reply is not None:
            send_reply(sock, reply, self.client_address)
