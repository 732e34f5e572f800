"""One ``threading.Thread`` per connection.

Where the concurrency comes from: the accept loop hands each connection to a
new OS thread, which runs the same blocking routine as every other server in
the blocking family.  The kernel schedules the threads; a thread blocked in
``recv`` costs nothing but its memory.

What it costs: a thread per client -- a kernel task plus a stack (8 MiB of
address space reserved by default, of which a few tens of KiB are touched),
and the creation of a thread for every connection.  Only one thread runs
Python code at a time (the GIL), so the threads overlap their waiting, not
their work: this model uses one core for Python however many cores there
are, and threads on different cores hand the GIL back and forth.

How it fails: thousands of clients mean thousands of threads; the process
meets ``RLIMIT_NPROC``/``threads-max`` or address-space limits
(``RuntimeError: can't start new thread``), and context switches and GIL
contention grow with the number of busy clients.  Every thread holds a
descriptor, so the process runs out of descriptors too, and ``accept()``
then raises ``EMFILE`` -- unhandled, that ends the server.  Daemon threads
are used so that a client that never leaves cannot keep the process alive
at shutdown.  A long WORK request: a wait, a block or an offload (served as
block: the client's thread needs no executor) holds only that thread, with
the GIL released, so the waits of many clients overlap.  A compute holds the
GIL: the other threads still get turns (the interpreter switches every 5 ms)
but all of them share one core.  Measured (a full run on a busy 2-core VM,
README's 'What the handler does'): beside one client's 20,000-unit computes
(about 16 ms here) the other clients' p50 was 208 µs; under cpu-bound it
used 1.08 cores; beside a 10 ms blocking call their p50 was 322 µs, 824 µs
offloaded.

How it is protected: each thread's socket has a timeout (servers/_blocking.py,
:class:`~servers._blocking.TimedSocket`): an idle client is closed after
``--idle-timeout``, a request still incomplete ``--request-timeout`` after its
first byte is answered ``ERROR request timeout``, a send that makes no
progress for as long gives up -- so a thread blocked on a silent client ends,
and the thread with it.  The timeouts cost the thread nothing while it waits;
each read and write costs one more system call (the ``poll`` behind a socket
timeout).  A semaphore counts the live client threads: client
``--max-clients`` + 1 (default 1,024) gets ``ERROR server busy`` and is closed
by the accepting loop, and so is a client whose thread cannot be started.
Out of descriptors, the loop answers the excess client with a descriptor held
in reserve (:class:`~servers._blocking.SpareDescriptor`) and never spins nor
exits.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers._blocking import SpareDescriptor, handle_client, refuse
from servers.protocol import Session
from servers.tuning import STOP_CHECK, Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Accept forever; each client gets a thread of its own, up to the client limit."""
    listener.settimeout(STOP_CHECK)  # accept() wakes to act on a stop signal (tuning.STOP_CHECK)
    spare = SpareDescriptor()
    # A semaphore with no limit never blocks: one code path for both cases.
    slots = threading.Semaphore(limits.max_clients or 2**31 - 1)
    try:
        while True:
            accepted = spare.accept(listener)
            if accepted is not None:
                dispatch(accepted[0], new_session, limits, slots)
    finally:
        spare.close()


def dispatch(
    sock: socket.socket,
    new_session: Callable[[], Session],
    limits: Limits,
    slots: threading.Semaphore,
) -> None:
    """Start a daemon thread to serve this client, or refuse it busy; return at once."""
    if not slots.acquire(blocking=False):  # --max-clients threads are serving already
        refuse(sock)
        return
    thread = threading.Thread(
        target=run_client, args=(sock, new_session(), limits, slots), daemon=True
    )
    try:
        thread.start()
    except RuntimeError:  # can't start new thread: the process is at its limit
        slots.release()
        refuse(sock)


def run_client(
    sock: socket.socket, session: Session, limits: Limits, slots: threading.Semaphore
) -> None:
    """In the client's thread: serve it to the end, then give its place back."""
    try:
        handle_client(sock, session, limits)
    finally:
        slots.release()
