"""The load generator against real and deliberately broken servers.

Every run here is short (about a second of load) and bounded twice: by the
engine's own deadline and by the subprocess timeout.  Nothing asserts a
speed: only that the generator counts, checks and stops as it must.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadgen.engine import ERROR_KINDS, LoadError, run_load
from loadgen.engine.result import SATURATED_CORE
from loadgen.procs import MALLOC_ENV
from loadgen.suite.launch import RunningServer, start_server, suite_env
from tests.fakes import fake_env

FAKE_ENV = fake_env()  # the started servers know tests/fakes

LATENCY_KEYS = {"p50", "p90", "p99", "p999", "max", "mean"}
TOP_KEYS = {
    "schema",
    "config",
    "throughput_rps",
    "requests",
    "duration_s",
    "latency_kind",
    "latency_us",
    "latency_us_uncorrected",
    "latency_out_of_range",
    "errors",
    "errors_total",
    "fairness",
    "loadgen",
    "server",
    "slow_clients",
    "disturbance",
    "environment",
    "partial",
}
CONFIG_KEYS = {
    "target",
    "workload",
    "size",
    "connections",
    "duration_s",
    "warmup_s",
    "rate",
    "pipeline",
    "processes",
    "mode",
    "slow_clients",
    "cpus",
}
SERVER_KEYS = {
    "pid",
    "cpu_s",
    "cpu_user_s",
    "cpu_system_s",
    "cpu_util",
    "cpu_us_per_request",
    "cpu_user_us_per_request",
    "cpu_system_us_per_request",
    "memory_pss_bytes",
    "memory_rss_bytes",
    "peak_threads",
    "peak_fds",
    "peak_children",
    "processes",
}


def run_load_json(*args: Any, **options: Any) -> dict[str, Any]:
    """run_load's result as the JSON object --json writes (docs/RESULTS.md)."""
    return run_load(*args, **options).to_dict()


def loadgen_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=suite_env(),
    )


@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with start_server(request.param, tmp_path, env=FAKE_ENV) as server:
        yield server


# Connections to a fake that answers wrongly are never admitted (no right first reply):
# the engine would wait its whole admit timeout before the window.  The checks are
# about the window's counts, not admission: a short wait keeps each run short.
SHORT_ADMIT = 0.3


def no_children_left() -> bool:
    return not psutil.Process().children(recursive=True)


def assert_fairness_consistent(f: dict[str, Any]) -> None:
    """Jain's index agrees with the reported shares, as it must for any share vector.

    The shares s_i (completions over the fair share) have mean 1, so Jain's
    index is 1 / mean(s_i^2) = 1 / (1 + var(s)).  The variance is at least
    what the smallest and largest shares contribute, ((max-1)^2 + (1-min)^2) / n,
    and at most (max-1)(1-min) (Bhatia-Davis): two bounds on the index that a
    wrong formula, or shares and index taken from different counts, breaks.
    """
    n, lo, hi = f["connections"], f["min_share"], f["max_share"]
    assert 0 <= lo <= 1 <= hi <= n
    assert (f["starved"] + f["not_admitted"] > 0) == (lo == 0)
    least = ((hi - 1) ** 2 + (1 - lo) ** 2) / n
    most = (hi - 1) * (1 - lo)
    assert 1 / (1 + most) - 1e-9 <= f["jain"] <= 1 / (1 + least) + 1e-9


# -- the real thing ------------------------------------------------------------


def test_one_second_run_against_thread_per_client(tmp_path: Path) -> None:
    duration = 1.0
    out = tmp_path / "result.json"
    with start_server("thread_per_client", tmp_path) as server:
        proc = loadgen_cli(
            "--target",
            server.target,
            "--connections",
            "8",
            "--duration",
            str(duration),
            "--warmup",
            "0.5",
            "--server-pid",
            str(server.pid),
            "--json",
            str(out),
            "--quiet",
        )
        assert proc.returncode == 0, proc.stderr
        assert server.process.poll() is None  # the server is still fine
    r = json.loads(out.read_text())
    assert TOP_KEYS <= set(r)
    assert r["schema"] == 1
    assert CONFIG_KEYS <= set(r["config"])
    assert r["config"]["mode"] == "closed" and r["config"]["connections"] == 8
    assert r["errors"] == dict.fromkeys(ERROR_KINDS, 0) and r["errors_total"] == 0
    assert r["requests"] > 0 and r["throughput_rps"] > 0
    assert r["partial"] is False
    # measured elapsed time: close to the time asked (5% under, 25% over at most), and the
    # rate is computed from it
    assert 0.95 * duration < r["duration_s"] < 1.25 * duration
    assert r["throughput_rps"] == pytest.approx(r["requests"] / r["duration_s"])
    assert r["latency_kind"] == "service_time"
    lat = r["latency_us"]
    assert set(lat) == LATENCY_KEYS
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert lat["mean"] <= lat["max"]
    # Little's law: requests in flight on average = rate x mean latency, and a
    # closed loop never has more in flight than its 8 connections (a latency
    # in the wrong unit or a rate over the wrong time breaks this).
    assert r["throughput_rps"] * lat["mean"] / 1e6 <= 8 * 1.1
    assert r["latency_us_uncorrected"] is None
    assert r["latency_out_of_range"] == 0
    f = r["fairness"]
    assert f["connections"] == 8 and f["starved"] == 0
    assert_fairness_consistent(f)
    lg = r["loadgen"]
    assert len(lg["workers"]) == 1
    assert lg["workers"][0]["requests"] == r["requests"]
    assert lg["cpu_util_max"] > 0 and lg["cpu_us_per_request"] > 0
    # the documented rule: saturated when a worker used more than SATURATED_CORE of a core
    assert lg["cpu_util_max"] == max(w["cpu_util"] for w in lg["workers"])
    assert lg["saturated"] is (lg["cpu_util_max"] > SATURATED_CORE)
    assert len(lg["saturation_reasons"]) == sum(
        w["cpu_util"] > SATURATED_CORE for w in lg["workers"]
    )
    assert lg["achieved_rate_ratio"] is None
    s = r["server"]
    assert SERVER_KEYS <= set(s)
    assert s["pid"] == server.pid
    for key in ("cpu_s", "cpu_util", "cpu_us_per_request", "memory_pss_bytes", "memory_rss_bytes"):
        assert s[key] > 0, key
    assert s["cpu_s"] == pytest.approx(s["cpu_user_s"] + s["cpu_system_s"])
    d = r["disturbance"]  # measured with --server-pid, over the window the server's CPU is
    assert set(d) == {"wall_s", "run", "server", "generator"} and d["wall_s"] > 0
    assert set(d["run"]) == {"cpus", "steal_fraction", "busy_cores", "own_cores", "foreign_cores"}
    assert 0 <= d["run"]["steal_fraction"] <= 1
    # own = the server's and the generator's CPU, so at least the server's
    assert d["run"]["own_cores"] >= s["cpu_s"] / d["wall_s"] - 1e-3
    assert d["run"]["foreign_cores"] == pytest.approx(
        d["run"]["busy_cores"] - d["run"]["own_cores"], abs=2e-4
    )
    assert s["peak_threads"] >= 8  # a thread per client
    assert s["peak_fds"] >= 8
    assert r["slow_clients"] is None
    assert r["environment"]["malloc"] == MALLOC_ENV
    assert r["environment"]["engine"] == "epoll"


def test_run_load_reaps_its_workers_and_splits_connections(tmp_path: Path) -> None:
    with start_server("thread_per_client", tmp_path) as server:
        r = run_load_json(server.target, connections=6, processes=2, duration=0.5, warmup=0.2)
    assert no_children_left()
    assert r["errors_total"] == 0
    assert len(r["loadgen"]["workers"]) == 2
    assert sum(w["requests"] for w in r["loadgen"]["workers"]) == r["requests"] > 0
    assert r["fairness"]["connections"] == 6 and r["fairness"]["starved"] == 0
    assert_fairness_consistent(r["fairness"])


@pytest.mark.parametrize(
    ("options", "protocol"),
    [
        ({"workload": "raw", "size": 100}, "raw"),
        ({"workload": "get", "size": 3000}, "framed"),
        ({"workload": "put", "size": 500}, "framed"),
        ({"workload": "mixed", "size": 200}, "framed"),
        ({"workload": "churn"}, "framed"),
        ({"workload": "echo", "pipeline": 4, "size": 10}, "framed"),
    ],
    ids=["raw", "get", "put", "mixed", "churn", "pipeline"],
)
def test_workloads_complete_without_errors(
    tmp_path: Path, options: dict[str, Any], protocol: str
) -> None:
    with start_server("thread_per_client", tmp_path, protocol=protocol) as server:
        r = run_load_json(server.target, connections=4, duration=0.5, warmup=0.2, **options)
    assert r["errors_total"] == 0, r["errors"]
    assert r["requests"] > 0 and r["fairness"]["starved"] == 0
    if options["workload"] == "put":
        names = [p.name for p in tmp_path.iterdir() if "-put-" in p.name]
        assert len(names) == 4  # one name per connection


def test_idle_connections_are_served_once_then_held(tmp_path: Path) -> None:
    with start_server("thread_per_client", tmp_path) as server:
        r = run_load_json(
            server.target,
            workload="idle",
            connections=20,
            duration=0.5,
            warmup=0.3,
            server_pid=server.pid,
        )
    idle = r["idle"]
    assert idle["served"] == 20 and idle["connections"] == 20
    assert r["errors_total"] == 0 and r["requests"] == 0
    assert r["fairness"]["starved"] == 0 and r["fairness"]["not_admitted"] == 0
    assert r["server"]["peak_threads"] > 20  # the connections were held open
    grown = idle["server_uss_after_bytes"] - idle["server_uss_before_bytes"]
    assert idle["memory_per_connection_bytes"] == pytest.approx(grown / 20)
    assert grown > 0  # 20 threads, each with its own touched stack


def test_slow_clients_are_reported_apart(tmp_path: Path) -> None:
    with start_server("thread_per_client", tmp_path) as server:
        r = run_load_json(server.target, connections=6, slow_clients=2, duration=0.8, warmup=0.1)
    assert r["errors_total"] == 0
    slow = r["slow_clients"]
    assert slow["connections"] == 2 and slow["requests"] >= 1
    # 69 bytes one at a time, 5 ms apart: at least 0.34 s per request
    assert slow["latency_us"]["p50"] >= 300_000
    assert r["fairness"]["connections"] == 4  # the headline covers the normal ones only
    assert r["requests"] > slow["requests"]


def test_a_client_limit_is_busy_and_not_admitted_never_a_wrong_reply(tmp_path: Path) -> None:
    # client 3 and 4 get the server's "ERROR server busy" frame: its limit, reported as such
    with start_server("thread_per_client", tmp_path, extra_args=["--max-clients", "2"]) as server:
        r = run_load_json(server.target, connections=4, duration=0.5, warmup=0.1, admit_timeout=0.5)
    assert r["errors"]["busy"] > 0
    assert r["errors"]["wrong_reply"] == r["errors"]["protocol"] == 0
    assert r["fairness"]["not_admitted"] == 2 and r["requests"] > 0


def test_blocking_loop_does_not_admit_connections(tmp_path: Path) -> None:
    with start_server("blocking_loop", tmp_path) as server:
        r = run_load_json(
            server.target, connections=4, duration=0.5, warmup=0.1, timeout=5, admit_timeout=0.5
        )
    f = r["fairness"]
    # never served before the window: not admitted (a limit), not starved during it
    assert f["not_admitted"] == 3 and f["starved"] == 0 and f["jain"] == pytest.approx(0.25)
    assert f["min_share"] == 0 and f["max_share"] == 4  # one connection got it all
    assert_fairness_consistent(f)


# -- broken servers ----------------------------------------------------------------


@pytest.mark.parametrize("fake", ["fake_bad_echo"], indirect=True)
def test_wrong_echo_bytes_are_errors_never_successes(fake: RunningServer) -> None:
    r = run_load_json(
        fake.target, connections=4, duration=0.5, warmup=0.1, admit_timeout=SHORT_ADMIT
    )
    assert r["requests"] == 0 and r["throughput_rps"] == 0
    assert r["errors"]["wrong_reply"] > 0
    assert r["errors_total"] == r["errors"]["wrong_reply"]
    assert r["reconnects"] >= r["errors"]["wrong_reply"] - 4  # each break is reopened


def assert_only_wrong_replies(r: dict[str, Any]) -> None:
    """Every reply was refused as wrong, none counted, and each broke its connection."""
    assert r["requests"] == 0 and r["throughput_rps"] == 0
    assert r["latency_us"] == dict.fromkeys(LATENCY_KEYS)  # no latency from a wrong reply
    assert r["errors"]["wrong_reply"] > 0
    assert r["errors_total"] == r["errors"]["wrong_reply"]
    assert r["reconnects"] >= r["errors"]["wrong_reply"] - r["config"]["connections"]


# Each option set sends the replies down a different comparison in the engine:
# one request in flight (the hot path: the whole reply in one read), two
# pipelined (both replies usually in one read), open loop (the general path,
# reply by reply).
REPLY_PATHS = {
    "one-in-flight": {},
    "pipelined": {"pipeline": 2},
    "open-loop": {"rate": 400},
}


@pytest.mark.parametrize("options", list(REPLY_PATHS.values()), ids=list(REPLY_PATHS))
@pytest.mark.parametrize("fake", ["fake_flip_echo"], indirect=True)
def test_right_header_and_length_but_one_wrong_byte_is_never_a_success(
    fake: RunningServer, options: dict[str, Any]
) -> None:
    # 100-byte ECHO: the reply's header and length are right, its last byte is not.
    r = run_load_json(
        fake.target,
        connections=4,
        size=100,
        duration=0.5,
        warmup=0.1,
        admit_timeout=SHORT_ADMIT,
        **options,
    )
    assert_only_wrong_replies(r)


@pytest.mark.parametrize("fake", ["fake_flip_echo"], indirect=True)
def test_cycling_requests_count_one_wrong_echo_byte_as_wrong(fake: RunningServer) -> None:
    # mixed: each connection cycles 16 ECHO, 3 GET, 1 PUT, one reply per read
    # (the engine's "one whole reply" path for cycling requests).  GET and PUT
    # are served right; every ECHO is wrong and breaks the connection, so at
    # most 4 successes follow 16 failures, plus a cycle's edge per connection.
    connections = 3
    options: dict[str, Any] = {"workload": "mixed", "size": 100, "duration": 0.5, "warmup": 0.1}
    r = run_load_json(fake.target, connections=connections, **options)
    wrong = r["errors"]["wrong_reply"]
    assert wrong > 0 and r["errors_total"] == wrong
    assert 0 < r["requests"] <= wrong / 4 + 8 * connections


@pytest.mark.parametrize("fake", ["fake_flip_echo_deep"], indirect=True)
def test_one_byte_flipped_deep_inside_a_64kib_reply_is_never_a_success(
    fake: RunningServer,
) -> None:
    # The wrong byte sits 40,005 bytes into a 65,541-byte reply read in pieces.
    r = run_load_json(
        fake.target,
        connections=2,
        size=64 * 1024,
        duration=0.5,
        warmup=0.1,
        admit_timeout=SHORT_ADMIT,
    )
    assert_only_wrong_replies(r)


@pytest.mark.parametrize("fake", ["fake_bad_status"], indirect=True)
def test_malformed_status_is_a_protocol_error(fake: RunningServer) -> None:
    r = run_load_json(
        fake.target, connections=2, duration=0.4, warmup=0.1, admit_timeout=SHORT_ADMIT
    )
    assert r["requests"] == 0
    assert r["errors"]["protocol"] > 0 and r["errors"]["wrong_reply"] == 0


@pytest.mark.parametrize("fake", ["fake_close_after_one"], indirect=True)
def test_closed_connections_are_resets_and_reopened(fake: RunningServer) -> None:
    r = run_load_json(fake.target, connections=2, duration=0.5, warmup=0.1)
    assert r["errors"]["reset"] > 0 and r["reconnects"] > 0
    assert r["requests"] > 0  # each reopened connection gets its one reply
    assert r["errors"]["wrong_reply"] == r["errors"]["protocol"] == 0


@pytest.mark.parametrize("fake", ["fake_pause_once"], indirect=True)
def test_open_loop_shows_a_server_stall_in_corrected_latency(fake: RunningServer) -> None:
    # The fake stalls all replies for 300 ms, 1 s after the first request:
    # inside the measured period (0.3 s warm-up, then 2 s).
    r = run_load_json(fake.target, connections=8, rate=1000, duration=2.0, warmup=0.3, timeout=5)
    assert r["errors_total"] == 0
    assert r["config"]["mode"] == "open" and r["latency_kind"] == "response_time"
    corrected, uncorrected = r["latency_us"], r["latency_us_uncorrected"]
    assert set(uncorrected) == LATENCY_KEYS
    assert corrected["p99"] >= uncorrected["p99"] + 100_000
    assert corrected["max"] >= 250_000
    assert r["loadgen"]["achieved_rate_ratio"] == pytest.approx(r["throughput_rps"] / 1000)


@pytest.mark.parametrize("fake", ["fake_never_reply"], indirect=True)
def test_exits_by_itself_when_the_server_never_answers(fake: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    duration, warmup, admit = 1.0, 0.5, 1.0
    began = time.monotonic()
    proc = loadgen_cli(
        "--target",
        fake.target,
        "--connections",
        "4",
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--timeout",
        "0.5",
        "--admit-timeout",
        str(admit),
        "--json",
        str(out),
        "--quiet",
        timeout=admit + duration + warmup + 20,
    )
    took = time.monotonic() - began
    assert took < admit + duration + warmup + 5
    assert "Traceback" not in proc.stderr
    r = json.loads(out.read_text())
    assert r["requests"] == 0
    # never served at all: not admitted (a limit), not reply timeouts
    assert r["fairness"]["not_admitted"] == 4 and r["errors_total"] == 0


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "unix:"],  # a Unix target without a path
        ["--target", "nonsense"],
        ["--target", "127.0.0.1:1", "--connections", "0"],
        ["--target", "127.0.0.1:1", "--workload", "nope"],
        ["--target", "127.0.0.1:1", "--rate", "-5"],
        ["--target", "127.0.0.1:1", "--slow-clients", "64"],
    ],
)
def test_bad_arguments_one_line_no_traceback(args: list[str]) -> None:
    proc = loadgen_cli(*args)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_target_one_line_no_traceback() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = loadgen_cli("--target", f"127.0.0.1:{port}", "--duration", "1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect" in lines[0]


def test_run_load_raises_load_error_when_unreachable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(LoadError):
            run_load(f"127.0.0.1:{s.getsockname()[1]}", duration=0.5)


MEASURED = re.compile(rb"measured ([\d,]+)")


def wait_for_measured_replies(proc: subprocess.Popen[bytes], terminal: int, limit: float) -> bytes:
    """Read the live line a user watches (``terminal``: the pty on the generator's stderr)
    until it shows replies measured in the window; what it drew so far."""
    drawn = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([terminal], [], [], 0.1)[0]:
            try:
                drawn += os.read(terminal, 4096)
            except OSError:  # EIO: the generator closed its side
                break
            counts = MEASURED.findall(drawn)
            if counts and int(counts[-1].replace(b",", b"")) > 0:
                return drawn
    pytest.fail(f"no measured reply shown within {limit} s: {drawn[-300:]!r}")


def drain(terminal: int) -> bytes:
    """What is left to read on the pty (nothing blocks: the writer may be gone)."""
    out = b""
    while select.select([terminal], [], [], 0)[0]:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_ctrl_c_reaps_every_worker_and_reports_partial(tmp_path: Path) -> None:
    """Ctrl-C in the window, as a user presses it: once the live line shows measured replies.

    A fixed sleep before the signal raced the start on a loaded machine (Python's start,
    the forks, admission and warm-up); the limits below are for a machine that is slow,
    and cost nothing when it is not: each wait ends as soon as its state is reached.
    """
    out = tmp_path / "r.json"
    terminal, pty_side = pty.openpty()  # a terminal: the generator draws its live line
    env = suite_env({"TERM": "xterm", "COLUMNS": "200"})
    try:
        with start_server("thread_per_client", tmp_path) as server:
            proc = subprocess.Popen(
                [sys.executable, "-m", "loadgen", "--target", server.target,
                 "--connections", "4", "--processes", "2", "--duration", "60",
                 "--warmup", "0.2", "--json", str(out)],
                env=env, stdout=subprocess.DEVNULL, stderr=pty_side,
                start_new_session=True,  # its own group: Ctrl-C reaches the whole group
            )  # fmt: skip
            os.close(pty_side)
            try:
                drawn = wait_for_measured_replies(proc, terminal, limit=60)
                os.killpg(proc.pid, signal.SIGINT)
                rc = proc.wait(30)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            drawn += drain(terminal)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("a worker of the interrupted load generator is still alive")
    finally:
        os.close(terminal)
    assert b"Traceback" not in drawn, drawn[-2000:]
    assert rc == 130
    r = json.loads(out.read_text())
    assert r["partial"] is True and r["requests"] > 0


def test_progress_callback_sees_each_phase_and_table_renders(tmp_path: Path) -> None:
    from rich.console import Console

    from loadgen.report.terminal import LiveLine, result_table

    seen = []
    with start_server("thread_per_client", tmp_path) as server:
        r = run_load(server.target, connections=2, duration=0.6, warmup=0.3, progress=seen.append)
    phases = [p.phase for p in seen]
    assert "warm-up" in phases and "measuring" in phases
    assert max(p.completed for p in seen) > 0
    console = Console(record=True, width=120)
    console.print(LiveLine.render(seen[-1]))
    console.print(result_table(r))
    text = console.export_text()
    assert "throughput" in text and "req/s" in text and "errors" in text


def test_cli_prints_the_table(tmp_path: Path) -> None:
    with start_server("thread_per_client", tmp_path) as server:
        proc = loadgen_cli("--target", server.target, "-c", "2", "-d", "0.5", "--warmup", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert "throughput" in proc.stdout and "fairness" in proc.stdout
