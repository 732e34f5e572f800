"""What the pool and prefork models do that the shared suites do not see (issue 11).

* ``thread_pool --workers 2``: the third client is accepted but waits,
  unanswered, until one of the two served clients leaves; then it is served.
* ``prefork_reuseport --workers 2``: two worker processes; a worker killed
  with SIGKILL is replaced and the server keeps serving, including the
  connections that were queued on the dead worker's listener meanwhile;
  SIGTERM to the parent alone leaves no process of the server behind.

One server per model, shared by its tests; every wait is bounded.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import servers
from loadgen.client import Client
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import Op, Status, encode_frame

WAITS = 0.5  # s the third client must go unanswered while both workers are busy
WITHIN = 5.0  # s any expected event may take on a busy 2-core machine


def available(name: str) -> pytest.MarkDecorator:
    reason = servers.get(name).unavailable_reason
    return pytest.mark.skipif(reason is not None, reason=f"{name} unavailable: {reason}")


def readable_within(sock: socket.socket, seconds: float) -> bool:
    return bool(select.select([sock], [], [], seconds)[0])


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# -- thread_pool -----------------------------------------------------------


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("thread_pool")
    with start_server("thread_pool", root, extra_args=["--workers", "2"]) as running:
        yield running


def test_ready_line_says_workers(pool_server: RunningServer) -> None:
    assert pool_server.ready["workers"] == 2


def test_client_past_the_pool_waits_until_a_worker_is_free(pool_server: RunningServer) -> None:
    first = Client(pool_server.host, pool_server.port, timeout=WITHIN)
    second = Client(pool_server.host, pool_server.port, timeout=WITHIN)
    with first, second:
        assert first.echo(b"1") == b"1" and second.echo(b"2") == b"2"  # both workers taken
        with socket.create_connection(pool_server.address, timeout=WITHIN) as third:
            third.sendall(encode_frame(Op.ECHO, b"3"))  # accepted: the connect and send succeed
            assert not readable_within(third, WAITS), "client 3 answered with both workers busy"
            assert first.echo(b"1") == b"1"  # the served ones are unaffected
            first.close()  # a worker comes free...
            assert readable_within(third, WITHIN), "client 3 still waits after client 1 left"
            assert read_exactly(third, 6) == encode_frame(Status.OK, b"3")  # ...and serves it
        assert second.echo(b"2") == b"2"


# -- prefork_reuseport -----------------------------------------------------


def workers_of(server: RunningServer) -> set[int]:
    """The live (non-zombie) children of the server's parent process."""
    pids = set()
    for child in psutil.Process(server.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def wait_for_workers(server: RunningServer, count: int, other_than: set[int]) -> set[int]:
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        pids = workers_of(server)
        if len(pids) == count and not pids & other_than:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"workers {workers_of(server)}, wanted {count} new ones")


@pytest.fixture(scope="module")
def prefork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("prefork_reuseport")
    with start_server("prefork_reuseport", root, extra_args=["--workers", "2"]) as running:
        yield running


@available("prefork_reuseport")
def test_two_workers_are_two_processes(prefork_server: RunningServer) -> None:
    assert prefork_server.ready["workers"] == 2
    assert len(wait_for_workers(prefork_server, 2, set())) == 2


@available("prefork_reuseport")
def test_a_killed_worker_is_replaced_and_nothing_is_lost(prefork_server: RunningServer) -> None:
    before = wait_for_workers(prefork_server, 2, set())
    victim = min(before)
    os.kill(victim, signal.SIGSTOP)  # it accepts nothing more: connections queue on its listener
    try:
        # The kernel completes these handshakes and hashes about half of them to the
        # stopped worker's listener, where they wait, requests sent, for an accept.
        waiting = [socket.create_connection(prefork_server.address, WITHIN) for _ in range(20)]
    finally:
        os.kill(victim, signal.SIGKILL)
    try:
        for i, sock in enumerate(waiting):
            sock.sendall(encode_frame(Op.ECHO, b"%02d" % i))
        for i, sock in enumerate(waiting):  # the replacement accepts the queued ones
            sock.settimeout(WITHIN)
            assert read_exactly(sock, 7) == encode_frame(Status.OK, b"%02d" % i), f"client {i}"
    finally:
        for sock in waiting:
            sock.close()
    after = wait_for_workers(prefork_server, 2, {victim})
    assert after & before == before - {victim}  # the other worker kept running
    with Client(prefork_server.host, prefork_server.port, timeout=WITHIN) as c:
        assert c.echo(b"still") == b"still"


@available("prefork_reuseport")
def test_sigterm_leaves_no_process_behind(tmp_path: Path) -> None:
    with start_server("prefork_reuseport", tmp_path, extra_args=["--workers", "2"]) as server:
        assert len(wait_for_workers(server, 2, set())) == 2
        with Client(server.host, server.port, timeout=WITHIN) as c:  # a client connected
            assert c.echo(b"x") == b"x"
            assert server.terminate(timeout=WITHIN) == 0  # SIGTERM to the parent alone
        deadline = time.monotonic() + WITHIN
        while server.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.group_alive(), "a worker outlived the parent"
