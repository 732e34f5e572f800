"""What the asyncio variants share: the stop signal, the guarded listener, the protocol class.

Not a variant.  :func:`stop_signal` is how every asyncio server waits for
SIGTERM/SIGINT; :class:`SpareDescriptorListener` is how the three variants on
asyncio's own loop survive running out of descriptors; :class:`SessionProtocol`
and :func:`serve_protocol` are the ``asyncio.Protocol`` server that
``asyncio_protocol`` runs on asyncio's own loop and ``uvloop_protocol`` runs,
unchanged, on uvloop's -- so the gap between those two variants is the loop
and nothing else.

:class:`SessionProtocol` is one client: the transport calls
``data_received`` with the bytes it read, which go to the session; its reply
goes to ``transport.write``.  Backpressure is the transport's: above its
high-water mark (``HIGH_WATER``, as in the hand-written reactors) it calls
``pause_writing``, and we answer with ``transport.pause_reading()``;
``resume_writing`` resumes, and answers any requests the session held back
(``resume()``) first.  After QUIT, ``write_eof()`` sends the FIN behind the
last reply and the transport keeps reading until the peer closes, so that a
close with unread input cannot RST the reply away.

WORK, the callback way: when the session hands out a wait
(``session.work``), the protocol stops reading (``pause_reading``), stops
its clocks -- the wait is the server's time, not the client's idleness --
and asks the loop to call it back: ``loop.call_later(seconds)`` for a
*wait*; for an *offload*, ``loop.run_in_executor(None, block, seconds)``
runs the blocking call in the loop's default thread pool and a done-callback
on its future comes back.  Either way :meth:`SessionProtocol.finish_work`
then writes what ``session.work_done()`` returns, restarts the clocks and
reads again (unless the transport's backpressure still holds it).  The
other clients are served meanwhile.  :func:`do_work` is the same two
idioms for the coroutine variants (``asyncio.sleep``,
``asyncio.to_thread``).

Timeouts (:class:`servers.tuning.Limits`) are one ``loop.call_later`` timer
per connection, armed for the nearest deadline and never moved on the hot
path: ``data_received`` only notes the time (one ``time.monotonic()``) and
whether a request is in progress; when the timer fires it works out the real
deadline from those notes and either closes the connection or re-arms itself
for the new deadline.  An active client therefore costs one timer callback
per idle timeout, not one timer per request.  Only a deadline that moves
*earlier* -- a request begins (request timeout shorter than idle), output
backs up -- cancels and re-arms the timer.  The rules, checked in this order:
output waiting and not moving for ``request_timeout`` -> abort; a request
begun ``request_timeout`` ago and not complete -> ``TIMEOUT_REPLY`` and close;
no input for ``idle_timeout`` -> close.

Client limit: ``connection_made`` of client N+1 writes ``BUSY_REPLY`` and
closes; the transport was already made, so a refused client costs one
accept, one transport and one write.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import cast

from servers.protocol import BUSY_REPLY, TIMEOUT_REPLY, Session, Work, WorkKind
from servers.service import block
from servers.tuning import HIGH_WATER, LINGER_LIMIT, LISTEN_BACKLOG, LOW_WATER, Limits

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


# -- out of descriptors on asyncio's own loop ------------------------------------

OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class SpareDescriptorListener(socket.socket):
    """A listening socket whose ``accept()`` turns the excess client away when out of descriptors.

    Why: asyncio's selector loop (``BaseSelectorEventLoop._accept_connection``,
    Python 3.11) handles EMFILE by logging it with a traceback, dropping the
    listener and re-adding it a second later -- but it does not leave its
    accept loop, so one wake-up makes up to ``backlog`` (here 1,024) failed
    ``accept()`` calls, each logged and each scheduling its own retry: about
    3 MB of tracebacks a second on stderr.  When stderr is a pipe nobody
    reads, the pipe fills and the one thread blocks in ``write()`` for good --
    a live, deaf server.  The waiting clients sit in the backlog meanwhile.

    The fix, libuv's (so uvloop's) trick: keep one spare descriptor (an open
    ``/dev/null``).  When ``accept()`` fails for want of a descriptor, close
    the spare, accept the waiting client with the slot it frees, send it
    ``BUSY_REPLY`` and close it, then take the spare back.  The excess client
    gets an answer at once instead of a timeout, the backlog drains so the
    listener stops being readable (no spin), and asyncio never sees the
    error: we raise ``BlockingIOError``, which its accept loop reads as
    "nobody else waiting".  It costs one descriptor, and works because
    asyncio calls ``accept()`` on the very socket object it was given.
    """

    spare: int | None = None

    @classmethod
    def wrap(cls, listener: socket.socket) -> SpareDescriptorListener:
        """Take over ``listener``'s descriptor (leaving ``listener`` detached); open the spare."""
        guarded = cls(listener.family, listener.type, listener.proto, fileno=listener.detach())
        guarded.spare = open_spare()
        return guarded

    def accept(self) -> tuple[socket.socket, object]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS or not self.turn_away_one():
                raise  # no spare: asyncio drops the listener and retries in a second
            raise BlockingIOError(errno.EAGAIN, "turned one client away") from None

    def turn_away_one(self) -> bool:
        """Accept a waiting client in the spare's slot, answer BUSY, close; False: no spare."""
        if self.spare is None:
            self.spare = open_spare()  # descriptors may have come free since
            if self.spare is None:
                return False
        os.close(self.spare)
        try:
            conn, _ = super().accept()
        except OSError:  # nobody waiting after all, or still no descriptor (ENFILE)
            pass
        else:
            with conn:
                try:
                    conn.setblocking(False)
                    conn.send(BUSY_REPLY)
                except OSError:
                    pass  # it left already: closing is all it needs
        self.spare = open_spare()
        return True

    def close(self) -> None:
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None
        super().close()


def open_spare() -> int | None:
    """A descriptor held in reserve (``/dev/null``), or None if even that is out of reach."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


# -- WORK in a coroutine ------------------------------------------------------


async def do_work(work: Work) -> None:
    """A WORK request's wait, asyncio's way: only this task waits.

    ``asyncio.sleep`` is a timer in the loop's heap; an offload goes to the
    loop's default thread pool (``asyncio.to_thread``), which runs the
    blocking call in a real thread while this task awaits its result --
    asyncio's own repair for a library that would block the loop.
    """
    if work.kind == WorkKind.OFFLOAD:
        await asyncio.to_thread(block, work.seconds)
    else:
        await asyncio.sleep(work.seconds)


# -- the protocol server ------------------------------------------------------

_now = time.monotonic  # the deadlines' clock; timers take delays, so any loop's clock agrees


async def serve_protocol(
    listener: socket.socket, new_session: Callable[[], Session], limits: Limits
) -> None:
    """Serve with :class:`SessionProtocol` on the running loop (asyncio's or uvloop's)."""
    loop = asyncio.get_running_loop()
    live: set[SessionProtocol] = set()
    server = await loop.create_server(
        lambda: SessionProtocol(new_session(), live, limits), sock=listener, backlog=LISTEN_BACKLOG
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

    def __init__(self, session: Session, live: set[SessionProtocol], limits: Limits) -> None:
        self.session = session
        self.live = live
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.discarded = 0  # bytes read and thrown away after closing
        self.writing_paused = False  # the transport holds over HIGH_WATER unsent bytes
        # A WORK wait in progress: the loop's timer, or the executor's future (offload).
        self.working: asyncio.TimerHandle | asyncio.Future[None] | None = None
        # The timeout bookkeeping: notes taken on the hot path, read by on_timer().
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = math.inf  # when self.timer fires (time.monotonic)
        self.last_input = 0.0  # when bytes last arrived
        self.request_began: float | None = None  # when the request in progress began
        self.unsent = 0  # unsent bytes seen by the last check (0: output was idle)
        self.unsent_since = 0.0  # when that check saw the output move

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        max_clients = self.limits.max_clients
        if max_clients is not None and len(self.live) >= max_clients:
            self.transport.write(BUSY_REPLY)  # client N+1: one frame, then the door
            self.transport.close()
            return
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.live.add(self)
        self.last_input = _now()
        self.arm(self.last_input + self.limits.idle_timeout)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session.closing:  # lingering after QUIT: read only to avoid a RST
            self.last_input = _now()
            self.linger(len(data))
            return
        reply = session.receive_data(data)
        # The idle deadline moves (the timer finds out when it fires), from *after* the
        # handler: a long compute or block in it was the server's time, not the client's.
        self.last_input = _now()
        if reply:
            self.transport.write(reply)  # type: ignore[union-attr]  # sends what it can
        if not session.in_request:
            self.request_began = None
        elif self.request_began is None or reply:  # a request began in ``data``: its own deadline
            self.request_began = self.last_input
            self.arm_by(self.last_input + self.limits.request_timeout)
        if session.closing or session.pending or session.work is not None:  # QUIT, budget, WORK
            self.answer_held_back()

    def answer_held_back(self) -> None:
        """After QUIT, send the FIN; at a WORK wait, start it; else resume held-back
        requests until pushed back."""
        assert self.transport is not None
        while True:
            if self.session.work is not None:
                self.start_work()  # finish_work() comes back for the rest
                return
            if self.session.closing:
                self.transport.write_eof()  # FIN once the buffer is flushed
                return
            if not self.session.pending or self.writing_paused:
                return  # resume_writing() comes back for the rest
            reply = self.session.resume()
            if reply:
                self.transport.write(reply)  # may call pause_writing() at once

    def start_work(self) -> None:
        """The session handed out a WORK wait: stop reading, stop the clocks, wait the loop's way.

        A wait is a timer in the loop's heap; an offload runs ``block`` in the
        loop's default executor, a thread, and its future calls back when done.
        """
        work = self.session.work
        assert self.transport is not None and work is not None
        self.transport.pause_reading()  # the requests behind it wait on the work, unread
        self.disarm()  # the server's own time: no timeout runs during the work
        loop = asyncio.get_running_loop()
        if work.kind == WorkKind.OFFLOAD:
            future = loop.run_in_executor(None, block, work.seconds)
            future.add_done_callback(self.finish_work)
            self.working = future
        else:
            self.working = loop.call_later(work.seconds, self.finish_work)

    def finish_work(self, _: object = None) -> None:
        """The WORK wait is over: answer it and what waited behind it, restart the clocks."""
        self.working = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # it left, or the server is stopping
        session = self.session
        self.last_input = now = _now()  # the wait was the server's time, not the client's idle
        self.arm(now + self.limits.idle_timeout)  # before writing: pause_writing() may arm_by
        if self.writing_paused:  # output still backed up from before the WORK: keep watching it
            self.arm_by(now + self.output_check_every())
        reply = session.work_done()
        self.request_began = None
        if session.in_request:  # a request left half-read behind the WORK: its clock starts now
            self.request_began = now
            self.arm_by(now + self.limits.request_timeout)
        transport.write(reply)  # may call pause_writing() at once
        self.answer_held_back()  # another WORK, QUIT's FIN, or the held-back requests
        if self.working is None and not self.writing_paused and not session.pending:
            transport.resume_reading()

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
        self.arm_by(_now() + self.output_check_every())  # output must now keep moving

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.writing_paused = False
        if self.working is not None:
            return  # finish_work() answers and resumes reading
        self.answer_held_back()
        if self.working is None and not self.writing_paused and not self.session.pending:
            self.transport.resume_reading()
            if self.request_began is not None:  # we, not the client, held its request up
                self.request_began = _now()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.disarm()
        if self.working is not None:  # an offload's thread runs on; its result is dropped
            self.working.cancel()
            self.working = None

    def abort(self) -> None:
        """Shutdown: close at once, abandoning unsent replies."""
        if self.transport is not None:
            self.transport.abort()

    # -- timeouts: one timer, re-armed only when it fires or a deadline moves earlier --

    def arm(self, due: float) -> None:
        """(Re)schedule the one timer to fire at ``due`` (time.monotonic)."""
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(max(0.0, due - _now()), self.on_timer)
        self.timer_due = due

    def disarm(self) -> None:
        """Cancel the timer: no deadline until :meth:`arm` again."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_due = math.inf

    def arm_by(self, due: float) -> None:
        """Make sure the timer fires by ``due``: re-arm only if it would fire later."""
        if due < self.timer_due:
            self.arm(due)

    def output_check_every(self) -> float:
        """While output waits, look at it four times per timeout: a stall is seen within 1.25x."""
        return self.limits.request_timeout / 4

    def on_timer(self) -> None:
        """The timer fired: close the connection if a deadline has passed, else re-arm."""
        self.timer = None
        self.timer_due = math.inf
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        now = _now()
        limits = self.limits
        unsent = transport.get_write_buffer_size()
        if unsent:  # replies wait for the client to read: they must keep moving
            if unsent != self.unsent:  # moved (or more was written) since the last look
                self.unsent, self.unsent_since = unsent, now
            elif now >= self.unsent_since + limits.request_timeout:
                transport.abort()  # it stopped reading: drop what it will never take
                return
            stall_due = self.unsent_since + limits.request_timeout
            self.arm(min(stall_due, now + self.output_check_every()))
            return
        self.unsent = 0
        if self.request_began is not None:
            due = self.request_began + limits.request_timeout
            if now >= due:
                transport.write(TIMEOUT_REPLY)  # sent at once, unless the socket is full...
                if transport.get_write_buffer_size():
                    transport.abort()  # ...and then dropped: never wait on this client again
                else:
                    transport.close()
                return
        else:
            due = self.last_input + limits.idle_timeout
            if now >= due:
                transport.close()  # nothing unsent: a clean FIN
                return
        self.arm(due)
