"""ServerMonitor: CPU, memory and peaks of a server's whole process tree.

Against real servers started as users start them, and against small process
trees made here (a child that burns CPU and is reaped during the period).
Behaviour only: figures are positive, grow with clients, and nothing is lost
when processes come and go -- never how fast anything is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from loadgen.client import Client
from loadgen.engine import monitor as monitor_module
from loadgen.engine.monitor import ServerMonitor
from loadgen.procs import tree_memory
from loadgen.suite.launch import start_server, suite_env
from tests.test_loadgen import SERVER_KEYS  # one list of the server keys


def echo_load(client: Client, *, count: int, seconds: float) -> int:
    """Bounded in count and time; returns the number of replies."""
    deadline = time.monotonic() + seconds
    done = 0
    while done < count and time.monotonic() < deadline:
        assert client.echo(b"x" * 64) == b"x" * 64
        done += 1
    return done


def test_cpu_figures_after_load(tmp_path: Path) -> None:
    with start_server("thread_per_client", tmp_path) as server:
        with Client(server.host, server.port) as client:
            mon = ServerMonitor(server.pid, interval=0.05)
            mon.start()
            requests = echo_load(client, count=20_000, seconds=1.5)
            result = mon.stop(requests)
    assert SERVER_KEYS <= result.keys()
    assert result["pid"] == server.pid
    assert result["error"] is None
    assert result["cpu_s"] > 0 and result["cpu_util"] > 0
    # 20,000 round trips over sockets: both user and kernel time, in /proc's 10 ms ticks
    assert result["cpu_user_s"] > 0 and result["cpu_system_s"] > 0
    assert result["cpu_s"] == pytest.approx(result["cpu_user_s"] + result["cpu_system_s"])
    per_request = result["cpu_s"] * 1e6 / requests
    assert result["cpu_us_per_request"] == pytest.approx(per_request, abs=1e-3)
    assert result["cpu_us_per_request"] == pytest.approx(
        result["cpu_user_us_per_request"] + result["cpu_system_us_per_request"], abs=1e-3
    )
    # thread_per_client: the main thread plus one per client.
    assert result["peak_threads"] >= 2
    assert result["peak_fds"] >= 2  # the listener and the client's socket at least
    assert result["peak_children"] == 0 and result["processes"] == 1
    assert 0 < result["memory_pss_bytes"] <= result["memory_rss_bytes"]
    assert result["memory_pss_is_rss"] is False
    assert result["samples"] >= 2  # at least the sampler's first sample and stop's


def test_zero_requests_gives_null_per_request_figures(tmp_path: Path) -> None:
    with start_server("blocking_loop", tmp_path) as server:
        mon = ServerMonitor(server.pid)
        mon.start()
        result = mon.stop(0)
    for key in ("cpu_us_per_request", "cpu_user_us_per_request", "cpu_system_us_per_request"):
        assert result[key] is None
    # an idle server between start and stop: next to nothing (a few 10 ms ticks at most)
    assert result["cpu_s"] is not None and 0 <= result["cpu_s"] < 0.1
    assert result["cpu_s"] == pytest.approx(result["cpu_user_s"] + result["cpu_system_s"])


def test_fork_per_client_children_and_memory_grow_with_clients(tmp_path: Path) -> None:
    n = 12
    with start_server("fork_per_client", tmp_path) as server:
        idle = ServerMonitor(server.pid)
        idle.start()
        alone = idle.stop(0)
        clients = [Client(server.host, server.port) for _ in range(n)]
        try:
            busy = ServerMonitor(server.pid, interval=0.05)
            busy.start()
            requests = sum(echo_load(c, count=20, seconds=2) for c in clients)
            crowd = busy.stop(requests)
        finally:
            for c in clients:
                c.close()
    assert alone["peak_children"] == 0
    assert crowd["peak_children"] >= n
    assert crowd["processes"] >= n + 1
    assert crowd["peak_fds"] > alone["peak_fds"]
    assert crowd["memory_pss_bytes"] > alone["memory_pss_bytes"]
    # Forked children share pages: summed RSS counts them once per process, PSS once.
    assert crowd["memory_rss_bytes"] > crowd["memory_pss_bytes"]


# A parent that, on "go", forks a child (and, at depth 2, a grandchild) that
# burns CPU and exits; whoever forked it reaps it.  The parent stays alive.
TREE_SCRIPT = textwrap.dedent(
    """
    import os, sys, time

    def burn(seconds):
        start = time.process_time()
        while time.process_time() - start < seconds:
            pass

    def spawn(depth, seconds):
        pid = os.fork()
        if pid == 0:
            if depth > 1:
                spawn(depth - 1, seconds)
                sys.stdout.write("done\\n"); sys.stdout.flush()
                sys.stdin.read()          # the middle child stays alive
            else:
                burn(seconds)
            os._exit(0)
        if depth == 1:
            os.waitpid(pid, 0)            # reaped: its CPU moves to children_*

    depth, seconds = int(sys.argv[1]), float(sys.argv[2])
    sys.stdin.readline()
    spawn(depth, seconds)
    if depth == 1:
        sys.stdout.write("done\\n"); sys.stdout.flush()
    sys.stdin.read()
    """
)


@pytest.fixture
def process_tree() -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def start(depth: int, seconds: float) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", TREE_SCRIPT, str(depth), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=suite_env(),
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


@pytest.mark.parametrize(
    "depth", [1, 2], ids=["child-reaped-by-leader", "grandchild-reaped-by-child"]
)
def test_cpu_of_children_that_exit_during_the_period_is_counted(
    process_tree: object, depth: int
) -> None:
    proc = process_tree(depth, 0.3)  # type: ignore[operator]
    mon = ServerMonitor(proc.pid, interval=0.05)
    mon.start()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "done\n"  # the burner has exited and been reaped
    result = mon.stop(1)
    assert result["cpu_s"] >= 0.2
    assert result["peak_children"] >= depth - 1


def test_cpu_burnt_before_start_is_not_counted(process_tree: object) -> None:
    proc = process_tree(1, 0.3)  # type: ignore[operator]
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "done\n"
    mon = ServerMonitor(proc.pid)
    mon.start()
    result = mon.stop(1)
    assert result["cpu_s"] < 0.1


def test_processes_coming_and_going_are_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short connections to a fork server: children appear and vanish while
    # the sampler walks the tree (every 10 ms, or as often as its duty cap
    # allows).  One long-lived client keeps one child alive throughout.
    crashes: list[object] = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    with start_server("fork_per_client", tmp_path) as server:
        with Client(server.host, server.port) as steady:
            assert steady.echo(b"child") == b"child"
            mon = ServerMonitor(server.pid, interval=0.01)
            mon.start()
            deadline = time.monotonic() + 3
            done = 0
            while done < 150 and time.monotonic() < deadline:
                with Client(server.host, server.port) as c:
                    c.echo(b"hi")
                done += 1
            result = mon.stop(done)
    assert crashes == []  # the sampler thread did not die on a vanished process
    assert result["error"] is None
    assert result["peak_children"] >= 1 and result["samples"] >= 2
    assert result["cpu_s"] > 0  # the exited children's CPU is in the parent's children_*


def test_a_vanished_process_in_the_tree_is_skipped() -> None:
    # Deterministic version of the race: a tree listing a process that has
    # since exited and been reaped.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = psutil.Process(gone.pid)
    gone.wait()
    mon = ServerMonitor(os.getpid())
    tree = [psutil.Process(os.getpid()), dead]
    (user, system), _ = mon._cpu_snapshot(tree)
    assert user + system > 0
    mon._sample(tree)
    assert mon._peaks.samples == 1 and mon._peaks.threads >= 1
    mem = tree_memory(tree)
    assert 0 < mem.pss <= mem.rss


def test_server_that_exits_during_the_period(tmp_path: Path) -> None:
    with start_server("blocking_loop", tmp_path) as server:
        mon = ServerMonitor(server.pid, interval=0.05)
        mon.start()
        server.stop()
        result = mon.stop(10)
    assert result["error"] and str(server.pid) in result["error"]
    assert result["cpu_s"] is None and result["cpu_us_per_request"] is None
    assert result["processes"] == 0


def test_no_such_pid_is_a_value_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ValueError, match=str(proc.pid)):
        ServerMonitor(proc.pid)


def test_sampler_stretches_its_sleep_when_sampling_is_expensive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sample that burns 30 ms of CPU: at MAX_DUTY the thread must wait
    # about 30 ms / MAX_DUTY before the next, not the 1 ms interval.
    real_sample = ServerMonitor._sample

    def expensive_sample(self: ServerMonitor, tree: object = None) -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.03:
            pass
        real_sample(self, tree)  # type: ignore[arg-type]

    monkeypatch.setattr(ServerMonitor, "_sample", expensive_sample)
    mon = ServerMonitor(os.getpid(), interval=0.001)
    mon.start()
    time.sleep(0.5)
    result = mon.stop(0)
    budget = 0.5 * monitor_module.MAX_DUTY / 0.03  # samples the duty cap allows in 0.5 s
    assert result["samples"] <= budget + 2  # + the first sample and stop's own
    assert result["sampler_cpu_s"] >= 0.03
    assert not any(t.name == "server-monitor" for t in threading.enumerate())


def test_pss_unavailable_falls_back_to_rss_with_a_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: psutil.Process) -> None:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", denied)
    with start_server("blocking_loop", tmp_path) as server:
        mon = ServerMonitor(server.pid)
        mon.start()
        result = mon.stop(0)
    assert result["memory_pss_is_rss"] is True
    assert result["memory_pss_bytes"] == result["memory_rss_bytes"] > 0
