"""One conformance suite, run against every registered variant (trio's check_*_stream idea).

Each server is started through the command line exactly as a user starts
it (``python -m servers NAME --port 0``), in its own process group.  Every
test closes its connections: ``blocking_loop`` serves one client at a time,
so a leaked connection would stall the next test instead of passing it.

Reference variants (``native_epoll``) serve ECHO only: the file tests skip
for them, saying so.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from pathlib import Path

import psutil
import pytest

import servers
from loadgen.client import Client, ServerError
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import (
    DEFAULT_MAX_FRAME,
    HEADER,
    Op,
    Status,
    encode_frame,
    encode_put_payload,
)
from tests.conftest import FORKING_VARIANTS, dir_entries

INVALID_NAMES = [
    pytest.param(b"", id="empty"),
    pytest.param(b".", id="dot"),
    pytest.param(b"..", id="dotdot"),
    pytest.param(b"../x", id="parent"),
    pytest.param(b"a/b", id="slash"),
    pytest.param(b"/etc/passwd", id="absolute"),
    pytest.param(b"\\\\host\\share", id="unc"),
    pytest.param(b"C:x", id="drive"),
    pytest.param(b"a\x00b", id="nul"),
    pytest.param(b"a\x1bb", id="control"),
    pytest.param(b"x" * 256, id="256-bytes"),
    pytest.param(b"\xff\xfe", id="bad-utf8"),
    pytest.param(b".hidden", id="hidden"),
]


@pytest.fixture
def files_ok(variant: servers.Variant) -> None:
    if variant.is_reference:
        pytest.skip(f"{variant.name} is a reference that serves ECHO only")


def client(server: RunningServer, timeout: float = 10.0) -> Client:
    return Client(server.host, server.port, timeout=timeout)


def read_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


# -- ECHO and framing -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 1024 * 1024], ids=["0B", "1B", "64KiB", "1MiB"])
def test_echo_sizes(server: RunningServer, size: int) -> None:
    data = os.urandom(size)
    with client(server) as c:
        assert c.echo(data) == data


def test_ten_frames_in_one_send(server: RunningServer) -> None:
    payloads = [f"frame {i}".encode() * (i + 1) for i in range(10)]
    with client(server) as c:
        c.send(b"".join(encode_frame(Op.ECHO, p) for p in payloads))
        replies = [c.read_frame() for _ in payloads]
    assert [r.code for r in replies] == [Status.OK] * 10
    assert [r.payload for r in replies] == payloads


def test_one_frame_a_byte_at_a_time(server: RunningServer) -> None:
    frame = encode_frame(Op.ECHO, b"slowly, one byte per send")
    with client(server) as c:
        for i in range(len(frame)):
            c.send(frame[i : i + 1])
        assert c.ok_payload(c.read_frame()) == b"slowly, one byte per send"


def test_unknown_opcode_then_valid_request(server: RunningServer) -> None:
    with client(server) as c:
        with pytest.raises(ServerError, match="opcode|ECHO only"):
            c.request(0x7F, b"payload that must be consumed")
        assert c.echo(b"still usable") == b"still usable"


def test_frame_over_max_is_refused_from_the_header(server: RunningServer) -> None:
    with client(server) as c:
        # Only the header: the server must answer without waiting for 16 MiB.
        c.send(HEADER.pack(Op.ECHO, DEFAULT_MAX_FRAME + 1))
        reply = c.read_frame()
        assert reply.code == Status.ERROR
        assert reply.payload  # a message for humans
        assert read_until_eof(c.sock) == b""  # then the server closes


def test_quit_closes_the_connection(server: RunningServer) -> None:
    with client(server) as c:
        assert c.echo(b"before") == b"before"
        c.send(encode_frame(Op.QUIT))
        reply = c.read_frame()
        assert (reply.code, reply.payload) == (Status.OK, b"")
        assert read_until_eof(c.sock) == b""


def test_raw_mode_echoes_every_byte(raw_server: RunningServer) -> None:
    # Bytes that would be a QUIT frame and an oversized header in framed mode.
    data = encode_frame(Op.QUIT) + HEADER.pack(Op.ECHO, 0xFFFFFFFF) + os.urandom(100_000)
    with socket.create_connection(raw_server.address, timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(65536)
            assert chunk, "raw server closed early"
            got += chunk
    assert got == data


# -- files ------------------------------------------------------------------


def test_list_put_get_round_trip(server: RunningServer, files_ok: None) -> None:
    files = {"round-trip-a.txt": b"alpha", "round-trip-b.bin": os.urandom(70_000), "é ü.txt": b""}
    with client(server) as c:
        for name, data in files.items():
            c.put(name, data)
        listing = c.list()
        for name, data in files.items():
            assert c.get(name) == data
    assert set(files) <= set(listing)
    assert listing == sorted(listing)
    # LIST is exactly the regular, non-hidden files of the directory.
    on_disk = sorted(n for n in os.listdir(server.root) if not n.startswith("."))
    assert listing == on_disk


def test_put_replaces_an_existing_file(server: RunningServer, files_ok: None) -> None:
    with client(server) as c:
        c.put("replaced.txt", b"old contents, longer than the new ones")
        c.put("replaced.txt", b"new")
        assert c.get("replaced.txt") == b"new"
    with open(os.path.join(server.root, "replaced.txt"), "rb") as f:
        assert f.read() == b"new"


def test_get_missing_file(server: RunningServer, files_ok: None) -> None:
    with client(server) as c:
        with pytest.raises(ServerError, match="no such file"):
            c.get("does-not-exist.txt")
        assert c.echo(b"ok") == b"ok"


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names_touch_nothing(server: RunningServer, files_ok: None, name: bytes) -> None:
    before = dir_entries(server.root)
    with client(server) as c:
        with pytest.raises(ServerError):
            c.request(Op.GET, name)
        with pytest.raises(ServerError):
            c.request(Op.PUT, encode_put_payload(name, b"must not be written"))
        assert c.echo(b"still here") == b"still here"
    assert dir_entries(server.root) == before


def test_disconnect_in_the_middle_of_a_put(server: RunningServer, files_ok: None) -> None:
    name = "cut-off.bin"
    payload = encode_put_payload(name, os.urandom(200_000))
    before = dir_entries(server.root)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(HEADER.pack(Op.PUT, len(payload)) + payload[: len(payload) // 2])
    # The server has noticed the disconnect once it serves someone else.
    with client(server) as c:
        assert c.echo(b"after") == b"after"
        time.sleep(0.2)
        assert name not in c.list()
    assert dir_entries(server.root) == before  # no file, no temporary file


def test_pipelined_requests_are_answered_in_order(server: RunningServer, files_ok: None) -> None:
    requests = [
        encode_frame(Op.PUT, encode_put_payload("pipelined.txt", b"one")),
        encode_frame(Op.GET, b"pipelined.txt"),
        encode_frame(Op.ECHO, b"two"),
        encode_frame(Op.GET, b"../escape"),
        encode_frame(Op.ECHO, b"three"),
    ]
    with client(server) as c:
        c.send(b"".join(requests))
        replies = [c.read_frame() for _ in requests]
    assert [(r.code, r.payload) for r in replies[:3]] == [
        (Status.OK, b""),
        (Status.OK, b"one"),
        (Status.OK, b"two"),
    ]
    assert replies[3].code == Status.ERROR
    assert (replies[4].code, replies[4].payload) == (Status.OK, b"three")


def test_pipelined_big_gets_do_not_balloon_memory(server: RunningServer, files_ok: None) -> None:
    """200 GETs of a 1 MiB file in one 3 KiB send, replies unread: memory stays bounded."""
    data = os.urandom(1024 * 1024)
    count = 200
    with client(server, timeout=30) as c:
        c.put("big.bin", data)
        c.send(encode_frame(Op.GET, b"big.bin") * count)
        # Let the server do its worst while nobody reads: a server that answered
        # all 200 at once would hold 200 MiB within a few tens of milliseconds
        # (the file is in the page cache); the peak over 0.4 s is kept.
        rss = 0
        for _ in range(8):
            time.sleep(0.05)
            rss = max(rss, _tree_rss(server.pid))
        for _ in range(count):
            assert c.ok_payload(c.read_frame()) == data
    assert rss < 128 * 1024 * 1024, f"server tree RSS {rss / 2**20:.0f} MiB with replies unread"


def _tree_rss(pid: int) -> int:
    leader = psutil.Process(pid)
    total = 0
    for proc in [leader, *leader.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


# -- the model's semantics --------------------------------------------------


def test_second_client_while_first_is_idle(server: RunningServer, variant: servers.Variant) -> None:
    """Concurrent models serve B while A idles; blocking_loop makes B wait for A."""
    with client(server) as a:
        assert a.echo(b"a is being served") == b"a is being served"
        with client(server, timeout=1.0 if not variant.concurrent else 5.0) as b:
            b.send(encode_frame(Op.ECHO, b"b"))
            if variant.concurrent:
                assert b.ok_payload(b.read_frame()) == b"b"
                return
            with pytest.raises(TimeoutError):
                b.read_frame()  # nobody reads B while A is connected
            a.quit()
            b.sock.settimeout(5.0)
            assert b.ok_payload(b.read_frame()) == b"b"  # served once A has gone


# -- process hygiene ---------------------------------------------------------


def test_sigterm_exits_zero_and_leaves_nothing(fresh_server: RunningServer) -> None:
    with client(fresh_server) as idle:
        assert idle.echo(b"hold me") == b"hold me"  # a live client (a child, a thread, ...)
        started = time.monotonic()
        status = fresh_server.terminate(timeout=5.0)  # SIGTERM to the leader only
        assert status == 0, f"exit status {status}, stderr: {fresh_server.stderr_text()[-500:]}"
        assert time.monotonic() - started < 5.0
    deadline = time.monotonic() + 2.0
    while fresh_server.group_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not fresh_server.group_alive(), "a process of the server's group outlived it"


def test_two_quick_sigterms_still_exit_zero(fresh_server: RunningServer) -> None:
    with client(fresh_server) as idle:
        assert idle.echo(b"hold me") == b"hold me"
        os.kill(fresh_server.pid, signal.SIGTERM)
        os.kill(fresh_server.pid, signal.SIGTERM)  # impatient supervisors send two
        status = fresh_server.terminate(timeout=5.0)
    assert status == 0, f"exit status {status}, stderr: {fresh_server.stderr_text()[-500:]}"


@pytest.mark.parametrize("name", FORKING_VARIANTS)
def test_no_zombie_after_many_short_connections(name: str, tmp_path: Path) -> None:
    with start_server(name, tmp_path) as fresh_server:
        _fifty_connections_leave_no_zombie(fresh_server)


def _fifty_connections_leave_no_zombie(fresh_server: RunningServer) -> None:
    for i in range(50):
        with client(fresh_server) as c:
            assert c.echo(b"%d" % i) == b"%d" % i
    parent = psutil.Process(fresh_server.pid)
    assert fresh_server.process.poll() is None
    deadline = time.monotonic() + 3.0  # socketserver reaps every poll_interval (0.5 s)
    while True:
        children = parent.children()
        zombies = [p for p in children if _status(p) == psutil.STATUS_ZOMBIE]
        if not zombies or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert zombies == [], f"{len(zombies)} zombie children remain"
    with client(fresh_server) as c:  # and it still serves
        assert c.echo(b"alive") == b"alive"


def _status(proc: object) -> str:
    try:
        return proc.status()  # type: ignore[attr-defined]
    except Exception:  # gone between listing and asking
        return "gone"


def test_closed_mid_header_does_not_hurt_others(server: RunningServer) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(struct.pack("!B", Op.ECHO) + b"\x00\x00")  # 3 of 5 header bytes
    with client(server) as c:
        assert c.echo(b"unharmed") == b"unharmed"


def test_reset_connection_does_not_hurt_others(server: RunningServer) -> None:
    sock = socket.create_connection(server.address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(encode_frame(Op.ECHO, b"x" * 1000)[:500])
    sock.close()  # linger 0: RST instead of FIN
    with client(server) as c:
        assert c.echo(b"unharmed") == b"unharmed"
