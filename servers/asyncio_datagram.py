"""Loop.create_datagram_endpoint with an asyncio.DatagramProtocol: a callback per datagram.

Where the concurrency comes from: asyncio's event loop waits on the one UDP
socket and calls ``datagram_received(data, addr)`` for each datagram it
reads; the protocol answers it with :func:`servers.protocol.answer_datagram`
(via ``new_session.datagram``) and ``transport.sendto``.  No task, no
connection, no per-client object: ``asyncio_protocol``'s callbacks without
the connections.  A WORK wait is a ``loop.call_later`` timer that sends the
reply when it fires; an offload goes to the loop's default thread pool
(``loop.run_in_executor``), the reply sent when it is done.

What it costs: the loop's Python around every ``recvfrom`` and ``sendto``
(the selector's ``select``, the transport's read loop), one thread, one
core.  ``asyncio``'s datagram transport reads up to 256 KiB a call, so a
65,000-byte datagram is whole.

How it fails: a blocking callback stalls every client -- a compute or a
block in the handler runs in the loop's one thread, and the datagrams meanwhile
wait in the socket's receive buffer or are dropped by the kernel
(``RcvbufErrors``) once it is full.  A flood only drops datagrams: the loop
reads as fast as it can and never falls behind in memory (asyncio's
datagram transport has no read backpressure; what it cannot read the kernel
drops).  Replies the kernel will not take at once are buffered by the
transport, without bound of its own.

How it is protected: at most ``--max-clients`` (default 1,024) WORK waits
and offloads in progress at once; the next is answered ``ERROR server
busy``, so a flood of 10-second waits cannot fill the timer heap or the
executor's queue without bound.  While the transport's reply buffer is over
its high-water mark (``pause_writing``, 64 KiB) replies are dropped, not
queued: a lost reply is what UDP means anyway, and memory stays bounded.
Malformed input: a datagram shorter than a header is dropped, one whose
length field disagrees with its size is answered ERROR, LIST/GET/PUT/QUIT
``ERROR use TCP`` (docs/PROTOCOL.md, "Datagrams").  ``error_received`` (an
ICMP error for an earlier reply) is ignored: it concerns one client's lost
reply.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from servers._asyncio_shared import stop_signal
from servers._datagram import datagram_entry
from servers.protocol import BUSY_REPLY, Session, Work, WorkKind, work_reply
from servers.service import block
from servers.tuning import Limits


def serve(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the datagram protocol on the standard asyncio loop until SIGTERM/SIGINT."""
    asyncio.run(serve_datagrams(sock, new_session, limits))


async def serve_datagrams(
    sock: socket.socket, new_session: Callable[[], Session], limits: Limits
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DatagramProtocol(datagram_entry(new_session), limits), sock=sock
    )
    try:
        await stop_signal()
    finally:
        transport.close()


class DatagramProtocol(asyncio.DatagramProtocol):
    """Every datagram of every client: answered now, or once its WORK is done."""

    def __init__(self, answer: Callable[[bytes], bytes | Work | None], limits: Limits) -> None:
        self.answer = answer
        self.limit = limits.max_clients or 1 << 30
        self.waiting = 0  # WORK waits and offloads in progress
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False  # the transport's reply buffer is over its high-water mark

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.answer(data)
        if type(reply) is Work:
            self.start_work(reply, addr)
        elif reply is not None:
            self.send(reply, addr)

    def start_work(self, work: Work, addr: tuple[str, int]) -> None:
        """The loop's own way to wait: a timer, or the executor for a blocking call."""
        if self.waiting >= self.limit:
            self.send(BUSY_REPLY, addr)
            return
        self.waiting += 1
        loop = asyncio.get_running_loop()
        if work.kind == WorkKind.OFFLOAD:
            done = loop.run_in_executor(None, block, work.seconds)
            done.add_done_callback(lambda _: self.finish_work(work, addr))
        else:
            loop.call_later(work.seconds, self.finish_work, work, addr)

    def finish_work(self, work: Work, addr: tuple[str, int]) -> None:
        self.waiting -= 1
        self.send(work_reply(work), addr)

    def send(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.paused and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def pause_writing(self) -> None:
        self.paused = True  # the kernel takes no more for now: drop, do not queue

    def resume_writing(self) -> None:
        self.paused = False

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an earlier reply: that client's loss, nobody else's
