"""What the asyncio variants share: the stop signal, and the protocol class.

Not a variant.  :func:`stop_signal` is how every asyncio server waits for
SIGTERM/SIGINT; :class:`SessionProtocol` and :func:`serve_protocol` are the
``asyncio.Protocol`` server that ``asyncio_protocol`` runs on asyncio's own
loop and ``uvloop_protocol`` runs, unchanged, on uvloop's -- so the gap
between those two variants is the loop and nothing else.

:class:`SessionProtocol` is one client: the transport calls
``data_received`` with the bytes it read, which go to the session; its reply
goes to ``transport.write``.  Backpressure is the transport's: above its
high-water mark (``HIGH_WATER``, as in the hand-written reactors) it calls
``pause_writing``, and we answer with ``transport.pause_reading()``;
``resume_writing`` resumes, and answers any requests the session held back
(``resume()``) first.  After QUIT, ``write_eof()`` sends the FIN behind the
last reply and the transport keeps reading until the peer closes, so that a
close with unread input cannot RST the reply away.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from typing import cast

from servers.protocol import Session
from servers.tuning import HIGH_WATER, LINGER_LIMIT, LISTEN_BACKLOG, LOW_WATER

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def stop_signal() -> None:
    """Return when SIGTERM or SIGINT arrives (the command line's own handlers come back after).

    ``loop.add_signal_handler`` stops the loop cleanly between callbacks,
    rather than an exception unwinding through the middle of the event loop.
    """
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, lambda: stopped.done() or stopped.set_result(None))
    try:
        await stopped
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)  # leaves SIG_DFL: a second SIGTERM would kill
            signal.signal(signum, handler)


async def serve_protocol(listener: socket.socket, new_session: Callable[[], Session]) -> None:
    """Serve with :class:`SessionProtocol` on the running loop (asyncio's or uvloop's)."""
    loop = asyncio.get_running_loop()
    live: set[SessionProtocol] = set()
    server = await loop.create_server(
        lambda: SessionProtocol(new_session(), live), sock=listener, backlog=LISTEN_BACKLOG
    )
    try:
        await stop_signal()
    finally:
        server.close()
        for protocol in list(live):
            protocol.abort()
        await server.wait_closed()


class SessionProtocol(asyncio.Protocol):
    """One client: the transport's bytes go to the session, its replies go back."""

    def __init__(self, session: Session, live: set[SessionProtocol]) -> None:
        self.session = session
        self.live = live
        self.transport: asyncio.Transport | None = None
        self.discarded = 0  # bytes read and thrown away after closing
        self.writing_paused = False  # the transport holds over HIGH_WATER unsent bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.live.add(self)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session.closing:  # lingering after QUIT: read only to avoid a RST
            self.linger(len(data))
            return
        reply = session.receive_data(data)
        if reply:
            self.transport.write(reply)  # type: ignore[union-attr]  # sends what it can
        if session.closing or session.pending:  # rare: QUIT, or the reply budget was spent
            self.answer_held_back()

    def answer_held_back(self) -> None:
        """After QUIT, send the FIN; else resume held-back requests until pushed back."""
        assert self.transport is not None
        while True:
            if self.session.closing:
                self.transport.write_eof()  # FIN once the buffer is flushed
                return
            if not self.session.pending or self.writing_paused:
                return  # resume_writing() comes back for the rest
            reply = self.session.resume()
            if reply:
                self.transport.write(reply)  # may call pause_writing() at once

    def linger(self, size: int) -> None:
        assert self.transport is not None
        self.discarded += size
        if self.discarded > LINGER_LIMIT:
            self.transport.abort()

    def eof_received(self) -> bool:
        return False  # the peer is done: close once our replies are flushed

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.writing_paused = True
        self.transport.pause_reading()  # backpressure: the client is over 1 MiB behind

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.writing_paused = False
        self.answer_held_back()
        if not self.writing_paused and not self.session.pending:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)

    def abort(self) -> None:
        """Shutdown: close at once, abandoning unsent replies."""
        if self.transport is not None:
            self.transport.abort()
