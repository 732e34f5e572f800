"""One client at a time: accept, serve until it leaves, accept the next.

Where the concurrency comes from: nowhere.  This is the baseline every other
model is measured against, and the first server in every sockets tutorial.
While one client is connected, the others wait: the kernel completes their
TCP handshakes into the listen backlog, but nobody reads from them.

What it costs: nothing beyond one process and one socket per client; no
locks, no context switches, no event loop.  For one client at a time it is
as fast as Python gets.

How it fails: a single client that stays connected (or is slow, or idle)
stops the service for everyone else -- the fairness figures show the other
connections starved.  Once the backlog (``listen(backlog)``, capped by
``net.core.somaxconn``) is full, further connection attempts are refused
or time out.  A long WORK request holds everyone up for its whole length,
whatever its kind: a wait (the thread sleeps), a compute, a block, an
offload (served as block: there is nothing to offload to) -- one client at a
time, so nothing overlaps.  Measured (a full run on a busy 2-core VM,
README's 'What the handler does'): its ECHO clients were never served,
neither beside one client's 20,000-unit computes (about 16 ms here) nor
beside a 10 ms blocking call, plain or offloaded (FAILED, not admitted);
under cpu-bound, where 15 of its 16 clients were not admitted either, it
used 0.87 cores.

How it is protected: by its timeouts alone.  The client's socket has a
timeout (servers/_blocking.py, :class:`~servers._blocking.TimedSocket`): a
client idle for ``--idle-timeout`` is closed, a request still incomplete
``--request-timeout`` after its first byte is answered ``ERROR request
timeout`` and closed, a send that makes no progress for as long gives up.
One silent client therefore denies service for at most a timeout instead of
forever -- still a denial: the waiting clients are not answered meanwhile.
The cost is one more system call per read and per write (the ``poll``
behind a socket timeout).  There is no client limit to enforce (one at a
time is the model; ``--max-clients`` is ignored) and no way to run out of
descriptors: the loop holds the listener and one client.  Its one thread
wakes every ``STOP_CHECK`` (0.5 s) in ``accept`` and in a client's ``recv``
(servers/tuning.py): a stop signal that landed just before it blocked is
acted on then.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers._blocking import handle_client
from servers.protocol import Session
from servers.tuning import STOP_CHECK, Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Accept forever; each client is served to the end before the next."""
    # The one thread waits in accept() or in a client's recv(): both wake every
    # STOP_CHECK to act on a stop signal that landed just before they blocked.
    listener.settimeout(STOP_CHECK)
    while True:
        try:
            sock, _ = listener.accept()
        except TimeoutError:  # nobody came: look at the signals, wait again
            continue
        dispatch(sock, new_session, limits)


def dispatch(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Serve this client right here; return only when it has gone or timed out."""
    handle_client(sock, new_session(), limits, wake_every=STOP_CHECK)
