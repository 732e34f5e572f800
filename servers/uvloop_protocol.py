"""The ``asyncio_protocol`` server, unchanged, on uvloop's event loop (libuv).

Where the concurrency comes from: the same ``SessionProtocol`` callbacks
as ``asyncio_protocol`` (:mod:`servers._asyncio_shared`) -- this file only
swaps the loop.  uvloop
is a drop-in asyncio event loop written in Cython on top of libuv (the loop
under Node.js): the waiting (epoll on Linux), the transports' buffering and
partial writes, and the callback dispatch run in C.  Only
``data_received`` -- the session, i.e. our protocol and file service -- is
Python.

What it costs: the least Python per event of the asyncio family, so the gap
between this variant and ``asyncio_protocol`` is the price of asyncio's
pure-Python loop and transports.  uvloop reads into one preallocated
250 kB buffer per loop, but hands ``data_received`` a fresh ``bytes`` copy of
up to 250 kB -- over glibc's 128 KiB mmap threshold, which the suite pins
(see ``loadgen.procs.MALLOC_ENV``).  One thread, so one core.

How it fails: as every event loop does -- a callback that blocks stalls
every client.  Not available on Windows (uvloop is POSIX only); the registry
marks it unavailable where uvloop cannot be imported.  WORK as in
``asyncio_protocol``: a wait is a ``loop.call_later`` callback (waits
overlap); a compute or a block stalls every client; an offload goes to
``loop.run_in_executor``, the default thread pool (``min(32, CPUs + 4)``
threads).  At SIGTERM any of the three in progress holds the exit until it
ends.  Measured (a full run on a busy 2-core VM, README's 'What the handler
does'): beside one client's 20,000-unit computes (about 16 ms here) the
other clients' p50 was 24 ms; under cpu-bound it used 0.98 cores; beside a
10 ms blocking call their p50 was 13 ms, 122 µs offloaded.

How it is protected: timeouts and ``--max-clients`` are the shared
protocol's, as in ``asyncio_protocol`` (one ``call_later`` timer per
connection; client N+1 answered ``ERROR server busy`` in
``connection_made``).  Out of descriptors needs nothing of ours: libuv's
accept keeps a spare descriptor of its own for EMFILE and uses it to accept
and close the waiting connections, so the listener is never left readable
and the server never goes deaf -- the trick ``asyncio_protocol`` copies in
Python (:class:`servers._asyncio_shared.SpareDescriptorListener`).  libuv's
version closes the excess clients without a word; ours answers them busy.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvloop

from servers._asyncio_shared import serve_protocol
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the protocol server on a uvloop loop until SIGTERM/SIGINT."""
    uvloop.run(serve_protocol(listener, new_session, limits))
