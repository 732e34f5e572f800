"""``asyncio.start_server`` with StreamReader/StreamWriter: a task per connection.

Where the concurrency comes from: asyncio's event loop, as in
``asyncio_protocol``, but each connection is a *task* running a coroutine
that reads like the blocking servers' loop -- ``await reader.read()``, feed
the session, ``writer.write()``, ``await writer.drain()``.  Every ``await``
that cannot complete yet suspends the task and returns to the loop, which
resumes it when its socket is ready.  Blocking-style code, reactor-style
scheduling, with every suspension point visible in the source.  The
coroutines are in :mod:`servers._asyncio_streams` (``handle_client``,
``converse``), shared with ``uvloop_streams``, which runs them on another
loop; this file is the standard loop.

Backpressure comes from ``drain()``: it returns at once while the
transport's buffer is under its high-water mark (1 MiB here, as in the
hand-written reactors) and otherwise waits until it has drained; while the
task waits it does not read, the StreamReader's own buffer fills (to twice
its limit) and the transport stops reading.  After QUIT, ``write_eof()``
sends the FIN behind the last reply and the task reads until the peer
closes, so that a close with unread input cannot RST the reply away.

What it costs: a task and a coroutine frame per client, and for every
request a trip through StreamReader's buffer plus two awaits (read, drain)
-- each a future, a callback and a task step -- plus the read's timeout (see
below).  More Python per byte than ``asyncio_protocol``; one thread, so one
core.

How it fails: a step that blocks (a big PUT's ``fsync``) stalls every
client; a forgotten ``drain()`` lets a client that never reads grow the
server's memory without bound.  Out of descriptors, asyncio's own accept
loop logs up to 1,024 tracebacks per wake-up; with stderr a pipe nobody
reads, the loop blocks writing its log and the server, alive, goes deaf.
SIGTERM/SIGINT stop the loop through ``loop.add_signal_handler``
(:mod:`servers._asyncio_shared`).  A WORK wait is ``await asyncio.sleep()``
in the client's task: waits overlap.  A compute or a block stalls every
client for its whole length; an offload repairs the block:
``asyncio.to_thread`` runs it in the loop's default thread pool while only
its task waits -- the default pool has ``min(32, CPUs + 4)`` threads, and
offloads beyond that queue.  At SIGTERM a compute, a block or an offload in
progress holds the exit until it ends: the loop takes the signal only
between steps, and its pool joins its threads.  Measured (a full run on a
busy 2-core VM, README's 'What the handler does'): beside one client's
20,000-unit computes (about 16 ms here) the other clients' p50 was 28 ms;
under cpu-bound it used 0.97 cores; beside a 10 ms blocking call their p50
was 14 ms, 1.6 ms offloaded.

How it is protected: every ``reader.read()`` runs inside
``asyncio.timeout_at(deadline)`` -- the idle deadline (now + idle timeout)
between requests, the request's own (its first byte + request timeout)
while one is incomplete, so a trickling client cannot push it back.  The
timeout is the plainest idiom and the dearest: a ``Timeout`` object and a
timer in the loop's heap, made and cancelled for every read, i.e. every
request (``asyncio_protocol`` keeps one timer per connection instead).  A
``drain()`` that has to wait runs under ``asyncio.timeout`` too, and gives
up only when a whole request timeout passes with no byte sent; the close
after it is bounded the same way.  ``--max-clients``: the task of client N+1
writes ``ERROR server busy`` and closes.  Out of descriptors:
``start_server`` is given a
:class:`~servers._asyncio_shared.SpareDescriptorListener`, which keeps one
spare descriptor to accept the excess client, answer it busy and close it,
so asyncio never sees EMFILE and nothing spins.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from servers._asyncio_shared import SpareDescriptorListener
from servers._asyncio_streams import serve_until_stopped
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the stream server on the standard asyncio loop until SIGTERM/SIGINT."""
    guarded = SpareDescriptorListener.wrap(listener)  # asyncio's EMFILE handling goes deaf
    asyncio.run(serve_until_stopped(guarded, new_session, limits))
