"""``asyncio.start_server`` with StreamReader/StreamWriter: a task per connection.

Where the concurrency comes from: asyncio's event loop, as in
``asyncio_protocol``, but each connection is a *task* running a coroutine
that reads like the blocking servers' loop -- ``await reader.read()``, feed
the session, ``writer.write()``, ``await writer.drain()``.  Every ``await``
that cannot complete yet suspends the task and returns to the loop, which
resumes it when its socket is ready.  Blocking-style code, reactor-style
scheduling, with every suspension point visible in the source.

Backpressure comes from ``drain()``: it returns at once while the
transport's buffer is under its high-water mark (1 MiB here, as in the
hand-written reactors) and otherwise waits until it has drained; while the
task waits it does not read, the StreamReader's own buffer fills (to twice
its limit) and the transport stops reading.  After QUIT, ``write_eof()``
sends the FIN behind the last reply and the task reads until the peer
closes, so that a close with unread input cannot RST the reply away.

What it costs: a task and a coroutine frame per client, and for every
request a trip through StreamReader's buffer plus two awaits (read, drain)
-- each a future, a callback and a task step.  More Python per byte than
``asyncio_protocol``; one thread, so one core.

How it fails: a step that blocks (a big PUT's ``fsync``) stalls every
client; a forgotten ``drain()`` lets a client that never reads grow the
server's memory without bound.  SIGTERM/SIGINT stop the loop through
``loop.add_signal_handler`` (:mod:`servers._asyncio_shared`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from functools import partial

from servers._asyncio_shared import stop_signal
from servers.protocol import Session
from servers.tuning import HIGH_WATER, LINGER_LIMIT, LISTEN_BACKLOG, LOW_WATER, RECV_SIZE, Limits

STOP_TIMEOUT = 2.0  # seconds for aborted clients' tasks to finish at shutdown


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the standard asyncio loop until SIGTERM/SIGINT."""
    asyncio.run(serve_until_stopped(listener, new_session))


async def serve_until_stopped(listener: socket.socket, new_session: Callable[[], Session]) -> None:
    """Start the stream server; on a stop signal, close it and abort every client."""
    live: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
    server = await asyncio.start_server(
        partial(handle_client, new_session, live),
        sock=listener,
        limit=RECV_SIZE,
        backlog=LISTEN_BACKLOG,  # asyncio listen()s again, with 100 unless told
    )
    try:
        await stop_signal()
    finally:
        server.close()
        tasks = list(live.values())
        for writer in list(live):
            writer.transport.abort()  # each task sees EOF or a reset and ends by itself...
        # ...rather than being cancelled: Python 3.11's start_server logs a
        # spurious traceback for a cancelled client task.
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        await server.wait_closed()


async def handle_client(
    new_session: Callable[[], Session],
    live: dict[asyncio.StreamWriter, asyncio.Task[None]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """One task per client: converse until it leaves, then close."""
    writer.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
    live[writer] = asyncio.current_task()  # type: ignore[assignment]
    try:
        await converse(reader, writer, new_session())
    except OSError:  # reset or broken pipe: this client is gone, the server is not
        pass
    finally:
        live.pop(writer, None)
        writer.close()  # flushes what is buffered, then closes


async def converse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session
) -> None:
    """Read, feed the session, write and drain; after QUIT, FIN and linger."""
    while not session.closing:
        if session.pending:  # requests held back by the reply budget come first
            reply = session.resume()
        else:
            data = await reader.read(RECV_SIZE)
            if not data:  # the peer closed its side
                return
            reply = session.receive_data(data)
        if reply:
            writer.write(reply)
            await writer.drain()  # waits only while over 1 MiB is unsent
    writer.write_eof()  # FIN once the buffer is flushed
    discarded = 0
    while discarded <= LINGER_LIMIT and (data := await reader.read(RECV_SIZE)):
        discarded += len(data)  # read only so that close() does not RST the reply
