"""Broken on purpose: a thread-per-client server whose ECHO answers the wrong bytes.

Everything except ECHO is served correctly by the real session, so a check
that only looked at PUT/GET, or only at the status byte, would pass it; the
verify step of ``run_all.py`` must reject it because the echoed bytes differ.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from servers._blocking import handle_client
from servers.protocol import FrameDecoder, Op, Session, Status, Work, encode_frame
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Accept forever; each client gets a daemon thread and a lying session."""
    while True:
        sock, _ = listener.accept()
        session = BadEchoSession(new_session())
        threading.Thread(target=handle_client, args=(sock, session), daemon=True).start()


class BadEchoSession:
    """Answers ECHO with the payload reversed plus one byte; delegates the rest."""

    def __init__(self, inner: Session) -> None:
        self.inner = inner
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

    def resume(self) -> bytes:
        return self.inner.resume()

    def receive_data(self, data: bytes) -> bytes:
        self.decoder.receive_data(data)
        out = bytearray()
        while (frame := self.decoder.next_frame()) is not None:
            if frame.code == Op.ECHO:
                out += encode_frame(Status.OK, frame.payload[::-1] + b"?")
            else:
                out += self.inner.receive_data(encode_frame(frame.code, frame.payload))
        return bytes(out)
