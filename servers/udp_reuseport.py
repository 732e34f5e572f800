"""N worker processes, each with its own SO_REUSEPORT UDP socket on the same port.

Where the concurrency comes from: the parent makes ``--workers`` UDP sockets
(default: the CPUs the server may use), all bound to the same address and
port with ``SO_REUSEPORT``, and forks a worker for each.  The *kernel*
picks the socket for every datagram by a hash of its source and destination
addresses and ports, so each worker reads only its own share, with no lock
and no shared queue -- how DNS servers (BIND, Unbound, Knot) use every core.
Each worker is a plain loop: ``recvfrom``, :func:`servers.protocol.answer_datagram`
(via ``new_session.datagram``), ``sendto``.  No GIL is shared.

What it costs: N processes (one interpreter each) whatever the load.  The
hash balances *flows*, not work: one client's datagrams always land on the
same worker, however busy it is, and with few flows some workers idle.
``SO_REUSEPORT`` must be set *before* ``bind``: the command line reads
:data:`LISTEN_OPTIONS` so that socket #0, which it makes, can be joined.

How it fails: a worker that dies leaves its socket without a reader; the
parent keeps every socket open, so the datagrams hashed to it queue in that
socket's receive buffer until a replacement reads them, and once the buffer
is full the kernel drops them (``RcvbufErrors``).  A WORK wait is a timer in
the worker's heap: waits overlap.  A compute, a block or an offload (no
executor: served as block) stalls every flow of that worker, and only
those.  A flood fills the receive buffers and the kernel drops the rest.

How it is protected: the parent supervises.  It waits for a worker to die
(``os.waitpid``, polled every ``STOP_CHECK``, 0.5 s), says so on stderr and
forks a replacement on the same socket -- after a pause if the dead one
lived under a second, so a worker that dies at once cannot make the parent
fork in a loop.  On SIGTERM/SIGINT it terminates every worker and reaps
each: no zombie, no orphan.  Each worker holds at most ``--max-clients``
(default 1,024) WORK waits in its heap; the next is answered ``ERROR server
busy``. Malformed input: a datagram shorter than a header is dropped, one
whose length field disagrees with its size is answered ERROR,
LIST/GET/PUT/QUIT ``ERROR use TCP`` (docs/PROTOCOL.md, "Datagrams").
"""

from __future__ import annotations

import heapq
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from servers._datagram import datagram_entry, send_reply
from servers.protocol import BUSY_REPLY, Session, Work, work_reply
from servers.tuning import STOP_CHECK, Limits

# What the command line sets on socket #0 before bind: the workers' sockets join it.
LISTEN_OPTIONS = {"reuse_port": True}
# A worker that died younger than this is restarted only after as long a pause.
RESTART_PAUSE = 1.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

STOP_TIMEOUT = 2.0  # seconds a worker gets to die of SIGTERM before SIGKILL


def serve(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Make N sockets, fork a worker on each, replace any that dies; stop them all at the end."""
    count = limits.workers or len(os.sched_getaffinity(0))
    sockets = [sock] + [join(sock) for _ in range(count - 1)]
    answer = datagram_entry(new_session)
    workers: dict[int, tuple[int, float]] = {}  # pid -> (its socket, when it started)

    def start(index: int) -> None:
        # Hold SIGTERM/SIGINT until the pid is recorded: a worker we do not know of
        # would not be stopped, and would outlive us.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(index, sockets, answer, limits)  # never returns
            workers[pid] = (index, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    try:
        for index in range(count):
            start(index)
        while True:
            # Not a plain os.wait(): a SIGTERM landing after Python last checked for signals
            # and before wait4() blocks is handled in C and interrupts nothing, so the stop
            # would wait for the next worker death (seen: 1 stop in ~40 hung). Non-blocking
            # waits with a sleep between bound that to STOP_CHECK.
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(STOP_CHECK)
                continue
            if pid not in workers:
                continue
            index, started = workers.pop(pid)
            print(
                f"udp_reuseport: worker {index} (pid {pid}) {describe(status)}; restarting it",
                file=sys.stderr,
                flush=True,
            )
            if time.monotonic() - started < RESTART_PAUSE:
                time.sleep(RESTART_PAUSE)
            restart(start, index)
    finally:
        stop_workers(workers)
        for other in sockets[1:]:  # socket #0 is the command line's to close
            other.close()


def restart(start: Callable[[int], None], index: int) -> None:
    """Fork a replacement; while fork fails (EAGAIN, ENOMEM), say so and try again."""
    while True:
        try:
            return start(index)
        except OSError as exc:
            print(f"udp_reuseport: cannot fork worker {index}: {exc}", file=sys.stderr)
            time.sleep(RESTART_PAUSE)


def join(sock: socket.socket) -> socket.socket:
    """Another UDP socket on ``sock``'s address and port (it must have SO_REUSEPORT)."""
    other = socket.socket(sock.family, socket.SOCK_DGRAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(sock.getsockname()[:2])
    return other


def run_worker(
    index: int,
    sockets: list[socket.socket],
    answer: Callable[[bytes], bytes | Work | None],
    limits: Limits,
) -> None:
    """In the child: serve socket ``index`` until killed; never run the parent's cleanup."""
    status = 1
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)  # the kernel closes our sockets
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for number, other in enumerate(sockets):
            if number != index:
                other.close()  # this worker reads its own socket only
        worker_loop(sockets[index], answer, limits.max_clients or 1 << 30)
        status = 0
    finally:
        os._exit(status)  # not sys.exit: the parent's finally blocks are not ours


def worker_loop(
    sock: socket.socket, answer: Callable[[bytes], bytes | Work | None], limit: int
) -> None:
    """``recvfrom``, answer, ``sendto``; WORK waits in a heap, sent when due."""
    waits: list[tuple[float, int, Work, object]] = []  # (due, order, work, address)
    order = 0
    current: float | None = None  # the socket's timeout now: set only when it changes
    while True:
        while waits and waits[0][0] <= time.monotonic():
            _, _, work, address = heapq.heappop(waits)
            send_reply(sock, work_reply(work), address)
        # settimeout costs two fcntl calls: with no wait pending it stays blocking (None)
        timeout = max(1e-4, waits[0][0] - time.monotonic()) if waits else None
        if timeout != current:
            sock.settimeout(timeout)
            current = timeout
        try:
            data, address = sock.recvfrom(65_535)
        except TimeoutError:
            continue
        reply = answer(data)
        if type(reply) is Work:
            if len(waits) >= limit:
                send_reply(sock, BUSY_REPLY, address)
            else:
                order += 1
                heapq.heappush(waits, (time.monotonic() + reply.seconds, order, reply, address))
        elif reply is not None:
            send_reply(sock, reply, address)


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def stop_workers(workers: dict[int, tuple[int, float]]) -> None:
    """Shutdown: terminate every worker and wait for each, leaving no zombie and no orphan.

    A worker that does not die of SIGTERM within STOP_TIMEOUT is killed: one forked in
    the instant our own stop handler ran inherits its ignored SIGTERM until it sets its
    own, and a SIGTERM sent to an ignored signal is discarded, not kept."""
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    left = set(workers)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    left.discard(pid)
            except ChildProcessError:
                left.discard(pid)
        if left:
            time.sleep(0.01)
    for pid in left:  # still alive: SIGKILL cannot be ignored
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    workers.clear()
