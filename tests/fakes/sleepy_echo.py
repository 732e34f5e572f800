"""Slow on purpose, not broken: a thread-per-client server that sleeps 2 ms before each reply.

Neither side is CPU-bound against it: the server waits in ``time.sleep`` and
the generator waits for replies, so a run's bottleneck class is ``neither``
(latency-bound).  Replies are correct.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits
from tests.fakes.delayed import Delay, serve_delayed

DELAY = float(os.environ.get("FAKE_SLEEPY_DELAY", "0.002"))


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    serve_delayed(listener, new_session, every_reply)


def every_reply() -> Delay:
    return lambda reply: DELAY if reply else 0.0  # a whole request arrived: answer it late
