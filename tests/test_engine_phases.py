"""The engine's per-run judgements: bottleneck class, admission before the window, cost counters.

Short runs against real servers and test-only fakes (tests/fakes).  Nothing asserts a speed;
the bottleneck tests provoke a class on purpose (a generator that burns CPU per reply, a
server that sleeps) and check the engine names it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from loadgen.client import Client
from loadgen.engine import counters, hotloop, run_load
from loadgen.engine.bottleneck import SATURATED, classify_bottleneck
from loadgen.suite.launch import RunningServer, start_server
from tests.fakes import fake_env

PERF_REASON = counters.SyscallCounter.available()
needs_perf = pytest.mark.skipif(PERF_REASON is not None, reason=str(PERF_REASON))


def perf_pids(besides: counters.TracepointHold | None = None) -> list[int]:
    """perf processes that are descendants of this test process, but the hold ``besides``'s."""
    held = besides.pid if besides is not None else None
    children = psutil.Process().children(recursive=True)
    return [p.pid for p in children if p.name() == "perf" and p.pid != held]


@pytest.fixture(scope="module")
def held() -> Iterator[counters.TracepointHold]:
    """The tracepoints kept registered for this module's perf tests, as a suite run keeps them
    (:func:`counters.hold_for_suite`): each run's perf stops in ~10 ms instead of ~2.5 s.
    The hold's own end takes that wait once, and leaves no perf."""
    with counters.TracepointHold() as hold:
        yield hold
    assert perf_pids() == []


def run(server: RunningServer, **options: Any) -> dict[str, Any]:
    options.setdefault("duration", 1.0)
    options.setdefault("warmup", 0.2)
    return run_load(server.target, server_pid=server.pid, **options).to_dict()


@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with start_server(request.param, tmp_path, env=fake_env()) as server:
        yield server


@pytest.fixture(scope="module")
def epoll_reactor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: every run here opens its own connections and reads only
    its own window's figures, so none depends on a fresh server."""
    with start_server("epoll_reactor", tmp_path_factory.mktemp("epoll_reactor")) as server:
        yield server


# -- bottleneck -------------------------------------------------------------------------


def burning_read(fd: int, n: int) -> bytes:
    """os.read after 200 us of CPU: a generator too slow for any server."""
    end = time.thread_time_ns() + 200_000
    while time.thread_time_ns() < end:
        pass
    return os.read(fd, n)


def test_a_slowed_generator_is_the_bottleneck(
    epoll_reactor: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers are forked from this process: they inherit the patched hot path.
    monkeypatch.setattr(hotloop, "os", SimpleNamespace(read=burning_read, write=os.write))
    r = run(epoll_reactor, connections=8, counters=False)
    worker = r["loadgen"]["workers"][0]["cpu_util"]
    if worker < SATURATED:  # the worker burns CPU nonstop; it got less than that of a core
        pytest.skip(f"machine too busy: the spinning worker got {worker:.2f} of a core")
    assert r["requests"] > 0 and r["errors_total"] == 0
    assert r["bottleneck"] == "generator"
    assert r["server"]["cpus_allowed"] == len(psutil.Process(epoll_reactor.pid).cpu_affinity())


@pytest.mark.parametrize("fake", ["fake_sleepy_echo"], indirect=True)
def test_a_sleeping_server_is_latency_bound(fake: RunningServer) -> None:
    r = run(fake, connections=4, counters=False)
    assert r["requests"] > 0 and r["errors_total"] == 0
    assert r["latency_us"]["p50"] >= 2000  # every reply slept 2 ms
    assert r["bottleneck"] == "neither"


def test_the_class_follows_the_measured_cpu(epoll_reactor: RunningServer) -> None:
    """Whatever the machine makes of it, the class is the rule applied to the figures shown."""
    r = run(epoll_reactor, connections=4, duration=0.5, counters=False)
    s = r["server"]
    workers = [w["cpu_util"] for w in r["loadgen"]["workers"]]
    assert s["cpus_allowed"] >= 1
    assert r["bottleneck"] == classify_bottleneck(s["cpu_util"], s["cpus_allowed"], workers)


def test_no_server_pid_no_class(epoll_reactor: RunningServer) -> None:
    r = run_load(epoll_reactor.target, connections=2, duration=0.3, warmup=0.0).to_dict()
    assert r["server"] is None and r["bottleneck"] is None


# -- admission -------------------------------------------------------------------------


@pytest.mark.parametrize("fake", ["fake_slow_first"], indirect=True)
def test_late_first_replies_are_admitted_not_starved(fake: RunningServer) -> None:
    r = run(fake, connections=8, duration=0.6, warmup=0.1, counters=False)
    f = r["fairness"]
    assert f["starved"] == 0 and f["not_admitted"] == 0
    assert f["min_share"] > 0
    assert r["errors_total"] == 0
    assert r["loadgen"]["admit_s"] >= 0.35  # the first replies came 0.4 s after the start


def test_a_server_that_never_serves_some_connections_does_not_admit_them(
    tmp_path: Path,
) -> None:
    admit = 0.5
    with start_server("blocking_loop", tmp_path) as server:
        began = time.monotonic()
        r = run_load(
            server.target, connections=4, duration=0.5, warmup=0.1, timeout=5, admit_timeout=admit
        ).to_dict()
        took = time.monotonic() - began
    f = r["fairness"]
    assert f["not_admitted"] == 3 and f["starved"] == 0
    assert f["min_share"] == 0 and f["jain"] == pytest.approx(0.25)  # still unfair
    assert r["loadgen"]["admit_s"] is None  # the admit timeout hit
    assert r["config"]["admit_timeout_s"] == admit
    assert took < admit + 0.1 + 0.5 + 5  # bounded by the admit timeout, not more


def test_open_loop_admits_every_connection(epoll_reactor: RunningServer) -> None:
    r = run(epoll_reactor, connections=8, rate=2000, duration=0.5, counters=False)
    assert r["fairness"]["not_admitted"] == 0 and r["fairness"]["starved"] == 0
    assert r["loadgen"]["admit_s"] is not None
    assert r["requests"] > 0


# -- cost counters ---------------------------------------------------------------------

COST_KEYS = (
    "context_switches",
    "context_switches_per_request",
    "syscalls",
    "syscalls_per_request",
    "syscalls_by_name",
    "syscalls_unavailable",
)


ECHOES = 400


@needs_perf
def test_cost_counters_count_every_call_of_a_workload_that_cannot_batch(
    epoll_reactor: RunningServer, held: counters.TracepointHold
) -> None:
    """One ECHO at a time on one connection: the server reads each request with one recv
    and answers it with one send, whatever the load (nothing else is in flight to batch).
    The window opens and closes while the server waits for the next request (perf's
    enable and disable are acknowledged), so the counts are exact, not a band."""
    payload = bytes(64)
    with Client(epoll_reactor.host, epoll_reactor.port) as client:
        assert client.echo(payload) == payload  # connected and served before the window
        cost = counters.CostCounters(epoll_reactor.pid)
        try:
            cost.start()
            for _ in range(ECHOES):
                client.echo(payload)
            cost.pause()  # the last reply is read: its send was entered before
            s = cost.stop(ECHOES)
        finally:
            cost.close()
    assert s["syscalls_unavailable"] is None
    calls = s["syscalls"]
    assert calls.get("recvfrom", 0) + calls.get("read", 0) == ECHOES
    assert calls.get("sendto", 0) + calls.get("write", 0) == ECHOES
    assert s["syscalls_by_name"]["recvfrom"] == pytest.approx(1.0)
    assert s["syscalls_per_request"] == pytest.approx(sum(calls.values()) / ECHOES)
    assert perf_pids(besides=held) == []


@needs_perf
def test_cost_counters_against_a_reactor(
    epoll_reactor: RunningServer, held: counters.TracepointHold
) -> None:
    """The engine's counted window is its measured window, not the warm-up before it.

    The window's edges are not exact: perf is switched on through a pipe at the window's
    start, and each worker starts counting when it sees that instant; on a loaded machine
    the two can be tens of ms apart (0.962 reads per request was seen over 1 s). So the
    exact counts are the previous test's; here a warm-up as long as the window would double
    the reads per request if it were counted, which no scheduling delay comes near.
    """
    connections = 8
    r = run(epoll_reactor, connections=connections, warmup=1.0)
    s = r["server"]
    assert s["syscalls_unavailable"] is None
    assert set(s["context_switches"]) == {"voluntary", "involuntary"}
    cs = s["context_switches"]["voluntary"] + s["context_switches"]["involuntary"]
    assert s["context_switches_per_request"] == pytest.approx(cs / r["requests"], abs=1e-4)
    calls = s["syscalls"]
    reads = calls.get("recvfrom", 0) + calls.get("read", 0)
    sends = calls.get("sendto", 0) + calls.get("write", 0)
    # Closed loop, one request in flight per connection: every request counted is read once
    # and answered once; each edge of the window cuts at most one request per connection.
    assert abs(reads - sends) <= 2 * connections, (reads, sends)
    assert 0.5 < reads / r["requests"] < 1.5  # 2.0 if the warm-up were counted
    total = sum(calls.values())
    assert s["syscalls_per_request"] == pytest.approx(total / r["requests"], rel=1e-3)
    assert s["syscalls_per_request"] == pytest.approx(sum(s["syscalls_by_name"].values()), rel=1e-3)
    assert perf_pids(besides=held) == []


@needs_perf
def test_syscalls_per_request_repeat(tmp_path: Path, held: counters.TracepointHold) -> None:
    """thread_per_client with one connection: one thread, a blocking recv and a send per
    request, no GIL hand-offs (the accepting thread sleeps in accept()), so the count per
    request does not depend on the load. (epoll_reactor's epoll_wait per request does: it
    falls as more replies are ready per wake-up.)"""
    with start_server("thread_per_client", tmp_path) as server:
        first = run(server, connections=1, duration=0.5)["server"]
        second = run(server, connections=1, duration=0.5)["server"]
    for s in (first, second):
        assert s["syscalls_per_request"] is not None and s["syscalls_per_request"] >= 1.9
    assert second["syscalls_per_request"] == pytest.approx(first["syscalls_per_request"], rel=0.05)
    assert perf_pids(besides=held) == []


def test_no_counters_leaves_the_keys_null_and_says_why(epoll_reactor: RunningServer) -> None:
    r = run(epoll_reactor, connections=2, duration=0.3, counters=False)
    s = r["server"]
    assert all(s[k] is None for k in COST_KEYS[:-1])
    assert s["syscalls_unavailable"] == "off (--no-counters)"


def test_counters_without_perf_still_count_context_switches(
    epoll_reactor: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(counters.SyscallCounter, "available", classmethod(lambda cls: "no perf"))
    r = run(epoll_reactor, connections=2, duration=0.3)
    s = r["server"]
    assert s["syscalls"] is None and s["syscalls_by_name"] is None
    assert s["syscalls_unavailable"] == "no perf"
    assert s["context_switches_per_request"] is not None


@needs_perf
def test_hold_for_suite_keeps_and_then_releases_perf(held: counters.TracepointHold) -> None:
    """Beside the module's hold; the module's end checks the last hold going."""
    with counters.hold_for_suite() as hold:
        assert isinstance(hold, counters.TracepointHold) and hold.pid in perf_pids(besides=held)
    assert perf_pids(besides=held) == []
