"""Slow to start, then fast: each connection's first reply waits 0.4 s, later ones do not.

Like a server that forks or spawns a thread per client lazily, or warms a
cache per connection.  A load generator that started measuring at once would
see connections with no completions and call them starved; one that admits
every connection before measuring must not.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits

FIRST_DELAY = float(os.environ.get("FAKE_FIRST_DELAY", "0.4"))


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_client, args=(sock, new_session()), daemon=True).start()


def _client(sock: socket.socket, session: Session) -> None:
    first = True
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            reply = session.receive_data(data)
            if reply and first:
                first = False
                time.sleep(FIRST_DELAY)
            try:
                sock.sendall(reply)
            except OSError:
                return
