"""``loop.create_server`` with an ``asyncio.Protocol``: callbacks, no tasks.

Where the concurrency comes from: asyncio's event loop -- a reactor like
``epoll_reactor`` (its selector is epoll on Linux), written once in the
standard library.  The loop owns the sockets and the waiting; for each
connection it creates a *transport* (buffers, partial writes, closing) and
calls our *protocol* back: ``data_received`` with the bytes it read, which we
feed to the session and ``write`` the reply.  No coroutine, no task per
connection: plain callbacks, the cheapest way to use asyncio.  The protocol
class, :class:`servers._asyncio_shared.SessionProtocol`, is shared with
``uvloop_protocol``, which runs it on another loop; this file is the
standard loop.

Backpressure is the transport's: above its high-water mark (1 MiB, as in the
hand-written reactors) it calls ``pause_writing``, and the protocol answers
with ``transport.pause_reading()``; ``resume_writing`` resumes.  After QUIT,
``write_eof()`` sends the FIN behind the last reply and the transport keeps
reading until the peer closes, so that a close with unread input cannot RST
the reply away.

What it costs: the loop and transports are Python (with a little C), so
each event passes through several layers of Python calls -- more per byte
than the hand-written reactors, much less than a coroutine per client.  The
selector transport reads up to 256 KiB per ``recv`` (its ``max_size``), over
glibc's 128 KiB mmap threshold; the suite pins that threshold (see
``loadgen.procs.MALLOC_ENV``).  One thread, so one core.

How it fails: a callback that blocks (a big PUT's ``fsync``) stalls every
client.  Out of descriptors, asyncio's own accept loop fails up to 1,024
times per wake-up and logs every failure with a traceback (about 3 MB/s of
stderr); with stderr a pipe nobody reads, the loop blocks writing its log
and the server, alive, never answers again.  SIGTERM and SIGINT are taken by
``loop.add_signal_handler`` so the loop stops cleanly between callbacks,
rather than an exception unwinding through the middle of the event loop.  A
WORK wait is a ``loop.call_later`` callback, the transport's reading paused
meanwhile: waits overlap.  A compute or a block stalls every client for its
whole length; an offload repairs the block: ``loop.run_in_executor`` runs it
in the loop's default thread pool and a done-callback answers -- the default
pool has ``min(32, CPUs + 4)`` threads, and offloads beyond that queue.  At
SIGTERM a compute, a block or an offload in progress holds the exit until it
ends: the loop takes the signal only between steps, and its pool joins its
threads.  Measured (a full run on a busy 2-core VM, README's 'What the
handler does'): beside one client's 20,000-unit computes (about 16 ms here)
the other clients' p50 was 23 ms; under cpu-bound it used 0.99 cores; beside
a 10 ms blocking call their p50 was 13 ms, 1.2 ms offloaded.

How it is protected: timeouts are one ``loop.call_later`` timer per
connection, re-armed only when it fires or a deadline moves earlier
(:mod:`servers._asyncio_shared`): the hot path pays one
``time.monotonic()`` and one ``in_request`` test per ``data_received``, an
active client one timer callback per idle timeout.  ``--max-clients``: the
protocol of client N+1 writes ``ERROR server busy`` and closes in
``connection_made``.  Out of descriptors: the loop is given a
:class:`~servers._asyncio_shared.SpareDescriptorListener`, which keeps one
spare descriptor to accept the excess client, answer it busy and close it,
so asyncio never sees EMFILE, the backlog drains and nothing spins.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from servers._asyncio_shared import SpareDescriptorListener, serve_protocol
from servers.protocol import Session
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the protocol server on the standard asyncio loop until SIGTERM/SIGINT."""
    guarded = SpareDescriptorListener.wrap(listener)  # asyncio's EMFILE handling goes deaf
    asyncio.run(serve_protocol(guarded, new_session, limits))
