"""N worker processes, each with its own SO_REUSEPORT listener and epoll loop.

Where the concurrency comes from: the parent forks ``--workers`` processes
(default: the CPUs the server may use, ``os.sched_getaffinity``).  Each
accepts on a listening socket of its own -- all bound to the same address
and port with ``SO_REUSEPORT`` -- and serves its clients with the reactors'
non-blocking connection in its own epoll loop.  The *kernel* spreads new
connections over the listeners (a hash of the addresses and ports), so the
workers neither share an accept queue nor wake each other up for one
connection (the "thundering herd" of N processes waiting on one listener).
No GIL is shared: N workers can use N cores.

What it costs: N processes (one interpreter each) whatever the load.  The
hash balances *connections*, not work: a worker can get the busy clients
while another idles, and a client stays with its worker for life.  Every
``SO_REUSEPORT`` listener of the port must belong to the same user, and
``SO_REUSEPORT`` must be set *before* ``bind``: the command line reads
:data:`LISTEN_OPTIONS` so that listener #0, which it makes, can be joined.

How it fails: a worker that dies takes its clients' connections with it.
A *listener* that closes loses more: the connections queued on it (done
with the handshake, not yet accepted) are reset, not handed to the other
listeners (unless ``net.ipv4.tcp_migrate_req`` is set, Linux 5.14+).  So
the parent makes all N listeners up front and keeps them open: worker i,
and any replacement for it, accepts on listener i, and while it is being
replaced the kernel keeps queueing on listener i -- a restart loses nothing
queued, it only delays it.  Over a Unix socket ``SO_REUSEPORT`` does not
apply (a second bind to the path fails): the registry says so.  A WORK wait
is a timer in a worker's heap: waits overlap.  A compute, a block or an
offload (no executor: served as block) stalls every client of that worker,
and only those: the other workers go on, on their own cores -- but the
kernel goes on handing new connections to the stalled worker's listener too
(it balances connections, not work).  Measured (a full run on a busy 2-core
VM, README's 'What the handler does'): beside one client's 20,000-unit
computes (about 16 ms here) the other clients' p50 was 20 ms; under
cpu-bound it used 1.81 cores; beside a 10 ms blocking call their p50 was
11 ms, 12 ms offloaded.

How it is protected: the parent supervises.  It waits for a worker to die
(``os.waitpid``, polled every ``STOP_CHECK``, 0.5 s), says so on stderr and
forks a replacement on the same listener -- after a pause if the dead one
lived under a second, so a worker that dies at once cannot make the parent
fork in a loop.  On SIGTERM/SIGINT it terminates every worker and reaps
each: no zombie, no orphan.  In each worker the reactors' protections apply
(:mod:`servers._nonblocking`): a timer heap for the timeouts, a spare
descriptor and a paused listener out of descriptors.  ``--max-clients`` is
shared by all workers, not per worker -- the hash would otherwise refuse a
client at one worker while another has room: each worker writes its number
of clients into its own slot of a shared memory array, and refuses a new
client when the sum reaches the limit.  No lock: two workers accepting at
the same instant can both admit the last place, so the limit can be
overshot by at most N - 1 for a moment.  The parent zeroes a dead worker's
slot.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

from servers._nonblocking import Acceptor, Connection, Timers, close_all
from servers.protocol import Session
from servers.tuning import LISTEN_BACKLOG, STOP_CHECK, Limits

# What the command line adds to socket.create_server() for listener #0.
LISTEN_OPTIONS = {"reuse_port": True}
# A worker that died younger than this is restarted only after as long a pause.
RESTART_PAUSE = 1.0
UNIX_REASON = "SO_REUSEPORT balances TCP listeners only; a Unix socket path binds once"

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

IN, OUT = select.EPOLLIN, select.EPOLLOUT
HANGUP, FAILED = select.EPOLLHUP, select.EPOLLERR


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Make N listeners, fork a worker on each, replace any that dies; stop them all at the end."""
    if listener.family == socket.AF_UNIX:
        raise RuntimeError(UNIX_REASON)
    count = limits.workers or len(os.sched_getaffinity(0))
    listeners = [listener] + [join(listener) for _ in range(count - 1)]
    places = SharedCounts(count)
    workers: dict[int, tuple[int, float]] = {}  # pid -> (its listener, when it started)

    def start(index: int) -> None:
        # Hold SIGTERM/SIGINT until the pid is recorded: a worker we do not know of
        # would not be stopped, and would outlive us.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(index, listeners, new_session, limits, places)  # never returns
            workers[pid] = (index, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    try:
        for index in range(count):
            start(index)
        while True:
            # Not a plain os.wait(): a SIGTERM landing after Python last checked for signals
            # and before wait4() blocks is handled in C and interrupts nothing, so the stop
            # would wait for the next worker death. Non-blocking waits with a sleep between
            # bound that to STOP_CHECK (a worker's death is seen as late, at most).
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(STOP_CHECK)
                continue
            if pid not in workers:
                continue
            index, started = workers.pop(pid)
            print(
                f"prefork_reuseport: worker {index} (pid {pid}) {describe(status)}; restarting it",
                file=sys.stderr,
                flush=True,
            )
            places.clear(index)  # its clients died with it
            if time.monotonic() - started < RESTART_PAUSE:
                time.sleep(RESTART_PAUSE)
            restart(start, index)
    finally:
        stop_workers(workers)
        for other in listeners[1:]:  # listener #0 is the command line's to close
            other.close()


def restart(start: Callable[[int], None], index: int) -> None:
    """Fork a replacement; while fork fails (EAGAIN, ENOMEM), say so and try again."""
    while True:
        try:
            return start(index)
        except OSError as exc:
            print(f"prefork_reuseport: cannot fork worker {index}: {exc}", file=sys.stderr)
            time.sleep(RESTART_PAUSE)


def join(listener: socket.socket) -> socket.socket:
    """Another listener on ``listener``'s address and port (it must have SO_REUSEPORT)."""
    host, port = listener.getsockname()[:2]
    return socket.create_server(
        (host, port), family=listener.family, backlog=LISTEN_BACKLOG, reuse_port=True
    )


def run_worker(
    index: int,
    listeners: list[socket.socket],
    new_session: Callable[[], Session],
    limits: Limits,
    places: SharedCounts,
) -> None:
    """In the child: serve listener ``index`` until killed; never run the parent's cleanup."""
    status = 1
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)  # the kernel closes our sockets
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for number, other in enumerate(listeners):
            if number != index:
                other.close()  # this worker accepts on its own listener only
        worker_loop(listeners[index], new_session, limits, places, index)
        status = 0
    finally:
        os._exit(status)  # not sys.exit: the parent's finally blocks are not ours


def worker_loop(
    listener: socket.socket,
    new_session: Callable[[], Session],
    limits: Limits,
    places: SharedCounts,
    index: int,
) -> None:
    """``epoll_reactor``'s loop, on this worker's listener, counting clients in ``places``.

    A copy, with ``handle``/``interest``/``update`` below, not an import: no variant
    imports another (tests/test_registry.py), so that each file reads whole.  Diff it
    against ``servers/epoll_reactor.py``: only the lines with ``places`` differ.
    """
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
                    others = places.total() - places.counts[index] if limits.max_clients else 0
                    for sock in acceptor.accept(others + len(clients)):
                        conn = timers.add(Connection(sock, new_session()))
                        clients[conn.fd] = conn
                        watching[conn.fd] = interest(conn)
                        poller.register(conn.fd, watching[conn.fd])
                else:
                    handle(clients[fd], events)
                    update(poller, clients, watching, clients[fd])
            for conn in timers.expire():
                update(poller, clients, watching, conn)
            places.counts[index] = len(clients)
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
    if events & (IN | HANGUP):
        conn.on_readable()
    if events & OUT:
        conn.on_writable()


def interest(conn: Connection) -> int:
    return (IN if conn.wants_read else 0) | (OUT if conn.wants_write else 0)


def update(
    poller: select.epoll, clients: dict[int, Connection], watching: dict[int, int], conn: Connection
) -> None:
    """Drop a finished connection, or tell the poller if what we wait for changed."""
    if conn.done:
        poller.unregister(conn.fd)
        del clients[conn.fd], watching[conn.fd]
        conn.close()
    elif interest(conn) != watching[conn.fd]:
        watching[conn.fd] = interest(conn)
        poller.modify(conn.fd, watching[conn.fd])


class SharedCounts:
    """One integer per worker in memory shared across fork(): its number of clients.

    Each slot has one writer (its worker; the parent once it is dead), so
    no lock is needed to write; a sum read while others write is a moment old.
    """

    def __init__(self, workers: int) -> None:
        self.memory = mmap.mmap(-1, 8 * workers)  # anonymous and MAP_SHARED: fork shares it
        self.counts = memoryview(self.memory).cast("q")

    def total(self) -> int:
        return sum(self.counts)

    def clear(self, index: int) -> None:
        self.counts[index] = 0


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def stop_workers(workers: dict[int, tuple[int, float]]) -> None:
    """Shutdown: terminate every worker and wait for each, leaving no zombie and no orphan."""
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in workers:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    workers.clear()
