"""Broken on purpose: answers every request with a frame whose status byte is 7 (no such status).

The load generator must count these as "protocol" errors, not wrong replies
and never successes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers.protocol import FrameDecoder, Session, encode_frame
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_client, args=(sock,), daemon=True).start()


def _client(sock: socket.socket) -> None:
    decoder = FrameDecoder()
    with sock:
        try:
            while data := sock.recv(65536):
                decoder.receive_data(data)
                for frame in decoder.frames():
                    sock.sendall(encode_frame(7, frame.payload))
        except OSError:
            return
