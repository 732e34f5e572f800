"""Broken on purpose: ECHO replies of the right length whose last payload byte is wrong.

A checker that compares only the header (status and length), or only the
start of the payload, passes it; one that compares every byte does not.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers.protocol import FrameDecoder, Session, Status, encode_frame


def serve(listener: socket.socket, new_session: Callable[[], Session]) -> None:
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
                    payload = bytearray(frame.payload)
                    if payload:
                        payload[-1] ^= 0x01
                    sock.sendall(encode_frame(Status.OK, bytes(payload)))
        except OSError:
            return
