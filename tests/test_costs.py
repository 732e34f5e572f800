"""The cost table: cachegrind's out files summed, start-up cancelled by a difference, the
design's estimates, the leader-based ranks, the skip when valgrind is missing, and one small
real measurement (skipped where valgrind is not installed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.engine import cachegrind
from loadgen.report import costs_table
from loadgen.suite import costs
from loadgen.suite.costs import CostPlan, Estimate, design, per_request, summarise


def out_file(ir: int, *, events: str = "Ir", extra: str = "") -> str:
    """A cachegrind.out as valgrind 3.19 writes it with --cache-sim=no."""
    return (
        "desc: I1 cache: none\ncmd: python -m servers epoll_reactor\n"
        f"events: {events}\nfl=/usr/lib/python3.11/foo.c\nfn=main\n1 {ir}\n{extra}"
        f"summary: {ir}{' 0' * (len(events.split()) - 1)}\n"
    )


# -- cachegrind's files ------------------------------------------------------------


def test_instructions_reads_the_summary_line() -> None:
    assert cachegrind.instructions(out_file(123_456_789)) == 123_456_789


def test_instructions_picks_ir_among_several_events() -> None:
    text = "events: Dr Ir Dw\nsummary: 5 42 7\n"
    assert cachegrind.instructions(text) == 42


@pytest.mark.parametrize(
    "text",
    ["events: Ir\nfn=main\n1 10\n", "events: Dr\nsummary: 10\n", "events: Ir Dr\nsummary: 10\n"],
)
def test_a_file_without_its_counts_is_an_error(text: str) -> None:
    with pytest.raises(cachegrind.CachegrindError):
        cachegrind.instructions(text)


def test_total_sums_every_process_of_the_tree(tmp_path: Path) -> None:
    (tmp_path / "cachegrind.out.100").write_text(out_file(1_000))  # the parent
    (tmp_path / "cachegrind.out.101").write_text(out_file(250))  # a forked child
    (tmp_path / "cachegrind.out.102").write_text(out_file(50))  # another one
    (tmp_path / "cachegrind.out.notes").write_text("not a pid")
    totals = cachegrind.total(tmp_path)
    assert totals.instructions == 1_300
    assert totals.by_pid == {100: 1_000, 101: 250, 102: 50}


def test_total_names_the_file_that_is_cut_short(tmp_path: Path) -> None:
    (tmp_path / "cachegrind.out.7").write_text(out_file(10))
    (tmp_path / "cachegrind.out.8").write_text("events: Ir\nfn=x\n")  # killed mid-write
    with pytest.raises(cachegrind.CachegrindError, match="cachegrind.out.8"):
        cachegrind.total(tmp_path)
    with pytest.raises(cachegrind.CachegrindError, match="no cachegrind.out"):
        cachegrind.total(tmp_path / "missing")


def test_wrapper_writes_one_file_per_pid_and_follows_children(tmp_path: Path) -> None:
    argv = cachegrind.wrapper(tmp_path)
    assert "--tool=cachegrind" in argv and "--cache-sim=no" in argv
    assert "--trace-children=yes" in argv
    assert f"--cachegrind-out-file={tmp_path}/cachegrind.out.%p" in argv


# -- the design and the difference ------------------------------------------------

COUNTS = {"echo": (100, 500), "echo-pipelined": (160, 960), "get-1mib": (20, 120), "w": (4, 9)}


@pytest.mark.parametrize(
    ("kinds", "runs"),
    [(("echo",), 4), (("echo", "echo-pipelined"), 4), (("echo", "echo-pipelined", "w"), 8),
     (tuple(COUNTS), 10)],
)  # fmt: skip
def test_design_gives_every_kind_two_estimates_from_different_runs(
    kinds: tuple[str, ...], runs: int
) -> None:
    vectors, estimates = design(kinds, COUNTS)
    assert len(vectors) == runs
    for kind in kinds:
        mine = [e for e in estimates if e.kind == kind]
        assert len(mine) == 2
        assert {(e.high, e.low) for e in mine} != {(mine[0].high, mine[0].low)}
        for e in mine:  # the two runs differ in this kind's count only, by high - low
            hi, lo = vectors[e.high], vectors[e.low]
            assert hi[kind] - lo[kind] == COUNTS[kind][1] - COUNTS[kind][0]
            assert {k: v for k, v in hi.items() if k != kind} == {
                k: v for k, v in lo.items() if k != kind
            }


def synthetic_totals(
    vectors: list[dict[str, int]], cost: dict[str, float], startup: list[int]
) -> list[int | None]:
    """What cachegrind would sum: each run's own start-up and shutdown, plus its requests."""
    return [
        s + round(sum(cost[k] * n for k, n in v.items()))
        for s, v in zip(startup, vectors, strict=True)
    ]


def test_the_difference_cancels_start_up_whatever_it_is() -> None:
    kinds = ("echo", "echo-pipelined", "get-1mib")
    vectors, estimates = design(kinds, COUNTS)
    cost = {"echo": 32_135.0, "echo-pipelined": 9_870.0, "get-1mib": 412_000.0}
    same = synthetic_totals(vectors, cost, [900_000_000] * len(vectors))
    got = per_request(same, vectors, estimates)
    assert got == {k: [pytest.approx(cost[k])] * 2 for k in kinds}
    # start-up that moves by 40,000 instructions from run to run moves each estimate by at
    # most 40,000 / (high - low), and the spread says so
    raised = next(e.high for e in estimates if e.kind == "echo")  # echo's first high run
    startup = [900_000_000 + (40_000 if i == raised else 0) for i in range(len(vectors))]
    got = per_request(synthetic_totals(vectors, cost, startup), vectors, estimates)
    echo = summarise(got["echo"])
    assert got["echo"] == [pytest.approx(cost["echo"] + 100), pytest.approx(cost["echo"])]
    assert echo["spread"] == pytest.approx(100 / (cost["echo"] + 50), abs=1e-5)


def test_a_failed_run_drops_only_its_estimates() -> None:
    vectors, estimates = design(("echo", "echo-pipelined"), COUNTS)
    totals = synthetic_totals(vectors, {"echo": 10.0, "echo-pipelined": 5.0}, [1000] * 4)
    totals[estimates[0].high] = None  # echo's first estimate's high run
    got = per_request(totals, vectors, estimates)
    assert got["echo"] == [pytest.approx(10.0)]
    assert got["echo-pipelined"] == [pytest.approx(5.0)]  # the other run of the pair held


def test_summarise_gives_mean_and_spread() -> None:
    s = summarise([32_135.0, 32_216.0])
    assert s["instructions_per_request"] == pytest.approx(32_175.5)
    assert s["spread"] == pytest.approx(81 / 32_175.5, abs=1e-5)
    assert summarise([5.0])["spread"] is None
    assert summarise([])["instructions_per_request"] is None


def test_per_request_divides_by_the_requests_not_the_writes() -> None:
    vectors = [{"echo-pipelined": 160}, {"echo-pipelined": 960}]
    got = per_request([1_000, 1_000 + 800 * 7], vectors, [Estimate("echo-pipelined", 1, 0)])
    assert got == {"echo-pipelined": [7.0]}


def test_every_plan_counts_whole_batches() -> None:
    for plan in costs.PLANS.values():
        for kind in plan.kinds:
            batch = costs.KINDS[kind].batch
            assert all(n % batch == 0 for n in (*plan.counts[kind], plan.calls[kind]))
            assert plan.counts[kind][0] < plan.counts[kind][1]


def test_the_reference_gets_the_echo_kinds_only() -> None:
    plan = costs.PLANS["full"]
    assert plan.kinds_for("native_epoll") == ("echo", "echo-pipelined")
    assert plan.kinds_for("epoll_reactor") == plan.kinds


# -- the table ----------------------------------------------------------------------


def fig(value: float | None, spread: float | None = 0.002) -> dict[str, object]:
    return {"instructions_per_request": value, "spread": spread, "syscalls_per_request": 2.0}


def test_ties_are_to_the_leader_never_a_chain() -> None:
    # 0.8% steps: each row is within 1% of the one above, but the third is 1.6% above the first
    figures = {"a": fig(100.0), "b": fig(100.8), "c": fig(101.6), "d": fig(102.4), "e": fig(150)}
    assert costs_table.ranks(figures) == {"a": "1=", "b": "1=", "c": "3=", "d": "3=", "e": "5"}


def test_a_wide_spread_widens_the_tie_and_the_reference_is_not_ranked() -> None:
    figures = {"a": fig(100.0), "b": fig(104.0, spread=0.05), "native_epoll": fig(10.0)}
    assert costs_table.ranks(figures) == {"a": "1=", "b": "1="}
    rows = costs_table.kind_rows({"variants": {n: {"echo": f} for n, f in figures.items()}}, "echo")
    assert [r[:2] for r in rows] == [["ref", "native_epoll"], ["1=", "a"], ["1=", "b"]]
    assert rows[2][4] == "1.04×"


def test_markdown_has_a_table_per_kind(tmp_path: Path) -> None:
    plan = CostPlan("t", ("echo",), {"echo": (100, 500)}, {"echo": 1000})
    record = {
        "plan": plan.to_json(),
        "tool": "valgrind-3.19.0 --tool=cachegrind",
        "variants": {"epoll_reactor": {"echo": fig(32_135.0)}},
        "runs": [],
        "wall_s": 12.0,
    }
    text = "\n".join(costs_table.markdown(record))
    assert "### ECHO 64 B, one at a time" in text
    assert "| 1 | epoll_reactor | 32,135 | 0.20% | 1.00× | 2.00 |" in text


# -- valgrind missing ------------------------------------------------------------


@pytest.fixture
def no_valgrind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A PATH without valgrind (and nothing else), as on a machine that lacks it (the
    answer is cached per process: forgotten before and after)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    cachegrind.unavailable.cache_clear()
    yield
    cachegrind.unavailable.cache_clear()


@pytest.mark.usefixtures("no_valgrind")
def test_missing_valgrind_skips_the_table_with_the_reason() -> None:
    reason = cachegrind.unavailable()
    assert reason == "valgrind is not installed (apt-get install valgrind)"
    record = costs.measure(["epoll_reactor"], costs.PLANS["quick"])
    assert record["skipped"] == reason
    assert record["runs"] == [] and record["variants"] == {}
    assert costs_table.rich_tables(record) == [f"Cost table skipped: {reason}."]
    assert f"Cost table skipped: {reason}." in costs_table.markdown(record)


# -- one real measurement ------------------------------------------------------------

needs_valgrind = pytest.mark.skipif(
    cachegrind.unavailable() is not None, reason=f"{cachegrind.unavailable()}"
)


@needs_valgrind
@pytest.mark.timeout(60)
def test_one_variant_measured_for_real() -> None:
    plan = CostPlan("test", ("echo",), {"echo": (20, 120)}, {"echo": 200})
    record = costs.measure(["epoll_reactor"], plan)
    assert record["skipped"] is None
    assert len(record["runs"]) == 4 and all(r["error"] is None for r in record["runs"])
    assert all(r["instructions"] > 10_000_000 for r in record["runs"])  # the interpreter's
    echo = record["variants"]["epoll_reactor"]["echo"]
    low, high = echo["estimates"]
    # the same code path per request: the two estimates agree closely (counts, not times)
    assert 1_000 < low and abs(high - low) / low < 0.05
    assert echo["context_switches_per_request"] is not None
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("cb-costs-epoll_reactor-*"))
    assert shutil.which("valgrind")


# -- in run_all.py -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "quick"),  # the profile's own scenarios: its table
        (["--profile", "full"], "full"),
        (["--scenarios", "echo-small"], None),  # a run of named scenarios asks about those
        (["--scenarios", "echo-small", "--cost-table"], "quick"),
        (["--no-cost-table"], None),
    ],
)
def test_which_runs_get_a_cost_table(argv: list[str], expected: str | None) -> None:
    from loadgen.suite.cli import build_parser
    from loadgen.suite.plan import make_plan

    plan = make_plan(build_parser().parse_args(["--servers", "epoll_reactor", *argv]))
    assert plan.cost_table == expected
    assert plan.to_json()["cost_table"] == expected
    # the estimate (and so the time cap's room) includes the table where valgrind runs
    with_table = plan.estimate_s()
    plan.cost_table = None
    assert with_table >= plan.estimate_s()


def test_the_report_shows_the_table_and_a_noisy_table_points_to_it(tmp_path: Path) -> None:
    from loadgen.report import results

    record = {
        "plan": {"kinds": [{"key": "echo", "label": "ECHO 64 B, one at a time", "batch": 1,
                            "low": 40, "high": 240, "calls_window": 400}]},
        "tool": "valgrind-3.19.0 --tool=cachegrind",
        "skipped": None,
        "runs": [],
        "wall_s": 50.0,
        "variants": {
            "epoll_reactor": {"echo": fig(34_523.0)},
            "trio_streams": {"echo": fig(213_863.0)},
        },
    }  # fmt: skip
    data = {"cases": [], "runs": [], "variants": {}, "costs": record}
    results.write(tmp_path, data, charts=False, latest=False)
    report = (tmp_path / "report.md").read_text()
    assert "## Costs per request: instructions, system calls, context switches" in report
    assert "| 1 | epoll_reactor | 34,523 |" in report and "| 2 | trio_streams | 213,863 |" in report


def test_groups_measure_their_kinds_in_runs_of_their_own() -> None:
    plan = costs.PLANS["full"]
    runs, estimates = plan.design_for("epoll_reactor")
    assert len(runs) == 8  # 4 + 4, where one design of the four kinds takes 10
    assert [sorted(r) for r in runs[:4]] == [["echo", "echo-pipelined"]] * 4
    assert [sorted(r) for r in runs[4:]] == [["get-1mib", "work-compute"]] * 4
    for e in estimates:  # each estimate's two runs differ in its kind alone
        high, low = runs[e.high], runs[e.low]
        assert high.keys() == low.keys() and e.kind in high
        assert [k for k in high if high[k] != low[k]] == [e.kind]
    assert sorted(e.kind for e in estimates) == sorted(list(costs.KINDS) * 2)
    # the ECHO-only reference: the ECHO group only
    ref_runs, ref_estimates = plan.design_for("native_epoll")
    assert len(ref_runs) == 4 and {e.kind for e in ref_estimates} == {"echo", "echo-pipelined"}


@needs_valgrind
@pytest.mark.timeout(240)
def test_ctrl_c_during_the_cost_table_leaves_no_valgrind_behind(tmp_path: Path) -> None:
    """run_all.py interrupted while its fork servers count: exit 130, partial results, and
    no process of the run left (the fork servers and their forked servers are in sessions
    of their own: a terminal's Ctrl-C does not reach them, the suite kills them)."""
    import signal
    import subprocess
    import sys
    import time
    import uuid

    from loadgen.suite.launch import suite_env
    from tests.test_run_all import RUN_ALL, marked_processes

    token = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, RUN_ALL, "--servers", "epoll_reactor,trio_streams", "--scenarios",
         "echo-small", "--no-reference", "--no-counters", "--repeat", "1", "--duration", "0.2",
         "--cost-table", "--no-charts", "--output", str(tmp_path)],
        env=suite_env({"CB_TEST_TOKEN": token}), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180  # the timed run first, on a busy machine
        counting: list[str] = []
        while not counting and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            counting = [c for p in marked_processes(token)
                        if "cachegrind" in (c := " ".join(p.cmdline()))]  # fmt: skip
        assert counting, "no valgrind process appeared"
        time.sleep(1.0)  # a fork server and, likely, its servers
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    left = marked_processes(token)
    assert not left, [p.cmdline() for p in left]
    assert "PARTIAL" in out
