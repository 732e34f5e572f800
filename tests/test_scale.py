"""Issue 11, items 4-6: the c10k scenario, more than one server core, charts with ~20 variants.

The c10k machinery runs here at 200 connections (never 10,000 in CI), against a
variant that holds them and one that refuses past its cap; the cores scenario is
planned on a fake CPU topology (the function that reads the CPU set is replaced).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
from pathlib import Path

import pytest

import servers
from loadgen.report import charts, tables
from loadgen.report import summary as sm
from loadgen.suite import harness, plan, preamble, runner
from loadgen.suite.cli import build_parser, main
from loadgen.suite.scenarios import SCENARIOS

SMALL = 200  # connections: the c10k code path, cheaply


def args_for(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def fake_cpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(harness, "usable_cpus", lambda: list(range(n)))


# -- c10k ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_c10k() -> dict[str, harness.RunOutcome]:
    """The c10k case at 200 connections against epoll_reactor (holds them) and
    socketserver_forking (refuses past its 39 children), measured once for the module."""
    case = dataclasses.replace(SCENARIOS["c10k"].cases[0], connections=SMALL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness, "C10K_ADMIT_S", 1.0)  # the refused connections never get in
        return {
            name: harness.measure(name, case, duration=0.2, warmup=0.0)
            for name in ("epoll_reactor", "socketserver_forking")
        }


def test_c10k_times_the_connects_the_echo_round_and_the_memory(
    small_c10k: dict[str, harness.RunOutcome],
) -> None:
    out = small_c10k["epoll_reactor"]
    assert out.status == "ok", out.error
    r = out.result
    assert r is not None and r.idle is not None
    assert r.idle.served == SMALL
    assert r.loadgen.ramp_s is not None and r.loadgen.ramp_s > 0
    assert r.loadgen.admit_s is not None  # every connection served its ECHO in time
    assert r.latency_us.p50 is not None and r.latency_us.p99 is not None  # the round is timed
    assert r.latency_us.p99 >= r.latency_us.p50
    assert r.requests == 0  # the measured period is silent
    assert r.idle.memory_per_connection_bytes is not None  # USS
    assert out.baseline_pss_bytes and out.memory_per_connection_bytes is not None  # PSS


def test_c10k_past_a_cap_fails_with_the_reason(
    small_c10k: dict[str, harness.RunOutcome],
) -> None:
    out = small_c10k["socketserver_forking"]
    assert out.status == "failed"
    assert out.error and ("busy" in out.error or "were accepted" in out.error)


def test_c10k_table_shows_declared_caps_as_failing_rows(
    small_c10k: dict[str, harness.RunOutcome],
) -> None:
    names = list(small_c10k)
    record = plan.PlannedCase.of(
        SCENARIOS["c10k"], SCENARIOS["c10k"].cases[0], [*names, "thread_per_client"]
    )
    # socketserver_forking's cap (39) is declared: the plan does not run it either
    assert record.variants == ["epoll_reactor"]
    assert set(record.declared_failures) == {"socketserver_forking", "thread_per_client"}
    runs = [o.to_json() for o in small_c10k.values()]
    variants = {n: {"family": servers.get(n).family} for n in [*names, "thread_per_client"]}
    s = sm.summarize_case({**record.to_json(), "variants": names}, runs, variants, {})
    by_name = {r.variant: r for r in s.rows}
    assert s.ranked_by == "p99_us" and by_name["epoll_reactor"].rank == 1
    assert by_name["socketserver_forking"].status == "failed"  # ran, failed
    cap = by_name["thread_per_client"]
    assert cap.status == "failed" and cap.runs == 0 and cap.rank is None
    assert "client limit 1,024 (--max-clients, its default)" in " ".join(cap.flags())
    for row in s.rows:
        assert len(tables.cells(row, s)) == len(tables.columns(s))
    assert tables.cells(by_name["epoll_reactor"], s)[2].endswith(" s")  # connect all


def test_c10k_plan_declares_the_registry_caps_and_runs_two_rounds() -> None:
    p = plan.make_plan(args_for("--scenarios", "c10k", "--repeat", "4", "--no-reference"))
    (record,) = p.cases
    for name, reason in record.declared_failures.items():
        cap = servers.get(name).client_cap()
        assert cap is not None and cap[0] < 10_000 and reason.startswith(cap[1])
    assert "select_reactor" in record.declared_failures  # FD_SETSIZE
    assert "blocking_loop" in record.declared_failures
    assert "epoll_reactor" in record.variants and "epoll_reactor" not in record.declared_failures
    assert p.rounds(record) == 2 and p.runs == 2 * len(record.variants)


def test_the_suite_raises_its_descriptor_limit_and_says_when_it_is_too_low(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = {"soft": 1024, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(resource, "setrlimit", lambda _, v: limits.update(soft=v[0]))
    record = preamble.nofile_record(plan.make_plan(args_for("--scenarios", "c10k")))
    assert limits["soft"] == 4096 and record["soft"] == 4096  # raised to the hard limit
    assert record["too_low"] and "4,096" in record["too_low"]
    limits.update(soft=1024, hard=20_000)
    record = preamble.nofile_record(plan.make_plan(args_for("--scenarios", "echo-small")))
    assert record["too_low"] is None and limits["soft"] == 20_000


# -- cores -----------------------------------------------------------------------------------


def test_cores_levels_and_their_pinning_on_8_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpus(monkeypatch, 8)
    p = plan.make_plan(args_for("--scenarios", "cores"))
    assert p.skipped_scenarios == {}
    assert [c.key for c in p.cases] == ["cores-1", "cores-2", "cores-4"]
    multicore = {n for n, v in servers.REGISTRY.items() if v.multicore}
    assert {"fork_per_client", "thread_per_client"} <= multicore
    for record in p.cases:
        assert set(record.variants) == multicore & set(p.variants)
    session = runner.Session.__new__(runner.Session)
    session.pinning = harness.Pinning.choose(True, 1)
    pins = [session.pinning_for(plan.cases_by_key()[c.key]) for c in p.cases]
    assert pins == [
        harness.Pinning((0,), (1, 2, 3, 4, 5, 6, 7)),
        harness.Pinning((0, 1), (2, 3, 4, 5, 6, 7)),
        harness.Pinning((0, 1, 2, 3), (4, 5, 6, 7)),
    ]


def test_cores_is_skipped_with_the_reason_on_2_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpus(monkeypatch, 2)
    p = plan.make_plan(args_for("--scenarios", "cores,echo-small"))
    assert [c.key for c in p.cases] == ["echo-small"]
    assert "only 1" in p.skipped_scenarios["cores"]
    assert p.to_json()["skipped_scenarios"] == p.skipped_scenarios  # kept in results.json


def test_server_cpus_must_leave_the_generator_a_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cpus(monkeypatch, 4)
    assert harness.Pinning.choose(True, 3) == harness.Pinning((0, 1, 2), (3,))
    with pytest.raises(SystemExit) as exc:
        main(["--server-cpus", "4", "--scenarios", "echo-small"])
    assert exc.value.code == 2
    assert "leaves the load generator no CPU" in capsys.readouterr().err


# -- charts with ~20 variants ------------------------------------------------------------------


def _row(name: str, tp: float, family: str = "event") -> sm.Row:
    stats = {"throughput_rps": sm.Stat(tp, 0.0, 1, (tp,)), "p99_us": sm.Stat(500.0, 0.0, 1)}
    return sm.Row(name, family, "ok", stats=stats, runs=1)


def test_connections_chart_has_one_panel_per_group_for_20_variants(tmp_path: Path) -> None:
    names = [f"v{i:02d}" for i in range(20)]
    groups = {
        n: ("threads", "processes", "event loop", "greenlets")[i % 4] for i, n in enumerate(names)
    }
    summaries = [
        sm.CaseSummary(
            key,
            scen,
            key,
            "throughput",
            [_row(n, 1000.0 * x + i) for i, n in enumerate(names)],
            x=x,
        )
        for key, scen, x in (
            ("connections-1", "connections", 1),
            ("echo-small", "echo-small", 64),
            ("connections-1000", "connections", 1000),
        )
    ]
    fig = charts.connections_chart(summaries, groups)
    assert fig is not None and len(fig.axes) == 2 * 4  # req/s and p99 per group
    titles = {ax.get_title() for ax in fig.axes}
    assert {"threads", "processes", "event loop", "greenlets"} <= titles
    labels = {
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    }
    assert labels == set(names)  # every variant in a legend
    written = charts.write_charts(summaries, tmp_path, groups)
    assert tmp_path / "connections.png" in written and (tmp_path / "connections.png").stat().st_size


def test_variant_colours_are_stable_and_distinct_in_the_registry() -> None:
    names = [n for n, v in servers.REGISTRY.items() if v.family != "test"][:20]
    colours = [charts.variant_colour(n) for n in names]
    assert len(set(colours)) == len(colours)
    assert charts.variant_colour(names[0]) == colours[0]
