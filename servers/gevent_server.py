"""``gevent.server.StreamServer``: one greenlet per connection.

Where the concurrency comes from: greenlets -- coroutines that switch on
I/O.  Each connection runs the same blocking routine as the rest of the
blocking family, but on a gevent socket: when ``recv`` or ``sendall`` would
block, the greenlet yields to the hub (libev/libuv), which resumes whichever
greenlet's socket is ready.  Code that looks blocking, scheduled like an
event loop.  No monkey-patching is needed here: StreamServer hands the
handler a gevent socket already.

What it costs: a greenlet per client (a few KiB, its C stack slice copied
to the heap on switch) instead of a thread; one process, so one core.

How it fails: cooperatively.  Anything that blocks without going through
gevent -- a C extension, a CPU-bound request, a blocking file read or
``fsync`` in PUT -- stalls every client, because nothing pre-empts a
greenlet.  Forgetting ``monkey.patch_all()`` in code that uses the standard
``socket`` module directly turns the whole server into a blocking loop.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import gevent
from gevent.server import StreamServer

from servers._blocking import handle_client
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Serve forever; StreamServer spawns a greenlet per accepted client."""
    listener.setblocking(False)  # the hub waits for it to be readable, not accept()
    server = StreamServer(listener, lambda sock, address: dispatch(sock, new_session))
    # Python-level handlers run late under the hub; let gevent deliver these.
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    server.serve_forever()


def dispatch(sock: socket.socket, new_session: Callable[[], Session]) -> None:
    """Already in a new greenlet: serve this client to the end."""
    handle_client(sock, new_session())
