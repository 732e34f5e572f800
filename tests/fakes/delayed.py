"""The loop every delaying fake shares: a thread per client, correct replies, sent late.

A fake gives :func:`serve_delayed` a ``rule``: called once per connection, it
returns the function that says how long to hold each reply (seconds, 0 for
none).  So each fake file holds only *when* it is slow.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from servers.protocol import Session

Delay = Callable[[bytes], float]  # reply -> seconds to hold it


def serve_delayed(
    listener: socket.socket, new_session: Callable[[], Session], rule: Callable[[], Delay]
) -> None:
    while True:
        sock, _ = listener.accept()
        args = (sock, new_session(), rule())
        threading.Thread(target=_client, args=args, daemon=True).start()


def _client(sock: socket.socket, session: Session, delay: Delay) -> None:
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            reply = session.receive_data(data)
            wait = delay(reply)
            if wait > 0:
                time.sleep(wait)
            try:
                sock.sendall(reply)
            except OSError:
                return
