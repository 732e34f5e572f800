"""One thread waits on ``select.select()`` for every client at once.

Where the concurrency comes from: no thread or process per client.  Every
socket is non-blocking; one loop asks the kernel "which of these sockets can
I read or write without waiting?" and serves each ready one a little --
one ``recv``, whatever ``send`` takes -- before asking again.  Clients are
interleaved at the granularity of a system call.  What happens on a ready
socket (buffers, backpressure, closing) is shared with the other reactors in
:mod:`servers._nonblocking`; this file is only the waiting.

What it costs: ``select()`` is stateless, so every call rebuilds the lists
of sockets to watch (input from all that are not paused, output from those
with something pending), the kernel copies three bitmaps in and scans them
up to the highest descriptor, and we scan the results: O(n) per wake-up in
the number of *connected* clients, however few are active.

How it fails: ``select()`` takes ``fd_set`` bitmaps of a fixed FD_SETSIZE
bits -- 1024 on Linux -- so it cannot watch a descriptor numbered 1024 or
more (CPython refuses with ``ValueError``; C code that ignores the limit
writes past the bitmap).  With stdin, stdout, stderr and the listening
socket taking 0-3, about 1020 clients fit.  This server closes any new
connection whose descriptor would cross the limit, says so once on stderr,
and keeps serving the clients it has.  Anything slow in the loop (a big
PUT's ``fsync``) stalls every client.  Out of descriptors (EMFILE),
``accept()`` fails and leaves the client in the backlog, so the listening
socket stays readable: a loop that only retried would spin at 100% of a
core until a descriptor is freed.  A WORK wait is a timer in the loop's heap
(:mod:`servers._nonblocking`): waits overlap.  A compute or a block stalls
every client for its whole length, and so does an offload: a hand-written
loop has no executor to hand it to, so it is served as block.  Measured (a
full run on a busy 2-core VM, README's 'What the handler does'): beside one
client's 20,000-unit computes (about 16 ms here) the other clients' p50 was
29 ms; under cpu-bound it used 0.95 cores; beside a 10 ms blocking call
their p50 was 15 ms, 12 ms offloaded.

How it is protected (:mod:`servers._nonblocking` has the details): the
timeouts are a heap of deadlines, and ``select()``'s timeout is the time to
the nearest -- a read only stores the time, no heap operation; each
connection's entry is checked once per period (at most ``min(idle, request
timeout)``).  ``--max-clients``: the next client is told ``ERROR server
busy`` and closed.  Out of descriptors: the waiting clients are refused
through a spare descriptor, and the listener is left out of the read list
for a pause, then put back.  Past FD_SETSIZE: closed, as above.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers._nonblocking import Acceptor, Connection, Timers, close_all, warn_once
from servers.protocol import Session
from servers.tuning import Limits

IN, OUT = 1, 4  # our own flags for "readable" and "writable": select() has none
FD_SETSIZE = 1024  # glibc's fd_set holds descriptors 0..1023


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Wait until some sockets are ready, serve each a little, repeat."""
    listener.setblocking(False)
    acceptor, timers = Acceptor(listener, limits), Timers(limits)
    clients: dict[int, Connection] = {}
    try:
        while True:
            listen = [listener.fileno()] if acceptor.ready() else []  # not while paused
            for fd, events in wait(listen, clients, timers.timeout(acceptor.retry_at)):
                if fd == listener.fileno():
                    for sock in acceptor.accept(len(clients)):
                        if admit(sock):
                            conn = timers.add(Connection(sock, new_session()))
                            clients[conn.fd] = conn
                else:
                    handle(clients[fd], events)
                    update(clients, clients[fd])
            for conn in timers.expire():
                update(clients, conn)
    finally:
        close_all(clients.values())
        acceptor.close()


def wait(
    listen: list[int], clients: dict[int, Connection], timeout: float | None
) -> list[tuple[int, int]]:
    """One ``select()``: build the watch lists from scratch, return (fd, events) pairs."""
    readers = listen + [fd for fd, c in clients.items() if c.wants_read]
    writers = [fd for fd, c in clients.items() if c.wants_write]
    readable, writable, _ = select.select(readers, writers, [], timeout)
    ready = dict.fromkeys(readable, IN)
    for fd in writable:
        ready[fd] = ready.get(fd, 0) | OUT
    return list(ready.items())


def admit(sock: socket.socket) -> bool:
    """Refuse a connection that select() could not watch (descriptor >= FD_SETSIZE)."""
    if sock.fileno() < FD_SETSIZE:
        return True
    warn_once(
        "fd_setsize",
        f"select_reactor: descriptor {sock.fileno()} is over FD_SETSIZE ({FD_SETSIZE}): "
        "closing every new connection past the limit (said once)",
    )
    sock.close()
    return False


def handle(conn: Connection, events: int) -> None:
    """Do what select() says this socket is ready for (a hang-up or error shows as readable)."""
    if events & IN:
        conn.on_readable()
    if events & OUT:
        conn.on_writable()


def update(clients: dict[int, Connection], conn: Connection) -> None:
    """Drop a finished connection; the next wait() rebuilds the lists anyway."""
    if conn.done:
        del clients[conn.fd]
        conn.close()
