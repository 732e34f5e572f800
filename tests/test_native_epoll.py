"""The native epoll reference: ECHO over protocol v1 and raw mode, framing edge cases, shutdown.

Started through the real command line (which builds the C source on demand).
Skipped, with the registry's reason, where there is no C compiler.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import servers
from loadgen.client import Client, ConnectionClosed, ServerError
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import HEADER, Op, Status, encode_frame

REASON = servers.get("native_epoll").unavailable_reason
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"native_epoll unavailable: {REASON}")

MAX_FRAME = 2 * 1024 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("native")
    with start_server("native_epoll", root, max_frame=MAX_FRAME) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.host, server.port, timeout=10) as c:
        yield c


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Everything the server sends until it closes (fails the test if it does not)."""
    sock.settimeout(limit)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def wait_for_exec(pid: int) -> None:
    """The exec follows the ready line: wait until the pid runs the native binary."""
    deadline = time.monotonic() + 10
    while not os.readlink(f"/proc/{pid}/exe").endswith("native_epoll"):
        assert time.monotonic() < deadline, os.readlink(f"/proc/{pid}/exe")
        time.sleep(0.01)


# ECHO sizes, ten frames in one send, a frame a byte at a time and raw mode are
# the conformance suite's (tests/test_conformance.py runs them on native_epoll
# too); the tests here are the reference's own.


def test_ready_line_pid_becomes_the_native_binary(server: RunningServer) -> None:
    # serve() execs the binary: the pid in the ready line is the native server's.
    assert server.ready["pid"] == server.pid
    wait_for_exec(server.pid)


@pytest.mark.parametrize("op", [0x00, Op.LIST, Op.GET, Op.PUT, 0x7F])
def test_other_opcodes_get_error_and_connection_stays_usable(client: Client, op: int) -> None:
    client.send(encode_frame(op, b"some payload to skip"))
    with pytest.raises(ServerError, match="native_epoll reference serves ECHO only"):
        client.ok_payload(client.read_frame())
    assert client.echo(b"after") == b"after"


def test_over_max_frame_gets_error_then_close(server: RunningServer) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(HEADER.pack(Op.ECHO, MAX_FRAME + 1))
        reply = read_until_closed(sock)
    status, length = HEADER.unpack_from(reply)
    assert status == Status.ERROR
    assert b"over the maximum" in reply[HEADER.size :]
    assert len(reply) == HEADER.size + length  # nothing after the ERROR frame


def test_max_frame_itself_is_accepted(client: Client) -> None:
    payload = b"m" * MAX_FRAME
    assert client.echo(payload) == payload


def test_quit_gets_ok_then_close(server: RunningServer) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(encode_frame(Op.QUIT) + encode_frame(Op.ECHO, b"ignored"))
        assert read_until_closed(sock) == encode_frame(Status.OK)


def test_replies_are_finished_after_the_client_half_closes(server: RunningServer) -> None:
    # The reply is bigger than the socket buffers and we do not read it until
    # the server has seen our end of stream: it must still send all of it.
    payloads = [os.urandom(MAX_FRAME) for _ in range(3)] + [b"last"]
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"".join(encode_frame(Op.ECHO, p) for p in payloads))
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
        got = read_until_closed(sock, limit=10)
    assert got == b"".join(encode_frame(Status.OK, p) for p in payloads)


def test_client_that_never_reads_is_bounded_and_others_are_served(
    server: RunningServer, client: Client
) -> None:
    # A client sends up to 64 MiB of ECHO and reads nothing.  The server must
    # stop reading it once its replies pile up (so the sender blocks and the
    # server's memory stays flat), and keep serving everyone else.
    rss_before = psutil.Process(server.pid).memory_info().rss
    data = memoryview(encode_frame(Op.ECHO, b"h" * 65531) * 1024)  # 64 MiB of whole frames
    sent = stalls = 0
    with socket.create_connection(server.address, timeout=5) as hog:
        hog.setblocking(False)
        deadline = time.monotonic() + 5
        while sent < len(data) and stalls < 20 and time.monotonic() < deadline:
            try:
                sent += hog.send(data[sent : sent + 65536])
            except BlockingIOError:
                stalls += 1
                time.sleep(0.02)
        assert client.echo(b"still served") == b"still served"
        growth = psutil.Process(server.pid).memory_info().rss - rss_before
        assert sent < len(data), "the server kept reading a client that never reads"
        assert growth < 16 * MiB
    assert client.echo(b"after the hog") == b"after the hog"


def test_many_connections(server: RunningServer) -> None:
    from loadgen.procs import raise_nofile

    n = min(1000, raise_nofile(1200) - 100)
    clients = [Client(server.host, server.port, timeout=10) for _ in range(n)]
    try:
        for i, c in enumerate(clients):
            c.send(encode_frame(Op.ECHO, str(i).encode()))
        for i, c in enumerate(clients):
            assert c.read_frame().payload == str(i).encode()
    finally:
        for c in clients:
            c.close()


def test_out_of_descriptors_refuses_extra_clients_and_keeps_serving(tmp_path: Path) -> None:
    with start_server("native_epoll", tmp_path) as running:
        wait_for_exec(running.pid)
        psutil.Process(running.pid).rlimit(psutil.RLIMIT_NOFILE, (16, 16))
        socks = [socket.create_connection(running.address, timeout=5) for _ in range(30)]
        served = refused = 0
        try:
            for sock in socks:
                try:
                    sock.sendall(encode_frame(Op.ECHO, b"x"))
                    reply = sock.recv(100)
                except ConnectionError:
                    reply = b""
                if reply == encode_frame(Status.OK, b"x"):
                    served += 1
                else:
                    assert reply == b"", reply
                    refused += 1
        finally:
            for sock in socks:
                sock.close()
        assert served >= 1 and refused >= 1 and served + refused == len(socks)
        deadline = time.monotonic() + 5
        while True:  # the server notices the closed clients and has descriptors again
            with Client(running.host, running.port, timeout=5) as c:
                try:
                    assert c.echo(b"again") == b"again"
                    break
                except ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_exits_zero_and_group_is_gone(tmp_path: Path, signum: int) -> None:
    with start_server("native_epoll", tmp_path) as running:
        with Client(running.host, running.port) as c:  # a live connection does not hold it up
            assert c.echo(b"x") == b"x"
            running.process.send_signal(signum)
            assert running.process.wait(5) == 0
            with pytest.raises((ConnectionClosed, ConnectionError, OSError)):
                c.echo(b"y")
        deadline = time.monotonic() + 5
        while running.group_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running.group_alive()


def test_prepare_without_compiler_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from servers import native_build, native_epoll

    monkeypatch.setattr(native_build.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"no C compiler \(cc\) found"):
        native_epoll.prepare()
    assert servers.get("native_epoll").unavailable_reason == "no C compiler (cc) found"


def test_prepare_caches_by_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from servers import native_epoll

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = native_epoll.prepare()
    assert first.startswith(str(tmp_path)) and os.access(first, os.X_OK)
    built = os.stat(first).st_mtime_ns
    assert native_epoll.prepare() == first
    assert os.stat(first).st_mtime_ns == built  # not rebuilt


def test_build_failure_is_one_line_runtime_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers import native_epoll

    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return not_declared; }\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(native_epoll, "SOURCE", broken)
    with pytest.raises(RuntimeError, match="native_epoll: .* failed") as info:
        native_epoll.prepare()
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "cache").rglob("native_epoll"))


def test_cli_without_compiler_is_a_one_line_error(tmp_path: Path) -> None:
    # No compiler on PATH: the CLI refuses before listening, with the reason, no traceback.
    import subprocess
    import sys

    from loadgen.suite.launch import suite_env

    env = suite_env({"PATH": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "servers", "native_epoll", "--port", "0", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode != 0
    assert "no C compiler (cc) found" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_c_sizes_match_the_suite() -> None:
    # The C server cannot import servers.tuning; its two sizes must say the same.
    from servers import native_epoll, tuning

    source = native_epoll.SOURCE.read_text()

    def define(name: str) -> int:
        match = re.search(rf"#define {name} \((\d+) \* (\d+)\)", source)
        assert match, f"no #define {name} (A * B) in native_epoll.c"
        return int(match[1]) * int(match[2])

    assert define("RECV_SIZE") == tuning.RECV_SIZE
    assert define("OUT_HIGH") == tuning.HIGH_WATER


def test_struct_header_matches_protocol() -> None:
    # The C server hard-codes the 5-byte "!BI" header and these codes.
    assert HEADER.size == 5 and struct.calcsize("!BI") == 5
    assert (Op.ECHO, Op.QUIT, Status.OK, Status.ERROR) == (1, 5, 0, 1)
