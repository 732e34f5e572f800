"""Broken on purpose: accepts every connection, reads everything, never answers.

A load generator pointed at it must still stop by itself on time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_swallow, args=(sock,), daemon=True).start()


def _swallow(sock: socket.socket) -> None:
    with sock:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            return
