"""The summary side of the report: ranks, tie letters, floors, paired ratios, costs, memory
resolution.

Synthetic run records in the schema of results.json (harness.RunOutcome.to_json with the
engine's result, docs/RESULTS.md): they test the rules, never a speed. The last test renders
the committed reference run, made before the new keys existed.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.engine.bottleneck import NEAR_CEILING, capacity_rule
from loadgen.engine.result import COUNTERS_OFF
from loadgen.report import checkties, noise, results
from loadgen.report import summary as sm
from loadgen.report import tables as tb
from loadgen.report.compare import compare
from loadgen.suite.launch import suite_env

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference-2core"
# The reference run as committed before issue 9 (no bottleneck, counters, ties or
# not-admitted keys): --render must still read a run made by an older suite.
OLD_REFERENCE = ROOT / "tests" / "data" / "reference-2core-before-issue-9.json.gz"


# -- synthetic records ------------------------------------------------------------------------


def result(tp: float, **kw: Any) -> dict[str, Any]:
    """An engine result with the keys the summary reads; ``kw`` overrides a few of them."""
    server = {
        "cpu_util": kw.get("server_cpu", 1.0),
        "cpu_user_us_per_request": 5.0,
        "cpu_system_us_per_request": 5.0,
        "cpu_us_per_request": 10.0,
        "memory_pss_bytes": 20_000_000,
        "context_switches_per_request": kw.get("cs"),
        "syscalls_per_request": kw.get("sc"),
        "syscalls_by_name": kw.get("by_name"),
        "syscalls_unavailable": kw.get("unavailable"),
    }
    if "cpus" in kw:
        server["cpus_allowed"] = kw["cpus"]
    out: dict[str, Any] = {
        "throughput_rps": tp,
        "latency_us": {"p50": 100.0, "p99": kw.get("p99", 400.0), "p999": 800.0},
        "errors_total": 0,
        "fairness": {"jain": 1.0, "starved": 0, "not_admitted": kw.get("not_admitted", 0)},
        "loadgen": {"workers": [{"cpu_util": kw.get("gen_cpu", 0.5)}], "saturated": False},
        "server": server,
    }
    if "bottleneck" in kw:
        out["bottleneck"] = kw["bottleneck"]
    if "idle" in kw:
        out["idle"] = kw["idle"]
    return out


def run(variant: str, case: str, rnd: int, tp: float, **kw: Any) -> dict[str, Any]:
    return {
        "variant": variant,
        "case": case,
        "scenario": case,
        "round": rnd,
        "status": kw.pop("status", "ok"),
        "error": kw.pop("error", None),
        "discarded": kw.pop("discarded", None),
        "rate": kw.pop("rate", None),
        "memory_per_connection_bytes": kw.pop("pss_per_conn", None),
        "result": result(tp, **kw),
    }


def data_for(
    series: dict[str, list[float]],
    *,
    kind: str = "throughput",
    case: str = "echo-small",
    families: dict[str, str] | None = None,
    per_run: dict[str, dict[str, Any]] | None = None,
    extra_runs: list[dict[str, Any]] | None = None,
    case_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A results.json dict with one case; ``series[v][i]`` is v's figure in round i + 1."""
    families = families or {}
    runs = [
        run(name, case, i + 1, tp, **(per_run or {}).get(name, {}))
        for name, values in series.items()
        for i, tp in enumerate(values)
    ]
    return {
        "plan": {"profile": "quick", "repeat": 3, "duration": 1, "warmup": 0.3},
        "environment": {},
        "variants": {n: {"family": families.get(n, "event")} for n in series},
        "verify": {n: {"ok": True, "reason": None} for n in series},
        "cases": [
            {
                "key": case,
                "scenario": case,
                "label": case,
                "kind": kind,
                "x": 64,
                "variants": list(series),
                **(case_extra or {}),
            }
        ],  # fmt: skip
        "runs": runs + (extra_runs or []),
    }


def table(data: dict[str, Any]) -> sm.CaseSummary:
    return sm.summarize(data)[0]


def rows_of(summary: sm.CaseSummary) -> dict[str, sm.Row]:
    return {r.variant: r for r in summary.rows}


def assert_ranks_follow_means(summary: sm.CaseSummary, higher_is_better: bool = True) -> None:
    """Table order is best mean first, a rank is the position among the ranked rows, and
    the letters pass the tie checker (no letter holds two rows the test separates)."""
    ranked = [r for r in summary.rows if r.rank is not None]
    assert summary.ranked_by is not None
    means = [r.stats[summary.ranked_by].mean for r in ranked]
    sign = 1 if higher_is_better else -1
    assert all(sign * (a - b) >= 0 for a, b in zip(means, means[1:], strict=False)), means
    assert [r.rank for r in ranked] == list(range(1, len(ranked) + 1))
    assert all(r.letters for r in ranked) and "a" in ranked[0].letters
    assert checkties.check_summary(summary.to_json()) == []


# -- ranks, ties ------------------------------------------------------------------------------


def test_ranks_follow_the_means_and_ties_share_a_letter() -> None:
    data = data_for({
        "slow": [100.0, 101.0, 99.0],
        "fast": [200.0, 201.0, 199.0],
        "mid_a": [150.0, 151.0, 149.0],
        "mid_b": [150.5, 152.0, 148.0],
    })  # fmt: skip
    summary = table(data)
    assert [r.variant for r in summary.rows] == ["fast", "mid_b", "mid_a", "slow"]
    assert [r.rank_label for r in summary.rows] == ["a", "b", "b", "c"]
    assert_ranks_follow_means(summary)
    md = results.markdown_table(summary)
    assert "| b | mid_b |" in md and "| b | mid_a |" in md and "| c | slow |" in md
    assert any("share one when Welch's t-test over every pair, Holm-corrected" in n
               for n in tb.notes(summary))  # fmt: skip
    saved = summary.to_json()
    assert [r["rank"] for r in saved["rows"]] == [1, 2, 3, 4]
    assert [r["letters"] for r in saved["rows"]] == [["a"], ["b"], ["b"], ["c"]]
    assert saved["ranked_by"] == "throughput_rps"
    assert saved["ties"]["groups"] == {"a": ["fast"], "b": ["mid_b", "mid_a"], "c": ["slow"]}
    assert saved["ties"]["samples"]["slow"] == [100.0, 101.0, 99.0]
    low, high = saved["rows"][0]["stats"]["throughput_rps"]["ci95"]
    assert low < 200.0 < high and high - low == pytest.approx(2 * 4.303 / 3**0.5, rel=1e-3)


def test_a_generator_bound_row_is_a_floor_but_never_ranked_above_a_higher_mean() -> None:
    # The old rule ranked saturated rows first by CPU: "floor" (180k) went above "fast".
    data = data_for(
        {"fast": [300.0, 302.0, 298.0], "floor": [180.0, 181.0, 179.0],
         "ceiling": [400.0, 401.0, 399.0]},
        families={"ceiling": "reference"},
        per_run={"floor": {"bottleneck": "generator"}},
    )  # fmt: skip
    summary = table(data)
    rows = rows_of(summary)
    assert rows["fast"].rank == 1 and rows["floor"].rank == 2
    assert rows["ceiling"].rank is None and summary.rows[-1].variant == "ceiling"
    assert rows["floor"].bottleneck == "generator"
    assert rows["floor"].floor and not rows["fast"].floor
    cell = tb.cells(rows["floor"], summary)[2]
    assert cell.startswith("≥ ") and "180" in cell
    assert not tb.cells(rows["fast"], summary)[2].startswith("≥")
    assert any("floor" in n for n in tb.notes(summary))


def test_bottleneck_is_computed_for_old_results_and_counted_per_row() -> None:
    # no "bottleneck" key: computed from the CPU figures, one CPU for the server when unknown
    data = data_for(
        {"v": [100.0, 100.0, 100.0], "two_cpus": [90.0, 91.0, 89.0]},
        per_run={"two_cpus": {"server_cpu": 1.0, "cpus": 2, "gen_cpu": 0.95}},
    )
    data["runs"][2]["result"]["loadgen"]["workers"] = [{"cpu_util": 0.3}, {"cpu_util": 0.97}]
    rows = rows_of(table(data))
    assert rows["v"].bottleneck == "server"
    assert rows["v"].bottleneck_counts == {"server": 2, "generator": 0, "both": 1, "neither": 0}
    # 1 core of 2 allowed is not the server's limit; the generator at 0.95 is
    assert rows["two_cpus"].bottleneck == "generator"
    saved = rows["v"].to_json()["bottleneck"]
    assert saved == {"class": "server", "counts": rows["v"].bottleneck_counts}


@pytest.mark.parametrize(
    ("cpu_class", "tp", "ceiling", "expected"),
    [
        ("both", 80.0, 100.0, "server"),  # 20% under the generator's ceiling: the server's
        ("generator", 80.0, 100.0, "neither"),
        ("both", 90.0, 100.0, "both"),  # within 10%: the generator may be the limit
        ("generator", 104.0, 100.0, "generator"),
        ("server", 10.0, 100.0, "server"),  # the rule only ever takes the generator away
        ("both", 80.0, None, "both"),  # no ceiling measured: the CPU rule alone
    ],
)
def test_capacity_rule(cpu_class: str, tp: float, ceiling: float | None, expected: str) -> None:
    assert capacity_rule(cpu_class, tp, ceiling) == expected
    assert NEAR_CEILING == 0.9


def test_a_busy_generator_is_the_limit_only_near_its_ceiling_in_the_same_round() -> None:
    # native_epoll is the generator's ceiling, measured in every round; "near" comes within
    # 10% of it in each round, "busy" is 20% below it with the generator's CPU as busy
    ceiling = [100.0, 80.0, 120.0]
    data = data_for(
        {"native_epoll": ceiling, "near": [95.0, 76.0, 114.0], "busy": [80.0, 64.0, 96.0]},
        families={"native_epoll": "reference"},
        per_run={n: {"bottleneck": "both"} for n in ("native_epoll", "near", "busy")},
    )
    # busy, redone alone in a round of its own: judged against the median ceiling (100)
    data["runs"].append(run("busy", "echo-small", 4, 98.0, bottleneck="generator"))
    summary = table(data)
    rows = rows_of(summary)
    assert rows["near"].bottleneck == "both" and rows["near"].below_ceiling == 0
    assert rows["native_epoll"].bottleneck == "both"
    busy = rows["busy"]
    assert busy.bottleneck_counts == {"server": 3, "generator": 1, "both": 0, "neither": 0}
    assert busy.bottleneck == "server" and busy.below_ceiling == 3
    assert busy.to_json()["below_ceiling"] == 3
    assert any("within 10% of native_epoll's in the same round" in n and "busy" in n
               for n in tb.notes(summary))  # fmt: skip
    # a case without native_epoll keeps the CPU rule
    alone = rows_of(table(data_for({"v": [80.0] * 3}, per_run={"v": {"bottleneck": "both"}})))
    assert alone["v"].bottleneck == "both" and alone["v"].below_ceiling == 0


def test_cpu_cell_shows_the_total_when_the_split_is_unknown() -> None:
    data = data_for({"fork": [100.0, 101.0, 99.0], "split": [90.0, 91.0, 89.0]})
    for r in data["runs"]:
        if r["variant"] == "fork":  # the monitor's ticks saw too little to split it
            r["result"]["server"].update(cpu_user_us_per_request=None,
                                         cpu_system_us_per_request=None)  # fmt: skip
    summary = table(data)
    rows = rows_of(summary)
    column = tb.columns(summary).index("CPU µs/req usr/sys")
    assert tb.cells(rows["fork"], summary)[column] == "10.0 total"
    assert tb.cells(rows["split"], summary)[column] == "5.0 / 5.0"


def test_discarded_runs_are_kept_but_not_counted() -> None:
    redone = run("a", "echo-small", 2, 5.0, discarded="round redone: reference -20%")
    data = data_for({"a": [100.0, 102.0, 98.0], "b": [90.0, 91.0, 89.0]}, extra_runs=[redone])
    summary = table(data)
    a = rows_of(summary)["a"]
    assert a.stats["throughput_rps"].n == 3
    assert a.stats["throughput_rps"].mean == pytest.approx(100.0)
    assert a.runs == 3 and a.discarded_runs == 1
    assert any("discarded" in f for f in a.flags())


# -- paired ratio ----------------------------------------------------------------------------

DRIFT = [1.0, 0.8, 1.2, 0.9, 1.1]  # the machine's speed in each round


def test_paired_ratio_is_used_when_tighter_and_shown() -> None:
    # Every variant slows with the machine: raw req/s cannot separate a from b, the
    # ratio to the reference measured in the same round can.
    data = data_for(
        {"native_epoll": [1000.0 * f for f in DRIFT],
         "a": [500.0 * f * (1 + 0.002 * i) for i, f in enumerate(DRIFT)],
         "b": [470.0 * f * (1 - 0.002 * i) for i, f in enumerate(DRIFT)]},
        families={"native_epoll": "reference"},
    )  # fmt: skip
    summary = table(data)
    rows = rows_of(summary)
    assert summary.ranked_by == sm.RATIO and summary.paired_reference == "native_epoll"
    assert rows["a"].stats[sm.RATIO].mean == pytest.approx(0.5, rel=0.01)
    assert rows["a"].rank == 1 and rows["b"].rank == 2  # separated by the paired test
    assert_ranks_follow_means(summary)
    cols = tb.columns(summary)
    assert "× native_epoll ± CI95" in cols
    assert tb.cells(rows["a"], summary)[cols.index("× native_epoll ± CI95")].startswith("0.50")
    assert summary.to_json()["ranked_by"] == "ratio_to_reference"
    assert any("paired ratio to native_epoll" in n for n in tb.notes(summary))


def test_raw_figure_is_used_when_the_ratio_is_not_tighter() -> None:
    # a quiet machine, a reference that wanders on its own: dividing by it only adds noise
    data = data_for(
        {"native_epoll": [1000.0, 1300.0, 800.0], "a": [500.0, 501.0, 499.0],
         "b": [300.0, 302.0, 298.0]},
        families={"native_epoll": "reference"},
    )  # fmt: skip
    summary = table(data)
    assert summary.ranked_by == "throughput_rps"
    assert "% best" in tb.columns(summary)
    assert not any(c.startswith("×") for c in tb.columns(summary))


# -- costs, flags -----------------------------------------------------------------------------


def test_cost_columns_top_syscalls_and_why_they_are_missing(tmp_path: Path) -> None:
    by_name = {"recvfrom": 1.0, "sendto": 1.0, "epoll_wait": 0.31, "other": 0.5}
    data = data_for(
        {"counted": [100.0, 101.0, 99.0], "no_perf": [90.0, 91.0, 89.0]},
        per_run={
            "counted": {"cs": 0.02, "sc": 2.81, "by_name": by_name},
            "no_perf": {"cs": 1.5, "unavailable": "perf not found (apt install linux-perf)"},
        },
    )
    summary = table(data)
    rows = rows_of(summary)
    cols = tb.columns(summary)
    assert tb.cells(rows["counted"], summary)[cols.index(tb.COSTS)] == "0.02 / 2.81"
    assert tb.cells(rows["no_perf"], summary)[cols.index(tb.COSTS)] == "1.50 / –"
    assert any("perf not found (apt install linux-perf)" in n for n in tb.notes(summary))
    assert tb.top_syscalls(rows["counted"]) == "recvfrom 1.00, sendto 1.00, epoll_wait 0.31"
    results.write(tmp_path, data, charts=False, latest=False)
    report = (tmp_path / "report.md").read_text()
    assert "- `counted`: recvfrom 1.00, sendto 1.00, epoll_wait 0.31" in report
    saved = json.loads((tmp_path / "results.json").read_text())["summaries"][0]["rows"]
    counted = next(r for r in saved if r["variant"] == "counted")
    assert counted["stats"]["syscalls_per_request"]["mean"] == pytest.approx(2.81)
    assert counted["syscalls_by_name"]["epoll_wait"] == pytest.approx(0.31)


def test_a_case_without_counted_runs_says_so_not_the_engines_no_counters() -> None:
    """The suite's timed runs never count (the engine says "off (--no-counters)"); a case
    the profile does not count must not blame an option nobody gave."""
    data = data_for({"timed_only": [100.0, 101.0, 99.0]},
                    per_run={"timed_only": {"unavailable": COUNTERS_OFF}})  # fmt: skip
    notes = tb.notes(table(data))
    assert any("no counted run of this case" in n for n in notes), notes
    assert not any(COUNTERS_OFF in n for n in notes)


def test_not_admitted_is_a_flag_distinct_from_starved() -> None:
    data = data_for(
        {"capped": [100.0, 100.0, 100.0]},
        per_run={"capped": {"not_admitted": 24}},
    )
    row = rows_of(table(data))["capped"]
    assert row.not_admitted == 24
    assert "24 not admitted" in row.short_flags()
    assert "starved" not in row.short_flags()
    assert row.to_json()["not_admitted"] == 24


# -- open loop, memory ---------------------------------------------------------------------


def test_open_loop_ranks_latency_only_at_the_common_rate() -> None:
    series = {"low_p99": [1.0, 1.0, 1.0], "high_p99": [1.0, 1.0, 1.0]}
    per_run = {"low_p99": {"p99": 300.0}, "high_p99": {"p99": 900.0}}
    own = table(data_for(series, kind="open", case="open-loop", per_run=per_run))
    assert own.rate_basis == "own" and own.ranked_by is None
    assert all(r.rank is None for r in own.rows)
    assert any("Not ranked" in n for n in tb.notes(own))
    common = table(
        data_for(series, kind="open", case="open-loop-common", per_run=per_run,
                 case_extra={"rate_basis": "common"})
    )  # fmt: skip
    rows = rows_of(common)
    assert common.ranked_by == "p99_us"
    assert rows["low_p99"].rank == 1 and rows["high_p99"].rank == 2  # zero spread: differ
    assert_ranks_follow_means(common, higher_is_better=False)


def test_memory_per_connection_below_resolution() -> None:
    served = 1000
    idle = [{"served": served, "memory_per_connection_bytes": x} for x in (2.0, -3.0, 1.0)]
    data = data_for(
        {"reactor": [0.0, 0.0, 0.0], "threads": [0.0, 0.0, 0.0]},
        kind="memory",
        case="idle-memory",
        per_run={"threads": {"idle": {"served": served, "memory_per_connection_bytes": 22e3},
                             "pss_per_conn": 21e3},
                 "reactor": {"pss_per_conn": -712.0}},
    )  # fmt: skip
    for r, ix in zip([r for r in data["runs"] if r["variant"] == "reactor"], idle, strict=True):
        r["result"]["idle"] = ix
    summary = table(data)
    rows = rows_of(summary)
    reactor = rows["reactor"]
    # the resolution: the larger of one page over the connections and the CI half-width
    half = reactor.stats["memory_per_connection_uss_bytes"].half_width
    assert reactor.memory_resolution == pytest.approx(max(4096 / served, half))
    assert reactor.below_resolution and not rows["threads"].below_resolution
    uss, pss = tb.cells(reactor, summary)[2:4]
    assert uss.startswith("below resolution (< ") and pss.startswith("below resolution (< ")
    assert "-" not in uss + pss  # never a negative memory figure
    assert tb.cells(rows["threads"], summary)[2].startswith("21.5 KiB")
    assert reactor.to_json()["below_resolution"] is True
    assert rows["reactor"].rank == 1 and rows["threads"].rank == 2


# -- the tie checker (python -m loadgen.report.checkties) ------------------------------------

# a table of 2 to 7 variants, 3 repeats each, around levels a few percent apart
levels = st.lists(st.tuples(st.integers(80, 120), st.integers(0, 15)), min_size=2, max_size=7).map(
    lambda rows: {
        f"v{i}": [float(level + d) for d in (-spread, spread // 3, spread)]
        for i, (level, spread) in enumerate(rows)
    }
)


@settings(max_examples=40, deadline=None)
@given(levels)
def test_the_checker_passes_every_summary_the_suite_writes(series: dict) -> None:
    saved = dict(data_for(series), summaries=[s.to_json() for s in sm.summarize(data_for(series))])
    assert checkties.check(json.loads(json.dumps(saved))) == []


def _chained() -> dict[str, Any]:
    """a ~ b ~ c, a and c separated: the chain rule's one group, now two letters."""
    spread = [-6.0, -3.0, 0.0, 3.0, 6.0]
    series = {v: [m + d for d in spread] for v, m in (("a", 100.0), ("b", 95.0), ("c", 90.0))}
    data = data_for(series)
    return json.loads(json.dumps(dict(data, summaries=[s.to_json() for s in sm.summarize(data)])))


def test_the_checker_finds_a_group_holding_a_separated_pair() -> None:
    data = _chained()
    (summary,) = data["summaries"]
    assert summary["ties"]["groups"] == {"a": ["a", "b"], "b": ["b", "c"]}
    assert checkties.check(data) == []
    # the chain rule's grouping: one tie group of all three
    summary["ties"]["groups"] = {"a": ["a", "b", "c"]}
    for row in summary["rows"]:
        row["letters"] = ["a"]
    problems = checkties.check(data)
    assert problems == ["echo-small: group a holds a and c, which the test separates"]


def test_the_checker_recomputes_what_the_record_says() -> None:
    data = _chained()
    ties = data["summaries"][0]["ties"]
    ties["pairs"][0]["p"] = 0.5  # a stale p-value
    assert any("recorded p 0.5" in p for p in checkties.check(data))
    data = _chained()
    data["summaries"][0]["ties"]["samples"]["a"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert checkties.check(data) == ["echo-small: a: samples are not its throughput_rps (n, mean)"]
    data = _chained()
    data["summaries"][0]["ties"]["correction"] = None  # uncorrected tests separate more pairs
    assert "not the documented" in checkties.check(data)[0]
    data = _chained()
    data["summaries"][0]["rows"][1]["letters"] = ["b"]
    assert checkties.check(data) == ["echo-small: b: letters ['b'] but groups ['a', 'b']"]
    data = _chained()
    del data["summaries"][0]["ties"]
    assert "no ties record" in checkties.check(data)[0]


def test_the_checker_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "results.json").write_text(json.dumps(_chained()))
    assert checkties.main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "echo-small: 3 rows, 1 of 3 pairs separated, 2 letter(s)" in out
    bad = _chained()
    bad["summaries"][0]["ties"]["groups"] = {"a": ["a", "b", "c"]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert checkties.main([str(tmp_path / "bad.json")]) == 1
    assert "! echo-small: group a holds a and c" in capsys.readouterr().out
    assert checkties.main([str(tmp_path / "missing.json")]) == 2


# -- compare, notes -----------------------------------------------------------------------------


def test_compare_says_not_significant_for_the_same_data() -> None:
    a = data_for({"v": [100.0, 103.0, 97.0], "w": [50.0, 52.0, 49.0]})
    changes = compare(a, a)
    assert changes and all(not c.significant for c in changes)
    assert {c.text for c in changes} == {"not significant"}
    b = data_for({"v": [150.0, 152.0, 148.0], "w": [50.5, 53.0, 48.0]})
    moved = {(c.variant, c.figure): c for c in compare(a, b)}
    assert moved[("v", "throughput_rps")].text == "1.50x faster (+50.0%)"
    assert moved[("w", "throughput_rps")].text == "not significant"


def test_noise_note_names_rounds_that_waited_or_were_redone() -> None:
    rounds = [
        {"case": "echo-small", "round": 1, "busy_fraction": 0.02, "waited_s": 0, "rerun_of": None,
         "reason": None},
        {"case": "echo-small", "round": 2, "busy_fraction": 0.3, "waited_s": 4.2,
         "rerun_of": None, "reason": None},
        {"case": "echo-small", "round": 3, "busy_fraction": 0.01, "waited_s": 0, "rerun_of": 2,
         "reason": "reference 22% below its median"},
    ]  # fmt: skip
    note = results.noise_note(rounds)
    assert "1 round(s) waited 4 s" in note and "1 round(s) or run(s) redone" in note
    assert "reference 22% below its median" in note
    assert results.noise_note(rounds[:1]) == ""


# -- the committed reference, made before these keys existed -------------------------------


@pytest.mark.parametrize("source", ["old", "committed"])
def test_render_of_a_reference_run(tmp_path: Path, source: str) -> None:
    run_dir = tmp_path / "reference"
    run_dir.mkdir()
    if source == "old":
        (run_dir / "results.json").write_bytes(gzip.decompress(OLD_REFERENCE.read_bytes()))
    else:
        shutil.copy(REFERENCE / "results.json", run_dir / "results.json")
    proc = subprocess.run(
        # the charts are drawn from the committed reference; the old one checks the tables
        [sys.executable, str(ROOT / "run_all.py"), "--render", str(run_dir)]
        + (["--no-charts"] if source == "old" else []),
        env=suite_env({"COLUMNS": "180"}), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "echo-small" in proc.stdout and "Traceback" not in proc.stderr
    saved = json.loads((run_dir / "results.json").read_text())
    by_case = {s["case"]: s for s in saved["summaries"]}
    for s in saved["summaries"]:
        # every row with a measured run has a class (a row whose runs never ran the
        # load, e.g. no echo-small capacity to derive its open-loop rate from, has none)
        measured = [
            r
            for r in s["rows"]
            if r["stats"].get("throughput_rps") or r["stats"].get("memory_per_connection_bytes")
        ]
        assert all(r["bottleneck"] for r in measured), s["case"]
        ranked = [r for r in s["rows"] if r["rank"] is not None]
        if s["ranked_by"] is None:
            assert not ranked
            continue
        # requests/s (or its ratio to the reference): more is better; latency, memory: less
        sign = 1 if s["ranked_by"] in ("throughput_rps", "ratio_to_reference") else -1
        means = [sign * r["stats"][s["ranked_by"]]["mean"] for r in ranked]
        assert means == sorted(means, reverse=True), s["case"]
    assert by_case["open-loop"]["ranked_by"] is None  # each variant at its own rate
    assert checkties.check(saved) == []  # regrouped: no letter holds a separated pair
    report = (run_dir / "report.md").read_text()
    assert "req/s ± CI95" in report and "≥ " in report
    memory = next(s for s in saved["summaries"] if s["kind"] == "memory")
    assert any(r["below_resolution"] for r in memory["rows"])


# -- disturbance: the report's header line, and tables too noisy to rank (issue 18) ----------


def disturbance_of(steal: float, foreign: float, gen_foreign: float) -> dict[str, Any]:
    def share(cpus: list[int], s: float, f: float) -> dict[str, Any]:
        return {"cpus": cpus, "steal_fraction": s, "busy_cores": 1.0 + f, "own_cores": 1.0,
                "foreign_cores": f}  # fmt: skip

    return {
        "wall_s": 0.5,
        "run": share([0, 1], steal / 2, foreign + gen_foreign),
        "server": share([0], steal, foreign),
        "generator": share([1], 0.0, gen_foreign),
    }


def test_the_header_says_how_disturbed_the_machine_was(tmp_path: Path) -> None:
    data = data_for({"a": [100.0, 101.0, 99.0], "b": [90.0, 91.0, 89.0]})
    for i, r in enumerate(data["runs"]):  # steal 1%, 3% (the last one disturbed), ...
        r["result"]["disturbance"] = disturbance_of(0.01 * (1 + i % 3), 0.02 * i, 0.01)
        r["disturbed"] = "steal 3.0% of the server's CPU time (> 2%)" if i % 3 == 2 else None
        r["discarded"] = "run redone: disturbed" if i == 2 else None
    data["runs"].append(run("a", "echo-small", 0, 10.0) | {"purpose": "count"})  # not timed
    record = noise.machine_disturbance(data["runs"])
    assert record["runs"] == 6 and record["disturbed"] == 2 and record["redone"] == 1
    steal = record["server"]["steal_fraction"]
    assert steal["mean"] == pytest.approx(0.02) and steal["max"] == pytest.approx(0.03)
    assert steal["sd"] == pytest.approx(0.00894, abs=1e-5) and steal["n"] == 6
    assert record["generator"]["foreign_cores"]["mean"] == pytest.approx(0.01)
    line = noise.header_line(record)
    assert line.startswith("Disturbance over 6 timed runs (mean ± sd): hypervisor steal ")
    assert "2.0% ± 0.9% of the server's CPU time (max 3.0%)" in line
    assert "0.0% ± 0.0% of the generator's CPU time" in line
    assert "other processes 0.05 ± 0.04 of a CPU on the server's CPUs (max 0.10)" in line
    assert "2 runs beyond the limits (steal > 2% of a side's CPU time, other processes > " in line
    assert line.endswith("1 measured again.")
    summaries = sm.summarize(data)
    report = results.report_markdown(data, summaries, [], tmp_path)
    assert line in report.splitlines()
    # shared CPUs (no sides): the run's; nothing measured: no line at all
    for r in data["runs"]:
        if r["result"].get("disturbance"):
            r["result"]["disturbance"].update(server=None, generator=None)
    assert "of the run's CPU time" in noise.header_line(noise.machine_disturbance(data["runs"]))
    assert noise.header_line(noise.machine_disturbance([])) == ""


def noisy_series(n_rows: int, repeats: int, spread: float) -> dict[str, list[float]]:
    """Rows 2% apart whose repeats wander by ``spread`` (a busy machine: large)."""
    wander = [1.0 - spread, 1.0 + spread, 1.0, 1.0 + spread / 2, 1.0 - spread / 2][:repeats]
    return {f"v{i}": [100.0 * (1 - 0.02 * i) * w for w in wander] for i in range(n_rows)}


def test_alike_rows_whose_repeats_agree_are_not_called_noisy() -> None:
    """One tie group with repeats that agree (median CV under 5%) means the models are
    alike (every one waits on the same round trip), not that the machine hid them."""
    alike = {f"v{i}": [100.0, 102.0, 98.0] for i in range(6)}  # CV 2%, equal means
    summary = table(data_for(alike))
    assert summary.too_noisy is None


def test_a_table_the_noise_left_in_one_tie_group_says_so_in_one_line() -> None:
    summary = table(data_for(noisy_series(6, 3, 0.3)))
    assert summary.too_noisy is not None
    assert "6 of the 6 ranked rows share one tie group" in summary.too_noisy
    assert "median CV 30%" in summary.too_noisy  # repeats at 0.7, 1.3 and 1.0 x
    assert "system calls and context switches per request" in summary.too_noisy
    assert 'results/README.md, "Not separable here"' in summary.too_noisy
    assert tb.notes(summary)[0] == summary.too_noisy  # one line, first under the table
    assert [tb.cells(r, summary)[0] for r in summary.rows] == ["–"] * 6  # no column of "a"
    saved = summary.to_json()
    assert saved["too_noisy"] == summary.too_noisy and saved["rows"][0]["letters"] == ["a"]
    # the same rows with a steady machine are told apart: ranked as usual
    steady = table(data_for(noisy_series(6, 3, 0.001)))
    assert steady.too_noisy is None and tb.cells(steady.rows[0], steady)[0] == "a"
    # two repeats: the t factor (12.7), not the machine, ties them; the table says that itself
    assert table(data_for(noisy_series(6, 2, 0.3))).too_noisy is None
    assert table(data_for(noisy_series(2, 3, 0.3))).too_noisy is None  # too few rows to say


def test_a_noisy_table_points_to_the_cost_table_when_the_run_has_one() -> None:
    data = data_for(noisy_series(6, 3, 0.3))
    data["costs"] = {"skipped": None, "variants": {"v0": {"echo": {}}}}
    line = sm.summarize(data)[0].too_noisy
    assert line is not None and "compare them by the cost table at the end" in line
    data["costs"] = {"skipped": "valgrind is not installed (apt-get install valgrind)"}
    line = sm.summarize(data)[0].too_noisy
    assert line is not None and "the counted run's columns" in line
