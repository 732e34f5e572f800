"""Gevent.server.DatagramServer: a greenlet per datagram.

Where the concurrency comes from: gevent's hub waits on the UDP socket;
``DatagramServer`` reads each datagram and spawns a greenlet to handle it,
which answers with :func:`servers.protocol.answer_datagram` (via
``new_session.datagram``) and ``server.sendto``.  A WORK wait is
``gevent.sleep`` in that greenlet: only it waits, the hub goes on reading.
An offload goes to the hub's thread pool.

What it costs: a greenlet spawned and finished per datagram (cheaper than a
thread, dearer than a callback), and the hub's Python around each read; one
thread, one core.  ``DatagramServer.do_read`` reads 8,192 bytes: a larger
datagram would be cut short (and its length field would then disagree with
its size), so ``do_read`` is overridden here to read 65,535.

How it fails: a blocking call stalls all -- a compute or a block in a
greenlet holds the hub, and meanwhile the datagrams wait in the socket's
receive buffer or are dropped by the kernel (``RcvbufErrors``) once it is
full.  A flood only drops datagrams.

How it is protected: greenlets are spawned from a ``gevent.pool.Pool`` of
``--max-clients`` (default 1,024): while it is full (1,024 datagrams in
progress, WORK waits say) the server stops reading, the kernel holds what
fits in the receive buffer and drops the rest, and reading resumes as soon
as a greenlet finishes -- gevent's own backpressure, so a flood of
10-second waits cannot spawn greenlets without bound.  Malformed input: a
datagram shorter than a header is dropped, one whose length field disagrees
with its size is answered ERROR, LIST/GET/PUT/QUIT ``ERROR use TCP``
(docs/PROTOCOL.md, "Datagrams").  A ``sendto`` that fails loses that reply
only.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from errno import EWOULDBLOCK

import gevent
from gevent.pool import Pool
from gevent.server import DatagramServer

from servers._datagram import datagram_entry
from servers.protocol import Session, Work, WorkKind, work_reply
from servers.service import block
from servers.tuning import Limits


def serve(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Serve forever; DatagramServer spawns a greenlet per datagram from the pool."""
    sock.setblocking(False)  # the hub waits for it to be readable, not recvfrom()
    server = Server(sock, datagram_entry(new_session), limits)
    # Python-level handlers run late under the hub; let gevent deliver these.
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    server.serve_forever()


class Server(DatagramServer):
    """gevent's own UDP server; the pool is the protection, ``do_read`` the size."""

    def __init__(
        self,
        sock: socket.socket,
        answer: Callable[[bytes], bytes | Work | None],
        limits: Limits,
    ) -> None:
        super().__init__(sock, spawn=Pool(limits.max_clients or None))
        self.answer = answer

    def do_read(self) -> tuple[bytes, object] | None:
        try:
            return self.socket.recvfrom(65_535)  # gevent reads 8,192: a datagram is whole
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == EWOULDBLOCK:
                return None
            raise

    def handle(self, data: bytes, address: object) -> None:
        """Already in a greenlet of the pool: answer this datagram."""
        reply = self.answer(data)
        if type(reply) is Work:
            do_work(reply)
            reply = work_reply(reply)
        if reply is not None:
            try:
                self.sendto(reply, address)
            except OSError:
                pass  # a closed port, a full buffer: this reply is lost alone


def do_work(work: Work) -> None:
    """A WORK request's wait, gevent's way: only this greenlet waits."""
    if work.kind == WorkKind.OFFLOAD:
        gevent.get_hub().threadpool.apply(block, (work.seconds,))
    else:
        gevent.sleep(work.seconds)
