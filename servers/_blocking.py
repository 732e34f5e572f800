"""Serving one connection over a blocking socket: shared by the blocking family.

``blocking_loop``, ``fork_per_client``, ``thread_per_client``, the two
``socketserver`` variants and ``gevent_server`` all run :func:`serve_stream`
for each accepted connection; they differ only in *who* runs it (the
accepting loop itself, a child process, a thread, a greenlet).  Under gevent
the same code is cooperative because gevent's socket yields to the hub
whenever ``recv``/``send`` would block.

Timeouts, the blocking way (:class:`TimedSocket`): a socket timeout
(``settimeout``) before every read, computed from the deadline that runs --
the idle timeout between requests, what is left of the request timeout in
the middle of one -- and before every write, so that a ``send`` that makes
no progress for the request timeout gives up.  A timeout is an ``OSError``
like a reset, and ends the client the same way.  What it costs: with a
timeout CPython waits in ``poll()`` before each ``recv``/``send`` (one more
system call per read and per write), and ``settimeout`` itself is an
``ioctl`` each time the value changes.

Protection of the accepting loop (:class:`SpareDescriptor`): ``accept()``
fails with ``EMFILE`` when the process is out of descriptors -- Linux
reserves the new descriptor *before* it waits, so it fails at once, with or
without a client waiting.  The loop gives up a descriptor held in reserve
for exactly this, accepts the waiting client with it, answers ``ERROR server
busy``, closes it and takes the reserve back: the excess client gets an
answer instead of waiting in the backlog, and the loop waits in ``accept``
(at most :data:`OUT_OF_DESCRIPTORS_PAUSE`) instead of spinning.

WORK, the blocking way (:func:`sleep_through`): the session hands a wait
to the server, and the thread or process serving the client simply sleeps
-- it holds nothing anyone else needs, so nobody else waits on it.  An
*offload* is served the same way: a thread or process model needs no
executor to keep a blocking call off the others' path, it already is one.
``gevent_server`` and ``greenlet_hub`` pass their own ``wait``.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable

from servers.protocol import BUSY_REPLY, TIMEOUT_REPLY, Session, Work
from servers.tuning import RECV_SIZE, Limits

# accept() errors that mean "the process or the system is out of something",
# not "this listener is broken": wait and retry instead of exiting.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Out of descriptors, the accepting loop looks again this often (s): how late
# service resumes once descriptors are free, and 4 wake-ups a second meanwhile.
OUT_OF_DESCRIPTORS_PAUSE = 0.25


def handle_client(
    sock: socket.socket,
    session: Session,
    limits: Limits | None = None,
    wake_every: float | None = None,
) -> None:
    """Serve one client until it leaves, sends QUIT, breaks the framing or times out.

    Without ``limits`` (the test fakes) the socket has no timeout at all.
    ``wake_every``: no read sleeps longer than this (s), for a caller that must
    look at its signals meanwhile (blocking_loop serves in its main thread).
    """
    with sock:
        if limits is None:
            serve_stream(sock.recv, sock.sendall, session)
        else:
            serve_timed(sock, session, limits, wake_every=wake_every)


def serve_timed(
    sock: socket.socket,
    session: Session,
    limits: Limits,
    read: Callable[[int], bytes] | None = None,
    wake_every: float | None = None,
) -> None:
    """:func:`serve_stream` under ``limits``; a request that timed out is answered if it can be.

    ``read`` reads from ``sock`` (default ``sock.recv``; the socketserver
    variants pass their ``rfile.read1``, which reads the same socket);
    ``wake_every`` as :func:`handle_client`'s.
    """
    timed = TimedSocket(sock, session, limits, read, wake_every)
    serve_stream(timed.recv, timed.send, session)
    if timed.request_expired:
        send_if_room(sock, TIMEOUT_REPLY)


def sleep_through(work: Work) -> None:
    """WORK wait (and offload) in a thread or a process: sleep; only this client waits."""
    time.sleep(work.seconds)


def serve_stream(
    recv: Callable[[int], bytes],
    send: Callable[[bytes], object],
    session: Session,
    wait: Callable[[Work], object] = sleep_through,
) -> None:
    """Read, feed the protocol, write the answers; repeat until done.

    ``recv``/``send`` are a socket's ``recv``/``sendall``, a
    :class:`TimedSocket`'s, or gevent_server's.  ``wait`` does a WORK
    request's wait the model's way (default: this thread sleeps).
    """
    try:
        while not session.closing:
            if session.work is not None:  # a WORK wait: the replies before it are sent
                wait(session.work)
                reply = session.work_done()
            elif session.pending:  # requests held back by the reply budget come first
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


class RequestClock:
    """How long a client's next read may wait: the idle timeout between requests, or what
    is left of the request's own, counted from its first byte (a trickle cannot push it
    back).  Shared by :class:`TimedSocket` and gevent's ``TimedConnection``: they differ
    in *how* a read is bounded (a socket timeout, a ``gevent.Timeout``), not in when."""

    __slots__ = ("session", "limits", "began", "request_expired")

    def __init__(self, session: Session, limits: Limits) -> None:
        self.session = session
        self.limits = limits
        self.began: float | None = None  # when the request in progress began (monotonic)
        self.request_expired = False  # the request timeout, not the idle one, ended it

    def read_timeout(self) -> float:
        """Seconds the next read may wait; <= 0 when the request's time is already up."""
        if not self.session.in_request:
            self.began = None
            return self.limits.idle_timeout
        now = time.monotonic()
        if self.began is None:  # the bytes just fed to the session began a request
            self.began = now
        return self.began + self.limits.request_timeout - now

    def timed_out(self) -> None:
        """A read gave up: by the request's deadline if a request was under way."""
        self.request_expired = self.began is not None

    def replied(self) -> None:
        """A reply went out: requests completed, so bytes still buffered began a new one."""
        self.began = None


class TimedSocket:
    """A client socket's ``recv`` and ``send``, each bounded by a socket timeout."""

    __slots__ = ("sock", "session", "limits", "read", "clock", "wake_every")

    def __init__(
        self,
        sock: socket.socket,
        session: Session,
        limits: Limits,
        read: Callable[[int], bytes] | None = None,
        wake_every: float | None = None,
    ) -> None:
        self.sock = sock
        self.session = session
        self.limits = limits
        self.read = read or sock.recv
        self.clock = RequestClock(session, limits)
        self.wake_every = wake_every

    @property
    def request_expired(self) -> bool:
        return self.clock.request_expired

    def recv(self, size: int) -> bytes:
        """Read within the idle timeout, or within what is left of the request's."""
        seconds = self.clock.read_timeout()
        if seconds <= 0:  # settimeout(0) would mean non-blocking, not "expired"
            self.clock.timed_out()
            raise TimeoutError("request timeout")
        wake = self.wake_every
        while True:
            wait = wake if wake is not None and wake < seconds else seconds  # not min(): per read
            self.sock.settimeout(wait)
            try:
                return self.read(size)
            except TimeoutError:
                seconds -= wait  # a socket timeout fires no sooner than asked
                if seconds <= 0:
                    self.clock.timed_out()
                    raise  # an OSError: serve_stream ends this client

    def send(self, data: bytes) -> None:
        """``sendall``, giving up once the client takes no byte for the request timeout.

        Not ``sendall`` itself: its timeout bounds the whole reply, so a slow
        reader of a large file would be cut off while it still makes progress.
        """
        self.clock.replied()
        self.sock.settimeout(self.limits.request_timeout)
        view = memoryview(data)
        while view:
            sent = self.sock.send(view)  # waits for room (at most the timeout), sends what fits
            view = view[sent:]


def send_if_room(sock: socket.socket, reply: bytes) -> None:
    """Send ``reply`` only if the socket takes it at once: never wait on a client we drop."""
    try:
        sock.setblocking(False)
        sock.send(reply)
    except OSError:
        pass


def refuse(sock: socket.socket) -> None:
    """Client N+1: one ``ERROR server busy`` frame if it fits, then close at once."""
    with sock:
        send_if_room(sock, BUSY_REPLY)


def over_limit(live: int, limits: Limits) -> bool:
    """True when ``live`` clients already fill ``--max-clients``."""
    return limits.max_clients is not None and live >= limits.max_clients


class SpareDescriptor:
    """One descriptor held in reserve, given up to answer a client when the process has none left.

    :meth:`accept` is ``listener.accept()`` that survives running out:
    it returns ``None`` (after answering the excess client busy, or after a
    pause) instead of raising ``EMFILE``.  One accepting thread per instance.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self.take_back()

    def take_back(self) -> None:
        """Hold the reserve descriptor again (it stays given up if none is free)."""
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def accept(self, listener: socket.socket) -> tuple[socket.socket, object] | None:
        """A new client, or ``None`` when there is none to serve now (refused, aborted, out,
        or nobody came within the listener's timeout)."""
        try:
            return listener.accept()
        except (ConnectionAbortedError, TimeoutError):  # reset before we took it; nobody came
            return None
        except OSError as exc:
            if exc.errno not in OUT_OF_RESOURCES:
                raise
        return self.accept_with_reserve(listener)

    def accept_with_reserve(self, listener: socket.socket) -> tuple[socket.socket, object] | None:
        """Out of descriptors: accept with the reserve; serve the client only if one is left.

        If the reserve cannot be taken back, the process is still out: the
        client is answered busy and closed.  If it can, descriptors were
        freed meanwhile and the client is served.
        """
        if self.fd is None:
            time.sleep(OUT_OF_DESCRIPTORS_PAUSE)  # no reserve either: just don't spin
            self.take_back()
            return None
        self.close()
        previous = listener.gettimeout()
        listener.settimeout(OUT_OF_DESCRIPTORS_PAUSE)  # nobody may be waiting at all
        try:
            client = listener.accept()
        except OSError:  # nobody came, or another thread took the descriptor first
            client = None
        finally:
            listener.settimeout(previous)
        self.take_back()
        if client is not None and self.fd is None:
            refuse(client[0])  # frees the descriptor the reserve gave up...
            client = None
            self.take_back()  # ...so that it becomes the reserve again
        return client
