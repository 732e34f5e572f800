"""The datagram variants (issue 17): one conformance and reliability suite for each.

Every datagram variant (registry ``transport`` "udp", ``native_epoll_udp``
included) is started once per module through its command line
(``python -m servers NAME``), in its own process group, and shared by the
conformance tests; the reliability tests that disturb a server (a flood, a
process limit, SIGTERM) start one of their own.  Every load loop is bounded
in count and in time; every socket is a connected UDP socket with a
timeout, so a lost datagram fails a test by ``TimeoutError`` instead of
hanging it.

The rules under test are docs/PROTOCOL.md's "Datagrams": one datagram is
one frame; ECHO and WORK are served; LIST, GET, PUT and QUIT are answered
``ERROR use TCP`` and touch nothing; a datagram shorter than a header is
dropped (no reply), one whose length field disagrees with its size is
answered ERROR; the largest payload is 65,502 bytes (65,507 - 5).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import servers
from loadgen.client import DatagramClient, ServerError
from loadgen.procs import process_tree
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import (
    BUSY_REPLY,
    HEADER,
    MAX_DATAGRAM_PAYLOAD,
    Op,
    Status,
    encode_frame,
    encode_put_payload,
    encode_work_payload,
)
from tests.conftest import DATAGRAM_VARIANTS, variant_params

NO_REPLY_WAIT = 0.3  # s: a dropped datagram must stay unanswered at least this long
FORKING = variant_params(lambda v: v.forks, transport="udp")


@pytest.fixture(scope="module", params=DATAGRAM_VARIANTS)
def dvariant(request: pytest.FixtureRequest) -> servers.Variant:
    return servers.get(request.param)


@pytest.fixture(scope="module")
def droot(dvariant: servers.Variant, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"root-{dvariant.name}")


@pytest.fixture(scope="module")
def dserver(dvariant: servers.Variant, droot: Path) -> Iterator[RunningServer]:
    """One server per datagram variant for the whole module."""
    with start_server(dvariant.name, droot) as running:
        assert running.transport == "udp"
        yield running


@pytest.fixture
def models_only(dvariant: servers.Variant) -> None:
    if dvariant.is_reference:
        pytest.skip(f"{dvariant.name} is a reference that serves ECHO only")


def client(server: RunningServer, timeout: float = 5.0) -> DatagramClient:
    return DatagramClient(server.host, server.port, timeout=timeout)


def no_reply(c: DatagramClient, datagram: bytes) -> bool:
    """Send ``datagram``; True if nothing came back within NO_REPLY_WAIT."""
    c.sock.send(datagram)
    c.sock.settimeout(NO_REPLY_WAIT)
    try:
        c.sock.recv(70_000)
    except TimeoutError:
        return True
    return False


# -- conformance ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, 64, 8193, 65_000, MAX_DATAGRAM_PAYLOAD], ids=lambda n: f"{n}B"
)
def test_echo_is_exact(dserver: RunningServer, size: int) -> None:
    data = os.urandom(size)
    with client(dserver) as c:
        assert c.echo(data) == data


@pytest.mark.parametrize("declared", [0, 9, 11, 65_000], ids=lambda n: f"says-{n}")
def test_a_length_field_that_disagrees_is_an_error(dserver: RunningServer, declared: int) -> None:
    with client(dserver) as c:
        reply = c.exchange(HEADER.pack(Op.ECHO, declared) + b"x" * 10)  # carries 10
        assert reply[:1] == bytes([Status.ERROR])
        assert b"length field" in reply
        assert c.echo(b"next") == b"next"


@pytest.mark.parametrize("size", [0, 1, 4], ids=lambda n: f"{n}B")
def test_a_datagram_shorter_than_a_header_is_dropped(dserver: RunningServer, size: int) -> None:
    with client(dserver) as c:
        assert no_reply(c, b"\x01" * size)
        c.sock.settimeout(5.0)
        assert c.echo(b"still served") == b"still served"


@pytest.mark.parametrize("op", [Op.LIST, Op.GET, Op.PUT, Op.QUIT], ids=lambda o: o.name)
def test_files_and_quit_are_for_tcp(
    dserver: RunningServer, droot: Path, models_only: None, op: Op
) -> None:
    payload = {Op.GET: b"x.txt", Op.PUT: encode_put_payload("x.txt", b"data")}.get(op, b"")
    with client(dserver) as c:
        with pytest.raises(ServerError, match="use TCP"):
            c.request(op, payload)
        assert c.echo(b"after") == b"after"
    assert os.listdir(droot) == []  # nothing touched


def test_the_reference_serves_echo_only(dserver: RunningServer, dvariant: servers.Variant) -> None:
    if not dvariant.is_reference:
        pytest.skip("the models serve WORK")
    with client(dserver) as c:
        with pytest.raises(ServerError, match="ECHO only"):
            c.request(Op.LIST)


def test_unknown_opcode_is_an_error(dserver: RunningServer) -> None:
    with client(dserver) as c:
        with pytest.raises(ServerError, match="opcode|ECHO only"):
            c.request(0x7F, b"x")


def test_work_wait_is_answered_after_it(dserver: RunningServer, models_only: None) -> None:
    with client(dserver) as c:
        t0 = time.monotonic()
        assert c.work("wait", 100_000, b"waited") == b"waited"
        assert time.monotonic() - t0 >= 0.09
        assert c.work("compute", 100, b"computed") == b"computed"
        with pytest.raises(ServerError, match="unknown WORK kind"):
            c.work(9, 1)


def test_concurrent_flows_are_all_answered(dserver: RunningServer) -> None:
    """32 flows, each its own socket, 25 requests each, all in flight at once per round."""
    flows = [client(dserver) for _ in range(32)]
    try:
        for round_no in range(25):
            for i, c in enumerate(flows):
                c.sock.send(encode_frame(Op.ECHO, f"{i}:{round_no}".encode()))
            for i, c in enumerate(flows):
                want = encode_frame(Status.OK, f"{i}:{round_no}".encode())
                assert c.sock.recv(1024) == want
    finally:
        for c in flows:
            c.close()


# -- reliability: servers of their own --------------------------------------------------


def flood(server: RunningServer, count: int, seconds: float) -> int:
    """Send up to ``count`` datagrams (ECHO and malformed, mixed) within ``seconds`` from 4
    sockets that never read; returns how many were sent."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(4)]
    garbage = [encode_frame(Op.ECHO, b"x" * 64), b"\x01\x00", HEADER.pack(Op.ECHO, 99) + b"y"]
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        for sock in socks:
            sock.connect((server.host, server.port))
            sock.setblocking(False)
        while sent < count and time.monotonic() < deadline:
            try:
                socks[sent % 4].send(garbage[sent % 3])
            except (BlockingIOError, ConnectionRefusedError):
                time.sleep(0.001)
            sent += 1
    finally:
        for sock in socks:
            sock.close()
    return sent


def echo_within(server: RunningServer, seconds: float) -> bool:
    """True once an ECHO is answered, trying every 0.2 s for ``seconds``."""
    deadline = time.monotonic() + seconds
    with client(server, timeout=0.2) as c:
        while time.monotonic() < deadline:
            try:
                if c.echo(b"alive?") == b"alive?":
                    return True
            except TimeoutError:
                continue
    return False


def test_a_flood_never_crashes_and_service_resumes(
    dvariant: servers.Variant, tmp_path: Path
) -> None:
    with start_server(dvariant.name, tmp_path) as server:
        sent = flood(server, count=30_000, seconds=3.0)
        assert sent > 1000
        assert server.process.poll() is None, server.stderr_text()
        assert echo_within(server, 5.0), "no ECHO answered within 5 s of the flood's end"
        assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", FORKING)
def test_forking_never_exceeds_its_process_limit(name: str, tmp_path: Path) -> None:
    """100 WORK waits of 0.5 s at once: at most 39 children live, the others answered busy."""
    with start_server(name, tmp_path) as server:
        leader = psutil.Process(server.pid)
        flows = [client(server, timeout=5.0) for _ in range(100)]
        most = 0
        try:
            for c in flows:
                c.sock.send(encode_frame(Op.WORK, encode_work_payload(1, 500_000, b"w")))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                most = max(most, len(process_tree(server.pid)))
                time.sleep(0.01)
            replies = [c.sock.recv(1024) for c in flows]
        finally:
            for c in flows:
                c.close()
        variant = servers.get(name)
        limit = 1 + (variant.max_clients or 0)  # the parent and its children
        if variant.workers:  # udp_reuseport: N workers, each one process, no child per request
            limit = 1 + len(os.sched_getaffinity(0))
        assert most <= limit, f"{most} processes, limit {limit}"
        answered = [r for r in replies if r == encode_frame(Status.OK, b"w")]
        busy = [r for r in replies if r == BUSY_REPLY]
        assert len(answered) + len(busy) == 100
        if variant.max_clients:
            assert busy, "over max_children-1 waits, none was answered busy"
        assert leader.is_running() and not leader.status() == psutil.STATUS_ZOMBIE


def test_sigterm_exits_zero_and_leaves_nothing(dvariant: servers.Variant, tmp_path: Path) -> None:
    with start_server(dvariant.name, tmp_path) as server:
        with client(server) as c:
            assert c.echo(b"x") == b"x"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0
        assert not server.group_alive()
