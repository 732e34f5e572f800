"""``select.epoll()`` with ``EPOLLET``: read, write and accept until ``EAGAIN``.

Where the concurrency comes from: one thread, non-blocking sockets, one
readiness loop, as in ``epoll_reactor`` -- but each socket is registered
once, for input *and* output, with ``EPOLLET``, and never modified.  An
edge-triggered epoll reports a *change* ("new bytes arrived", "room was
freed"), not a *state*: a socket that still holds unread input is not
reported again until yet more input arrives.  Hence the rule -- read, write
and accept until ``EAGAIN``.  Stop early and the bytes left behind sit
there unseen: a client that sent its last request and now waits for the
reply will wait forever, and a connection left in the accept backlog stays
there until another one arrives.

The shared connection (:mod:`servers._nonblocking`) does one step per
call -- one ``recv``, one ``accept`` -- which is all a level-triggered loop
needs; the loops that repeat those steps until ``EAGAIN`` are here, in
:func:`drain_input` and :func:`accept_all`.  They keep the rule without
letting one fast client starve the rest (``epoll(7)``, "possible
pitfalls"): at most :data:`READ_BUDGET` reads per socket per turn, and a
socket that has not yet said ``EAGAIN`` is kept on a *ready list* and served
again on the next turn, while epoll is polled without blocking.  A
connection paused by backpressure stays on the ready list too, so reading
resumes as soon as its output drains.  (Here that is belt and braces: when
any edge wakes a socket, epoll reports its whole readiness, so the output
edge that drains a paused connection also says "readable" if input is
waiting.  A loop that registered input alone would have no such luck.)
Writing needs no loop of its own: every reactor's ``on_writable`` already
sends until the buffer is empty or ``EAGAIN``.

What it costs: no ``epoll_ctl`` after ``register`` -- no system call to
start or stop watching for output around partial writes, or to pause input
-- but a wake-up for every "room was freed" edge even when there is nothing
to send, and one extra ``recv``/``accept`` per socket per wake-up to see
``EAGAIN``.  One thread, so one core.  Linux only.

How it fails: forgetting to drain (or to remember what was not drained)
hangs clients silently, with no error anywhere -- the classic
edge-triggered bug.  Anything slow in the loop stalls every client.  Out
of descriptors is the same bug in disguise: ``accept()`` fails with EMFILE
and the client stays in the backlog; the edge that announced it is spent,
and no new one comes until yet another client connects -- the server
stays alive, idle, and deaf to everyone waiting.  A WORK wait is a timer in
the loop's heap (:mod:`servers._nonblocking`): waits overlap.  A compute or
a block stalls every client for its whole length, and so does an offload: a
hand-written loop has no executor to hand it to, so it is served as block.
Measured (a full run on a busy 2-core VM, README's 'What the handler does'):
beside one client's 20,000-unit computes (about 16 ms here) the other
clients' p50 was 26 ms; under cpu-bound it used 0.98 cores; beside a 10 ms
blocking call their p50 was 12 ms, 13 ms offloaded.

How it is protected (:mod:`servers._nonblocking` has the details): out of
descriptors, the waiting clients are refused (``ERROR server busy``)
through a spare descriptor, until ``EAGAIN`` like every accept here; then
the acceptor pauses, and the loop's timer -- not an edge -- makes it
accept again: the backlog may hold connections no edge will announce.
``--max-clients``: the next client is refused the same way.  Timeouts: a
heap of deadlines, and ``poll()`` waits no longer than the nearest (or not
at all while the ready list has input); a read only stores the time, no
heap operation; each connection's entry is checked once per period (at
most ``min(idle, request timeout)``).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers._nonblocking import Acceptor, Connection, Timers, close_all
from servers.protocol import Session
from servers.tuning import Limits

IN, OUT = select.EPOLLIN | select.EPOLLRDHUP, select.EPOLLOUT
HANGUP, FAILED = select.EPOLLHUP, select.EPOLLERR
EDGE = select.EPOLLET
READ_BUDGET = 16  # recv() calls per socket per turn before serving the others (1 MiB)


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Wait for edges; drain each socket (or remember it), repeat."""
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), IN | EDGE)
    acceptor, timers = Acceptor(listener, limits), Timers(limits)
    clients: dict[int, Connection] = {}
    unread: set[Connection] = set()  # may hold input we have not read to EAGAIN yet
    try:
        while True:
            # Don't block while some socket still has input we know about.
            if any(c.wants_read for c in unread):
                timeout: float | None = 0
            else:
                timeout = timers.timeout(acceptor.retry_at)
            for fd, events in poller.poll(timeout):
                if fd == listener.fileno():
                    accept_all(acceptor, poller, clients, timers, new_session)
                else:
                    handle(clients[fd], events, unread)
                    update(poller, clients, unread, clients[fd])
            for conn in list(unread):
                if drain_input(conn):
                    unread.discard(conn)
                update(poller, clients, unread, conn)
            for conn in timers.expire():
                update(poller, clients, unread, conn)
            if acceptor.retry_at is not None and acceptor.ready():
                # Paused out of descriptors: no edge will tell us about the backlog.
                accept_all(acceptor, poller, clients, timers, new_session)
    finally:
        close_all(clients.values())
        acceptor.close()
        poller.close()


def accept_all(
    acceptor: Acceptor,
    poller: select.epoll,
    clients: dict[int, Connection],
    timers: Timers,
    new_session: Callable[[], Session],
) -> None:
    """Accept until EAGAIN (or a pause): a connection left in the backlog gets no second edge."""
    while (sock := acceptor.accept_one(len(clients))) is not None:
        conn = timers.add(Connection(sock, new_session()))
        clients[conn.fd] = conn
        poller.register(conn.fd, IN | OUT | EDGE)  # once, for good


def drain_input(conn: Connection) -> bool:
    """Read until EAGAIN, at most READ_BUDGET times; True once nothing is left unread.

    False means "stopped early, input may remain": the budget is spent, or
    backpressure paused reading.  The caller keeps the socket on its ready
    list, since epoll will not report those bytes again.
    """
    for _ in range(READ_BUDGET):
        if not conn.wants_read:  # paused, or finished
            return conn.done or conn.eof
        if not conn.on_readable():  # EAGAIN, EOF or a reset: drained
            return True
    return False


def handle(conn: Connection, events: int, unread: set[Connection]) -> None:
    """Note an input edge for the read pass; write until EAGAIN on an output edge."""
    if events & FAILED:
        conn.done = True
        return
    if events & (IN | HANGUP):
        unread.add(conn)  # read in the pass below, within the budget
    if events & OUT:
        conn.on_writable()  # until EAGAIN or nothing left: the next edge needs a full buffer


def update(
    poller: select.epoll, clients: dict[int, Connection], unread: set[Connection], conn: Connection
) -> None:
    """Drop a finished connection; nothing else ever changes in epoll."""
    if conn.done and clients.get(conn.fd) is conn:
        poller.unregister(conn.fd)  # before close: the number may be reused at once
        del clients[conn.fd]
        unread.discard(conn)
        conn.close()
