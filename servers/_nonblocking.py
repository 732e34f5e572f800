"""The non-blocking connection: written once, shared by the four reactors.

``select_reactor``, ``poll_reactor``, ``epoll_reactor`` and ``epoll_edge``
differ only in *how they wait* for sockets to become ready (the way
CPython's ``selectors.py`` puts one selector class per system call).  What
they do once a socket is ready is here, in :class:`Connection`:

* **input** -- ``recv`` at most ``RECV_SIZE`` bytes and feed them to the
  sans-I/O session, which returns the bytes to send;
* **output** -- append those bytes to a buffer and ``send`` what the socket
  takes *now*.  A reply larger than the socket's send buffer goes out in
  pieces, in order; the reactor asks to be told about writability only while
  the buffer is non-empty, so an idle connection never wakes the loop;
* **backpressure** -- a client that sends requests but does not read the
  replies makes the buffer grow.  Past ``HIGH_WATER`` the connection
  stops reading (``wants_read`` turns false, so the reactor stops watching it
  for input); the kernel's buffers fill and TCP flow control stops the
  client.  Reading resumes once the buffer is down to ``LOW_WATER``.
  Memory per client is bounded by about one high-water mark plus one reply,
  and every other client keeps being served meanwhile;
* **closing** -- after QUIT or a fatal framing error (``session.closing``)
  the buffer is flushed, then ``shutdown(SHUT_WR)`` sends a FIN behind the
  last reply, and the socket is kept until the peer closes too, discarding
  what it still sends.  Closing at once would be wrong on Linux: ``close()``
  on a socket with unread input sends a RST, and a RST can overtake -- and
  destroy -- a reply the peer has not read yet.

A reactor calls :meth:`Connection.on_readable` / :meth:`Connection.on_writable`
when the poller says so, then looks at ``wants_read`` / ``wants_write`` to
decide what to watch next, and at ``done`` to drop the connection.  Each
call does one step (one ``recv``; what ``send`` takes now), and
:func:`accept_clients` takes a bounded batch: enough for a level-triggered
loop, which is told again while anything is left.  An edge-triggered loop
must repeat those steps until ``EAGAIN`` itself -- ``epoll_edge`` shows how.

The sizes and limits (``RECV_SIZE``, ``HIGH_WATER``, ``LOW_WATER``,
``LINGER_LIMIT``, ``ACCEPT_BATCH``) are the suite's, in :mod:`servers.tuning`.
"""

from __future__ import annotations

import socket
import sys
import traceback
from collections.abc import Iterable

from servers.protocol import Session
from servers.tuning import ACCEPT_BATCH, HIGH_WATER, LINGER_LIMIT, LOW_WATER, RECV_SIZE


class Connection:
    """One client: a non-blocking socket, its session and its unsent output."""

    __slots__ = ("sock", "fd", "session", "output", "paused", "eof", "shut", "done", "discarded")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        sock.setblocking(False)
        # Replies are small and latency matters: don't let Nagle hold the tail
        # of a partly-sent reply back for an ACK (asyncio and uvloop do the same).
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # already reset (macOS says EINVAL): the first recv will tell
            pass
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.output = bytearray()  # accepted by the session, not yet taken by the kernel
        self.paused = False  # reading stopped by backpressure
        self.eof = False  # the peer has closed its side: nothing more to read
        self.shut = False  # we sent our FIN (after session.closing)
        self.done = False  # finished or failed: the reactor drops and closes it
        self.discarded = 0  # bytes read and thrown away after closing

    @property
    def wants_read(self) -> bool:
        # While the session holds whole requests back (its reply budget),
        # reading more would only grow its input buffer.
        return not (self.done or self.eof or self.paused or self.session.pending)

    @property
    def wants_write(self) -> bool:
        return not self.done and bool(self.output)

    def on_readable(self) -> bool:
        """One ``recv``; True if it read bytes (more may be waiting), else False.

        False means the socket had nothing more to give -- ``EAGAIN``, EOF or
        a reset -- or reading is paused.  A level-triggered loop ignores the
        answer (the poller will say again if more is waiting); an
        edge-triggered one reads until it is False (see ``epoll_edge``).
        """
        if not self.wants_read:
            return False
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:  # EAGAIN: drained
            return False
        except OSError:  # reset: the client is gone
            self.done = True
            return False
        if not data:
            self.eof = True
            self._settle()
            return False
        self._receive(data)
        return True

    def on_writable(self) -> None:
        """Send what the socket takes, until the buffer is empty or ``EAGAIN``."""
        self._send()
        if self.done:
            return
        if self.session.pending and len(self.output) <= LOW_WATER:
            self._answer(None)  # requests held back by the reply budget
        else:
            self._settle()

    def close(self) -> None:
        self.done = True
        self.sock.close()

    def _receive(self, data: bytes) -> None:
        if self.session.closing:  # lingering after QUIT: read only to avoid a RST
            self.discarded += len(data)
            self.done = self.discarded > LINGER_LIMIT
            return
        self._answer(data)

    def _answer(self, data: bytes | None) -> None:
        """Feed the session ``data`` (None: resume held-back requests) and send.

        Go on resuming held-back requests while the output stays low.
        """
        while True:
            try:
                reply = self.session.resume() if data is None else self.session.receive_data(data)
            except Exception:  # a bug in the session must cost one client, not the server
                traceback.print_exc(file=sys.stderr)
                self.done = True
                return
            if reply:
                self.output += reply
                self._send()  # optimistic: most replies fit in the socket at once
            if self.done or not self.session.pending or len(self.output) > LOW_WATER:
                break
            data = None
        self._settle()

    def _send(self) -> None:
        """Send what the socket takes now; stop at EAGAIN."""
        while self.output:
            try:
                sent = self.sock.send(self.output)
            except BlockingIOError:  # the kernel's send buffer is full: wait for POLLOUT
                return
            except OSError:  # reset or broken pipe: nobody to send to
                self.done = True
                self.output.clear()
                return
            del self.output[:sent]  # cheap: bytearray deletes from the front in O(1)

    def _settle(self) -> None:
        """After any I/O: apply backpressure, and finish closing when it is time."""
        if len(self.output) > HIGH_WATER:
            self.paused = True
        elif self.paused and len(self.output) <= LOW_WATER:
            self.paused = False
        if self.output or self.done:
            return
        if self.eof:  # the peer has gone and everything is sent
            self.done = True
        elif self.session.closing and not self.shut:
            self.shut = True
            try:
                self.sock.shutdown(socket.SHUT_WR)  # FIN after the last reply
            except OSError:
                self.done = True


def accept_one(listener: socket.socket) -> socket.socket | None:
    """One waiting connection, or None when there is none to take now.

    None on ``EAGAIN``, and when out of descriptors (EMFILE/ENFILE: said once
    on stderr; the caller tries again later).  A connection reset while it
    sat in the backlog is skipped.
    """
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return None
        except ConnectionAbortedError:  # reset while in the backlog: skip it
            continue
        except OSError as exc:
            warn_once("accept", f"accept failed: {exc} (said once)")
            return None
        return sock


def accept_clients(listener: socket.socket, limit: int = ACCEPT_BATCH) -> list[socket.socket]:
    """Accept waiting connections, at most ``limit`` of them (one level-triggered wake-up)."""
    accepted: list[socket.socket] = []
    while len(accepted) < limit and (sock := accept_one(listener)) is not None:
        accepted.append(sock)
    return accepted


_WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """One line on stderr the first time, nothing after: a reactor must not flood its log."""
    if key not in _WARNED:
        _WARNED.add(key)
        print(message, file=sys.stderr, flush=True)


def close_all(connections: Iterable[Connection]) -> None:
    """Shutdown: close every client (pending output is abandoned)."""
    for conn in list(connections):
        conn.close()
