"""Slow to start, then fast: each connection's first reply waits 0.4 s, later ones do not.

Like a server that forks or spawns a thread per client lazily, or warms a
cache per connection.  A load generator that started measuring at once would
see connections with no completions and call them starved; one that admits
every connection before measuring must not.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits
from tests.fakes.delayed import Delay, serve_delayed

FIRST_DELAY = float(os.environ.get("FAKE_FIRST_DELAY", "0.4"))


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    serve_delayed(listener, new_session, first_reply_only)


def first_reply_only() -> Delay:
    """A connection's first reply waits FIRST_DELAY; the later ones go at once."""
    waited = False

    def delay(reply: bytes) -> float:
        nonlocal waited
        if not reply or waited:
            return 0.0
        waited = True
        return FIRST_DELAY

    return delay
