"""``os.fork()`` per connection; the parent reaps children on SIGCHLD.

Where the concurrency comes from: the accept loop forks; the child serves
the one client with the same blocking routine as every other server in the
blocking family and exits, while the parent goes back to ``accept``.  The
kernel schedules the processes, on every core, and no GIL is shared.

What it costs: a ``fork()`` per connection (copying the page tables of the
parent -- tens to hundreds of microseconds), a process per live client
(pages are shared copy-on-write until touched; Python's reference counting
touches many), and the parent's bookkeeping.

How it fails: a child that exits stays a *zombie* until its parent calls
``wait``; a parent that forgets fills the process table.  This parent reaps
on ``SIGCHLD`` with ``waitpid(WNOHANG)`` (never blocking, so it keeps
accepting), and blocks ``SIGCHLD`` around ``fork`` so a child that exits at
once cannot be reaped before it is recorded.  On shutdown it terminates and
reaps every child, so none is orphaned.  Many clients mean many processes:
``RLIMIT_NPROC`` and memory are the limits.  Not available where there is
no ``fork()`` (Windows).  A long WORK request costs only its own client: a
wait, a block or an offload (served as block: a process per client needs no
executor) sleeps in that child, and a compute runs in that child alone, on
any core -- the processes share no GIL.  Measured (a full run on a busy
2-core VM, README's 'What the handler does'): beside one client's
20,000-unit computes (about 16 ms here) the other clients' p50 was 299 µs;
under cpu-bound it used 1.73 cores; beside a 10 ms blocking call their p50
was 1.4 ms, 3.9 ms offloaded.

How it is protected: each child's socket has a timeout (servers/_blocking.py,
:class:`~servers._blocking.TimedSocket`): an idle client is closed after
``--idle-timeout``, a request still incomplete ``--request-timeout`` after its
first byte is answered ``ERROR request timeout``, a send that makes no
progress for as long gives up -- and the child exits, so a silent client no
longer holds a process forever.  The cost is one more system call per read
and per write (the ``poll`` behind a socket timeout), in the child.  The
client limit is counted in the parent, which knows its live children:
client ``--max-clients`` + 1 (default 1,024) gets ``ERROR server busy`` from
the parent and is closed without a fork, and so is a client whose ``fork()``
fails (``EAGAIN``: the process limit).  The parent closes each connection
once it has forked, so it holds few descriptors; should it still run out,
it answers the excess client with a descriptor held in reserve
(:class:`~servers._blocking.SpareDescriptor`) instead of exiting.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable

from servers._blocking import SpareDescriptor, handle_client, over_limit, refuse
from servers.protocol import Session
from servers.tuning import STOP_CHECK, Limits

CHILDREN: set[int] = set()  # live children, so shutdown can end and reap them


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Accept forever; each client gets a process of its own, up to the client limit."""
    signal.signal(signal.SIGCHLD, reap_children)
    listener.settimeout(STOP_CHECK)  # accept() wakes to act on a stop signal (tuning.STOP_CHECK)
    spare = SpareDescriptor()
    try:
        while True:
            accepted = spare.accept(listener)
            if accepted is None:
                continue
            if over_limit(len(CHILDREN), limits):  # SIGCHLD keeps CHILDREN to the live ones
                refuse(accepted[0])
            else:
                dispatch(accepted[0], new_session, limits, (listener, spare))
    finally:
        spare.close()
        stop_children()


def dispatch(
    sock: socket.socket,
    new_session: Callable[[], Session],
    limits: Limits,
    parents_own: tuple[socket.socket, SpareDescriptor],
) -> None:
    """Fork a child to serve this client (or refuse it, if fork fails); the parent returns."""
    # Hold SIGCHLD until the pid is in CHILDREN, or a child that exits at
    # once could be reaped (and its pid reused) before we recorded it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            run_child(sock, new_session, limits, parents_own)  # never returns
        CHILDREN.add(pid)
    except OSError:  # EAGAIN/ENOMEM: no process for this client
        refuse(sock)
        return
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    sock.close()  # the child has its own copy of the connection


def run_child(
    sock: socket.socket,
    new_session: Callable[[], Session],
    limits: Limits,
    parents_own: tuple[socket.socket, SpareDescriptor],
) -> None:
    """In the child: serve the one client, then leave without running the parent's cleanup."""
    status = 1
    try:
        listener, spare = parents_own
        listener.close()  # only the parent accepts
        spare.close()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        handle_client(sock, new_session(), limits)
        status = 0
    finally:
        os._exit(status)  # not sys.exit: the parent's finally blocks are not ours


def reap_children(signum: int = 0, frame: object = None) -> None:
    """SIGCHLD: collect every child that has exited, without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:  # children exist, none has exited
            return
        CHILDREN.discard(pid)


def stop_children() -> None:
    """Shutdown: terminate every child and wait for each, leaving no zombie."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(CHILDREN):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in list(CHILDREN):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        CHILDREN.discard(pid)
