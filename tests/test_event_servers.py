"""What the event-driven servers must survive: many clients, descriptor limits, backpressure.

Parametrized from the registry (``code`` nonblocking, asyncio or trio), so a new event
variant is picked up without touching this file; an unavailable one is
skipped with the registry's reason.  The conformance suite
(``test_conformance.py``) covers the protocol; these tests cover what
breaks naive reactors:

* 1,000 simultaneous connections, 10 ECHOs each, driven by one
  single-threaded non-blocking client (``selectors``), bounded in time;
* a variant with a descriptor ceiling (``select_reactor``: FD_SETSIZE)
  closes the connections past it, says so once and keeps serving the rest;
* a client that writes 64 MiB of requests and reads nothing is stopped by
  backpressure -- the server's memory stays bounded and other clients are
  served -- and then gets every reply, in order;
* a 4 MiB reply to a slow reader arrives whole, without the server
  spinning while it waits for room in the socket.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import servers
from loadgen.client import Client
from loadgen.procs import process_tree, raise_nofile
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import MAX_PAYLOAD, FrameDecoder, Op, Status, encode_frame
from tests.conftest import variant_params

MANY = 1000  # simultaneous clients every unlimited event variant must serve
ROUNDS = 10  # ECHOs per client, one at a time
ECHO_SIZE = 64
OVER_LIMIT = 1100  # clients thrown at a variant with a descriptor ceiling
FLOOD_BYTES = 64 * 1024 * 1024  # requests written by a client that reads nothing
FLOOD_FRAME = 16 * 1024  # payload per flood request
RSS_LIMIT = 128 * 1024 * 1024
BIG_ECHO = 4 * 1024 * 1024
IDLE = 0.5  # seconds a connection is left idle to see that the server does nothing
DEADLINE = 60.0  # seconds: every load loop here stops by itself within this


EVENT_CODE = ("nonblocking", "asyncio", "trio")  # one thread, an event loop, Python
EVENT = variant_params(lambda v: v.code in EVENT_CODE)
UNLIMITED = variant_params(lambda v: v.code in EVENT_CODE and v.max_clients is None)
LIMITED = variant_params(lambda v: v.code in EVENT_CODE and v.max_clients is not None)


@pytest.fixture
def enough_fds() -> int:
    """Room for this process's client sockets and, inherited, the server's."""
    wanted = OVER_LIMIT + 200
    soft = raise_nofile(wanted)
    if soft < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit too low: {soft} < {wanted} descriptors")
    return soft


@pytest.fixture
def event_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """A fresh server of the parametrized variant (started after ``enough_fds`` if used)."""
    with start_server(request.param, tmp_path) as running:
        yield running


# -- a single-threaded non-blocking client for many connections ---------------


def payload_for(index: int, round_: int) -> bytes:
    """Unique per client and round, so a reply sent to the wrong client is caught."""
    return f"client {index:05d} round {round_:03d} ".encode().ljust(ECHO_SIZE, b".")


@dataclass(eq=False)
class EchoConn:
    index: int
    sock: socket.socket
    connected: bool = False
    rounds_done: int = 0
    target: int = 0
    error: str | None = None
    decoder: FrameDecoder = field(default_factory=lambda: FrameDecoder(MAX_PAYLOAD))


def open_conns(host: str, port: int, first: int, count: int) -> list[EchoConn]:
    """Start ``count`` non-blocking connects; they complete in :func:`drive`."""
    conns = []
    for index in range(first, first + count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn = EchoConn(index, sock)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            conn.error = f"connect refused: {os.strerror(err)}"
        conns.append(conn)
    return conns


def drive(conns: list[EchoConn], rounds: int, timeout: float = DEADLINE) -> None:
    """Every healthy connection does ``rounds`` more ECHOs, one at a time, all concurrently.

    Failures are recorded in ``conn.error`` (refused, reset, closed, wrong
    reply, no reply in time), never raised.
    """
    sel = selectors.DefaultSelector()
    pending = 0

    def fail(conn: EchoConn, why: str) -> None:
        nonlocal pending
        conn.error = why
        sel.unregister(conn.sock)
        pending -= 1

    def send_next(conn: EchoConn) -> None:
        frame = encode_frame(Op.ECHO, payload_for(conn.index, conn.rounds_done))
        try:
            if conn.sock.send(frame) != len(frame):  # 69 bytes always fit a fresh buffer
                fail(conn, "short send")
        except OSError as exc:
            fail(conn, f"reset on send: {exc}")

    for conn in conns:
        if conn.error is None:
            conn.target = conn.rounds_done + rounds
            pending += 1
            if conn.connected:
                sel.register(conn.sock, selectors.EVENT_READ, conn)
                send_next(conn)
            else:
                sel.register(conn.sock, selectors.EVENT_WRITE, conn)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            conn = key.data
            if conn.error is not None:  # failed earlier in this batch
                continue
            if not conn.connected:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(conn, f"connect failed: {os.strerror(err)}")
                    continue
                conn.connected = True
                sel.modify(conn.sock, selectors.EVENT_READ, conn)
                send_next(conn)
                continue
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                fail(conn, f"reset: {exc}")
                continue
            if not data:
                fail(conn, "closed by the server")
                continue
            conn.decoder.receive_data(data)
            frame = conn.decoder.next_frame()
            if frame is None:
                continue
            expected = payload_for(conn.index, conn.rounds_done)
            if frame.code != Status.OK or frame.payload != expected:
                fail(conn, f"wrong reply {frame.code} {frame.payload[:40]!r}")
                continue
            conn.rounds_done += 1
            if conn.rounds_done == conn.target:
                sel.unregister(conn.sock)
                pending -= 1
            else:
                send_next(conn)
    for conn in conns:
        if conn.error is None and conn.rounds_done < conn.target:
            conn.error = f"no reply within {timeout:.0f} s"
    sel.close()


def close_conns(conns: list[EchoConn]) -> None:
    for conn in conns:
        conn.sock.close()


def sees_closed(sock: socket.socket) -> bool:
    """True when the peer has closed: EOF or a reset, right now (the server has exited)."""
    sock.settimeout(1.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False


def errors(conns: list[EchoConn]) -> list[str]:
    return [f"client {c.index}: {c.error}" for c in conns if c.error]


def closed_by_server(conn: EchoConn) -> bool:
    return conn.error is not None and (
        conn.error.startswith("reset") or conn.error == "closed by the server"
    )


# -- many clients ----------------------------------------------------------------


@pytest.mark.parametrize("event_server", UNLIMITED, indirect=True)
def test_thousand_simultaneous_clients(enough_fds: int, event_server: RunningServer) -> None:
    conns = open_conns(event_server.host, event_server.port, 0, MANY)
    try:
        drive(conns, ROUNDS)
        problems = errors(conns)
        assert not problems, f"{len(problems)} of {MANY} clients failed: {problems[:5]}"
        # No client has closed yet, and each was answered: the server holds all at once
        # (in its worker processes, if it has some).
        assert sum(p.num_fds() for p in process_tree(event_server.pid)) > MANY
        # SIGTERM with all of them connected: exit 0 in time, every client closed.
        assert event_server.terminate() == 0
        still_open = [c.index for c in conns if not sees_closed(c.sock)]
        assert not still_open, f"{len(still_open)} clients not closed at shutdown"
    finally:
        close_conns(conns)


@pytest.mark.parametrize("event_server", LIMITED, indirect=True)
def test_descriptor_ceiling_closes_only_the_excess(
    enough_fds: int, event_server: RunningServer
) -> None:
    variant = servers.get(event_server.name)
    assert variant.max_clients is not None and MANY < variant.max_clients < OVER_LIMIT
    host, port = event_server.address
    first = open_conns(host, port, 0, MANY)
    extra: list[EchoConn] = []
    try:
        drive(first, 1)
        assert not errors(first), errors(first)[:5]
        extra = open_conns(host, port, MANY, OVER_LIMIT - MANY)
        drive(extra, 1)
        assert event_server.process.poll() is None, event_server.stderr_text()[-2000:]
        served = MANY + sum(c.error is None for c in extra)
        closed = [c for c in extra if closed_by_server(c)]
        other = [c.error for c in extra if c.error and not closed_by_server(c)]
        assert not other, f"excess clients must be served or closed, not: {other[:5]}"
        assert closed, "no connection was closed past the descriptor ceiling"
        assert abs(served - variant.max_clients) <= 8, (served, variant.max_clients)
        # The first clients are still served, and the server is still running.
        drive(first, 1)
        assert not errors(first), errors(first)[:5]
        assert event_server.process.poll() is None
        assert event_server.stderr_text().count("FD_SETSIZE") == 1, event_server.stderr_text()
        # Once clients leave, new ones are admitted again.
        close_conns(first[:100])
        assert echo_soon(event_server, b"after the storm") == b"after the storm"
    finally:
        close_conns(first + extra)


def echo_soon(server: RunningServer, data: bytes, within: float = 5.0) -> bytes:
    """ECHO from a new client, retrying while the server has not yet freed descriptors."""
    deadline = time.monotonic() + within
    while True:
        try:
            with Client(server.host, server.port, timeout=within) as client:
                return client.echo(data)
        except (ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- backpressure ------------------------------------------------------------------


def flood_payload(i: int) -> bytes:
    return struct.pack("!Q", i) + FLOOD_FILL


FLOOD_FILL = bytes(range(256)) * (FLOOD_FRAME // 256 - 1) + bytes(256 - 8)
FLOOD_COUNT = FLOOD_BYTES // FLOOD_FRAME


class Flooder(threading.Thread):
    """Writes FLOOD_COUNT ECHO requests as fast as the socket takes them."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.sent = 0  # bytes handed to the kernel so far
        self.error: BaseException | None = None

    def run(self) -> None:
        batch = 64  # 1 MiB per sendall
        try:
            for start in range(0, FLOOD_COUNT, batch):
                chunk = b"".join(
                    encode_frame(Op.ECHO, flood_payload(i))
                    for i in range(start, min(start + batch, FLOOD_COUNT))
                )
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def wait_until_stalled(flooder: Flooder, quiet: float = 0.5, within: float = DEADLINE) -> None:
    """Return once the flooder has made no progress for ``quiet`` s (or has finished)."""
    deadline = time.monotonic() + within
    last, since = -1, time.monotonic()
    while flooder.is_alive() and time.monotonic() < deadline:
        if flooder.sent != last:
            last, since = flooder.sent, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def largest_rss(pid: int) -> int:
    """The largest RSS among the server's processes (a prefork server's workers each hold
    their own clients, so each must stay bounded)."""
    return max(p.memory_info().rss for p in process_tree(pid))


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server's processes, its workers included."""
    return sum(sum(p.cpu_times()[:2]) for p in process_tree(pid))


@pytest.mark.parametrize("event_server", EVENT, indirect=True)
def test_client_that_never_reads_is_held_back(event_server: RunningServer) -> None:
    sock = socket.create_connection(event_server.address, timeout=DEADLINE)
    # A small receive buffer here, so the kernel cannot soak up much of the replies.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    flooder = Flooder(sock)
    try:
        flooder.start()
        wait_until_stalled(flooder)
        rss = largest_rss(event_server.pid)
        assert flooder.is_alive(), (
            f"the server read all {FLOOD_BYTES >> 20} MiB from a client that reads nothing:"
            " no backpressure"
        )
        assert rss < RSS_LIMIT, f"server RSS {rss >> 20} MiB with a client that never reads"
        # Another client is served meanwhile.
        with Client(event_server.host, event_server.port, timeout=5.0) as other:
            assert other.echo(b"still there?") == b"still there?"
        # Now read everything: every reply, correct and in order.
        decoder = FrameDecoder(MAX_PAYLOAD)
        deadline = time.monotonic() + DEADLINE
        for i in range(FLOOD_COUNT):
            while (frame := decoder.next_frame()) is None:
                assert time.monotonic() < deadline, f"only {i} of {FLOOD_COUNT} replies in time"
                data = sock.recv(64 * 1024)
                assert data, f"server closed after {i} of {FLOOD_COUNT} replies"
                decoder.receive_data(data)
            assert frame.code == Status.OK
            assert frame.payload == flood_payload(i), f"reply {i} is wrong or out of order"
        flooder.join(DEADLINE)
        assert flooder.error is None, flooder.error
        assert flooder.sent == FLOOD_COUNT * (FLOOD_FRAME + 5)
        assert largest_rss(event_server.pid) < RSS_LIMIT
    finally:
        sock.close()
        flooder.join(5.0)


@pytest.mark.parametrize("event_server", EVENT, indirect=True)
def test_big_reply_to_a_slow_reader_arrives_whole(event_server: RunningServer) -> None:
    payload = os.urandom(BIG_ECHO)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Small buffer before connecting: the reply must go out in many partial writes.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(DEADLINE)
    sock.connect(event_server.address)
    try:
        sock.sendall(encode_frame(Op.ECHO, payload))
        cpu_before = tree_cpu(event_server.pid)
        started = time.monotonic()
        decoder = FrameDecoder(MAX_PAYLOAD)
        while (frame := decoder.next_frame()) is None:
            assert time.monotonic() - started < DEADLINE, "4 MiB reply not read in time"
            time.sleep(0.002)  # the slow reader
            data = sock.recv(32 * 1024)
            assert data, "server closed before the whole reply arrived"
            decoder.receive_data(data)
        wall = time.monotonic() - started
        cpu = tree_cpu(event_server.pid) - cpu_before
        assert frame.code == Status.OK
        assert len(frame.payload) == BIG_ECHO and frame.payload == payload
        # Waiting for room in the socket must not spin: the server sleeps in poll...
        assert cpu < 0.5 * wall, f"server used {cpu:.2f} s CPU in {wall:.2f} s of slow reading"
        # ...and once everything is sent it stops watching for writability.
        cpu_before = tree_cpu(event_server.pid)
        time.sleep(IDLE)
        idle_cpu = tree_cpu(event_server.pid) - cpu_before
        assert idle_cpu < 0.2 * IDLE, f"server used {idle_cpu:.2f} s CPU in {IDLE} s idle"
    finally:
        sock.close()
