"""A greenlet per connection, switched by a hand-written epoll hub (gevent without gevent).

Where the concurrency comes from: every connection runs the blocking
family's routine (:func:`servers._blocking.serve_stream`) in a ``greenlet``
of its own, on a :class:`GreenSocket` whose ``recv``/``send`` look blocking.
When the socket would block (``EAGAIN``) the wrapper arms the socket in
epoll and *switches* to the hub -- the main greenlet, the only one that ever
waits -- which sleeps in ``epoll.poll()`` and switches back to whichever
greenlet's socket is ready.  Code that reads like ``thread_per_client``,
scheduled like ``epoll_reactor``: all of it is in this file.  Each socket is
armed with ``EPOLLONESHOT``, so one ``epoll_ctl`` per wait arms it and the
kernel disarms it when it fires; a stale or spurious wake-up is harmless,
because the wrapper retries the call and waits again on ``EAGAIN``.

What it costs: a greenlet per client (a few KiB; its slice of the C stack is
copied to the heap on a switch), two switches and an ``epoll_ctl`` per wait,
plus the failed ``recv`` that discovered the wait.  One thread, so one core.

How it fails: cooperatively, like gevent.  Nothing pre-empts a greenlet:
anything that blocks without going through :class:`GreenSocket` -- a
CPU-bound request, a large file read, ``fsync`` in PUT -- stalls every
client.  An exception escaping a greenlet would land in the hub, its parent,
and end the server: :func:`run_client` stops bugs at one client.  A WORK
wait is an entry in the hub's deadline heap: waits overlap.  A compute, a
block, and an offload too (no thread pool here: served as block) stall every
client for their whole length.  Measured (a full run on a busy 2-core VM,
README's 'What the handler does'): beside one client's 20,000-unit computes
(about 16 ms here) the other clients' p50 was 27 ms; under cpu-bound it used
0.99 cores; beside a 10 ms blocking call their p50 was 13 ms, 13 ms
offloaded.

How it is protected: the hub owns the timeouts.  Each wait carries a
deadline in one heap (``[when, order, fd, greenlet]``); the hub's
``poll()`` sleeps no longer than the nearest, and a greenlet whose deadline
passes has ``TimeoutError`` *thrown into it* where it waits -- an
``OSError``, so the shared routine ends that client as a reset would.
Reads wait the idle timeout, or what is left of the request's own
(:class:`~servers._blocking.RequestClock`, as in ``gevent_server``); a send
waits the request timeout for room.  An entry whose greenlet woke on I/O is
left in the heap (lazy deletion) and the heap is rebuilt once such entries
outnumber the live ones.  The client limit and running out of descriptors
are the reactors' :class:`~servers._nonblocking.Acceptor`: client N+1 is
answered ``ERROR server busy``; out of descriptors the waiting clients are
refused through a spare descriptor and the listener is unwatched for a pause.

What gevent adds on top of this: monkey-patching, so that code written for
the standard ``socket``, ``ssl``, ``time.sleep``, ``subprocess``... switches
too; timeouts as an API (``gevent.Timeout``, ``sock.settimeout``) instead of
one hard-wired heap; DNS resolution that does not block the hub (a thread
pool or c-ares); a real event loop (libev or libuv) with timers, signals,
child watchers and fairness rules; and a hub of its own greenlet, so that
any greenlet may block, including the main one.
"""

from __future__ import annotations

import select
import socket
import sys
import traceback
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from itertools import count
from time import monotonic

from greenlet import getcurrent, greenlet

from servers._blocking import RequestClock, send_if_room, serve_stream
from servers._nonblocking import Acceptor
from servers.protocol import TIMEOUT_REPLY, Session, Work, WorkKind
from servers.service import block
from servers.tuning import STOP_CHECK, Limits

IN, OUT, ONESHOT = select.EPOLLIN, select.EPOLLOUT, select.EPOLLONESHOT


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """The hub: wait in epoll, switch to the greenlets whose sockets are ready, repeat."""
    listener.setblocking(False)
    hub, acceptor = Hub(), Acceptor(listener, limits)
    hub.poller.register(listener.fileno(), IN)
    live: set[socket.socket] = set()
    listening = True
    try:
        while True:
            for fd, _ in hub.poller.poll(hub.timeout(acceptor.retry_at)):
                if fd != listener.fileno():
                    hub.wake(fd)
                    continue
                for sock in acceptor.accept(len(live)):
                    # Runs until its first wait (or its end), then control comes back here.
                    greenlet(run_client).switch(hub, sock, new_session(), limits, live)
            hub.expire()
            if acceptor.ready() != listening:  # paused out of descriptors, or resumed
                listening = not listening
                hub.poller.modify(listener.fileno(), IN if listening else 0)
    finally:
        for sock in list(live):  # their greenlets unwind (GreenletExit) when collected
            sock.close()
        acceptor.close()
        hub.poller.close()


def run_client(
    hub: Hub, sock: socket.socket, session: Session, limits: Limits, live: set[socket.socket]
) -> None:
    """A client's greenlet: the blocking family's routine, on a socket that switches."""
    live.add(sock)
    try:
        with sock:
            conn = GreenSocket(hub, sock, session, limits)
            # a TimeoutError ends it like a reset; a WORK wait sleeps in the hub's heap
            serve_stream(conn.recv, conn.send, session, hub.do_work)
            if conn.clock.request_expired:
                send_if_room(sock, TIMEOUT_REPLY)
    except Exception:  # a bug costs one client; escaping, it would end the hub
        traceback.print_exc(file=sys.stderr)
    finally:
        live.discard(sock)


class Hub:
    """What the greenlets wait for: epoll for their sockets, one heap for their deadlines."""

    def __init__(self) -> None:
        self.poller = select.epoll()
        self.greenlet = getcurrent()  # the main greenlet: the only one that waits in epoll
        self.waiting: dict[int, list] = {}  # fd -> its waiter's heap entry
        self.deadlines: list[list] = []  # [when, order, fd, greenlet]; greenlet None: stale
        self.order = count()  # breaks ties: greenlets are not comparable
        self.stale = 0

    def wait(self, fd: int, deadline: float) -> None:
        """In a client's greenlet, its socket armed: back when ready, or TimeoutError."""
        if self.stale > len(self.deadlines) // 2 + 64:  # mostly woken entries: rebuild
            self.deadlines = [entry for entry in self.deadlines if entry[3] is not None]
            heapify(self.deadlines)
            self.stale = 0
        entry = [deadline, next(self.order), fd, getcurrent()]
        heappush(self.deadlines, entry)
        self.waiting[fd] = entry
        self.greenlet.switch()  # the hub switches back in wake(), or throws in expire()

    def do_work(self, work: Work) -> None:
        """A WORK wait in a client's greenlet: an entry in the deadline heap, no socket.

        ``expire()`` switches back to it when it is due; the other greenlets run
        meanwhile.  An offload has no thread pool to go to here: served as block,
        it stalls the hub and every greenlet with it.
        """
        if work.kind == WorkKind.OFFLOAD:
            block(work.seconds)
            return
        heappush(self.deadlines, [monotonic() + work.seconds, next(self.order), None, getcurrent()])
        self.greenlet.switch()

    def wake(self, fd: int) -> None:
        """The socket is ready: switch to its waiter (a stale event finds none)."""
        entry = self.waiting.pop(fd, None)
        if entry is not None:
            waiter, entry[3] = entry[3], None  # its deadline entry is stale from now on
            self.stale += 1
            waiter.switch()

    def timeout(self, wake_at: float | None) -> float:
        """Seconds epoll may sleep: until the nearest deadline or ``wake_at``, at most
        STOP_CHECK (a stop signal that landed just before epoll_wait() waits no longer)."""
        now = monotonic()
        when = now + STOP_CHECK
        if self.deadlines and self.deadlines[0][0] < when:
            when = self.deadlines[0][0]
        if wake_at is not None and wake_at < when:
            when = wake_at
        return max(0.0, when - now)

    def expire(self) -> None:
        """Throw TimeoutError into every greenlet whose deadline has passed; wake those
        whose WORK wait is over."""
        now = monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, _, fd, waiter = heappop(self.deadlines)
            if waiter is None:
                self.stale -= 1
                continue
            if fd is None:  # a WORK wait is over, not a timeout
                waiter.switch()
                continue
            del self.waiting[fd]
            waiter.throw(TimeoutError("timed out"))


class GreenSocket:
    """``recv`` and ``send`` that look blocking: on ``EAGAIN`` they switch to the hub."""

    __slots__ = ("sock", "hub", "limits", "clock", "registered")

    def __init__(self, hub: Hub, sock: socket.socket, session: Session, limits: Limits) -> None:
        sock.setblocking(False)
        self.sock, self.hub, self.limits = sock, hub, limits
        self.clock = RequestClock(session, limits)  # when a read must give up
        self.registered = False

    def recv(self, size: int) -> bytes:
        """Read within the idle timeout, or within what is left of the request's."""
        deadline = monotonic() + self.clock.read_timeout()
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                pass
            try:
                self.wait(IN, deadline)
            except TimeoutError:
                self.clock.timed_out()
                raise  # an OSError: serve_stream ends this client

    def send(self, data: bytes) -> None:
        """``sendall``, giving up once the client takes no byte for the request timeout."""
        self.clock.replied()
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                self.wait(OUT, monotonic() + self.limits.request_timeout)

    def wait(self, events: int, deadline: float) -> None:
        """Arm the socket for one event (one ``epoll_ctl``) and let the hub run until then."""
        if deadline <= monotonic():
            raise TimeoutError("timed out")
        fd = self.sock.fileno()
        if self.registered:
            self.hub.poller.modify(fd, events | ONESHOT)
        else:
            self.hub.poller.register(fd, events | ONESHOT)
            self.registered = True
        self.hub.wait(fd, deadline)
