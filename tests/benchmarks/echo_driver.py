"""A fixed number of ECHO requests, as little client work per request as Python allows.

pytest-benchmark times a function; for its mean to be the *server's* cost,
that function must do a fixed amount of work for the server and almost
nothing else.  :class:`EchoDriver` holds ``connections`` blocking sockets,
opened once (so connecting is never timed), and :meth:`EchoDriver.run` sends
``requests`` ECHO requests over them: on each connection, batches of
``pipeline`` requests, each batch pre-encoded as one ``bytes`` and sent with
one ``sendall``; all connections' batches are sent before any reply is read,
so the server has work on every connection at once.  The replies of a batch
are read into a pre-allocated buffer and compared, as a whole, with the
pre-built expected bytes: every byte is checked, with one comparison per
batch rather than one per request.

Each (connection, slot) pair has its own payload, so a reply sent on the
wrong connection or in the wrong order is a wrong reply too.  Every socket
has a timeout: a server that stops answering fails the round, it does not
hang it.
"""

from __future__ import annotations

import socket
from types import TracebackType

from servers.protocol import Op, Status, encode_frame

TIMEOUT_S = 5.0  # per socket operation; far above any healthy round


class WrongReply(AssertionError):
    """A reply differed from the request's echo (the first wrong byte is named)."""


def payload(connection: int, slot: int, size: int) -> bytes:
    """The ECHO payload of one (connection, pipeline slot): distinct from its neighbours'."""
    seed = connection * 31 + slot * 7 + 1
    return bytes((seed + i * 13) % 251 for i in range(size))


class EchoDriver:
    """``requests`` ECHO requests of ``size`` bytes per :meth:`run`, over reused connections."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        requests: int,
        connections: int,
        pipeline: int,
        size: int = 64,
    ) -> None:
        if requests <= 0 or requests % (connections * pipeline):
            raise ValueError(
                f"requests ({requests}) must be a positive multiple of "
                f"connections x pipeline ({connections} x {pipeline})"
            )
        self.address = (host, port)
        self.requests = requests
        self.batches = requests // (connections * pipeline)  # per connection, per run
        self.outgoing: list[bytes] = []
        self.expected: list[bytes] = []
        for c in range(connections):
            slots = [payload(c, s, size) for s in range(pipeline)]
            self.outgoing.append(b"".join(encode_frame(Op.ECHO, p) for p in slots))
            self.expected.append(b"".join(encode_frame(Status.OK, p) for p in slots))
        self.buffers = [bytearray(len(e)) for e in self.expected]
        self.socks: list[socket.socket] = []

    def open(self) -> EchoDriver:
        """Connect every connection (not timed: call it before the benchmark)."""
        for _ in self.outgoing:
            sock = socket.create_connection(self.address, timeout=TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks.append(sock)
        return self

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()

    def __enter__(self) -> EchoDriver:
        return self.open()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self) -> int:
        """Send this run's requests, check every reply byte; the number of requests answered."""
        work = list(zip(self.socks, self.outgoing, self.expected, self.buffers, strict=True))
        try:
            for _ in range(self.batches):
                for sock, out, _, _ in work:
                    sock.sendall(out)
                for sock, _, expected, buf in work:
                    read_exactly(sock, buf)
                    if buf != expected:
                        raise WrongReply(describe(bytes(buf), expected))
        except (ConnectionResetError, BrokenPipeError) as exc:
            # A server that closes with requests still unread sends a RST, not a FIN: the
            # same close, seen as a reset or a broken pipe depending on who moved first.
            raise ConnectionError(f"server closed the connection ({exc.strerror})") from exc
        return self.requests


def read_exactly(sock: socket.socket, buf: bytearray) -> None:
    """Fill ``buf`` from ``sock``; a closed connection is an error, not a short read."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError(f"server closed the connection after {got}/{len(buf)} bytes")
        got += n


def describe(got: bytes, expected: bytes) -> str:
    """Where two equal-length byte strings first differ, for the failure message."""
    at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
    return f"reply byte {at} of the batch is {got[at]:#04x}, expected {expected[at]:#04x}"
