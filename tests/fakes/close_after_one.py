"""Broken on purpose: answers one request per connection correctly, then closes it.

The load generator must count each close as a "reset", reopen the
connection, and count the correct replies as successes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers.protocol import FrameDecoder, Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_client, args=(sock, new_session()), daemon=True).start()


def _client(sock: socket.socket, session: Session) -> None:
    decoder = FrameDecoder()
    with sock:
        try:
            while data := sock.recv(65536):
                decoder.receive_data(data)
                if decoder.next_frame() is not None:
                    sock.sendall(session.receive_data(data))
                    return
        except OSError:
            return
