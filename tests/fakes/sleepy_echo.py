"""Slow on purpose, not broken: a thread-per-client server that sleeps 2 ms before each reply.

Neither side is CPU-bound against it: the server waits in ``time.sleep`` and
the generator waits for replies, so a run's bottleneck class is ``neither``
(latency-bound).  Replies are correct.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits

DELAY = float(os.environ.get("FAKE_SLEEPY_DELAY", "0.002"))


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_client, args=(sock, new_session()), daemon=True).start()


def _client(sock: socket.socket, session: Session) -> None:
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            reply = session.receive_data(data)
            if reply:  # a whole request arrived: answer it late
                time.sleep(DELAY)
            try:
                sock.sendall(reply)
            except OSError:
                return
