"""A fixed pool of worker threads, fed accepted connections through a queue.

Where the concurrency comes from: ``--workers`` threads (default
:data:`DEFAULT_WORKERS`) are started once; the accepting loop puts each
accepted connection on a queue, and a free worker takes it and serves it to
the end with the blocking family's routine, then takes the next.  At most
``--workers`` clients are served at once; the kernel schedules the threads.
Only one of them runs Python code at a time under the GIL; on a
free-threaded build (``python3.13t``) the pool runs in parallel on as many
cores as it has threads, which is why the registry calls it multicore.

What it costs: N threads (a kernel task and a stack each) whatever the load,
and no thread creation per connection -- the cost ``thread_per_client``
pays on every connect is paid once, at start-up.  A queued connection costs
a descriptor and a queue entry.

How it fails: client N+1 is *accepted* -- its connect succeeds, its request
is sent -- and then waits, unanswered, until one of the N clients leaves.
N idle clients (or N slow ones) stop the server for everybody else, for up
to the idle timeout: a pool bounds what a flood of connections costs, not
what N hostile clients can do.  Sixty-four workers serve the echo-small
level of 64 connections; at 256 and 1,000 connections most wait.  This is
what ``concurrent.futures.ThreadPoolExecutor`` does too; it is not used
here because its workers are not daemon threads and interpreter exit joins
them, so a worker serving an idle client would hold SIGTERM up to the idle
timeout.  Hand-written, the pool is a :class:`queue.SimpleQueue` and a
loop.  A long WORK request: a wait, a block or an offload (served as block:
the worker thread needs no executor) holds only its worker, with the GIL
released -- and keeps that worker from the clients queued behind it:
``--workers`` clients in long waits fill the pool.  A compute holds the GIL:
the other workers still get turns but share one core.  Measured (a full run
on a busy 2-core VM, README's 'What the handler does'): beside one client's
20,000-unit computes (about 16 ms here) the other clients' p50 was 231 µs;
under cpu-bound it used 1.09 cores; beside a 10 ms blocking call their p50
was 249 µs, 480 µs offloaded.

How it is protected: each worker's socket has the blocking family's
timeouts (:class:`~servers._blocking.TimedSocket`), counted from when a
worker takes the connection -- time in the queue is not counted, the queue
is bounded instead.  ``--max-clients`` (default 1,024) counts the clients
accepted and not yet finished, served *or queued*: past N workers plus
``--max-clients`` - N waiting, the next client gets ``ERROR server busy`` at
once instead of joining an ever-longer queue.  Out of descriptors, the loop
answers the excess client with a descriptor held in reserve
(:class:`~servers._blocking.SpareDescriptor`) and never spins nor exits.
"""

from __future__ import annotations

import queue
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable

from servers._blocking import SpareDescriptor, handle_client, refuse
from servers.protocol import Session
from servers.tuning import STOP_CHECK, Limits

# --workers when not given: enough to serve the suite's 64-connection echo
# level, few enough that its 256- and 1,000-connection levels show the queue.
DEFAULT_WORKERS = 64


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Start the pool, then accept forever: queue each client, or refuse it past the limit."""
    clients: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
    # Clients accepted and not finished (served or queued); no limit never blocks.
    places = threading.Semaphore(limits.max_clients or 2**31 - 1)
    for number in range(limits.workers or DEFAULT_WORKERS):
        threading.Thread(
            target=work,
            args=(clients, new_session, limits, places),
            name=f"worker-{number}",
            daemon=True,  # a worker serving a client must not hold the process at exit
        ).start()
    listener.settimeout(STOP_CHECK)  # accept() wakes to act on a stop signal (tuning.STOP_CHECK)
    spare = SpareDescriptor()
    try:
        while True:
            accepted = spare.accept(listener)
            if accepted is None:
                continue
            if places.acquire(blocking=False):
                clients.put(accepted[0])  # a free worker takes it now; else it waits its turn
            else:
                refuse(accepted[0])  # workers busy and the queue full: ERROR server busy
    finally:
        spare.close()


def work(
    clients: queue.SimpleQueue[socket.socket],
    new_session: Callable[[], Session],
    limits: Limits,
    places: threading.Semaphore,
) -> None:
    """One worker: take the next queued client, serve it to the end, repeat."""
    # A stop signal is the main thread's: Python runs its handler there, and only a signal
    # the kernel hands to the main thread interrupts its accept() at once. Taken by a
    # worker, it would be acted on only at accept()'s next timeout. So the workers block them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    while True:
        sock = clients.get()
        try:
            handle_client(sock, new_session(), limits)
        except Exception:  # a bug costs one client; a dead worker would shrink the pool for good
            traceback.print_exc(file=sys.stderr)
        finally:
            places.release()
