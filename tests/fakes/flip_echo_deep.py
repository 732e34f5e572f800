"""Broken on purpose: one byte inverted 40,000 bytes into each ECHO payload.

Meant for 64 KiB replies: the generator reads those in several chunks (its
receive buffer is 64 KiB and the reply is 5 bytes more), so the wrong byte
arrives well after the first chunk.  A check of the header, of the length,
or of the first 32 KiB would pass it.  Shorter payloads get their last byte
inverted instead (see ``flip_echo``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import Limits
from tests.fakes.flip_echo import serve_flipping

FLIP_AT = 40_000


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    serve_flipping(listener, new_session, FLIP_AT)
