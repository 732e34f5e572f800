"""The WORK scenarios in the suite (issue 16): backend-wait, cpu-bound, head-of-line, blocking-call.

How they are planned (cases, native_epoll left out with the reason, two rounds, quick's short
head-of-line, the whole machine for cpu-bound), what the engine is asked, and how their
tables, charts and results.json fields come out of synthetic runs in the engine's schema
(docs/RESULTS.md) -- the rules, never a speed.  One small real run of blocking-call on one
variant checks the whole path.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

from loadgen.engine.config import LoadConfig
from loadgen.report import charts, results, tables
from loadgen.report import summary as sm
from loadgen.suite import harness, plan, runner
from loadgen.suite.cli import build_parser
from loadgen.suite.launch import suite_env
from loadgen.suite.scenarios import PROFILES, SCENARIOS, WORK_REPEAT
from tests.test_runner import FakeHarness
from tests.test_summary import result

ROOT = Path(__file__).resolve().parent.parent
WORK_SCENARIOS = ("backend-wait", "cpu-bound", "head-of-line", "blocking-call")
WORK_CASES = [
    "backend-wait-16",
    "backend-wait-256",
    "backend-wait-1000",
    "cpu-bound",
    "head-of-line",
    "blocking-call",
    "blocking-call-offload",
]
REF = "native_epoll"


def args_for(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def fake_cpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(harness, "usable_cpus", lambda: list(range(n)))


# -- planning ---------------------------------------------------------------------------------


def test_the_work_scenarios_plan_their_cases_without_the_echo_only_reference() -> None:
    p = plan.make_plan(args_for("--scenarios", ",".join(WORK_SCENARIOS)))
    keys = [c.key for c in p.cases]
    assert keys == ["echo-small", *WORK_CASES]  # head-of-line sets echo-small beside
    for record in p.cases[1:]:
        assert REF not in record.variants
        assert "unknown opcode 0x06" in record.not_applicable[REF]
        assert p.rounds(record) <= WORK_REPEAT
        assert record.kind in tables.WORK_KINDS
    by_key = {c.key: c for c in p.cases}
    assert "--work wait:1000" in by_key["backend-wait-256"].settings
    assert by_key["backend-wait-1000"].connections == 1000
    assert "--neighbours 1 --neighbour-work compute:20000" in by_key["head-of-line"].settings
    assert by_key["head-of-line"].connections == 17  # 16 victims and the neighbour
    assert by_key["blocking-call-offload"].neighbour_work == "offload:10000"
    assert by_key["blocking-call-offload"].baseline == "blocking-call"
    assert by_key["cpu-bound"].all_cpus and "every CPU" in by_key["cpu-bound"].settings


def test_quick_gets_one_work_scenario_short_and_full_gets_all_four() -> None:
    quick = plan.make_plan(args_for("--profile", "quick"))
    work = [c for c in quick.cases if c.kind in tables.WORK_KINDS]
    assert [c.key for c in work] == ["head-of-line"]
    trim = PROFILES["quick"].trims["head-of-line"]
    assert quick.rounds(work[0]) == trim.repeat and quick.duration_of(work[0]) == trim.duration
    echo = next(c for c in quick.cases if c.key == "echo-small")
    assert quick.rounds(echo) == 3 and quick.duration_of(echo) == quick.duration
    # an explicit --duration or --repeat wins over the trim
    chosen = plan.make_plan(args_for("--profile", "quick", "--duration", "0.7", "--repeat", "1"))
    hol = next(c for c in chosen.cases if c.key == "head-of-line")
    assert chosen.duration_of(hol) == 0.7 and chosen.rounds(hol) == 1
    assert set(WORK_SCENARIOS) <= set(PROFILES["full"].scenarios)
    full = plan.make_plan(args_for("--profile", "full"))
    for record in full.cases:
        # the full profile's short WORK windows, and udp-flood's (issue 17)
        if record.kind in tables.WORK_KINDS or record.scenario == "udp-flood":
            assert full.rounds(record) == WORK_REPEAT
            assert (full.warmup_of(record), full.duration_of(record)) == (0.1, 0.3)
        else:
            assert (full.warmup_of(record), full.duration_of(record)) == (0.25, 0.5)
    chosen = plan.make_plan(args_for("--profile", "full", "--warmup", "0.4"))
    assert {chosen.warmup_of(c) for c in chosen.cases} == {0.4}
    # scenarios named on the command line run at the profile's settings, untrimmed
    named = plan.make_plan(args_for("--scenarios", "head-of-line"))
    hol = next(c for c in named.cases if c.key == "head-of-line")
    assert (named.rounds(hol), named.duration_of(hol)) == (WORK_REPEAT, named.duration)


def test_cpu_bound_is_skipped_across_hosts_with_the_reason() -> None:
    p = plan.make_plan(args_for("--scenarios", "cpu-bound,backend-wait", "--cluster", "x:1"))
    assert "not across hosts" in p.skipped_scenarios["cpu-bound"]
    assert [c.key for c in p.cases][:1] == ["backend-wait-16"]


def test_the_engine_is_asked_for_the_work_and_the_neighbours() -> None:
    server = SimpleNamespace(host="127.0.0.1", port=1, unix=None, name="epoll_reactor", pid=1)
    for case in (c for s in WORK_SCENARIOS for c in SCENARIOS[s].cases):
        cfg = harness.load_config(server, case, duration=0.5, warmup=0.1)  # type: ignore[arg-type]
        cfg.validate()
        assert cfg.workload == case.workload and cfg.connections == case.connections
        assert cfg.neighbours == case.neighbours and cfg.neighbour_work == case.neighbour_work
        if case.work is not None:
            assert cfg.work == case.work
    echo = harness.load_config(server, SCENARIOS["echo-small"].cases[0], duration=1, warmup=0)  # type: ignore[arg-type]
    assert echo.work == LoadConfig.work and echo.neighbours == 0  # the others: unchanged


def test_cpu_bound_gives_the_server_every_cpu_and_the_generator_shares_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_cpus(monkeypatch, 2)
    p = plan.make_plan(
        args_for(
            "--scenarios", "cpu-bound,blocking-call", "--servers", "epoll_reactor,fork_per_client"
        )
    )
    fake = FakeHarness(lambda name, case, rnd: 1000.0)
    monkeypatch.setattr(harness, "verify", fake.verify)
    monkeypatch.setattr(harness, "measure", fake.measure)
    monkeypatch.setattr(harness, "cpu_busy", lambda cpus, seconds: 0.0)
    data: dict[str, Any] = {"verify": {}, "cases": [c.to_json() for c in p.cases], "runs": []}
    pinned = harness.Pinning.choose(True, 1)
    with Progress(console=Console(file=io.StringIO())) as progress:
        session = runner.Session(p, data, None, pinned, progress)
        session.verify_all()
        for record in p.cases:
            session.run_case(record)
    pins = {(c["case"], c["pinning"]) for c in fake.calls}
    assert pins == {
        ("cpu-bound", harness.Pinning((0, 1), (0, 1))),
        ("blocking-call", harness.Pinning((0,), (1,))),
        ("blocking-call-offload", harness.Pinning((0,), (1,))),
    }
    rounds = {c["round"] for c in fake.calls}
    assert rounds == {1, 2}  # two rounds, and no extra ones: the WORK kinds add none


# -- synthetic runs ---------------------------------------------------------------------------


def work_run(variant: str, case: str, rnd: int, tp: float, **kw: Any) -> dict[str, Any]:
    """A run record of a WORK case: the engine's result with its neighbours and CPU figures."""
    res = result(tp, p99=kw.pop("p99", 400.0), server_cpu=kw.pop("cores", 1.0))
    res["server"]["cpus_allowed"] = kw.pop("cpus", 1)
    res["loadgen"]["cpu_util_max"] = kw.pop("gen", 0.1)
    if "neighbour" in kw:
        lat = {"p50": 20_000.0, "p99": 25_000.0}
        res["neighbours"] = {"connections": 1, "work": "compute:20000", "requests": 10,
                             "throughput_rps": kw.pop("neighbour"), "latency_us": lat}  # fmt: skip
    scenario = case.rsplit("-", 1)[0] if case.startswith("backend-wait") else case
    return {"variant": variant, "case": case, "scenario": scenario, "round": rnd,
            "status": "ok", "error": None, "result": res}  # fmt: skip


def synthetic_run() -> dict[str, Any]:
    """results.json of a run of the four WORK scenarios and echo-small, two variants and the
    reference, two rounds each; figures chosen to stage each table's question."""
    p = plan.make_plan(args_for("--scenarios", ",".join(WORK_SCENARIOS), "--no-counters"))
    cases = [c.to_json() for c in p.cases]
    for c in cases:  # two models and the reference where it applies
        c["variants"] = [v for v in ("epoll_reactor", "fork_per_client", REF) if v in c["variants"]]
    runs = []
    for rnd in (1, 2):
        jitter = 1 + 0.01 * rnd
        runs += [
            work_run("epoll_reactor", "echo-small", rnd, 30_000 * jitter, p99=900.0),
            work_run("fork_per_client", "echo-small", rnd, 8_000 * jitter, p99=2_000.0),
            work_run(REF, "echo-small", rnd, 90_000 * jitter, p99=300.0),
        ]
        for n, reactor, forks in (
            (16, 15_000, 14_000),
            (256, 30_000, 9_000),
            (1000, 25_000, 4_000),
        ):
            runs += [
                work_run("epoll_reactor", f"backend-wait-{n}", rnd, reactor * jitter),
                work_run("fork_per_client", f"backend-wait-{n}", rnd, forks * jitter),
            ]
        runs += [
            work_run("epoll_reactor", "cpu-bound", rnd, 4_000 * jitter, cores=1.0, cpus=2),
            work_run(
                "fork_per_client", "cpu-bound", rnd, 7_000 * jitter, cores=1.9, cpus=2, gen=0.2
            ),  # fmt: skip
            work_run(
                "epoll_reactor",
                "head-of-line",
                rnd,
                800 * jitter,
                p99=21_000 * jitter,
                neighbour=48.0,
            ),  # fmt: skip
            work_run(
                "fork_per_client",
                "head-of-line",
                rnd,
                7_000 * jitter,
                p99=3_000 * jitter,
                neighbour=30.0,
            ),  # fmt: skip
            work_run(
                "epoll_reactor", "blocking-call", rnd, 1_500, p99=11_000 * jitter, neighbour=95.0
            ),  # fmt: skip
            work_run(
                "fork_per_client", "blocking-call", rnd, 8_000, p99=2_500 * jitter, neighbour=97.0
            ),  # fmt: skip
            work_run(
                "epoll_reactor",
                "blocking-call-offload",
                rnd,
                1_600,
                p99=10_500 * jitter,
                neighbour=94.0,
            ),  # fmt: skip
            work_run(
                "fork_per_client",
                "blocking-call-offload",
                rnd,
                8_100,
                p99=2_400 * jitter,
                neighbour=96.0,
            ),  # fmt: skip
        ]
    names = ("epoll_reactor", "fork_per_client", REF)
    return {
        "partial": False,
        "plan": p.to_json(),
        "environment": results.environment(None),
        "variants": {n: {"family": "reference" if n == REF else "event"} for n in names},
        "verify": {n: {"ok": True, "reason": None} for n in names},
        "cases": cases,
        "runs": runs,
        "work_unit": {
            "work_unit_us": 1.05,
            "min_us": 1.0,
            "units": 20_000,
            "repeats": 5,
            "python": sys.executable,
            "cpus": [0],
        },  # fmt: skip
        "work_unit_us": 1.05,
    }


def summaries_of(data: dict[str, Any]) -> dict[str, sm.CaseSummary]:
    return {s.case: s for s in sm.summarize(data)}


def cells_by_column(summary: sm.CaseSummary) -> dict[str, dict[str, str]]:
    """variant -> column -> cell, checking every row has a cell per column."""
    cols = tables.columns(summary)
    out = {}
    for row in summary.rows:
        cells = tables.cells(row, summary)
        assert len(cells) == len(cols), (summary.case, cols, cells)
        out[row.variant] = dict(zip(cols, cells, strict=True))
    return out


def test_backend_wait_sets_each_row_beside_the_ideal_capped_at_the_generators_ceiling() -> None:
    by_case = summaries_of(synthetic_run())
    low, high = by_case["backend-wait-16"], by_case["backend-wait-1000"]
    assert (
        low.uncapped_ideal_rps == pytest.approx(16_000) and low.ideal_rps == low.uncapped_ideal_rps
    )
    assert high.uncapped_ideal_rps == pytest.approx(1_000_000)
    ceiling = by_case["echo-small"].rows[-1]  # the reference: best echo-small req/s
    assert high.ceiling_from == REF and high.ideal_rps == pytest.approx(
        ceiling.figure("throughput_rps")
    )
    assert [r.variant for r in high.rows] == ["epoll_reactor", "fork_per_client"]  # req/s order
    assert high.ranked_by == "throughput_rps"
    reactor = next(r for r in high.rows if r.variant == "epoll_reactor")
    expected = 100 * reactor.figure("throughput_rps") / high.ideal_rps  # type: ignore[operator]
    assert reactor.figure("pct_of_ideal") == pytest.approx(expected)
    cells = cells_by_column(high)["epoll_reactor"]
    assert cells["ideal"] == "91.3k" and cells["% of ideal"] == f"{expected:.0f}%"  # 90k × 1.015
    assert any("capped at the generator's ceiling" in n and REF in n for n in tables.notes(high))


def test_backend_wait_without_echo_small_says_its_ideal_is_not_capped() -> None:
    data = synthetic_run()
    data["cases"] = [c for c in data["cases"] if c["key"].startswith("backend-wait")]
    summary = summaries_of(data)["backend-wait-256"]
    assert summary.ceiling_rps is None and summary.ideal_rps == pytest.approx(256_000)
    assert any("not capped" in n for n in tables.notes(summary))


def test_cpu_bound_shows_the_cores_used_and_what_the_generator_cost() -> None:
    summary = summaries_of(synthetic_run())["cpu-bound"]
    assert [r.variant for r in summary.rows] == ["fork_per_client", "epoll_reactor"]
    cells = cells_by_column(summary)
    assert cells["fork_per_client"]["server cores ± CI95"].startswith("1.90")
    assert cells["fork_per_client"]["generator cores"] == "0.20"
    assert cells["epoll_reactor"]["% best"] == "57%"
    assert any("The generator used at most 0.20 of a core" in n for n in tables.notes(summary))


def test_head_of_line_ranks_the_victims_p99_beside_echo_small() -> None:
    summary = summaries_of(synthetic_run())["head-of-line"]
    assert summary.ranked_by == "p99_us"
    assert [r.variant for r in summary.rows] == ["fork_per_client", "epoll_reactor"]  # less first
    assert summary.baseline == "echo-small" and summary.baseline_found
    reactor = next(r for r in summary.rows if r.variant == "epoll_reactor")
    assert reactor.figure("baseline_p99_us") == pytest.approx(900.0)
    assert reactor.figure("neighbour_rps") == pytest.approx(48.0)
    cells = cells_by_column(summary)["epoll_reactor"]
    assert cells["neighbour req/s"] == "48.0"
    assert cells["echo-small p50 / p99"] == "100 µs / 900 µs"
    p99 = reactor.figure("p99_us") or 0.0
    assert cells["p99 ÷ echo-small's"] == f"{p99 / 900:,.2g}×"


def test_head_of_line_without_echo_small_says_so() -> None:
    data = synthetic_run()
    data["cases"] = [c for c in data["cases"] if c["key"] == "head-of-line"]
    summary = summaries_of(data)["head-of-line"]
    assert not summary.baseline_found
    assert any("echo-small was not run here" in n for n in tables.notes(summary))
    assert cells_by_column(summary)["epoll_reactor"]["p99 ÷ echo-small's"] == "–"


def test_the_offload_table_sets_the_block_case_beside_it() -> None:
    by_case = summaries_of(synthetic_run())
    offload = by_case["blocking-call-offload"]
    assert offload.baseline == "blocking-call" and by_case["blocking-call"].baseline is None
    cells = cells_by_column(offload)
    assert cells["fork_per_client"]["blocking-call req/s"] == "8,000"
    # how each model serves offload, from the registry (this run did not record it)
    assert cells["fork_per_client"]["offload served by"] == "none needed"
    assert cells["epoll_reactor"]["offload served by"] == "no idiom"
    assert "offload served by" not in tables.columns(by_case["blocking-call"])
    block = next(r for r in by_case["blocking-call"].rows if r.variant == "fork_per_client")
    mine = next(r for r in offload.rows if r.variant == "fork_per_client")
    assert mine.figure("baseline_p99_us") == pytest.approx(block.figure("p99_us"))


def test_report_charts_and_results_json_carry_the_work_figures(tmp_path: Path) -> None:
    data = synthetic_run()
    run_dir = results.new_run_dir(tmp_path)
    results.write(run_dir, copy.deepcopy(data))
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["work_unit_us"] == 1.05
    by_case = {s["case"]: s for s in saved["summaries"]}
    assert by_case["backend-wait-256"]["ideal_rps"] == pytest.approx(
        by_case["backend-wait-256"]["ceiling_rps"]
    )
    assert by_case["head-of-line"]["baseline"] == "echo-small"
    row = by_case["head-of-line"]["rows"][0]
    assert {"neighbour_rps", "baseline_p99_us", "p99_us"} <= set(row["stats"])
    assert "pct_of_ideal" in by_case["backend-wait-16"]["rows"][0]["stats"]
    assert "server_cpu_util" in by_case["cpu-bound"]["rows"][0]["stats"]
    report = (run_dir / "report.md").read_text()
    assert "One WORK compute unit" in report and "1.05 µs" in report
    assert "2 rounds" in report  # the WORK cases' fewer rounds are named in the header
    for name in ("backend-wait", "cores-used-cpu-bound", "victims-p99-head-of-line",
                 "victims-p99-blocking-call"):  # fmt: skip
        assert (run_dir / "charts" / f"{name}.png").stat().st_size > 0
        assert report.count(f"(charts/{name}.png)") == 1
    assert "## backend-wait, 1,000 connections" in report


def test_the_charts_draw_the_ideal_and_both_blocking_cases() -> None:
    summaries = sm.summarize(synthetic_run())
    fig = charts.backend_wait_chart(summaries)
    assert fig is not None
    labels = {
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    }
    assert "ideal" in labels
    blocking = [s for s in summaries if s.scenario == "blocking-call"]
    fig = charts.victims_chart(blocking)
    assert fig is not None
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert legend == {"blocking-call (block)", "blocking-call (offload)"}


# -- the compute unit, and one real run -----------------------------------------------------------


def test_the_compute_unit_is_timed_in_the_servers_interpreter() -> None:
    record = harness.work_unit()
    assert record["work_unit_us"] is not None and record["work_unit_us"] > 0, record
    assert record["min_us"] <= record["work_unit_us"] and record["python"] == sys.executable
    broken = harness.work_unit(python="/nonexistent/python")
    assert broken["work_unit_us"] is None and "could not time" in broken["error"]


def test_a_small_blocking_call_run_records_the_neighbour_and_the_block_beside(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--servers", "epoll_reactor",
         "--scenarios", "blocking-call", "--repeat", "1", "--duration", "0.3",
         "--warmup", "0.1", "--no-counters", "--no-charts", "--output", str(tmp_path)],
        env=suite_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "blocking-call (offload)" in proc.stdout and "neighbour req/s" in proc.stdout
    data = results.load(tmp_path / "latest")
    assert data["work_unit_us"] and data["work_unit_us"] > 0
    assert [c["key"] for c in data["cases"]] == ["blocking-call", "blocking-call-offload"]
    for summary in data["summaries"]:
        (row,) = summary["rows"]
        assert row["variant"] == "epoll_reactor" and row["runs"] == 1
        assert row["stats"]["neighbour_rps"]["mean"] > 0  # the neighbour was served
        assert row["stats"]["p99_us"]["mean"] > 0
    offload = data["summaries"][1]
    assert offload["baseline"] == "blocking-call" and offload["baseline_found"]
    assert "baseline_p99_us" in offload["rows"][0]["stats"]
    assert offload["offload"]["epoll_reactor"].startswith("no idiom")
    assert data["variants"]["epoll_reactor"]["offload"] == offload["offload"]["epoll_reactor"]
    run = data["runs"][0]["result"]
    assert run["config"]["neighbours"] == 1 and run["neighbours"]["work"] == "block:10000"
