"""``gevent.server.StreamServer``: one greenlet per connection.

Where the concurrency comes from: greenlets -- coroutines that switch on
I/O.  Each connection runs the same blocking routine as the rest of the
blocking family, but on a gevent socket: when ``recv`` or ``send`` would
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
``socket`` module directly turns the whole server into a blocking loop.  A
WORK wait is ``gevent.sleep``, a timer in the hub: waits overlap.  A compute
or a block (the real ``time.sleep``, gevent's original) stalls every client
for its whole length; an offload repairs the block: ``threadpool.apply``
runs it in the hub's thread pool (10 threads by default; more offloads
queue) while only its greenlet waits.  At SIGTERM a compute or a block in
progress holds the exit until it ends: the hub runs the stop only then.
Measured (a full run on a busy 2-core VM, README's 'What the handler does'):
beside one client's 20,000-unit computes (about 16 ms here) the other
clients' p50 was 23 ms; under cpu-bound it used 0.96 cores; beside a 10 ms
blocking call their p50 was 12 ms, 972 µs offloaded.

How it is protected: every ``recv`` and ``send`` of the shared routine runs
inside a ``gevent.Timeout`` (:class:`TimedConnection`), gevent's own idiom:
the hub arms a timer and, when it fires, throws the exception *into the
waiting greenlet* -- no thread, no signal, no select timeout to compute.
``recv`` gets the idle timeout between requests and, mid-request, what is
left of the request's own (its first byte + request timeout, so a trickle
cannot push it back); ``send`` gets the request timeout per call, each call
sending what the client has room for, so only a client that takes no byte
for that long is dropped.  What it costs: a ``Timeout`` (an object and a
libev timer started and stopped) per ``recv`` and per ``send``, i.e. two
per request.  (``sock.settimeout`` would do the same underneath: a gevent
socket implements its timeout with a ``Timeout`` around each wait.)
``--max-clients``: the greenlet of client N+1 sends ``ERROR server busy``
and closes.  Out of descriptors: StreamServer itself stops accepting and
retries on a timer (0.01 s doubling up to 1 s), logging one traceback per
retry; the waiting clients stay in the backlog until descriptors come free.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from functools import partial

import gevent
from gevent.server import StreamServer

from servers._blocking import RequestClock, over_limit, refuse, send_if_room, serve_stream
from servers.protocol import TIMEOUT_REPLY, Session, Work, WorkKind
from servers.service import block
from servers.tuning import Limits


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Serve forever; StreamServer spawns a greenlet per accepted client."""
    listener.setblocking(False)  # the hub waits for it to be readable, not accept()
    live: set[socket.socket] = set()
    server = StreamServer(listener, partial(dispatch, new_session, limits, live))
    # Python-level handlers run late under the hub; let gevent deliver these.
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    server.serve_forever()


def dispatch(
    new_session: Callable[[], Session],
    limits: Limits,
    live: set[socket.socket],
    sock: socket.socket,
    address: object,
) -> None:
    """Already in a new greenlet: serve this client to the end, or turn it away."""
    if over_limit(len(live), limits):
        refuse(sock)  # client N+1: one ERROR server busy frame, then the door
        return
    with sock:
        live.add(sock)
        try:
            conn = TimedConnection(sock, new_session(), limits)
            # a timeout ends it as a reset would; a WORK wait is gevent's own (do_work)
            serve_stream(conn.recv, conn.send, conn.session, do_work)
            if conn.request_expired:
                send_if_room(sock, TIMEOUT_REPLY)
        finally:
            live.discard(sock)


def do_work(work: Work) -> None:
    """A WORK request's wait, gevent's way: only this greenlet waits.

    ``gevent.sleep`` is a timer in the hub; an offload goes to the hub's
    thread pool, which runs the blocking call in a real thread while this
    greenlet waits for its result -- gevent's own repair for a library that
    would block the hub.
    """
    if work.kind == WorkKind.OFFLOAD:
        gevent.get_hub().threadpool.apply(block, (work.seconds,))
    else:
        gevent.sleep(work.seconds)


class TimedConnection:
    """A client's ``recv`` and ``send``, each bounded by a ``gevent.Timeout``."""

    __slots__ = ("sock", "session", "limits", "clock")

    def __init__(self, sock: socket.socket, session: Session, limits: Limits) -> None:
        self.sock = sock
        self.session = session
        self.limits = limits
        self.clock = RequestClock(session, limits)  # when a read must give up

    @property
    def request_expired(self) -> bool:
        return self.clock.request_expired

    def recv(self, size: int) -> bytes:
        """``sock.recv`` within the idle timeout, or what is left of the request's."""
        try:
            with gevent.Timeout(max(self.clock.read_timeout(), 0.0), TimeoutError):
                return self.sock.recv(size)
        except TimeoutError:
            self.clock.timed_out()
            raise  # an OSError: serve_stream ends this client

    def send(self, data: bytes) -> None:
        """``sendall``, giving up once the client takes no byte for the request timeout."""
        self.clock.replied()
        view = memoryview(data)
        while view:
            with gevent.Timeout(self.limits.request_timeout, TimeoutError):
                sent = self.sock.send(view)  # waits for room, then sends what fits
            view = view[sent:]
