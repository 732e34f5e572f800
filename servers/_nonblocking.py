"""The non-blocking connection: written once, shared by the four reactors.

``select_reactor``, ``poll_reactor``, ``epoll_reactor`` and ``epoll_edge``
differ only in *how they wait* for sockets to become ready (the way
CPython's ``selectors.py`` puts one selector class per system call).  What
they do once a socket is ready is here, in :class:`Connection`:

* **input** -- ``recv`` at most :data:`RECV_SIZE` bytes and feed them to the
  sans-I/O session, which returns the bytes to send;
* **output** -- append those bytes to a buffer and ``send`` what the socket
  takes *now*.  A reply larger than the socket's send buffer goes out in
  pieces, in order; the reactor asks to be told about writability only while
  the buffer is non-empty, so an idle connection never wakes the loop;
* **backpressure** -- a client that sends requests but does not read the
  replies makes the buffer grow.  Past :data:`HIGH_WATER` the connection
  stops reading (``wants_read`` turns false, so the reactor stops watching it
  for input); the kernel's buffers fill and TCP flow control stops the
  client.  Reading resumes once the buffer is down to :data:`LOW_WATER`.
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
decide what to watch next, and at ``done`` to drop the connection.
"""

from __future__ import annotations

import socket
import sys
import traceback
from collections.abc import Iterable

from servers.protocol import Session

# Under glibc's 128 KiB mmap threshold: a larger buffer is mmap()ed and
# munmap()ed on every call, which costs more than the system call itself.
RECV_SIZE = 64 * 1024
HIGH_WATER = 1024 * 1024  # stop reading a client whose unsent replies exceed this...
LOW_WATER = 256 * 1024  # ...and start again once they are down to this
LINGER_LIMIT = 16 * 1024 * 1024  # after closing, discard at most this much before a hard close
ACCEPT_BATCH = 64  # level-triggered loops accept at most this many per wake-up


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

    def on_readable(self, budget: int = 1) -> bool:
        """Read up to ``budget`` times; True once the socket has nothing more to give.

        A level-triggered loop reads once per wake-up (the poller will say
        again if more is waiting).  An edge-triggered loop must know when it
        has read everything -- ``EAGAIN`` or EOF -- because it will not be told
        again about bytes that were already there; a False return means
        "stopped early (budget or backpressure), input may remain".
        """
        for _ in range(budget):
            if not self.wants_read:
                return self.done or self.eof
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:  # EAGAIN: drained
                return True
            except OSError:  # reset: the client is gone
                self.done = True
                return True
            if not data:
                self.eof = True
                self._settle()
                return True
            self._receive(data)
        return False

    def on_writable(self) -> None:
        """Send what the socket takes, until the buffer is empty or ``EAGAIN``."""
        self._send()
        if self.done:
            return
        if self.session.pending and len(self.output) <= LOW_WATER:
            self._answer(b"")  # requests held back by the reply budget
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

    def _answer(self, data: bytes) -> None:
        """Feed the session and send; go on answering held-back requests while output is low."""
        while True:
            try:
                reply = self.session.receive_data(data)
            except Exception:  # a bug in the session must cost one client, not the server
                traceback.print_exc(file=sys.stderr)
                self.done = True
                return
            if reply:
                self.output += reply
                self._send()  # optimistic: most replies fit in the socket at once
            if self.done or not self.session.pending or len(self.output) > LOW_WATER:
                break
            data = b""
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


def accept_clients(listener: socket.socket, limit: int | None) -> list[socket.socket]:
    """Accept waiting connections until ``EAGAIN`` (or ``limit`` of them)."""
    accepted: list[socket.socket] = []
    while limit is None or len(accepted) < limit:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            break
        except ConnectionAbortedError:  # reset while in the backlog: skip it
            continue
        except OSError as exc:  # EMFILE/ENFILE: out of descriptors; try again later
            warn_once("accept", f"accept failed: {exc} (said once)")
            break
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
