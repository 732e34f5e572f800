"""``run_all.py`` and its pieces: verify, Ctrl-C, --compare, results on disk.

The Ctrl-C and end-to-end tests run the real thing (``python run_all.py`` in
a subprocess, real servers, the real load generator) on a small plan; the
statistics tests use synthetic load-generator results in the JSON schema of
docs/RESULTS.md -- they test the arithmetic and the flags, never a speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadgen.engine import counters
from loadgen.report import results
from loadgen.report import summary as sm
from loadgen.report.compare import compare
from loadgen.suite import harness
from loadgen.suite.launch import suite_env
from loadgen.suite.scenarios import PROFILES, SCENARIOS, resolve
from tests.fakes import fake_env

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = str(ROOT / "run_all.py")
BAD_ECHO = fake_env()  # the started processes know tests/fakes (fake_bad_echo)

METADATA_KEYS = {
    "date",
    "git_commit",
    "python_version",
    "python_implementation",
    "packages",
    "kernel",
    "cpu_model",
    "cpu_count",
    "cpu_affinity",
    "pinning",
    "load_average_start",
    "malloc_env",
}


# -- helpers ---------------------------------------------------------------------


def fake_result(tp: float, *, saturated: bool = False, cpu_user: float = 5.0) -> dict[str, Any]:
    """A loadgen result (schema 1) with the given figures; every key present."""
    lat = {"p50": 100.0, "p90": 200.0, "p99": 400.0, "p999": 800.0, "max": 900.0, "mean": 120.0}
    return {
        "schema": 1,
        "config": {},
        "throughput_rps": tp,
        "requests": int(tp),
        "duration_s": 1.0,
        "latency_kind": "service_time",
        "latency_us": lat,
        "latency_us_uncorrected": None,
        "latency_out_of_range": 0,
        "errors": {"refused": 0, "reset": 0, "timeout": 0, "protocol": 0, "wrong_reply": 0},
        "errors_total": 0,
        "fairness": {"connections": 64, "jain": 1.0, "min_share": 1, "max_share": 1, "starved": 0},
        "loadgen": {
            "workers": [],
            "cpu_util_max": 0.95 if saturated else 0.5,
            "cpu_us_per_request": 5.0,
            "saturated": saturated,
            "saturation_reasons": [],
            "achieved_rate_ratio": None,
        },
        "server": {
            "pid": 1,
            "cpu_s": 1.0,
            "cpu_user_s": 0.5,
            "cpu_system_s": 0.5,
            "cpu_util": 1.0,
            "cpu_us_per_request": 2 * cpu_user,
            "cpu_user_us_per_request": cpu_user,
            "cpu_system_us_per_request": cpu_user,
            "memory_pss_bytes": 20_000_000,
            "memory_rss_bytes": 30_000_000,
            "peak_threads": 1,
            "peak_fds": 70,
            "peak_children": 0,
            "processes": 1,
        },
        "slow_clients": None,
        "environment": {},
        "partial": False,
    }


def fake_run_data(series: dict[str, list[float]], **variant_opts: dict[str, Any]) -> dict:
    """A results.json dict: one echo-small case, a run per value of each variant."""
    runs = []
    for name, values in series.items():
        opts = variant_opts.get(name, {})
        for i, tp in enumerate(values):
            runs.append(
                {
                    "variant": name,
                    "case": "echo-small",
                    "scenario": "echo-small",
                    "round": i + 1,
                    "status": opts.get("status", "ok"),
                    "error": opts.get("error"),
                    "result": fake_result(
                        tp, saturated=opts.get("saturated", False), cpu_user=opts.get("cpu", 5.0)
                    ),
                }
            )
    return {
        "partial": False,
        "plan": {"profile": "quick", "repeat": 3, "duration": 1, "warmup": 0.3},
        "environment": results.environment(None),
        "variants": {n: {"family": variant_opts.get(n, {}).get("family", "event")} for n in series},
        "verify": {n: {"ok": True, "reason": None} for n in series},
        "cases": [
            {
                "key": "echo-small",
                "scenario": "echo-small",
                "label": "echo-small",
                "kind": "throughput",
                "x": 64,
                "variants": list(series),
            }
        ],
        "runs": runs,
    }


def marked_processes(token: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment carries ``CB_TEST_TOKEN=token``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("CB_TEST_TOKEN") == token and proc.status() != "zombie":
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(scope="module")
def tracepoints_held() -> Iterator[None]:
    """The syscall tracepoints kept registered while run_all runs (a no-op without perf).

    run_all holds them around its counted runs, and ending that hold makes the kernel
    unregister them: ~2.5 s (see ``TracepointHold``), even when no variant passed verify.
    Held here too, that end is quick; this module's end pays the wait once.
    """
    with counters.hold_for_suite():
        yield


# -- scenarios and profiles --------------------------------------------------------


def test_every_scenario_has_a_question_and_cases() -> None:
    keys = [c.key for s in SCENARIOS.values() for c in s.cases]
    assert len(keys) == len(set(keys))
    for s in SCENARIOS.values():
        assert s.question and s.cases


def test_open_loop_brings_echo_small_first() -> None:
    assert [s.name for s in resolve(["open-loop"])] == ["echo-small", "open-loop"]
    with pytest.raises(KeyError):
        resolve(["no-such-scenario"])


def test_profiles_name_known_scenarios() -> None:
    for p in PROFILES.values():
        assert set(p.scenarios) <= set(SCENARIOS)
    assert set(PROFILES["full"].scenarios) == set(SCENARIOS)


# -- verify ----------------------------------------------------------------------------


def test_verify_rejects_a_variant_that_echoes_wrong_bytes() -> None:
    bad = harness.verify("fake_bad_echo", env=BAD_ECHO)
    assert not bad.ok
    assert "ECHO" in (bad.reason or "")
    good = harness.verify("thread_per_client")  # the same check passes a correct server
    assert good.ok, good.reason
    assert not harness.LIVE_GROUPS


@pytest.mark.usefixtures("tracepoints_held")
def test_run_all_reports_a_failed_verify_and_times_nothing(tmp_path: Path) -> None:
    env = suite_env(BAD_ECHO)
    proc = subprocess.run(
        [sys.executable, RUN_ALL, "--servers", "fake_bad_echo", "--scenarios", "echo-small",
         "--no-reference", "--repeat", "1", "--duration", "0.5", "--no-charts",
         "--output", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = results.load(tmp_path / "latest")
    assert data["verify"]["fake_bad_echo"]["ok"] is False
    assert data["runs"] == []  # never timed
    row = data["summaries"][0]["rows"][0]
    assert row["status"] == "not verified" and row["rank"] is None
    assert "FAILED verify" in proc.stdout


# -- Ctrl-C -------------------------------------------------------------------------------


def second_measurement(proc: subprocess.Popen[str], token: str, limit: float) -> psutil.Process:
    """The second load generator run_all starts, once it has forked its workers (it is past
    its start-up, in the run); fails after ``limit`` s."""
    seen: list[psutil.Process] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        for p in marked_processes(token):
            try:
                new = "loadgen" in p.cmdline() and p.ppid() == proc.pid and p not in seen
                if new:
                    seen.append(p)
                if len(seen) >= 2 and seen[1].children():
                    return seen[1]
            except psutil.Error:
                pass
        time.sleep(0.05)
    pytest.fail(f"the second measurement was not running within {limit} s ({len(seen)} seen)")


@pytest.mark.timeout(300)  # the waits below are bounded for a loaded machine
def test_ctrl_c_stops_everything_and_writes_partial_results(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    env = suite_env({"CB_TEST_TOKEN": token})
    proc = subprocess.Popen(
        [sys.executable, RUN_ALL, "--servers", "thread_per_client", "--scenarios", "echo-small",
         "--no-reference", "--repeat", "3", "--duration", "1.5", "--no-charts",
         "--output", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Interrupt the second measurement: one is complete, one is running. On a busy
        # machine each round first waits (at most 10 s) for quiet CPUs, hence the limit;
        # the wait ends as soon as the second generator has its workers.
        second = second_measurement(proc, token, limit=150)
        running = [" ".join(p.cmdline()) for p in marked_processes(token)]
        assert any("-m servers" in c for c in running), running
        assert second.is_running()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    left = marked_processes(token)
    assert not left, [p.cmdline() for p in left]
    data = results.load(tmp_path / "latest")
    assert data["partial"] is True
    # The first measurement is kept (its status may say "failed" on an overloaded
    # machine -- a starved connection -- but it was measured); the interrupted one is not.
    assert len(data["runs"]) == 1
    assert data["runs"][0]["result"]["throughput_rps"] > 0
    assert "PARTIAL" in (tmp_path / "latest" / "report.md").read_text()
    assert "PARTIAL" in out


# -- a whole small run ---------------------------------------------------------------------


@pytest.mark.usefixtures("tracepoints_held")
def test_a_small_run_shows_a_failing_variant_instead_of_hiding_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, RUN_ALL, "--servers", "blocking_loop,thread_per_client",
         "--scenarios", "echo-small", "--repeat", "1", "--duration", "0.5",
         "--no-counters", "--output", str(tmp_path)],
        env=suite_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir = (tmp_path / "latest").resolve()
    data = results.load(run_dir)
    assert data["partial"] is False
    rows = {r["variant"]: r for r in data["summaries"][0]["rows"]}
    # blocking_loop holds one of 64 connections: reported as failing at this level
    assert rows["blocking_loop"]["status"] == "failed"
    assert rows["blocking_loop"]["rank"] is None
    assert "not admitted" in " ".join(rows["blocking_loop"]["reasons"])
    # thread_per_client holds 64 clients; on a badly overloaded machine a connection
    # may still starve in half a second, so only a clean row must be ranked.
    tpc = rows["thread_per_client"]
    assert tpc["stats"]["throughput_rps"]["mean"] > 0
    assert tpc["rank"] == (1 if tpc["status"] == "ok" else None)
    assert (run_dir / "charts" / "throughput-echo-small.png").stat().st_size > 0
    assert (run_dir / "charts" / "throughput-echo-small.svg").stat().st_size > 0
    assert "blocking_loop" in (run_dir / "report.md").read_text()


# -- results on disk -------------------------------------------------------------------------


def test_results_json_carries_the_metadata(tmp_path: Path) -> None:
    data = fake_run_data({"a": [100.0, 101.0, 99.0]})
    run_dir = results.new_run_dir(tmp_path)
    results.write(run_dir, data, charts=False)
    saved = json.loads((run_dir / "results.json").read_text())
    env = saved["environment"]
    assert METADATA_KEYS <= set(env)
    assert env["python_version"] and env["python_implementation"]
    assert env["cpu_count"] >= 1 and env["packages"]["rich"]
    assert env["malloc_env"]["MALLOC_MMAP_THRESHOLD_"]
    assert len(env["load_average_start"]) == 3
    assert saved["summaries"][0]["rows"][0]["stats"]["throughput_rps"]["n"] == 3
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    assert (run_dir / "report.md").read_text().startswith("# concurrency-bench report")


# -- statistics, flags and ranking -----------------------------------------------------------


def test_unstable_flag_above_ten_percent_cv() -> None:
    data = fake_run_data({"steady": [100.0, 102.0, 98.0], "shaky": [100.0, 130.0, 70.0]})
    rows = {r.variant: r for r in sm.summarize(data)[0].rows}
    assert "throughput_rps" in rows["shaky"].unstable
    assert rows["steady"].unstable == []


def test_rows_are_ranked_by_req_s_and_reference_and_failures_are_not_ranked() -> None:
    # "floor_fast" has the generator saturated (and the server at 1.0: limit "both"): no
    # longer ranked first by CPU; ranks follow the means (tests/test_summary.py has the rest)
    data = fake_run_data(
        {"floor_fast": [200.0, 201.0, 199.0], "floor_cheap": [190.0, 191.0, 189.0],
         "slow": [50.0, 51.0, 49.0], "ceiling": [300.0] * 3, "broken": [400.0] * 3},
        floor_fast={"saturated": True, "cpu": 4.0},
        floor_cheap={"saturated": True, "cpu": 3.0},
        ceiling={"family": "reference"},
        broken={"status": "failed", "error": "10 errors"},
    )  # fmt: skip
    summary = sm.summarize(data)[0]
    rows = {r.variant: r for r in summary.rows}
    assert rows["floor_fast"].rank == 1
    assert rows["floor_cheap"].rank == 2
    assert rows["slow"].rank == 3
    assert rows["floor_fast"].bottleneck == "both"  # server 1.0 core, generator 0.95
    assert rows["ceiling"].rank is None and rows["broken"].rank is None
    assert rows["floor_fast"].pct_of_best == pytest.approx(100.0)  # best ranked Python req/s
    assert rows["ceiling"].pct_of_best == pytest.approx(150.0)
    assert summary.ranked_by == "throughput_rps"
    assert [r.variant for r in summary.rows][-2:] == ["broken", "ceiling"]


# -- --compare ----------------------------------------------------------------------------------


def test_compare_flags_only_significant_changes() -> None:
    a = fake_run_data({"moved": [100.0, 102.0, 98.0], "noisy": [100.0, 110.0, 90.0]})
    b = fake_run_data({"moved": [150.0, 152.0, 148.0], "noisy": [105.0, 115.0, 95.0]})
    changes = {(c.variant, c.figure): c for c in compare(a, b)}
    assert changes[("moved", "throughput_rps")].significant  # Welch p < 0.001
    assert changes[("moved", "throughput_rps")].better
    assert not changes[("noisy", "throughput_rps")].significant  # +5 with sd 10: p ~ 0.6
    assert not changes[("moved", "p99_us")].significant  # unchanged


def test_compare_command_line(tmp_path: Path) -> None:
    out = tmp_path / "results"
    for i, series in enumerate(({"v": [100.0, 101.0, 99.0]}, {"v": [200.0, 201.0, 199.0]})):
        if i:
            time.sleep(1.1)  # distinct UTC-second directory names
        results.write(results.new_run_dir(out), fake_run_data(series), charts=False)
    a, b = results.run_dirs(out)
    for argv in (["--compare", str(a), str(b)], ["--compare"]):
        proc = subprocess.run(
            [sys.executable, RUN_ALL, *argv, "--output", str(out)],
            env=suite_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "+100.0%" in proc.stdout
        assert "1 of" in proc.stdout and "changed significantly" in proc.stdout
