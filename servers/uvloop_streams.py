"""The ``asyncio_streams`` server, unchanged, on uvloop's event loop (libuv).

Where the concurrency comes from: the same task per connection as
``asyncio_streams`` -- ``handle_client`` and ``converse`` in
:mod:`servers._asyncio_streams` -- and this file only swaps the loop, as
``uvloop_protocol`` does for the protocol server.  uvloop is a drop-in
asyncio event loop written in Cython on top of libuv: the waiting (epoll on
Linux), the transports and the callback dispatch run in C.  The streams do
not: ``StreamReader``, ``StreamWriter`` and their ``StreamReaderProtocol``
are asyncio's own Python classes, run on uvloop's transports, and every
task step is still a Python coroutine resumed by the loop.

What it costs: everything ``asyncio_streams`` pays above the transport --
StreamReader's buffer, two awaits per request, a timeout per read -- on a
cheaper loop and transport.  So two gaps can be read off the report:
``asyncio_streams`` minus ``uvloop_streams`` is what asyncio's pure-Python
loop and transports cost under streams; ``uvloop_streams`` minus
``uvloop_protocol`` is what streams and tasks cost over bare callbacks, with
the loop's cost mostly taken out.  One thread, so one core.

How it fails: as every event loop does -- a step that blocks stalls every
client.  Not available on Windows (uvloop is POSIX only); the registry
marks it unavailable where uvloop cannot be imported.  WORK as in
``asyncio_streams``: a wait is ``asyncio.sleep`` (waits overlap); a compute
or a block stalls every client; an offload goes to ``asyncio.to_thread``,
the default thread pool (``min(32, CPUs + 4)`` threads).  At SIGTERM any of
the three in progress holds the exit until it ends.  Measured (a full run on
a busy 2-core VM, README's 'What the handler does'): beside one client's
20,000-unit computes (about 16 ms here) the other clients' p50 was 26 ms;
under cpu-bound it used 0.95 cores; beside a 10 ms blocking call their p50
was 12 ms, 1.9 ms offloaded.

How it is protected: as ``asyncio_streams`` -- ``asyncio.timeout_at`` per
read (idle deadline between requests, the request's own while one is
incomplete), a ``drain()`` that gives up after a request timeout with no
byte sent, client N+1 answered ``ERROR server busy`` by its task.  Out of
descriptors needs nothing of ours, as for ``uvloop_protocol``: libuv's
accept keeps a spare descriptor for EMFILE and uses it to accept and close
the waiting connections (without a word), so the listener never stays
readable and the server never goes deaf.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvloop

from servers._asyncio_streams import serve_until_stopped
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the stream server on a uvloop loop until SIGTERM/SIGINT."""
    uvloop.run(serve_until_stopped(listener, new_session, limits))
