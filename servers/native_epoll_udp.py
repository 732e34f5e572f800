"""Reference, not a model: native_epoll's datagram mode, recvmmsg/sendmmsg in C, ECHO only.

The ceiling of the datagram table, as ``native_epoll`` is the TCP tables':
the same binary (``servers/native_epoll.c``), which sees that the socket it
is handed is a UDP one (``SO_TYPE`` is ``SOCK_DGRAM``) and runs its datagram
loop instead of its epoll loop.  Reports show it as the ceiling and never
rank it beside the models.

Where its concurrency comes from: one thread and one blocking UDP socket --
there is nothing else to wait on.  ``recvmmsg`` takes every datagram queued
(up to 64, ``MSG_WAITFORONE``), each is answered in place (an ECHO reply is
the request with its first byte turned to OK: no copy), and ``sendmmsg``
sends the batch's replies: two system calls for up to 64 requests, where
every Python variant makes at least two per request.  What it costs: a C
compiler at run time (:func:`prepare`, shared with ``native_epoll``: one
build of one source) and 4 MiB of static receive buffers.  How it fails: it
serves ECHO only -- WORK, LIST, GET, PUT and QUIT get ``ERROR native_epoll
reference serves ECHO only`` -- and a flood it cannot read in time is
dropped by the kernel like any other.  How it is protected: the protocol's
datagram rules in C (a datagram shorter than a header is dropped, a length
field that disagrees with its size is answered ERROR), nothing per client
to run out of.

:func:`serve` replaces the process with the binary (``exec`` keeps the pid,
so the ready line the command line printed stays true), handing over the
socket's descriptor, the protocol mode and the maximum frame.  SIGTERM/SIGINT
make the binary exit 0.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from servers.native_build import build_cached, exec_binary
from servers.protocol import Session, SessionFactory
from servers.tuning import Limits

SOURCE = Path(__file__).with_name("native_epoll.c")


def serve(sock: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Exec the native binary on the UDP socket; returns only if exec fails."""
    binary = prepare()
    mode, max_frame = settings(new_session)
    exec_binary(binary, sock, mode, max_frame)


def prepare() -> str:
    """Build the binary if this version of the source is not built yet; its path.

    Raises RuntimeError (one line) if there is no compiler or the build fails.
    """
    return build_cached(SOURCE, "native_epoll")


def settings(new_session: Callable[[], Session]) -> tuple[str, int]:
    """("framed" | "raw", max frame) from the command line's session factory."""
    if not isinstance(new_session, SessionFactory):
        raise RuntimeError("native_epoll_udp: needs a SessionFactory to know its settings")
    return new_session.protocol, new_session.max_frame
