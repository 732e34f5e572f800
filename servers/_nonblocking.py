"""The non-blocking connection: written once, shared by the four reactors.

``select_reactor``, ``poll_reactor``, ``epoll_reactor`` and ``epoll_edge``
differ only in *how they wait* for sockets to become ready (the way
CPython's ``selectors.py`` puts one selector class per system call).  What
they do once a socket is ready is here, in :class:`Connection`:

* **input** -- ``recv`` at most ``RECV_SIZE`` bytes and feed them to the
  sans-I/O session, which returns the bytes to send;
* **output** -- append those bytes to a buffer and ``send`` what the socket
  takes *now*.  A reply larger than the socket's send buffer goes out in
  pieces, in order; the reactor asks to be told about writability only while
  the buffer is non-empty, so an idle connection never wakes the loop;
* **backpressure** -- a client that sends requests but does not read the
  replies makes the buffer grow.  Past ``HIGH_WATER`` the connection
  stops reading (``wants_read`` turns false, so the reactor stops watching it
  for input); the kernel's buffers fill and TCP flow control stops the
  client.  Reading resumes once the buffer is down to ``LOW_WATER``.
  Memory per client is bounded by about one high-water mark plus one reply,
  and every other client keeps being served meanwhile;
* **closing** -- after QUIT or a fatal framing error (``session.closing``)
  the buffer is flushed, then ``shutdown(SHUT_WR)`` sends a FIN behind the
  last reply, and the socket is kept until the peer closes too, discarding
  what it still sends.  Closing at once would be wrong on Linux: ``close()``
  on a socket with unread input sends a RST, and a RST can overtake -- and
  destroy -- a reply the peer has not read yet;
* **deadlines** -- three clocks per connection (``Limits``): *idle* (no
  request in progress and no input for ``idle_timeout``: close), *request*
  (a frame whose first byte arrived ``request_timeout`` ago is still
  incomplete: answer ``TIMEOUT_REPLY`` if the socket takes it now, close)
  and *output* (replies pending and no byte sent for ``request_timeout``:
  close).  Moving a deadline costs the hot path no heap operation: a read
  stores the time (``read_at``, one ``monotonic()``) and asks the session
  whether a frame is half-read (``request_at`` is set when one begins); a
  send that leaves output behind stores ``sent_at``.  The deadlines are
  *computed* only when the connection's timer comes up (:class:`Timers`);
* **WORK** -- a wait the session hands out (``session.work``) is a timer
  in the loop's heap: the connection stops reading, :meth:`Timers.wake`
  files its due time, the loop's wait is bounded by it like any deadline,
  and when it comes up :meth:`Connection.finish_work` sends the reply and
  answers what was pipelined behind it.  No client waits on another's
  wait.  An *offload* has no executor to go to in a hand-written loop: it
  is served as *block*, in the loop, and stalls every client (say so, not
  hide it: the asyncio, trio and gevent variants show the repair).  The
  clocks do not run during the wait: it is the server's time, not the
  client's.

A reactor calls :meth:`Connection.on_readable` / :meth:`Connection.on_writable`
when the poller says so, then looks at ``wants_read`` / ``wants_write`` to
decide what to watch next, and at ``done`` to drop the connection.  Each
call does one step (one ``recv``; what ``send`` takes now), and
:meth:`Acceptor.accept` takes a bounded batch: enough for a level-triggered
loop, which is told again while anything is left.  An edge-triggered loop
must repeat those steps until ``EAGAIN`` itself -- ``epoll_edge`` shows how.

Two helpers belong to the loop rather than to a connection, and are shared
too, because the four loops would hold four identical copies of them --
and a reader comparing ``poll_reactor`` with ``epoll_reactor`` should see
the waiting differ, not bookkeeping:

* :class:`Timers` -- one heap of ``(when, order, connection)``; the loop's
  wait is bounded by the nearest entry.  Each connection has exactly one
  entry, set no later than ``min(idle_timeout, request_timeout)`` ahead.
  When it comes up the real deadline is computed from the connection's
  timestamps: past -> time out; otherwise the entry is pushed again (at the
  real deadline, or one period ahead, whichever is sooner).  Every deadline
  is "an event + a timeout of at least one period", so this lazy re-arming
  is never late, and a read never touches the heap.  A closed connection's
  entry is skipped when it comes up (lazy deletion); the heap is compacted
  when dead entries outnumber live ones, so churn cannot grow it.  Cost: one
  heap pop and push per connection per period (30 s by default) -- 333 a
  second for 10,000 idle clients -- and a ``monotonic()`` per wake-up.
* :class:`Acceptor` -- the listening socket: ``--max-clients`` (the excess
  client is accepted, told ``BUSY_REPLY`` and closed: never left in the
  backlog) and running out of descriptors.  ``accept()`` failing with
  EMFILE leaves the connection in the backlog, so a level-triggered
  listener stays readable and the loop spins; an edge-triggered one gets no
  new edge for it and goes deaf.  The acceptor keeps one *spare*
  descriptor (``/dev/null``): out of descriptors, it closes the spare,
  accepts the waiting client into its place, says ``BUSY_REPLY``, closes
  it and takes the spare back -- the client gets an answer instead of a
  wait.  Then it *pauses* for :data:`ACCEPT_RETRY` seconds: the loop stops
  watching the listener (level-triggered) or ignores it, and the timer
  makes it look again -- an edge-triggered loop must, since the backlog may
  hold connections no edge will announce.  A pause caps what a connect
  flood can cost while out, and is all there is if the spare is lost
  (ENFILE: the whole system is out).

The sizes and limits (``RECV_SIZE``, ``HIGH_WATER``, ``LOW_WATER``,
``LINGER_LIMIT``, ``ACCEPT_BATCH``) are the suite's, in :mod:`servers.tuning`.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import sys
import traceback
from collections.abc import Iterable
from heapq import heapify, heappop, heappush
from math import inf
from time import monotonic

from servers.protocol import BUSY_REPLY, TIMEOUT_REPLY, Session, WorkKind
from servers.service import block
from servers.tuning import (
    ACCEPT_BATCH,
    HIGH_WATER,
    LINGER_LIMIT,
    LOW_WATER,
    RECV_SIZE,
    STOP_CHECK,
    Limits,
)

# Out of descriptors, the listener is left alone this long before accept() is
# tried again: short enough that service resumes at once when clients leave,
# long enough that the loop sleeps meanwhile.
ACCEPT_RETRY = 0.2


class Connection:
    """One client: a non-blocking socket, its session and its unsent output."""

    __slots__ = (
        "sock",
        "fd",
        "session",
        "output",
        "paused",
        "eof",
        "shut",
        "done",
        "discarded",
        "read_at",
        "request_at",
        "requesting",
        "sent_at",
        "timers",
    )

    def __init__(self, sock: socket.socket, session: Session) -> None:
        sock.setblocking(False)
        # Replies are small and latency matters: don't let Nagle hold the tail
        # of a partly-sent reply back for an ACK (asyncio and uvloop do the same).
        if sock.family != socket.AF_UNIX:  # a Unix socket has no Nagle to turn off
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # already reset (macOS says EINVAL): the first recv will tell
                pass
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.output = bytearray()  # accepted by the session, not yet taken by the kernel
        self.paused = False  # reading stopped by backpressure
        self.eof = False  # the peer has closed its side: nothing more to read
        self.shut = False  # we sent our FIN (after session.closing)
        self.done = False  # finished or failed: the reactor drops and closes it
        self.discarded = 0  # bytes read and thrown away after closing
        # The clocks of the timeouts (monotonic seconds; see expires()).
        self.read_at = monotonic()  # the last input (or the connection's start)
        self.request_at = 0.0  # when the half-read frame began, while `requesting`
        self.requesting = False  # session.in_request, updated whenever it can change
        self.sent_at = 0.0  # when pending output last moved (or began to wait)
        self.timers: Timers | None = None  # the loop's heap, where a WORK wait is filed

    @property
    def wants_read(self) -> bool:
        # While the session holds whole requests back (its reply budget, or a
        # WORK wait), reading more would only grow its input buffer.
        session = self.session
        return not (
            self.done or self.eof or self.paused or session.pending or session.work is not None
        )

    @property
    def wants_write(self) -> bool:
        return not self.done and bool(self.output)

    def on_readable(self) -> bool:
        """One ``recv``; True if it read bytes (more may be waiting), else False.

        False means the socket had nothing more to give -- ``EAGAIN``, EOF or
        a reset -- or reading is paused.  A level-triggered loop ignores the
        answer (the poller will say again if more is waiting); an
        edge-triggered one reads until it is False (see ``epoll_edge``).
        """
        if not self.wants_read:
            return False
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:  # EAGAIN: drained
            return False
        except OSError:  # reset: the client is gone
            self.done = True
            return False
        self.read_at = monotonic()
        if not data:
            self.eof = True
            self._settle()
            return False
        if not self.requesting:
            self.request_at = self.read_at  # these bytes may begin a request
        self._receive(data)
        self.requesting = self.session.in_request
        # The idle clock restarts after the handler too: a long compute or block in
        # it was the server's time, not the client's idleness (one more monotonic()).
        self.read_at = monotonic()
        return True

    def on_writable(self) -> None:
        """Send what the socket takes, until the buffer is empty or ``EAGAIN``."""
        self._send()
        if self.done:
            return
        if self.session.pending and len(self.output) <= LOW_WATER:
            self._answer(None)  # requests held back by the reply budget
            self.requesting = self.session.in_request  # a half-read frame may follow them
        else:
            self._settle()

    def finish_work(self) -> None:
        """The loop's timer says the WORK wait is over: answer it and what waited behind it."""
        self.read_at = monotonic()  # the wait was the server's time, not the client's idleness
        self._answer(None)
        self.requesting = self.session.in_request
        if self.requesting:
            self.request_at = self.read_at

    def close(self) -> None:
        self.done = True
        self.sock.close()

    def expires(self, limits: Limits) -> float:
        """When this connection times out (monotonic), unless something happens first.

        Mid-request, the request clock runs from the frame's first byte
        (trickling more bytes does not restart it).  While replies wait to
        be sent the connection is not idle -- the client is downloading --
        but output that makes no progress for the request timeout is stuck.
        Otherwise the idle clock runs from the last input.  During a WORK
        wait no clock runs: the client is waiting for us.
        """
        if self.session.work is not None:
            return inf
        if self.requesting:
            when = self.request_at + limits.request_timeout
            if self.output:
                when = min(when, self.sent_at + limits.request_timeout)
            return when
        if self.output:
            return self.sent_at + limits.request_timeout
        return self.read_at + limits.idle_timeout

    def time_out(self) -> None:
        """A deadline has passed: say TIMEOUT_REPLY if a request was cut short, and finish."""
        if self.requesting and not self.output:
            last_word(self.sock, TIMEOUT_REPLY)
        self.done = True  # the reactor drops and closes it

    def _receive(self, data: bytes) -> None:
        if self.session.closing:  # lingering after QUIT: read only to avoid a RST
            self.discarded += len(data)
            self.done = self.discarded > LINGER_LIMIT
            return
        self._answer(data)

    def _answer(self, data: bytes | None) -> None:
        """Feed the session ``data`` (None: finish the WORK that is due, or resume
        held-back requests) and send.

        Go on resuming held-back requests while the output stays low; stop at a
        WORK wait, filed in the loop's heap.
        """
        session = self.session
        while True:
            try:
                if data is not None:
                    reply = session.receive_data(data)
                elif session.work is not None:  # only when it is due (finish_work, or offload)
                    reply = session.work_done()
                else:
                    reply = session.resume()
            except Exception:  # a bug in the session must cost one client, not the server
                traceback.print_exc(file=sys.stderr)
                self.done = True
                return
            if reply:
                self.request_at = self.read_at  # a frame left half-read began in this read
                self.output += reply
                self._send(len(reply))  # optimistic: most replies fit in the socket at once
            data = None
            if session.work is not None and not self.done:
                if session.work.kind != WorkKind.OFFLOAD:
                    self.timers.wake(self, session.work.seconds)  # type: ignore[union-attr]
                    break
                # No executor in a hand-written loop: an offload is served as block,
                # and the whole loop waits it out.
                block(session.work.seconds)
                self.read_at = monotonic()  # the server's time, as a wait's is (finish_work)
                continue
            if self.done or not session.pending or len(self.output) > LOW_WATER:
                break
        self._settle()

    def _send(self, added: int = 0) -> None:
        """Send what the socket takes now; stop at EAGAIN.

        ``added``: bytes just appended.  Output left behind starts (or
        restarts) the output clock if this call sent something, or if all
        of it is new; bytes that were stuck already keep their clock.
        """
        before = len(self.output)
        while self.output:
            try:
                sent = self.sock.send(self.output)
            except BlockingIOError:  # the kernel's send buffer is full: wait for POLLOUT
                if len(self.output) < before or added == before:
                    self.sent_at = monotonic()
                return
            except OSError:  # reset or broken pipe: nobody to send to
                self.done = True
                self.output.clear()
                return
            del self.output[:sent]  # cheap: bytearray deletes from the front in O(1)

    def _settle(self) -> None:
        """After any I/O: apply backpressure, and finish closing when it is time."""
        if len(self.output) > HIGH_WATER:
            self.paused = True
        elif self.paused and len(self.output) <= LOW_WATER:
            self.paused = False
        if self.output or self.done or self.session.work is not None:
            return
        if self.eof:  # the peer has gone and everything is sent
            self.done = True
        elif self.session.closing and not self.shut:
            self.shut = True
            try:
                self.sock.shutdown(socket.SHUT_WR)  # FIN after the last reply
            except OSError:
                self.done = True


class Timers:
    """Every connection's next check in one heap; the loop never waits past the nearest.

    See the module docstring: one entry per connection, re-armed lazily
    when it comes up, dead entries skipped and compacted away.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.period = min(limits.idle_timeout, limits.request_timeout)
        self.heap: list[tuple[float, int, Connection]] = []
        self.waits: list[tuple[float, int, Connection]] = []  # WORK waits, by when they end
        self.order = itertools.count()  # breaks ties: connections are not comparable
        self.now = monotonic()  # as of the last expire()
        self.compact_at = 64

    def add(self, conn: Connection) -> Connection:
        """Start watching a new connection's clocks (and take its WORK waits)."""
        conn.timers = self
        if len(self.heap) > self.compact_at:
            self.heap = [entry for entry in self.heap if not entry[2].done]
            heapify(self.heap)
            self.compact_at = 2 * len(self.heap) + 64
        heappush(self.heap, (conn.read_at + self.period, next(self.order), conn))
        return conn

    def wake(self, conn: Connection, seconds: float) -> None:
        """File a WORK wait: :meth:`expire` finishes it ``seconds`` from now."""
        heappush(self.waits, (monotonic() + seconds, next(self.order), conn))

    def timeout(self, wake_at: float | None = None) -> float:
        """Seconds to wait for I/O: until the nearest check, WORK wait or ``wake_at``,
        and never more than :data:`~servers.tuning.STOP_CHECK` (so a stop signal that
        landed just before the wait is acted on within it)."""
        # Straight-line code, no min(): this runs once per wake-up of the loop.
        when = self.now + STOP_CHECK
        if self.heap and self.heap[0][0] < when:
            when = self.heap[0][0]
        if self.waits and self.waits[0][0] < when:
            when = self.waits[0][0]
        if wake_at is not None and wake_at < when:
            when = wake_at
        return max(0.0, when - self.now)

    def expire(self) -> list[Connection]:
        """The connections whose WORK wait is over (answered now: update what the loop
        watches) and those whose deadline has passed (timed out, ``done``: drop them)."""
        self.now = now = monotonic()
        heap = self.heap
        expired: list[Connection] = []
        while self.waits and self.waits[0][0] <= now:
            _, _, conn = heappop(self.waits)
            if not conn.done:  # a client that left meanwhile is dropped as usual
                conn.finish_work()
                expired.append(conn)
        while heap and heap[0][0] <= now:
            _, _, conn = heappop(heap)
            if conn.done:  # closed since: a stale entry
                continue
            when = conn.expires(self.limits)
            if when <= now:
                conn.time_out()
                expired.append(conn)
            else:
                heappush(heap, (min(when, now + self.period), next(self.order), conn))
        return expired


class Acceptor:
    """The listening socket: the client limit, and what to do out of descriptors.

    See the module docstring.  ``retry_at`` is set while paused; a
    level-triggered loop stops watching the listener until :meth:`ready`
    says so again, an edge-triggered one accepts again on the timer.
    """

    def __init__(self, listener: socket.socket, limits: Limits) -> None:
        self.listener = listener
        self.max_clients = limits.max_clients
        self.spare: int | None = open_spare()
        self.retry_at: float | None = None

    def ready(self) -> bool:
        """False while paused after running out of descriptors; the pause ends here."""
        if self.retry_at is not None and monotonic() < self.retry_at:
            return False
        self.retry_at = None  # else the loop's timeout would stay 0 and the loop spin
        return True

    def accept(self, connected: int, limit: int = ACCEPT_BATCH) -> list[socket.socket]:
        """Clients to serve, at most ``limit`` (one level-triggered wake-up).

        ``connected``: clients served now, for the client limit.
        """
        accepted: list[socket.socket] = []
        while len(accepted) < limit:
            sock = self.accept_one(connected + len(accepted))
            if sock is None:
                break
            accepted.append(sock)
        return accepted

    def accept_one(self, connected: int) -> socket.socket | None:
        """One client to serve, or None when there is none to take now (EAGAIN, or paused).

        Clients past ``max_clients`` are refused on the way (BUSY_REPLY); a
        connection reset while in the backlog is skipped.  Out of
        descriptors, the waiting clients are refused through the spare and
        the acceptor pauses.
        """
        if not self.ready():
            return None
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return None
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._out_of_descriptors(exc)
                return None
            if self.max_clients and connected >= self.max_clients:
                refuse(sock)
                continue
            return sock

    def _out_of_descriptors(self, exc: OSError) -> None:
        """Refuse what waits (a batch at most) through the spare descriptor, then pause."""
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            warn_once("emfile", f"accept: {exc}: refusing new clients until some leave (said once)")
            for _ in range(ACCEPT_BATCH):
                if not self._refuse_through_spare():
                    break
        else:  # ENOBUFS, ENOMEM...: nothing to do but wait
            warn_once("accept", f"accept failed: {exc} (said once)")
        self.retry_at = monotonic() + ACCEPT_RETRY

    def _refuse_through_spare(self) -> bool:
        """Free the spare, accept one client into it, refuse it, take the spare back.

        True if a client was refused and the spare is back (more may wait).
        """
        if self.spare is None:
            self.spare = open_spare()  # lost last time (ENFILE)?
            if self.spare is None:
                return False  # still out: the pause is all we have
        os.close(self.spare)
        self.spare = None
        try:
            sock, _ = self.listener.accept()
        except OSError:  # EAGAIN: nobody waits; or taken by something else
            sock = None
        if sock is not None:
            refuse(sock)
        self.spare = open_spare()
        return sock is not None and self.spare is not None

    def close(self) -> None:
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None


def open_spare() -> int | None:
    """A descriptor held in reserve (``/dev/null``), or None if none is free."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def last_word(sock: socket.socket, reply: bytes) -> None:
    """Send ``reply`` if the socket takes it now, never waiting; the caller then closes.

    Unread input is discarded first: closing a socket with unread input
    sends a RST, which could destroy the reply before the peer reads it.
    """
    try:
        sock.setblocking(False)
        sock.recv(RECV_SIZE)
    except OSError:  # EAGAIN (nothing waiting), or already reset
        pass
    try:
        sock.send(reply)
    except OSError:
        pass


def refuse(sock: socket.socket) -> None:
    """A client over the limit: one BUSY_REPLY frame, then close at once."""
    last_word(sock, BUSY_REPLY)
    sock.close()


_WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """One line on stderr the first time, nothing after: a reactor must not flood its log."""
    if key not in _WARNED:
        _WARNED.add(key)
        print(message, file=sys.stderr, flush=True)


def close_all(connections: Iterable[Connection]) -> None:
    """Shutdown: close every client (pending output is abandoned)."""
    for conn in list(connections):
        conn.close()
