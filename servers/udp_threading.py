"""``socketserver`` ``ThreadingUDPServer``: a thread per datagram.

Where the concurrency comes from: ``ThreadingMixIn`` overrides
``process_request`` to start a thread for every request -- and over UDP a
request is one datagram, so a thread is started and ended per datagram,
not per client.  The notes' ``ThreadingUDPServer`` is exactly
``ThreadingMixIn`` + ``UDPServer``.  The main thread reads (``recvfrom``);
each thread answers one datagram with :func:`servers.protocol.answer_datagram`
(via ``new_session.datagram``) and ``sendto``, and ends.

What it costs: ``thread_per_client``'s thread start and exit, paid on every
request instead of once per connection -- the thread is the costliest thing
a 64-byte ECHO does here (``clone``, the GIL handed over twice, ``futex``
wake-ups: the ``udp-echo`` table's system calls per request show it).
``max_packet_size`` is raised from socketserver's 8,192 to 65,535 bytes so
that a 65,000-byte ECHO is read whole.

How it fails: a flood starts a thread per datagram as fast as the main
thread can read them; each is short, but a WORK wait holds its thread for
its whole length, so a flood of waits would start threads without bound.
The GIL serialises the Python of all of them.  Datagrams the main thread
cannot read in time are dropped by the kernel (``RcvbufErrors``).  A long
WORK request holds only its own thread: a wait, a block or an offload
(served as block: a thread per datagram needs no executor) sleeps with the
GIL released; a compute holds the GIL, so the threads share one core.

How it is protected: a semaphore counts the datagrams in progress
(``process_request``, the model's one hook); at ``--max-clients`` (default
1,024) the next datagram is answered ``ERROR server busy`` by the main
thread, without a thread.  ``daemon_threads = True``: a thread in a long
wait cannot hold up shutdown.  Malformed input: a datagram shorter than a
header is dropped, one whose length field disagrees with its size is
answered ERROR, LIST/GET/PUT/QUIT ``ERROR use TCP`` (docs/PROTOCOL.md,
"Datagrams").  A ``sendto`` that fails loses that reply only.
"""

from __future__ import annotations

import socket
import socketserver
import threading
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
        server.server_close()


class Server(socketserver.ThreadingMixIn, socketserver.UDPServer):
    """The whole concurrency model is the first base class; the rest is protection."""

    daemon_threads = True  # a thread in a 10 s WORK wait must not hold up shutdown
    max_packet_size = 65_535  # socketserver reads 8,192 bytes unless told: a datagram is whole

    def __init__(
        self, sock: socket.socket, new_session: Callable[[], Session], limits: Limits
    ) -> None:
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # UDPServer made its own socket; use the one we were given
        self.socket = sock
        self.answer = datagram_entry(new_session)
        self.in_progress = threading.BoundedSemaphore(limits.max_clients or 1 << 30)

    def process_request(self, request: tuple[bytes, socket.socket], client_address: object) -> None:
        if not self.in_progress.acquire(blocking=False):  # no thread for this one
            send_reply(request[1], BUSY_REPLY, client_address)
            return
        try:
            super().process_request(request, client_address)  # starts the thread
        except RuntimeError:  # can't start new thread: no thread for this one either
            self.in_progress.release()
            send_reply(request[1], BUSY_REPLY, client_address)

    def process_request_thread(self, request: object, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.in_progress.release()


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.answer(data)
        if type(reply) is Work:  # only this datagram's thread waits
            time.sleep(reply.seconds)
            reply = work_reply(reply)
        if reply is not None:
            send_reply(sock, reply, self.client_address)
