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
or time out.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers._blocking import handle_client
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Accept forever; each client is served to the end before the next."""
    while True:
        sock, _ = listener.accept()
        dispatch(sock, new_session)


def dispatch(sock: socket.socket, new_session: Callable[[], Session]) -> None:
    """Serve this client right here; return only when it has gone."""
    handle_client(sock, new_session())
