"""What every datagram server does the same way (issue 17): take the protocol's datagram
entry point from the command line's session factory, and send a reply that may be lost.

Written once, as ``_blocking`` is for the stream servers, so that a datagram server's file
holds only how it waits for datagrams and who answers each."""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers.protocol import Session, SessionFactory, Work


def datagram_entry(new_session: Callable[[], Session]) -> Callable[[bytes], bytes | Work | None]:
    """The protocol's datagram entry point from the command line's session factory."""
    if not isinstance(new_session, SessionFactory):
        raise RuntimeError("a datagram server needs the SessionFactory's datagram entry point")
    return new_session.datagram


def send_reply(sock: socket.socket, reply: bytes, address: object) -> None:
    """``sendto``; a reply the kernel refuses (a closed port, a full buffer) is lost alone."""
    try:
        sock.sendto(reply, address)
    except OSError:
        pass
