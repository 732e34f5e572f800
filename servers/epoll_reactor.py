"""One thread waits on ``select.epoll()`` for every client, level-triggered.

Where the concurrency comes from: the same loop as ``poll_reactor`` -- one
thread, non-blocking sockets, serve each ready socket a little -- but the
set of watched sockets lives in the kernel.  ``register``/``modify``/
``unregister`` change it (one ``epoll_ctl`` system call each) and
``poll()`` returns only the sockets that are ready.  Level-triggered (the
default): a socket that still has input, or still has room for output, is
reported again on every call, so serving it "a little" is safe.  What happens
on a ready socket is shared with the other reactors in
:mod:`servers._nonblocking`; this file is only the waiting.

What it costs: O(ready) per wake-up instead of O(connected), so ten
thousand idle clients cost memory, not time.  The price is a system call
for every interest change -- starting and stopping to watch for output
around each partial write, pausing input for backpressure.  One thread, so
one core.  Linux only (BSD and macOS have kqueue instead).

How it fails: as every single-threaded reactor does -- anything slow in the
loop (a big PUT's ``fsync``, a GET of a large file) stalls every client.
Out of descriptors (EMFILE), ``accept()`` fails and leaves the client in
the backlog, so the listening socket stays readable: a loop that only
retried would spin at 100% of a core until a descriptor is freed.  A WORK
wait is a timer in the loop's heap (:mod:`servers._nonblocking`): waits
overlap.  A compute or a block stalls every client for its whole length, and
so does an offload: a hand-written loop has no executor to hand it to, so it
is served as block.  Measured (a full run on a busy 2-core VM, README's
'What the handler does'): beside one client's 20,000-unit computes (about
16 ms here) the other clients' p50 was 26 ms; under cpu-bound it used
0.98 cores; beside a 10 ms blocking call their p50 was 12 ms, 14 ms
offloaded.

How it is protected (:mod:`servers._nonblocking` has the details): the
timeouts are a heap of deadlines, and ``poll()`` waits no longer than the
nearest -- a read only stores the time, no ``epoll_ctl``, no heap
operation; each connection's entry is checked once per period (at most
``min(idle, request timeout)``).  ``--max-clients``: the next client is
told ``ERROR server busy`` and closed.  Out of descriptors: the waiting
clients are refused through a spare descriptor, and the listener is
unwatched (``modify(listener, 0)``) for a pause, then watched again.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers._nonblocking import Acceptor, Connection, Timers, close_all
from servers.protocol import Session
from servers.tuning import Limits

IN, OUT = select.EPOLLIN, select.EPOLLOUT
HANGUP, FAILED = select.EPOLLHUP, select.EPOLLERR


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Wait until some sockets are ready, serve each a little, repeat."""
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), IN)
    acceptor, timers = Acceptor(listener, limits), Timers(limits)
    clients: dict[int, Connection] = {}
    watching: dict[int, int] = {}  # fd -> the events we asked epoll about
    listening = True
    try:
        while True:
            for fd, events in poller.poll(timers.timeout(acceptor.retry_at)):
                if fd == listener.fileno():
                    for sock in acceptor.accept(len(clients)):
                        conn = timers.add(Connection(sock, new_session()))
                        clients[conn.fd] = conn
                        watching[conn.fd] = interest(conn)
                        poller.register(conn.fd, watching[conn.fd])
                else:
                    handle(clients[fd], events)
                    update(poller, clients, watching, clients[fd])
            for conn in timers.expire():
                update(poller, clients, watching, conn)
            if acceptor.ready() != listening:  # paused out of descriptors, or resumed
                listening = not listening
                poller.modify(listener.fileno(), IN if listening else 0)
    finally:
        close_all(clients.values())
        acceptor.close()
        poller.close()


def handle(conn: Connection, events: int) -> None:
    """Do what the poller says this socket is ready for."""
    if events & FAILED:
        conn.done = True
        return
    if events & (IN | HANGUP):  # a hang-up shows as a read of b"" or an error
        conn.on_readable()
    if events & OUT:
        conn.on_writable()


def interest(conn: Connection) -> int:
    """What to wait for: input unless paused, output only while some is pending."""
    return (IN if conn.wants_read else 0) | (OUT if conn.wants_write else 0)


def update(
    poller: select.epoll, clients: dict[int, Connection], watching: dict[int, int], conn: Connection
) -> None:
    """Drop a finished connection, or tell the poller if what we wait for changed."""
    if conn.done:
        poller.unregister(conn.fd)  # before close: the number may be reused at once
        del clients[conn.fd], watching[conn.fd]
        conn.close()
    elif interest(conn) != watching[conn.fd]:
        watching[conn.fd] = interest(conn)
        poller.modify(conn.fd, watching[conn.fd])
