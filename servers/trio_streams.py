"""trio's structured concurrency: ``trio.serve_listeners``, a nursery, a SocketStream per client.

Where the concurrency comes from: trio's own event loop (epoll on Linux)
and one task per connection, as in ``asyncio_streams`` -- but the tasks are
*structured*.  In asyncio, ``create_task`` starts a free-floating task:
nothing owns it, it can outlive the code that started it, an exception in
it is logged when it is garbage-collected, and shutting down means finding
every task and cancelling it by hand (``asyncio_streams`` keeps a dict of
them for exactly that).  In trio a task can only be started in a *nursery*,
and the ``async with`` block that opened the nursery does not end until
every task in it has ended: no task outlives its scope, an exception in one
cancels its siblings and comes out of the block.  Here ``serve_until_stopped``
opens one nursery; ``trio.serve_listeners`` runs in it and opens its own,
where each accepted client's handler runs.  Shutdown is one call: a signal
arrives, the outer nursery's *cancel scope* is cancelled, every task below
it -- the accept loop and every client -- gets ``Cancelled`` at its next
``await``, each stream is closed on the way out (``serve_listeners`` closes
what its handlers leave open), and ``trio.run`` returns.

Timeouts are cancel scopes too.  A scope has a *deadline* that can be moved
at any time; when the clock passes it, whatever the code inside is waiting
on is cancelled.  Each conversation runs in one scope whose deadline moves:
now + idle timeout before a read between requests, the request's first
byte + request timeout while one is incomplete (so a trickle cannot push it
back), now + request timeout before each 64 KiB slice of a reply (a client
that does not take a slice within that has stopped reading).  After QUIT,
``send_eof()`` sends the FIN behind the last reply and the task reads,
under ``trio.move_on_after(idle timeout)``, until the peer closes, so that
a close with unread input cannot RST the reply away.

What it costs: trio's scheduler and I/O layer are pure Python, and every
``receive_some``/``send_all`` is a *checkpoint*: even when the socket is
ready and the call completes at once, the task yields to the scheduler (a
trip through the run loop) -- the price of trio's guarantee that every
``await`` can be cancelled and lets other tasks run.  trio registers a
socket with epoll with ``EPOLLONESHOT``: each wait that has to block costs
one ``epoll_ctl(EPOLL_CTL_MOD)`` to re-arm it (``asyncio_sockets`` pays an
ADD and a DEL): counted with ``perf stat`` during 5,000 one-at-a-time ECHOs,
2,673 ``recv`` calls found nothing and 2,673 ``epoll_ctl`` were made.
Plus a task per client and, per request, a deadline moved twice (the read,
the reply).  ``SocketStream`` turns on ``TCP_NODELAY`` and
sets ``TCP_NOTSENT_LOWAT`` to 16 KiB on TCP sockets.  One thread, one core.

How it fails: a step that blocks (a big PUT's ``fsync``) stalls every
client.  Out of descriptors: trio's socket ``accept`` raises ``EMFILE`` at
once (Linux reserves the descriptor before it looks for a client), and
``serve_listeners`` answers it (trio 0.35, ``_highlevel_serve_listeners.py``)
by logging an ERROR with its traceback to the ``trio.serve_listeners``
logger -- stderr -- and sleeping 100 ms before the next ``accept``: no spin,
but ten tracebacks a second for as long as it lasts, and the waiting clients
get no answer, left in the backlog.  A handler that raises crashes the whole
server: the exception cancels the nursery (structured concurrency cuts both
ways), so the handler catches a client's own failures.  A WORK wait is
``trio.sleep`` in the client's task: waits overlap.  A compute or a block
stalls every client for its whole length; an offload repairs the block:
``trio.to_thread.run_sync`` runs it in a worker thread (at most 40 at once,
trio's default limiter; more offloads queue) while only its task waits.  At
SIGTERM a compute, a block or an offload in progress holds the exit until it
ends: the loop takes the signal only between steps, and a cancelled task
waits for its thread (no ``abandon_on_cancel``: no thread outlives the
nursery).  Measured (a full run on a busy 2-core VM, README's 'What the
handler does'): beside one client's 20,000-unit computes (about 16 ms here)
the other clients' p50 was 31 ms; under cpu-bound it used 0.95 cores; beside
a 10 ms blocking call their p50 was 13 ms, 2.7 ms offloaded.

How it is protected: the deadlines above.  ``--max-clients``: the handler of
client N+1 writes ``ERROR server busy`` if the socket takes it at once and
returns; ``serve_listeners`` closes the stream.  Out of descriptors:
``serve_listeners`` is given a :class:`GuardedListener`, which keeps one
spare descriptor and on ``EMFILE`` gives it up to accept the excess client,
answer it busy and close it, then waits until the listener is readable
again -- so ``serve_listeners`` never sees the error, nothing is logged and
nothing spins.  SIGTERM/SIGINT: ``trio.open_signal_receiver`` turns them
into messages that the main task waits for, then cancels the nursery;
the command line's handlers, which raise ``SystemExit``, are replaced for
the whole of ``trio.run``, so no exception is ever raised from a signal
handler in the middle of trio's run loop.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import socket
from collections.abc import Callable
from functools import partial
from types import FrameType

import trio

from servers._nonblocking import open_spare, refuse
from servers.protocol import BUSY_REPLY, TIMEOUT_REPLY, Session, Work, WorkKind
from servers.service import block
from servers.tuning import LINGER_LIMIT, RECV_SIZE, Limits

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
# Out of descriptors with no spare either: how often the listener tries again (s).
OUT_OF_DESCRIPTORS_PAUSE = 0.25
SEND_SLICE = RECV_SIZE  # bytes that must go out within a request timeout


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run trio until SIGTERM/SIGINT; the signals only set a flag until trio takes them."""
    early = EarlyStop()
    previous = {signum: signal.signal(signum, early.note) for signum in STOP_SIGNALS}
    try:
        trio.run(serve_until_stopped, listener, new_session, limits, early)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class EarlyStop:
    """A stop signal that came before trio's signal receiver was open (or after it closed)."""

    def __init__(self) -> None:
        self.noted = False

    def note(self, signum: int, frame: FrameType | None) -> None:
        self.noted = True  # no exception: it would unwind through trio's run loop


async def serve_until_stopped(
    listener: socket.socket, new_session: Callable[[], Session], limits: Limits, early: EarlyStop
) -> None:
    """One nursery: ``serve_listeners`` in it until a stop signal cancels the lot."""
    guarded = GuardedListener(listener)
    handler = partial(handle_client, new_session, limits, Live())
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handler, [guarded])
            if not early.noted:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()  # every task below: Cancelled at its next await


class Live:
    """How many clients are being served (for --max-clients)."""

    def __init__(self) -> None:
        self.count = 0


async def handle_client(
    new_session: Callable[[], Session], limits: Limits, live: Live, stream: trio.SocketStream
) -> None:
    """One task per client: converse until it leaves or times out (serve_listeners closes)."""
    if limits.max_clients is not None and live.count >= limits.max_clients:
        last_word(stream, BUSY_REPLY)  # client N+1: one frame, then the door
        return
    live.count += 1
    try:
        if await converse(stream, new_session(), limits):
            await linger(stream, limits.idle_timeout)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # reset or broken pipe: this client is done; an exception here would end the server
    finally:
        live.count -= 1


async def converse(stream: trio.SocketStream, session: Session, limits: Limits) -> bool:
    """Read, feed the session, send, all under one moving deadline; True once closing."""
    began: float | None = None  # when the request in progress began (trio's clock)
    with trio.CancelScope() as timer:
        while not session.closing:
            if session.work is not None:  # a WORK wait: the replies before it are sent
                timer.deadline = math.inf  # the server's own time: no clock runs during it
                await do_work(session.work)
                reply = session.work_done()
            elif session.pending:  # requests held back by the reply budget come first
                reply = session.resume()
            else:
                if began is None:
                    timer.deadline = trio.current_time() + limits.idle_timeout
                else:
                    timer.deadline = began + limits.request_timeout  # a trickle cannot move it
                data = await stream.receive_some(RECV_SIZE)
                if not data:  # the peer closed its side
                    return False
                reply = session.receive_data(data)
            if reply:
                await send_within(stream, reply, timer, limits.request_timeout)
            if not session.in_request:
                began = None
            elif began is None or reply:  # a request began in ``data``, or after our replies
                began = trio.current_time()
        return True
    # Only a passed deadline gets here: the scope caught its own cancellation.
    if began is not None:
        last_word(stream, TIMEOUT_REPLY)
    return False


async def do_work(work: Work) -> None:
    """A WORK request's wait, trio's way: only this task waits.

    ``trio.sleep`` is a deadline in trio's run loop; an offload goes to
    ``trio.to_thread.run_sync``, which runs the blocking call in a worker
    thread while this task waits for its result -- trio's own repair for a
    library that would block the loop.  Not ``abandon_on_cancel``: the
    task waits for its thread, so no thread outlives its nursery.
    """
    if work.kind == WorkKind.OFFLOAD:
        await trio.to_thread.run_sync(block, work.seconds)
    else:
        await trio.sleep(work.seconds)


async def send_within(
    stream: trio.SocketStream, data: bytes, timer: trio.CancelScope, timeout: float
) -> None:
    """``send_all``, slice by slice, each slice given ``timeout`` s by moving the deadline."""
    view = memoryview(data)
    for start in range(0, len(view), SEND_SLICE):
        timer.deadline = trio.current_time() + timeout
        await stream.send_all(view[start : start + SEND_SLICE])


async def linger(stream: trio.SocketStream, idle_timeout: float) -> None:
    """After QUIT: send our FIN, then read and discard until the peer closes (no RST)."""
    await stream.send_eof()
    discarded = 0
    while discarded <= LINGER_LIMIT:
        with trio.move_on_after(idle_timeout) as waited:
            data = await stream.receive_some(RECV_SIZE)
        if waited.cancelled_caught or not data:  # the idle timeout passed, or the peer closed
            return
        discarded += len(data)  # read only so that closing does not RST the reply


def last_word(stream: trio.SocketStream, reply: bytes) -> None:
    """Send ``reply`` only if the socket takes it now (trio's sockets are non-blocking).

    Plain system calls, not ``send_all``: a client being dropped is never
    waited on, and this is no checkpoint.  Unread input is discarded first:
    closing a socket with unread input sends a RST that could destroy the
    reply before the peer reads it.
    """
    fd = stream.socket.fileno()
    for call in (lambda: os.read(fd, RECV_SIZE), lambda: os.write(fd, reply)):
        try:
            call()
        except OSError:  # EAGAIN (nothing to read, no room), or already reset
            pass


class GuardedListener(trio.abc.Listener[trio.SocketStream]):
    """A ``trio.SocketListener`` that turns the excess client away when out of descriptors.

    ``serve_listeners`` would log EMFILE with a traceback and sleep 100 ms,
    leaving the waiting clients unanswered; this never lets it see the error.
    """

    def __init__(self, listener: socket.socket) -> None:
        self.raw = listener  # the same socket object trio wraps (trio made it non-blocking)
        self.inner = trio.SocketListener(trio.socket.from_stdlib_socket(listener))
        self.spare = open_spare()

    async def accept(self) -> trio.SocketStream:
        while True:
            try:
                return await self.inner.accept()
            except OSError as exc:
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    raise
            await self.turn_away_one()

    async def turn_away_one(self) -> None:
        """Accept a waiting client in the spare's slot, answer BUSY, close; else wait."""
        if self.spare is None:
            self.spare = open_spare()  # descriptors may have come free since
        if self.spare is None:
            await trio.sleep(OUT_OF_DESCRIPTORS_PAUSE)  # not even a spare: don't spin
            return
        os.close(self.spare)
        try:
            conn, _ = self.raw.accept()
        except BlockingIOError:  # nobody waiting: sleep until somebody is
            self.spare = open_spare()
            await trio.lowlevel.wait_readable(self.raw)
            return
        except OSError:  # still no descriptor (ENFILE), or it reset first
            self.spare = open_spare()
            await trio.sleep(OUT_OF_DESCRIPTORS_PAUSE)
            return
        refuse(conn)  # BUSY_REPLY if it fits, then close
        self.spare = open_spare()

    async def aclose(self) -> None:
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None
        await self.inner.aclose()
