"""Edge-triggered epoll reactor: ``select.epoll()`` with ``EPOLLET``, drained to ``EAGAIN``.

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

This loop keeps the rule without letting one fast client starve the rest
(``epoll(7)``, "possible pitfalls"): it reads at most :data:`READ_BUDGET`
chunks per socket per turn, and a socket that has not yet said ``EAGAIN`` is
kept on a *ready list* and served again on the next turn, while epoll is
polled without blocking.  A connection paused by backpressure stays on the
ready list too, so reading resumes as soon as its output drains.  (Here that
is belt and braces: when any edge wakes a socket, epoll reports its whole
readiness, so the output edge that drains a paused connection also says
"readable" if input is waiting.  A loop that registered input alone would
have no such luck.)  What happens on a ready socket (buffers, backpressure,
closing) is shared with the other reactors in :mod:`servers._nonblocking`.

What it costs: no ``epoll_ctl`` after ``register`` -- no system call to
start or stop watching for output around partial writes, or to pause input
-- but a wake-up for every "room was freed" edge even when there is nothing
to send, and one extra ``recv``/``accept`` per socket per wake-up to see
``EAGAIN``.  One thread, so one core.  Linux only.

How it fails: forgetting to drain (or to remember what was not drained)
hangs clients silently, with no error anywhere -- the classic
edge-triggered bug.  Anything slow in the loop stalls every client.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers._nonblocking import Connection, accept_clients, close_all
from servers.protocol import Session

IN, OUT = select.EPOLLIN | select.EPOLLRDHUP, select.EPOLLOUT
HANGUP, FAILED = select.EPOLLHUP, select.EPOLLERR
EDGE = select.EPOLLET
READ_BUDGET = 16  # recv() calls per socket per turn before serving the others (1 MiB)


def serve(listener: socket.socket, new_session: Callable[[], Session]) -> None:
    """Wait for edges; drain each socket (or remember it), repeat."""
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), IN | EDGE)
    clients: dict[int, Connection] = {}
    unread: set[Connection] = set()  # may hold input we have not read to EAGAIN yet
    try:
        while True:
            # Don't block while some socket still has input we know about.
            timeout = 0 if any(c.wants_read for c in unread) else -1
            for fd, events in poller.poll(timeout):
                if fd == listener.fileno():
                    for sock in accept_clients(listener, None):  # None: until EAGAIN
                        conn = Connection(sock, new_session())
                        clients[conn.fd] = conn
                        poller.register(conn.fd, IN | OUT | EDGE)  # once, for good
                else:
                    handle(clients[fd], events, unread)
                    update(poller, clients, unread, clients[fd])
            for conn in list(unread):
                if conn.on_readable(READ_BUDGET):
                    unread.discard(conn)
                update(poller, clients, unread, conn)
    finally:
        close_all(clients.values())
        poller.close()


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
