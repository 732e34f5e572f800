"""Broken on purpose: a thread-per-client server that stalls every reply once for 300 ms.

``PAUSE_AFTER`` seconds after the first request it receives, every
connection holds its replies until ``PAUSE`` seconds have passed (a GC
pause, a disk stall).  An open-loop load generator must show the stall in
its corrected latency; a closed-loop one hides it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits
from tests.fakes.delayed import serve_delayed

PAUSE_AFTER = float(os.environ.get("FAKE_PAUSE_AFTER", "1.0"))
PAUSE = float(os.environ.get("FAKE_PAUSE", "0.3"))
_first: list[float] = []
_lock = threading.Lock()


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    serve_delayed(listener, new_session, lambda: one_stall)


def one_stall(reply: bytes) -> float:
    """Every connection holds its replies during one window, PAUSE_AFTER s after the first."""
    with _lock:
        if not _first:
            _first.append(time.monotonic())
    start = _first[0] + PAUSE_AFTER
    now = time.monotonic()
    return start + PAUSE - now if start <= now < start + PAUSE else 0.0
