"""ServerMonitor: CPU, memory and peaks of a server's whole process tree.

Against real servers started as users start them, and against small process
trees made here (a child that burns CPU and is reaped during the period).
Behaviour only: figures are positive, grow with clients, and nothing is lost
when processes come and go -- never how fast anything is.
"""

from __future__ import annotations

import dataclasses
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
from loadgen.engine import disturbance as noise
from loadgen.engine import monitor as monitor_module
from loadgen.engine import run_load
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
    # an idle server between start and stop: next to nothing
    assert result["cpu_s"] is not None and 0 <= result["cpu_s"] < 0.1
    # too little for /proc's ticks to split it: the split is unknown, or it adds up
    if result["cpu_user_s"] is not None:
        assert result["cpu_s"] == pytest.approx(result["cpu_user_s"] + result["cpu_system_s"])
    else:
        assert result["cpu_system_s"] is None


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
    reading, _ = mon._cpu_snapshot(tree)
    assert reading.total > 0
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


# -- a fork server's young children (issue 18) ----------------------------------------


def test_open_loop_counts_the_cpu_of_a_fork_servers_young_children(tmp_path: Path) -> None:
    # 2,000 req/s over 64 children: each child uses a few ms in its whole life, under one
    # of /proc/PID/stat's 10 ms ticks, so reading per-process ticks counted 0 s of CPU
    # (the reference's open-loop fork_per_client row read "0.0 / 0.0"). The CPU clocks
    # count it. Bounded: 0.25 s warm-up + 0.5 s at a low rate.
    with start_server("fork_per_client", tmp_path) as server:
        result = run_load(
            server.target, connections=64, rate=2000.0, duration=0.5, warmup=0.25,
            server_pid=server.pid, counters=False,
        )  # fmt: skip
    s = result.server
    assert s is not None and s.error is None and result.requests > 0
    assert s.processes >= 65  # the leader and a child per connection, alive at the end
    assert s.cpu_s is not None and s.cpu_s > 0
    # a request is a recv, a send and Python between them: never under a microsecond
    assert s.cpu_us_per_request is not None and s.cpu_us_per_request >= 1.0


def test_process_cpu_clock_reads_another_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nt = time.process_time()\n"
         "while time.process_time() - t < 0.05: pass\nsys.stdin.read()"],
        stdin=subprocess.PIPE, env=suite_env(), start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        seen = monitor_module.process_cpu_s(child.pid)
        while (seen or 0.0) < 0.05 and time.monotonic() < deadline:
            time.sleep(0.02)
            seen = monitor_module.process_cpu_s(child.pid)
        assert seen is not None and seen >= 0.05  # the burn, to the nanosecond
    finally:
        child.kill()
        child.wait(10)
    assert monitor_module.process_cpu_s(child.pid) is None  # reaped: no clock


@pytest.mark.parametrize(
    ("total", "user", "system", "expected"),
    [
        (0.4, 0.3, 0.1, (0.3, 0.1)),  # the ticks saw it all: their ratio
        (0.4, 0.15, 0.05, (0.3, 0.1)),  # saw half: the ratio still splits the exact total
        (0.13, 0.0, 0.0, (None, None)),  # young children: no tick moved, split unknown
        (0.13, 0.0, 0.01, (None, None)),  # one tick of 13: not a split
        (0.0, 0.0, 0.0, (0.0, 0.0)),
    ],
)
def test_user_and_system_share_the_exact_total_as_the_ticks_say(
    total: float, user: float, system: float, expected: tuple[float | None, ...]
) -> None:
    got = monitor_module._split(total, user, system)
    assert got == pytest.approx(expected) if expected[0] is not None else got == expected


# -- disturbance: steal and other processes' CPU on the run's CPUs (issue 18) ------------

PROC_STAT = """cpu  300 0 100 500 10 0 5 7 0 0
cpu0 {u0} 0 50 {idle0} 5 0 2 {steal0} 0 0
cpu1 150 0 50 {idle1} 5 0 3 0 0 0
intr 12345 0 0
ctxt 999
"""


def stat_snapshot(at: float, self_cpu: float, **cpu: int) -> noise.Snapshot:
    """A Snapshot of the two-CPU machine above (values in 1/100 s, as the kernel writes)."""
    fields = {"u0": 150, "idle0": 0, "steal0": 0, "idle1": 0, **cpu}
    return noise.Snapshot(at, noise.parse_proc_stat(PROC_STAT.format(**fields), hz=100), self_cpu)


def test_proc_stat_is_read_per_cpu_in_seconds() -> None:
    cpus = noise.parse_proc_stat(PROC_STAT.format(u0=1, idle0=250, steal0=40, idle1=75), hz=100)
    assert set(cpus) == {0, 1}  # the aggregate line and the others are not CPUs
    assert cpus[0] == noise.CpuTimes(idle=2.5, iowait=0.05, steal=0.4)
    assert cpus[1].idle == 0.75 and cpus[1].steal == 0.0
    assert noise.parse_proc_stat("cpu0 1 2 3 4\n") == {}  # no steal column: not guessed


def test_steal_and_foreign_cpu_over_each_side_and_the_run() -> None:
    # 1 s: CPU 0 (the server's) idle 0.05 s, stolen 0.03 s; CPU 1 (the generator's) idle 0.40
    before = stat_snapshot(10.0, 1.0, idle0=100, steal0=10, idle1=100)
    after = stat_snapshot(11.0, 1.02, idle0=105, steal0=13, idle1=140)
    d = noise.disturbance(
        before, after, server_cpus=[0], generator_cpus=[1], server_cpu_s=0.9,
        generator_cpu_s=0.5,
    )  # fmt: skip
    assert d is not None and d["wall_s"] == pytest.approx(1.0)
    server, generator, run = d["server"], d["generator"], d["run"]
    assert server["cpus"] == [0] and server["steal_fraction"] == pytest.approx(0.03)
    assert server["busy_cores"] == pytest.approx(0.92)  # 1 - idle 0.05 (+ iowait 0) - steal
    assert server["foreign_cores"] == pytest.approx(0.02)  # busy - the server tree's 0.9
    # the generator's own: its workers' 0.5 and this process's 0.02
    assert generator["own_cores"] == pytest.approx(0.52)
    assert generator["foreign_cores"] == pytest.approx(0.08) and generator["steal_fraction"] == 0
    assert run["cpus"] == [0, 1] and run["steal_fraction"] == pytest.approx(0.015)
    assert run["foreign_cores"] == pytest.approx(0.10)
    # 3% of 1 s is 3 of /proc/stat's 10 ms units: within one unit of the 2% limit, not beyond
    assert noise.disturbed(d) is None
    assert noise.excess(d) == pytest.approx(1.5)  # the worst figure: steal at 1.5 x its limit


def test_shared_cpus_have_no_sides_and_an_unknown_server_no_foreign_figure() -> None:
    before = stat_snapshot(0.0, 0.0, idle0=100, idle1=100)
    after = stat_snapshot(0.5, 0.0, idle0=120, idle1=130)
    d = noise.disturbance(
        before, after, server_cpus=[0, 1], generator_cpus=[0, 1], server_cpu_s=None,
        generator_cpu_s=0.1,
    )  # fmt: skip
    assert d is not None and d["server"] is None and d["generator"] is None
    assert d["run"]["busy_cores"] == pytest.approx(1.0)  # 2 CPUs x 0.5 s - 0.5 s idle
    assert d["run"]["own_cores"] is None and d["run"]["foreign_cores"] is None
    missing = noise.disturbance(
        before, after, server_cpus=[0], generator_cpus=[7], server_cpu_s=0.1,
        generator_cpu_s=0.1,
    )  # fmt: skip
    assert missing is None  # a CPU /proc/stat does not list: nothing is claimed


@pytest.mark.parametrize(
    ("wall", "server_steal", "run_foreign", "words"),
    [
        (2.0, 0.0, 0.05, None),
        (2.0, 0.02, 0.10, None),  # at the limits: not beyond them
        (2.0, 0.03, 0.0, "steal 3.0% of the server's CPU time"),  # 6 units, the limit 4
        (0.49, 0.0204, 0.0, None),  # one 10 ms unit in 0.49 s: 2.04%, the resolution itself
        (0.49, 0.0612, 0.0, "steal 6.1% of the server's CPU time"),  # three units
        (0.5, 0.0, 0.25, "other processes used 0.25 of a CPU"),
    ],
)
def test_a_run_is_disturbed_beyond_the_documented_limits(
    wall: float, server_steal: float, run_foreign: float, words: str | None
) -> None:
    share = {"cpus": [0], "steal_fraction": 0.0, "busy_cores": 1.0, "own_cores": 0.9,
             "foreign_cores": 0.0}  # fmt: skip
    record = {
        "wall_s": wall,
        "run": dict(share, cpus=[0, 1], foreign_cores=run_foreign),
        "server": dict(share, steal_fraction=server_steal),
        "generator": dict(share, cpus=[1]),
    }
    why = noise.disturbed(record)
    assert (why is None) if words is None else (why is not None and words in why)
    assert noise.disturbed(None) is None


def test_a_process_burning_the_servers_cpu_shows_as_foreign(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the server's and the generator's")
    burn = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 3: pass"
    with start_server("thread_per_client", tmp_path, cpus=[cpus[0]]) as server:
        hog = subprocess.Popen(
            [sys.executable, "-c", burn], start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}),
        )  # fmt: skip
        try:
            result = run_load(
                server.target, connections=4, duration=0.5, warmup=0.2, cpus=[cpus[1]],
                server_pid=server.pid, counters=False,
            )  # fmt: skip
        finally:
            hog.kill()
            hog.wait(10)
    d = result.disturbance
    assert d is not None and d.server is not None and d.server.cpus == [cpus[0]]
    # the hog shares the server's CPU: a good part of a core, whatever else runs
    assert d.server.foreign_cores is not None and d.server.foreign_cores > 0.2
    assert d.run.foreign_cores is not None and d.run.foreign_cores > 0.2
    assert noise.disturbed(dataclasses.asdict(d)) is not None
