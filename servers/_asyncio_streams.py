"""The ``asyncio_streams`` server, on whichever loop runs it: asyncio's or uvloop's.

Not a variant.  ``asyncio_streams`` runs it on asyncio's own loop and
``uvloop_streams`` runs it, unchanged, on uvloop's -- so the gap between
those two variants is the loop and nothing else, as between
``asyncio_protocol`` and ``uvloop_protocol`` (:mod:`servers._asyncio_shared`).
How it works, what it costs and how it is protected: the docstring of
``servers/asyncio_streams.py``, the lesson this code belongs to.

:func:`serve_until_stopped` starts ``asyncio.start_server`` on the listener
it is given (a :class:`~servers._asyncio_shared.SpareDescriptorListener` on
asyncio's loop; the plain socket on uvloop's, whose libuv keeps a spare
descriptor of its own) and waits for SIGTERM/SIGINT; :func:`handle_client`
is the task of one connection.

WORK: a wait is ``await asyncio.sleep(seconds)`` in the client's task, an
offload ``await asyncio.to_thread(block, seconds)``
(:func:`~servers._asyncio_shared.do_work`); no read is pending meanwhile,
so no timeout runs, and the next read's idle deadline starts after the
reply.  The StreamReader's transport keeps reading into its buffer (up to
twice its limit) while the task does not read: the streams' own
backpressure, as while ``drain()`` waits.  At shutdown a task mid-WORK sees
no reset -- it is not reading -- so the client tasks are cancelled after
their transports are aborted, and a cancelled one ends quietly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from functools import partial

from servers._asyncio_shared import do_work, stop_signal
from servers.protocol import BUSY_REPLY, TIMEOUT_REPLY, Session
from servers.tuning import HIGH_WATER, LINGER_LIMIT, LISTEN_BACKLOG, LOW_WATER, RECV_SIZE, Limits

STOP_TIMEOUT = 2.0  # seconds for aborted clients' tasks to finish at shutdown


async def serve_until_stopped(
    listener: socket.socket, new_session: Callable[[], Session], limits: Limits
) -> None:
    """Start the stream server; on a stop signal, close it, abort every client, end its task."""
    live: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
    server = await asyncio.start_server(
        partial(handle_client, new_session, limits, live),
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
            writer.transport.abort()  # a reading task sees EOF or a reset and ends by itself;
        for task in tasks:
            task.cancel()  # one mid-WORK is not reading: handle_client ends it quietly
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        await server.wait_closed()


async def handle_client(
    new_session: Callable[[], Session],
    limits: Limits,
    live: dict[asyncio.StreamWriter, asyncio.Task[None]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """One task per client: converse until it leaves or times out, then close."""
    if limits.max_clients is not None and len(live) >= limits.max_clients:
        writer.write(BUSY_REPLY)  # client N+1: one frame, then the door
        writer.close()
        return
    writer.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
    live[writer] = asyncio.current_task()  # type: ignore[assignment]
    try:
        await converse(reader, writer, new_session(), limits)
        await close_when_sent(writer, limits.request_timeout)
    except (OSError, TimeoutError):  # reset, broken pipe, or timed out: this client is done
        writer.transport.abort()
    except asyncio.CancelledError:
        # Only serve_until_stopped cancels us.  Ending normally rather than
        # cancelled: Python 3.11's start_server logs a spurious traceback
        # for a cancelled client task.
        writer.transport.abort()
    finally:
        live.pop(writer, None)


async def converse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session, limits: Limits
) -> None:
    """Read (within the deadline), feed the session, write and drain; after QUIT, FIN and linger."""
    clock = asyncio.get_running_loop().time
    began: float | None = None  # when the request in progress began (loop time)
    while not session.closing:
        if session.work is not None:  # a WORK wait: the replies before it are sent
            await do_work(session.work)  # no timeout runs: the server's own time
            reply = session.work_done()
            began = clock() if session.in_request else None  # a half-read request's clock starts
        elif session.pending:  # requests held back by the reply budget come first
            reply = session.resume()
        else:
            if began is None:
                deadline = clock() + limits.idle_timeout
            else:
                deadline = began + limits.request_timeout  # a trickle cannot push it back
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(RECV_SIZE)
            except TimeoutError:
                if began is not None:
                    writer.write(TIMEOUT_REPLY)  # close_when_sent() drops it if it cannot go
                return
            if not data:  # the peer closed its side
                return
            reply = session.receive_data(data)
            if not session.in_request:
                began = None
            elif began is None or reply:  # a reply: the request in progress began in ``data``
                began = clock()
        if reply:
            writer.write(reply)
            if await drain_while_moving(writer, limits.request_timeout) and began is not None:
                began = clock()  # we, not the client, held its request up
    writer.write_eof()  # FIN once the buffer is flushed
    discarded = 0
    while discarded <= LINGER_LIMIT:
        async with asyncio.timeout(limits.idle_timeout):  # TimeoutError: handle_client aborts
            data = await reader.read(RECV_SIZE)
        if not data:
            return
        discarded += len(data)  # read only so that close() does not RST the reply


async def drain_while_moving(writer: asyncio.StreamWriter, timeout: float) -> bool:
    """``drain()``; raise TimeoutError if ``timeout`` s pass with no byte sent.

    Only a buffer over the low-water mark can make ``drain()`` wait, so the
    common case -- a small reply, sent at once -- pays no timer.  Returns
    True when the output was backed up (over the low-water mark).
    """
    transport = writer.transport
    waited = False
    while (unsent := transport.get_write_buffer_size()) > LOW_WATER:
        waited = True
        try:
            async with asyncio.timeout(timeout):
                await writer.drain()
            return True
        except TimeoutError:
            if transport.get_write_buffer_size() >= unsent:
                raise  # not one byte went out: the client has stopped reading
    await writer.drain()  # returns at once; raises if the connection was lost
    return waited


async def close_when_sent(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close after the unsent replies go out; raise TimeoutError if they stop moving."""
    transport = writer.transport
    writer.close()
    while (unsent := transport.get_write_buffer_size()) > 0:
        try:  # shielded: a timeout must not cancel the close itself
            await asyncio.wait_for(asyncio.shield(writer.wait_closed()), timeout)
            return
        except TimeoutError:
            if transport.get_write_buffer_size() >= unsent:
                raise
