"""Cost counters: context switches and system calls of a server tree over a window.

Against a tiny echo server made here (one connection, served by a thread or
by a child forked per connection), driven with exactly N request/reply pairs
on loopback. Behaviour only: the counts are there, at least one receive per
request, the same per request in two windows, and perf never outlives us.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from loadgen.engine import syscalls
from loadgen.engine.counters import (
    ContextSwitchCounter,
    CostCounters,
    SyscallCounter,
    TracepointHold,
    per_request,
    top_syscalls,
    tree_pids,
)

N = 2000  # request/reply pairs per window
PAYLOAD = b"x" * 64

# Echo every byte back on one accepted connection, served by a thread (the
# main thread only joins it) or by a child forked for it (the parent reaps it).
ECHO_SERVER = textwrap.dedent(
    """
    import os, socket, sys, threading
    mode = sys.argv[1]
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    print(lsock.getsockname()[1], flush=True)

    def serve(conn):
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)

    while True:
        conn, _ = lsock.accept()
        if mode == "thread":
            worker = threading.Thread(target=serve, args=(conn,))
            worker.start()
            worker.join()
        else:
            pid = os.fork()
            if pid == 0:
                serve(conn)
                os._exit(0)
            os.waitpid(pid, 0)
        conn.close()
    """
)

perf_reason = SyscallCounter.available()
needs_perf = pytest.mark.skipif(perf_reason is not None, reason=str(perf_reason))


@pytest.fixture
def echo_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    """(pid, port) of an echo server in its own process group; the group is killed after."""
    mode = getattr(request, "param", "thread")
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, mode],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc.pid, port
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def echo_pairs(port: int, count: int = N, seconds: float = 20.0) -> int:
    """One new connection, closed at the end; see :func:`echo_on`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return echo_on(sock, count, seconds)


def echo_on(sock: socket.socket, count: int = N, seconds: float = 20.0) -> int:
    """``count`` request/reply pairs at most, ``seconds`` at most; returns how many."""
    deadline = time.monotonic() + seconds
    done = 0
    while done < count and time.monotonic() < deadline:
        sock.sendall(PAYLOAD)
        got = b""
        while len(got) < len(PAYLOAD):
            chunk = sock.recv(len(PAYLOAD) - len(got))
            assert chunk, "server closed the connection"
            got += chunk
        assert got == PAYLOAD
        done += 1
    return done


def perf_pids(besides: TracepointHold | None = None) -> list[int]:
    """perf processes that are children of this test process, but the hold ``besides``'s."""
    me = psutil.Process()
    held = besides.pid if besides is not None else None
    return [p.pid for p in me.children(recursive=True) if p.name() == "perf" and p.pid != held]


@pytest.fixture(scope="module")
def held() -> Iterator[TracepointHold]:
    """The tracepoints kept registered for this module's perf tests, as a suite run keeps them.

    Without it, each counter's stop waits ~2.5 s for the kernel to unregister them
    (see :class:`TracepointHold`). The hold's own end takes that wait once, and leaves no perf.
    """
    with TracepointHold() as hold:
        yield hold
    assert perf_pids() == []


# -- pure figures --------------------------------------------------------------


def test_per_request_and_top() -> None:
    counts = {"recvfrom": 2000, "sendto": 2000, "epoll_wait": 620, "close": 3, "other": 9000}
    per = per_request(counts, 2000)
    assert per == {
        "recvfrom": 1.0,
        "sendto": 1.0,
        "epoll_wait": 0.31,
        "close": 0.0015,
        "other": 4.5,
    }
    assert top_syscalls(per, n=3) == "recvfrom 1.00, sendto 1.00, epoll_wait 0.31"
    assert top_syscalls(per) == "recvfrom 1.00, sendto 1.00, epoll_wait 0.31, close 0.00"
    assert per_request(counts, 0) == dict.fromkeys(counts)
    assert top_syscalls(per_request(counts, 0)) == ""


def test_parse_perf_csv() -> None:
    text = (
        "# started on Sat Nov 28 08:29:34 2026\n\n"
        "3540,,raw_syscalls:sys_enter,10767178,100.00,,\n"
        "3500,,syscalls:sys_enter_getppid,10767178,100.00,,\n"
        "<not counted>,,syscalls:sys_enter_accept4,0,0.00,,\n"
        "<not supported>,,syscalls:sys_enter_nosuch,0,0.00,,\n"
    )
    events = syscalls._parse_perf_csv(text)
    assert events == {
        "raw_syscalls:sys_enter": 3540,
        "syscalls:sys_enter_getppid": 3500,
        "syscalls:sys_enter_accept4": 0,
    }
    assert SyscallCounter()._by_name(events) == {"getppid": 3500, "other": 40}


# -- availability --------------------------------------------------------------


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SyscallCounter, "_probed", False)
    monkeypatch.setattr(SyscallCounter, "_reason_cache", None)


@pytest.mark.usefixtures("fresh_probe")
def test_available_without_perf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syscalls.shutil, "which", lambda name: None)
    reason = SyscallCounter.available()
    assert reason is not None and reason.startswith("perf not found")
    assert "apt-get install linux-perf" in reason
    with pytest.raises(RuntimeError, match="perf not found"):
        SyscallCounter().start([os.getpid()])
    cost = CostCounters(os.getpid())
    assert cost.syscalls is None and cost.unavailable == reason


@pytest.mark.usefixtures("fresh_probe")
def test_available_paranoid_non_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syscalls.shutil, "which", lambda name: "/usr/bin/perf")
    monkeypatch.setattr(syscalls, "_paranoid", lambda: 3)
    monkeypatch.setattr(syscalls.os, "geteuid", lambda: 1000)
    reason = SyscallCounter.available()
    assert reason is not None and reason.startswith("perf_event_paranoid=3")
    assert "kernel.perf_event_paranoid=1" in reason


# -- context switches ------------------------------------------------------------


def test_context_switches_of_worker_threads(echo_server: tuple[int, int]) -> None:
    """The server's switches are its worker thread's: the main thread only waits in join().

    (``psutil.Process.num_ctx_switches()`` reads the main thread's: a few.)
    """
    pid, port = echo_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert echo_on(sock, 10) == 10  # the worker thread exists before the window
        counter = ContextSwitchCounter(interval=0.05)
        counter.start([pid])
        try:
            assert echo_on(sock) == N
        finally:
            switches = counter.stop()
    assert switches["voluntary"] >= 0 and switches["involuntary"] >= 0
    # The worker often blocks in recv() between requests (0.4 switches per pair measured
    # on a busy 2-core machine); the main thread, blocked in join(), makes none.
    assert switches["voluntary"] + switches["involuntary"] >= N // 10
    assert switches["tasks"] == 2 and switches["tasks_exited"] == 0
    assert switches["samples"] >= 2


def test_context_switches_of_a_thread_that_exits() -> None:
    """A thread born and ended inside the window keeps the switches its last sample saw."""
    script = textwrap.dedent(
        """
        import threading, time
        time.sleep(0.3)
        def sleeper():
            # 200 sleeps, and alive for a second at least: on a loaded machine the
            # sampler (every 20 ms) may not run at all during a 0.2 s life
            end = time.monotonic() + 1.0
            n = 0
            while n < 200 or time.monotonic() < end:
                time.sleep(0.001)
                n += 1
        t = threading.Thread(target=sleeper); t.start(); t.join()
        time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        counter = ContextSwitchCounter(interval=0.02)
        counter.start([proc.pid])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(psutil.Process(proc.pid).threads()) < 2:
            time.sleep(0.005)
        while time.monotonic() < deadline and len(psutil.Process(proc.pid).threads()) > 1:
            time.sleep(0.005)
        switches = counter.stop()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    assert switches["tasks_exited"] >= 1
    assert switches["voluntary"] >= 100  # 200 sleeps, minus what followed the last sample


# -- system calls --------------------------------------------------------------


def count_window(pid: int, port: int) -> dict[str, int]:
    with SyscallCounter() as counter:
        counter.start(tree_pids(pid))
        assert echo_pairs(port) == N
        time.sleep(0.05)  # let a forked child exit and be reaped inside the window
        return counter.stop()


@needs_perf
@pytest.mark.parametrize("echo_server", ["thread", "fork"], indirect=True)
def test_syscalls_per_request_repeatable(
    echo_server: tuple[int, int], held: TracepointHold
) -> None:
    """Thread: a worker born after the attach. Fork: a child forked, then reaped, in the window."""
    pid, port = echo_server
    first = per_request(count_window(pid, port), N)
    second = per_request(count_window(pid, port), N)
    for per in (first, second):
        assert per.get("recvfrom", 0) >= 1.0  # one recv per request at least
        assert per.get("sendto", 0) >= 1.0
    for name in ("recvfrom", "sendto"):
        assert second[name] == pytest.approx(first[name], rel=0.05)
    total = [sum(v for v in per.values() if v is not None) for per in (first, second)]
    assert total[1] == pytest.approx(total[0], rel=0.05)
    assert perf_pids(besides=held) == []


@needs_perf
def test_cost_counters_row(echo_server: tuple[int, int], held: TracepointHold) -> None:
    pid, port = echo_server
    cost = CostCounters(pid)
    cost.start()
    try:
        done = echo_pairs(port)
    finally:
        row = cost.stop(done)
    assert row["syscalls_unavailable"] is None
    by_name = row["syscalls_by_name"]
    assert isinstance(by_name, dict) and by_name["recvfrom"] >= 1.0
    assert row["syscalls_per_request"] == pytest.approx(sum(by_name.values()), rel=1e-3)
    assert row["context_switches_per_request"] > 0
    assert "recvfrom" in top_syscalls(by_name, n=2)
    assert perf_pids(besides=held) == []


@needs_perf
def test_no_perf_left_after_exception(echo_server: tuple[int, int], held: TracepointHold) -> None:
    pid, _ = echo_server
    with pytest.raises(KeyError):
        with SyscallCounter() as counter:
            counter.start([pid])
            perf = counter.pid
            assert perf is not None and perf in perf_pids(besides=held)
            raise KeyError("boom")
    assert perf_pids(besides=held) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(perf, 0)  # its whole group is gone


@needs_perf
def test_start_failure_leaves_no_perf(held: TracepointHold) -> None:
    """perf refuses a pid that does not exist: start() raises and perf is reaped."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(5)
    counter = SyscallCounter(timeout=5)
    with pytest.raises(RuntimeError, match="perf"):
        counter.start([gone.pid])
    assert counter.pid is None and perf_pids(besides=held) == []


@needs_perf
def test_stop_after_the_server_exited(held: TracepointHold) -> None:
    """perf ends by itself when every target is gone; stop() still returns the counts."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time\ntime.sleep(0.3)\n[os.getppid() for _ in range(500)]",
        ],
        start_new_session=True,
    )
    try:
        with SyscallCounter(names=("getppid",)) as counter:
            counter.start([proc.pid])
            proc.wait(10)
            deadline = time.monotonic() + 5
            while counter._proc is not None and counter._proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            counts = counter.stop()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    assert counts["getppid"] == 500
    assert perf_pids(besides=held) == []


def test_sampler_thread_stops() -> None:
    counter = ContextSwitchCounter(interval=0.01)
    counter.start([os.getpid()])
    counter.stop()
    assert not any(t.name == "ctxsw-sampler" for t in threading.enumerate())


@needs_perf
def test_hold_keeps_counting_right_and_leaves_nothing(
    echo_server: tuple[int, int], held: TracepointHold
) -> None:
    """A second hold beside the module's: the same code, and the module's end checks the
    case where the last hold goes (the kernel unregisters the tracepoints then)."""
    pid, port = echo_server
    with TracepointHold() as hold:
        groups = [hold.pid, hold.sleeper_pid]
        assert hold.pid in perf_pids(besides=held)
        per = per_request(count_window(pid, port), N)
        assert per["recvfrom"] >= 1.0 and per["sendto"] >= 1.0
    assert perf_pids(besides=held) == []
    for group in groups:
        assert group is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)  # perf and its sleep are both gone and reaped
