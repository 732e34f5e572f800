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
contention grow with the number of busy clients.  Daemon threads are used so
that a client that never leaves cannot keep the process alive at shutdown.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers._blocking import handle_client
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Accept forever; each client gets a thread of its own."""
    while True:
        sock, _ = listener.accept()
        dispatch(sock, new_session)


def dispatch(sock: socket.socket, new_session: Callable[[], Session]) -> None:
    """Start a daemon thread to serve this client; return at once."""
    thread = threading.Thread(target=handle_client, args=(sock, new_session()), daemon=True)
    thread.start()
