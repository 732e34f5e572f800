"""Coroutines on asyncio's raw socket calls: ``loop.sock_recv``/``sock_sendall``, no streams.

Where the concurrency comes from: asyncio's event loop and a task per
connection, as in ``asyncio_streams``, but the task talks to its socket
through the loop's low-level coroutines -- ``await loop.sock_accept()``,
``await loop.sock_recv()``, ``await loop.sock_sendall()`` -- on a plain
non-blocking socket (vmbench's "sockets" mode).  Each call first tries the
system call at once; only when it would block does it register the socket
with the loop's selector and suspend the task until the socket is ready.

What it skips, compared with streams: no transport and no protocol object
per connection, no StreamReader buffer (the bytes ``recv`` returns go
straight to the session) and no transport write buffer (``sock_sendall``
finishes only when the kernel has taken every byte, so nothing is held in
user space and there is no ``drain()``).  Backpressure is therefore plain:
the task does not read while it waits to send.

What it costs: a would-block call is not a standing registration but a
fresh one.  ``sock_recv`` that finds nothing to read adds the socket to the
selector (one ``epoll_ctl(EPOLL_CTL_ADD)``) and, once it is ready and read,
removes it again (one ``epoll_ctl(EPOLL_CTL_DEL)``); ``sock_sendall`` that
finds the socket full does the same for writing.  A transport keeps the
socket registered for the whole connection instead.  Counted with ``perf
stat -e 'syscalls:sys_enter_*'`` on the server during 5,000 one-at-a-time
64-byte ECHOs over one connection: 2,392 ``recv`` calls found nothing and
4,784 ``epoll_ctl`` were made -- two each -- where ``asyncio_streams`` made
2 in all.  The other side of it: a ``recv`` that finds data needs no
``epoll_wait`` at all (4,786 of them, against ``asyncio_streams``' 10,007).
Plus a task and a coroutine frame per client and, per request, the read's
timeout (see below).  One thread, so one core.

How it fails: a step that blocks (a big PUT's ``fsync``) stalls every
client.  Out of descriptors, ``sock_accept`` raises ``EMFILE`` at once --
Linux reserves the new descriptor before it looks for a client -- so an
accept loop that only retries spins at 100% of a core while the waiting
clients sit in the backlog.  SIGTERM/SIGINT stop the loop through
``loop.add_signal_handler`` (:mod:`servers._asyncio_shared`).  A WORK wait
is ``await asyncio.sleep()`` in the client's task: waits overlap.  A compute
or a block stalls every client for its whole length; an offload repairs the
block: ``asyncio.to_thread`` runs it in the loop's default thread pool while
only its task waits -- the default pool has ``min(32, CPUs + 4)`` threads,
and offloads beyond that queue.  At SIGTERM a compute, a block or an offload
in progress holds the exit until it ends: the loop takes the signal only
between steps, and its pool joins its threads.  Measured (a full run on a
busy 2-core VM, README's 'What the handler does'): beside one client's
20,000-unit computes (about 16 ms here) the other clients' p50 was 25 ms;
under cpu-bound it used 0.98 cores; beside a 10 ms blocking call their p50
was 14 ms, 2.9 ms offloaded.

How it is protected: every ``sock_recv`` runs inside
``asyncio.timeout_at(deadline)`` -- the idle deadline between requests, the
request's own (its first byte + request timeout) while one is incomplete.
A reply is first sent with one plain ``send()`` -- what ``sock_sendall``
tries first itself, without a timer; only the rest waits, in slices of
``RECV_SIZE`` (64 KiB) each under ``asyncio.timeout(request_timeout)``:
a client that does not take 64 KiB within a request timeout has stopped
reading and is dropped.  ``--max-clients``: client N+1 is answered
``ERROR server busy`` by the accepting loop and closed, with no task made.
Out of descriptors: ``sock_accept`` is given a
:class:`~servers._asyncio_shared.SpareDescriptorListener`, which gives up a
spare descriptor to accept the excess client, answer it busy and close it,
then reports "nobody waiting", so the loop waits for the next client
instead of spinning; with no spare left either, the accepting task sleeps
:data:`OUT_OF_DESCRIPTORS_PAUSE` between attempts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from servers._asyncio_shared import (
    OUT_OF_DESCRIPTORS,
    SpareDescriptorListener,
    do_work,
    stop_signal,
)
from servers._nonblocking import last_word, refuse
from servers.protocol import TIMEOUT_REPLY, Session
from servers.tuning import LINGER_LIMIT, RECV_SIZE, Limits

STOP_TIMEOUT = 2.0  # seconds for cancelled clients' tasks to finish at shutdown
# Out of descriptors with no spare either: how often the accepting task tries again (s).
OUT_OF_DESCRIPTORS_PAUSE = 0.25
SEND_SLICE = RECV_SIZE  # bytes that must go out within a request timeout once a send waits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Run the accepting task and one task per client on asyncio's loop until SIGTERM/SIGINT."""
    guarded = SpareDescriptorListener.wrap(listener)  # EMFILE: answer busy instead of spinning
    guarded.setblocking(False)  # the loop's sock_* calls refuse a blocking socket
    asyncio.run(serve_until_stopped(guarded, new_session, limits))


async def serve_until_stopped(
    listener: socket.socket, new_session: Callable[[], Session], limits: Limits
) -> None:
    """Accept in a task of its own; on a stop signal cancel it and every client's task."""
    clients: set[asyncio.Task[None]] = set()
    accepting = asyncio.create_task(accept_forever(listener, new_session, limits, clients))
    try:
        await stop_signal()
    finally:
        accepting.cancel()
        tasks = [accepting, *clients]
        for task in clients:
            task.cancel()  # each closes its socket on the way out
        await asyncio.wait(tasks, timeout=STOP_TIMEOUT)


async def accept_forever(
    listener: socket.socket,
    new_session: Callable[[], Session],
    limits: Limits,
    clients: set[asyncio.Task[None]],
) -> None:
    """``sock_accept`` in a loop: a task per client, or a busy answer past the limit."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            sock, _ = await loop.sock_accept(listener)
        except ConnectionError:  # it reset before we accepted it
            continue
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS:
                raise
            await asyncio.sleep(OUT_OF_DESCRIPTORS_PAUSE)  # not even a spare: don't spin
            continue
        if limits.max_clients is not None and len(clients) >= limits.max_clients:
            refuse(sock)  # client N+1: BUSY_REPLY if it fits, then close
            continue
        if sock.family != socket.AF_UNIX:  # a Unix socket has no Nagle to turn off
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.create_task(handle_client(sock, new_session(), limits))
        clients.add(task)
        task.add_done_callback(clients.discard)


async def handle_client(sock: socket.socket, session: Session, limits: Limits) -> None:
    """One task per client: converse until it leaves or times out, then close."""
    with sock:
        try:
            if await converse(sock, session, limits):
                await linger(sock, limits.idle_timeout)
        except (OSError, TimeoutError):  # reset, broken pipe, or a send timed out: done
            pass


async def converse(sock: socket.socket, session: Session, limits: Limits) -> bool:
    """Read (within the deadline), feed the session, send; True once the session is closing."""
    loop = asyncio.get_running_loop()
    began: float | None = None  # when the request in progress began (loop time)
    while not session.closing:
        if session.work is not None:  # a WORK wait: the replies before it are sent
            await do_work(session.work)  # no timeout runs: the server's own time
            reply = session.work_done()
            began = loop.time() if session.in_request else None  # a half-read request's clock
        elif session.pending:  # requests held back by the reply budget come first
            reply = session.resume()
        else:
            if began is None:
                deadline = loop.time() + limits.idle_timeout
            else:
                deadline = began + limits.request_timeout  # a trickle cannot push it back
            try:
                async with asyncio.timeout_at(deadline):
                    data = await loop.sock_recv(sock, RECV_SIZE)
            except TimeoutError:
                if began is not None:
                    last_word(sock, TIMEOUT_REPLY)  # only if it fits: never wait on it
                return False
            if not data:  # the peer closed its side
                return False
            reply = session.receive_data(data)
            if not session.in_request:
                began = None
            elif began is None or reply:  # a reply: the request in progress began in ``data``
                began = loop.time()
        if reply:
            if await send_all(sock, reply, limits.request_timeout) and began is not None:
                began = loop.time()  # we, not the client, held its request up
    return True


async def send_all(sock: socket.socket, data: bytes, timeout: float) -> bool:
    """Send every byte; raise TimeoutError if a slice waits ``timeout`` s. True if it waited.

    The first ``send()`` is ``sock_sendall``'s own first step, done here
    so that a reply that fits at once -- nearly all of them -- pays no timer.
    """
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return False
    loop = asyncio.get_running_loop()
    view = memoryview(data)[sent:]
    while view:
        chunk, view = view[:SEND_SLICE], view[SEND_SLICE:]
        async with asyncio.timeout(timeout):
            await loop.sock_sendall(sock, chunk)
    return True


async def linger(sock: socket.socket, idle_timeout: float) -> None:
    """After QUIT: send our FIN, then read and discard until the peer closes (no RST)."""
    loop = asyncio.get_running_loop()
    sock.shutdown(socket.SHUT_WR)
    discarded = 0
    while discarded <= LINGER_LIMIT:
        async with asyncio.timeout(idle_timeout):  # TimeoutError: handle_client closes
            data = await loop.sock_recv(sock, RECV_SIZE)
        if not data:
            return
        discarded += len(data)  # read only so that close() does not RST the reply
