"""Serving one connection over a blocking socket: shared by the blocking family.

``blocking_loop``, ``fork_per_client``, ``thread_per_client``, the two
``socketserver`` variants and ``gevent_server`` all hand each accepted
connection to :func:`handle_client`; they differ only in *who* runs it (the
accepting loop itself, a child process, a thread, a greenlet).  Under gevent
the same code is cooperative because gevent's socket yields to the hub
whenever ``recv``/``sendall`` would block.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers.protocol import Session
from servers.tuning import RECV_SIZE


def handle_client(sock: socket.socket, session: Session) -> None:
    """Serve one client until it leaves, sends QUIT or breaks the framing."""
    with sock:
        serve_stream(sock.recv, sock.sendall, session)


def serve_stream(
    recv: Callable[[int], bytes], send: Callable[[bytes], object], session: Session
) -> None:
    """Read, feed the protocol, write the answers; repeat until done.

    ``recv``/``send`` are a socket's ``recv``/``sendall`` or a
    StreamRequestHandler's ``rfile.read1``/``wfile.write``.
    """
    try:
        while not session.closing:
            if session.pending:  # requests held back by the reply budget come first
                reply = session.resume()
            else:
                data = recv(RECV_SIZE)
                if not data:  # the peer closed its side
                    return
                reply = session.receive_data(data)
            if reply:
                send(reply)
    except OSError:
        # Reset, broken pipe, timeout: this client is gone; the server is not.
        return
