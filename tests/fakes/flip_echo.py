"""Broken on purpose: ECHO replies with the right header and length, one byte wrong.

The status byte and the length field are exactly what a correct server
sends; only the *last* payload byte has its bits inverted.  A generator
that checked the 5-byte header, the reply length, or any prefix of the
reply would count these as successes; every one must be ``wrong_reply``.
Everything except ECHO is served correctly by the real session.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers._blocking import handle_client
from servers.protocol import FrameDecoder, Op, Session, Status, Work, encode_frame
from servers.tuning import Limits

FLIP_AT = -1  # payload index of the wrong byte: the last one


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    serve_flipping(listener, new_session, FLIP_AT)


def serve_flipping(
    listener: socket.socket, new_session: Callable[[], Session], flip_at: int
) -> None:
    """Accept forever; each client gets a daemon thread and a session that flips one byte."""
    while True:
        sock, _ = listener.accept()
        session = FlipEchoSession(new_session(), flip_at)
        threading.Thread(target=handle_client, args=(sock, session), daemon=True).start()


def flip_byte(payload: bytes, index: int) -> bytes:
    """``payload`` with the byte at ``index`` inverted (the last one if ``index`` is past it)."""
    if not payload:
        return payload
    if not -len(payload) <= index < len(payload):
        index = -1
    out = bytearray(payload)
    out[index] ^= 0xFF
    return bytes(out)


class FlipEchoSession:
    """Answers ECHO with one payload byte inverted; delegates the rest."""

    def __init__(self, inner: Session, flip_at: int) -> None:
        self.inner = inner
        self.flip_at = flip_at
        self.decoder = FrameDecoder()

    @property
    def closing(self) -> bool:
        return self.inner.closing

    @property
    def pending(self) -> bool:
        return self.inner.pending

    @property
    def work(self) -> Work | None:
        return self.inner.work

    def work_done(self) -> bytes:
        return self.inner.work_done()

    def receive_data(self, data: bytes) -> bytes:
        self.decoder.receive_data(data)
        out = bytearray()
        while (frame := self.decoder.next_frame()) is not None:
            if frame.code == Op.ECHO:
                out += encode_frame(Status.OK, flip_byte(frame.payload, self.flip_at))
            else:
                out += self.inner.receive_data(encode_frame(frame.code, frame.payload))
        return bytes(out)
