"""A small blocking client for protocol v1: echo, list, get, put, work and quit.

Tests and the interactive shell use it.  Framing is the project's sans-I/O
code (:mod:`servers.protocol`), so the client cannot disagree with the
servers about the bytes.  A server ERROR becomes :class:`ServerError`
carrying the server's message.

    with Client("127.0.0.1", 8000) as c:
        c.put("hello.txt", b"hi")
        assert c.get("hello.txt") == b"hi"

    with Client("/tmp/s.sock") as c:  # no port: a Unix domain socket's path
        assert c.echo(b"x") == b"x"
        assert c.work("wait", 500_000, b"hi") == b"hi"  # after half a second

    with DatagramClient("127.0.0.1", 8001) as d:  # a datagram server (issue 17)
        assert d.echo(b"x") == b"x"

A target on the command line is ``HOST:PORT`` or ``unix:PATH``
(:func:`parse_address`), or ``udp:HOST:PORT`` for a datagram server
(:func:`parse_udp_target`, loopback only); in Python an address is the
socket module's: a ``(host, port)`` tuple, or a ``str``, the path of a Unix
socket.
"""

from __future__ import annotations

import ipaddress
import socket
from types import TracebackType

from servers.protocol import (
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    Op,
    Status,
    WorkKind,
    encode_frame,
    encode_put_payload,
    encode_work_payload,
)

RECV_SIZE = 64 * 1024  # under glibc's 128 KiB mmap threshold
MAX_WORK_AMOUNT = 0xFFFFFFFF  # WORK's amount is a uint32 (the server's --max-work is lower)


UNIX_PREFIX = "unix:"
UDP_PREFIX = "udp:"  # udp:HOST:PORT, a datagram server (loopback only)
DATAGRAM_TIMEOUT = 0.2  # s: a datagram reply not back by then is lost (python -m loadgen's)
Address = tuple[str, int] | str  # a str is a Unix domain socket's path


class ServerError(Exception):
    """The server answered ERROR; ``str(exc)`` is its message."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the whole reply arrived."""


def parse_target(text: str, *, loopback_only: bool = False) -> tuple[str, int]:
    """``"HOST:PORT"`` (or ``"[::1]:PORT"``) -> ``(host, port)``; ValueError if malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"target must be HOST:PORT, got {text!r}")
    host = host.strip("[]")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    if loopback_only and not is_loopback(host):
        raise ValueError(f"{host} is not a loopback address; load is only sent to this machine")
    return host, port


def parse_address(text: str, *, loopback_only: bool = False) -> Address:
    """``"unix:PATH"`` -> ``PATH``; else :func:`parse_target`'s ``(host, port)``."""
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        if not path:
            raise ValueError("unix: target needs a path, e.g. unix:/tmp/s.sock")
        return path
    return parse_target(text, loopback_only=loopback_only)


def parse_udp_target(text: str) -> tuple[str, int] | None:
    """``"udp:HOST:PORT"`` -> ``(host, port)`` (a loopback host only: a UDP flood has no
    brakes); ``None`` for any other target; ValueError if malformed or not loopback."""
    if not text.startswith(UDP_PREFIX):
        return None
    return parse_target(text[len(UDP_PREFIX) :], loopback_only=True)


def format_address(address: Address) -> str:
    """The target text :func:`parse_address` reads back: ``unix:PATH`` or ``HOST:PORT``."""
    if isinstance(address, str):
        return UNIX_PREFIX + address
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def work_kind(kind: WorkKind | int | str) -> int:
    """A WORK kind: a :class:`WorkKind`, its name (``"wait"``, any case) or any number.

    Any number that fits in a byte is passed through, so that a test can send
    a kind the server must refuse; an unknown name is a ValueError.
    """
    if isinstance(kind, str):
        try:
            return WorkKind[kind.upper()]
        except KeyError:
            names = "|".join(k.name.lower() for k in WorkKind)
            raise ValueError(f"WORK kind must be one of {names}, got {kind!r}") from None
    if not 0 <= kind <= 255:
        raise ValueError(f"WORK kind must fit in a byte, got {kind}")
    return int(kind)


def connect(address: Address, timeout: float | None) -> socket.socket:
    """A connected blocking socket: TCP with Nagle off, or a Unix stream socket."""
    if not isinstance(address, str):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """One connection.  Methods send one request and wait for its reply.

    ``Client(host, port)`` connects over TCP; ``Client(path)``, with no port,
    to the Unix domain socket at ``path``.
    """

    def __init__(self, host: str, port: int | None = None, timeout: float | None = 10.0) -> None:
        self.sock = connect(host if port is None else (host, port), timeout)
        self._decoder = FrameDecoder(MAX_PAYLOAD)

    @classmethod
    def to(cls, address: Address, timeout: float | None = 10.0) -> Client:
        """A client of ``address``: ``(host, port)`` or a Unix socket's path."""
        if isinstance(address, str):
            return cls(address, timeout=timeout)
        return cls(address[0], address[1], timeout=timeout)

    # -- the operations ----------------------------------------------------

    def echo(self, data: bytes) -> bytes:
        return self.request(Op.ECHO, data)

    def list(self) -> list[str]:
        payload = self.request(Op.LIST)
        return payload.decode("utf-8").split("\n") if payload else []

    def get(self, name: str) -> bytes:
        return self.request(Op.GET, name.encode("utf-8"))

    def put(self, name: str, data: bytes) -> None:
        self.request(Op.PUT, encode_put_payload(name, data))

    def work(self, kind: WorkKind | int | str, amount: int, data: bytes = b"") -> bytes:
        """WORK: ``kind`` (name or number), ``amount`` µs (compute: units); returns ``data``.

        The reply comes once the server has done the work, so the socket's
        timeout is stretched by ``amount`` µs for this request (a compute unit
        is about 1 µs): the server's own work is not a late reply.
        """
        if not 0 <= amount <= MAX_WORK_AMOUNT:
            raise ValueError(f"WORK amount must be 0..{MAX_WORK_AMOUNT}, got {amount}")
        payload = encode_work_payload(work_kind(kind), amount, data)
        timeout = self.sock.gettimeout()
        if timeout is None:
            return self.request(Op.WORK, payload)
        self.sock.settimeout(timeout + amount / 1e6)
        try:
            return self.request(Op.WORK, payload)
        finally:
            self.sock.settimeout(timeout)

    def quit(self) -> None:
        self.request(Op.QUIT)
        self.close()

    # -- the machinery -----------------------------------------------------

    def request(self, op: int, payload: bytes = b"") -> bytes:
        """Send one request, return the OK payload or raise ServerError."""
        self.send(encode_frame(op, payload))
        return self.ok_payload(self.read_frame())

    def send(self, data: bytes) -> None:
        """Send raw bytes (one or many pre-encoded frames, or garbage on purpose)."""
        self.sock.sendall(data)

    def read_frame(self) -> Frame:
        """Block until one whole response frame has arrived."""
        while (frame := self._decoder.next_frame()) is None:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise ConnectionClosed("the server closed the connection")
            self._decoder.receive_data(data)
        return frame

    @staticmethod
    def ok_payload(frame: Frame) -> bytes:
        if frame.code == Status.OK:
            return frame.payload
        if frame.code == Status.ERROR:
            raise ServerError(frame.payload.decode("utf-8", "replace"))
        raise ConnectionError(f"reply has unknown status {frame.code}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DatagramClient:
    """A datagram server's client: one request datagram, its reply datagram or a timeout.

    The socket is connected to the server (``connect`` on UDP only fixes the
    peer: replies from anyone else are discarded by the kernel, and a closed
    port shows as ``ConnectionRefusedError``).  No retry: a lost datagram is
    a ``TimeoutError``, which is what the protocol over UDP means.
    """

    def __init__(self, host: str, port: int, timeout: float | None = 2.0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))

    def echo(self, data: bytes) -> bytes:
        return self.request(Op.ECHO, data)

    def list(self) -> list[str]:
        """LIST: a datagram server answers ``ERROR use TCP`` (raised as ServerError)."""
        payload = self.request(Op.LIST)
        return payload.decode("utf-8").split("\n") if payload else []

    def get(self, name: str) -> bytes:
        return self.request(Op.GET, name.encode("utf-8"))

    def put(self, name: str, data: bytes) -> None:
        self.request(Op.PUT, encode_put_payload(name, data))

    def quit(self) -> None:
        """No connection to end: only the socket is closed (QUIT would be ``ERROR use TCP``)."""
        self.close()

    def work(self, kind: WorkKind | int | str, amount: int, data: bytes = b"") -> bytes:
        """WORK over UDP; the timeout is stretched by ``amount`` µs, as :meth:`Client.work`."""
        payload = encode_work_payload(work_kind(kind), amount, data)
        timeout = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout + amount / 1e6)
        try:
            return self.request(Op.WORK, payload)
        finally:
            self.sock.settimeout(timeout)

    def request(self, op: int, payload: bytes = b"") -> bytes:
        """Send one request datagram; the OK payload, or ServerError (TimeoutError: lost)."""
        reply = self.exchange(encode_frame(op, payload))
        decoder = FrameDecoder(MAX_PAYLOAD)
        frame = decoder.whole_frame(reply)
        if frame is None:
            raise ConnectionError(f"reply datagram of {len(reply)} bytes is not one frame")
        return Client.ok_payload(frame)

    def exchange(self, datagram: bytes) -> bytes:
        """Send raw bytes as one datagram (garbage on purpose too); the next reply datagram."""
        self.sock.send(datagram)
        return self.sock.recv(RECV_SIZE + 1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> DatagramClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
