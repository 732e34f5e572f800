"""The runner's noise control, on a fake harness: no server is started, no speed is measured.

``harness.verify``, ``harness.measure`` and the CPU sampler are replaced by
fakes that return results in the engine's JSON schema with throughputs the
test chooses, so each test can stage what it is about: a round where the
whole machine was slow (the reference drops), a busy CPU before a round, a
row whose spread narrows or never does, and the open-loop common rate.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

import servers
from loadgen.engine.disturbance import disturbed
from loadgen.report import noise
from loadgen.report.ranking import relative_ci_halfwidth
from loadgen.suite import harness, preamble, runner
from loadgen.suite.cli import build_parser
from loadgen.suite.plan import MAX_EXTRA_ROUNDS, MAX_RERUNS, PlannedCase, RunPlan, make_plan
from loadgen.suite.scenarios import SCENARIOS, Case
from tests.test_run_all import fake_result

REF = "native_epoll"
MODELS = ["thread_per_client", "asyncio_protocol"]

Throughput = Callable[[str, str, int], float]  # (variant, case, round) -> req/s


class FakeHarness:
    """Stands in for harness.verify/measure; remembers every measurement asked for."""

    def __init__(self, throughput: Throughput, failing: frozenset[str] = frozenset()) -> None:
        self.throughput = throughput
        self.failing = failing  # (variant) whose echo-small runs fail
        self.calls: list[dict[str, Any]] = []

    def verify(self, name: str, **kwargs: Any) -> harness.VerifyResult:
        return harness.VerifyResult(name, True, None, 0.0)

    def measure(self, name: str, case: Case, *, round_no: int, **kw: Any) -> harness.RunOutcome:
        self.calls.append({"variant": name, "case": case.key, "round": round_no, **kw})
        tp = self.throughput(name, case.key, round_no)
        failed = name in self.failing and case.key == "echo-small"
        return harness.RunOutcome(
            name,
            case.key,
            case.scenario,
            round_no,
            "failed" if failed else "ok",
            error="3 of 64 connections starved" if failed else None,
            result=fake_result(tp),  # type: ignore[arg-type]  # its JSON form
            rate=kw.get("rate"),
        )


@pytest.fixture(autouse=True)
def reference_available(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests plan with native_epoll whether or not this machine has a C compiler."""
    monkeypatch.setitem(servers.REGISTRY, REF, dataclasses.replace(servers.get(REF), requires=None))


def plan_for(
    names: list[str],
    scenarios: tuple[str, ...] = ("echo-small",),
    *,
    repeat: int = 3,
    until_stable: bool = False,
    time_cap_s: float = 1e9,
) -> RunPlan:
    cases = [
        PlannedCase.of(SCENARIOS[s], case, names, REF)
        for s in scenarios
        for case in SCENARIOS[s].cases
    ]
    return RunPlan(
        profile="quick", variants=[*names, REF], skipped={}, scenarios=list(scenarios),
        cases=cases, repeat=repeat, duration=1.0, warmup=0.0, rest=0.0, seed=7, pin=False,
        reference=REF, reference_added=True, until_stable=until_stable, time_cap_s=time_cap_s,
    )  # fmt: skip


def run(
    plan: RunPlan,
    fake: FakeHarness,
    monkeypatch: pytest.MonkeyPatch,
    busy: Iterator[float] | None = None,
) -> tuple[dict[str, Any], runner.Session]:
    """Run ``plan`` through a Session on the fakes; returns (results.json data, session)."""
    monkeypatch.setattr(harness, "verify", fake.verify)
    monkeypatch.setattr(harness, "measure", fake.measure)
    samples = busy if busy is not None else itertools.repeat(0.0)
    monkeypatch.setattr(harness, "cpu_busy", lambda cpus, seconds: next(samples))
    data: dict[str, Any] = {
        "verify": {},
        "cases": [c.to_json() for c in plan.cases],
        "runs": [],
        "rounds": [],
    }
    with Progress(console=Console(file=io.StringIO())) as progress:
        session = runner.Session(plan, data, None, None, progress)
        clock = [0.0]
        session.clock = lambda: clock[0]
        session.pause = lambda s: clock.__setitem__(0, clock[0] + s + 0.5)  # + the sample
        session.verify_all()
        for record in plan.cases:
            session.run_case(record)
    return data, session


def steady(name: str, case: str, round_no: int) -> float:
    return {"thread_per_client": 1000.0, "asyncio_protocol": 4000.0, REF: 10_000.0}.get(name, 500.0)


def runs_of(data: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [r for r in data["runs"] if all(r.get(k) == v for k, v in match.items())]


# -- the reference in every round ----------------------------------------------------------


def test_the_reference_is_added_to_every_round_of_throughput_cases() -> None:
    args = build_parser().parse_args(["--servers", ",".join(MODELS), "--scenarios", "open-loop"])
    plan = make_plan(args)
    assert plan.reference == REF and plan.reference_added and REF in plan.variants
    cases = {c.key: c for c in plan.cases}
    assert REF in cases["echo-small"].variants
    assert REF not in cases["open-loop"].variants  # not asked for, and not a throughput case
    no_ref = make_plan(build_parser().parse_args(["--servers", ",".join(MODELS), "--no-reference"]))
    assert no_ref.reference is None and REF not in no_ref.variants
    assert no_ref.estimate_s() < plan.estimate_s()  # the estimate counts the reference's runs


def test_the_reference_is_measured_in_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHarness(steady)
    data, _ = run(plan_for(MODELS, repeat=3), fake, monkeypatch)
    assert sorted(r["round"] for r in runs_of(data, variant=REF)) == [1, 2, 3]
    assert len(data["runs"]) == 9 and not any(r["discarded"] for r in data["runs"])


# -- drift -------------------------------------------------------------------------------


def test_a_round_where_the_reference_drops_is_redone_and_the_original_discarded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow_round_2(name: str, case: str, round_no: int) -> float:
        return steady(name, case, round_no) * (0.7 if round_no == 2 else 1.0)

    data, _ = run(plan_for(MODELS, repeat=3), FakeHarness(slow_round_2), monkeypatch)
    round2 = runs_of(data, round=2)
    assert len(round2) == 3 and all("reference" in (r["discarded"] or "") for r in round2)
    redo = runs_of(data, round=4)
    assert {r["variant"] for r in redo} == {*MODELS, REF}  # every variant of the case
    assert all(r["rerun_of"] == 2 and r["discarded"] is None for r in redo)
    assert not runs_of(data, round=1)[0]["discarded"] and not runs_of(data, round=3)[0]["discarded"]
    noise = {r["round"]: r for r in data["rounds"]}
    assert noise[4]["rerun_of"] == 2 and "30% below its median" in noise[4]["reason"]
    assert data["cases"][0]["redone_rounds"] == [2]


def test_drift_reruns_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rounds 5, 6, 7 are slow (median of 7 still fast) and so is every rerun.
    def late_slowdown(name: str, case: str, round_no: int) -> float:
        return steady(name, case, round_no) * (0.7 if round_no >= 5 else 1.0)

    data, _ = run(plan_for(MODELS, repeat=7), FakeHarness(late_slowdown), monkeypatch)
    # (rounds, not runs: the per-run rule then re-measures the slow runs left, apart)
    reruns = [r for r in data["rounds"] if "the reference" in (r["reason"] or "")]
    assert len(reruns) == MAX_RERUNS
    assert [r["round"] for r in reruns] == [8, 9]
    whole = {r["round"] for r in data["runs"] if "round redone" in (r["discarded"] or "")}
    assert len(whole) == MAX_RERUNS
    late, _ = run(
        plan_for(MODELS, repeat=7, time_cap_s=0.0), FakeHarness(late_slowdown), monkeypatch
    )
    assert max(r["round"] for r in late["runs"]) == 7  # no time left: nothing redone, and said
    assert "not redone (time cap)" in late["cases"][0]["drift"]


# -- quiet check -----------------------------------------------------------------------


def test_the_quiet_check_waits_while_others_use_the_cpus_and_records_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = itertools.chain([0.6, 0.4, 0.05], itertools.repeat(0.0))  # busy twice, then quiet
    data, _ = run(plan_for(MODELS, repeat=2), FakeHarness(steady), monkeypatch, busy)
    first, second = data["rounds"]
    assert first["waited_s"] == pytest.approx(2.0)  # two 1 s steps
    assert first["busy_fraction"] == pytest.approx(0.05)  # the sample the round started on
    assert "60%" in first["reason"]
    assert second["waited_s"] == 0 and second["reason"] is None
    assert set(first) >= {"case", "round", "busy_fraction", "waited_s", "rerun_of", "reason"}


def test_the_quiet_check_gives_up_after_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = run(
        plan_for(MODELS, repeat=1), FakeHarness(steady), monkeypatch, itertools.repeat(0.9)
    )
    (noise,) = data["rounds"]
    assert noise["waited_s"] == pytest.approx(runner.QUIET_MAX_WAIT_S)
    assert noise["busy_fraction"] == pytest.approx(0.9)
    assert "measured anyway" in noise["reason"]
    assert len(data["runs"]) == 3  # the round was measured


def test_a_high_load_average_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preamble.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(preamble.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    assert preamble.quiet_check_record() == {"load_per_cpu_start": 1.5, "warned": True}
    monkeypatch.setattr(preamble.os, "getloadavg", lambda: (0.4, 2.0, 1.0))
    assert preamble.quiet_check_record()["warned"] is False


# -- until stable ---------------------------------------------------------------------


def test_until_stable_adds_rounds_until_the_ci_is_tight(monkeypatch: pytest.MonkeyPatch) -> None:
    noisy = {1: 100.0, 2: 104.0, 3: 96.0}  # then 100 every round: the CI narrows

    def narrowing(name: str, case: str, round_no: int) -> float:
        return noisy.get(round_no, 100.0) if name == "asyncio_protocol" else steady(name, case, 1)

    data, _ = run(plan_for(MODELS, until_stable=True), FakeHarness(narrowing), monkeypatch)
    tps = [r["result"]["throughput_rps"] for r in runs_of(data, variant="asyncio_protocol")]
    assert 3 < len(tps) < 3 + MAX_EXTRA_ROUNDS
    assert relative_ci_halfwidth(tps) <= 0.05 < relative_ci_halfwidth(tps[:-1])
    assert data["cases"][0]["until_stable"]["stopped"] == "stable"
    assert all("until-stable" in r["reason"] for r in data["rounds"][3:])


def test_until_stable_stops_at_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(name: str, case: str, round_no: int) -> float:
        return (
            steady(name, case, round_no) * (1.3 if round_no % 2 else 0.75) if name != REF else 1e4
        )

    data, _ = run(plan_for(MODELS, until_stable=True), FakeHarness(never), monkeypatch)
    extra = [r for r in data["rounds"] if "until-stable" in (r["reason"] or "")]
    assert len(extra) == MAX_EXTRA_ROUNDS
    assert "cap" in data["cases"][0]["until_stable"]["stopped"]
    timed, _ = run(
        plan_for(MODELS, until_stable=True, time_cap_s=0.0), FakeHarness(never), monkeypatch
    )
    assert max(r["round"] for r in timed["runs"]) == 3  # no time left: no extra round
    assert timed["cases"][0]["until_stable"]["stopped"] == "time cap"


# -- open-loop common rate ---------------------------------------------------------------


def test_the_common_rate_is_half_the_slowest_concurrent_variant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [*MODELS, "blocking_loop", "gevent_server"]
    fake = FakeHarness(
        lambda n, c, r: {"blocking_loop": 100.0, "gevent_server": 50.0}.get(n) or steady(n, c, r),
        failing=frozenset({"gevent_server"}),  # failed echo-small: sets no capacity
    )
    data, _ = run(plan_for(names, ("echo-small", "open-loop"), repeat=2), fake, monkeypatch)
    cases = {c["key"]: c for c in data["cases"]}
    common = cases["open-loop-common"]
    assert common["rate_basis"] == "common" and cases["open-loop"]["rate_basis"] == "own"
    assert "blocking_loop" in common["not_applicable"] and REF not in common["variants"]
    assert common["common_rate_from"] == "thread_per_client"
    rates = {(c["variant"], c["case"]): c["rate"] for c in fake.calls if c["case"] != "echo-small"}
    for name in (*MODELS, "gevent_server"):
        assert rates[(name, "open-loop-common")] == pytest.approx(500.0)  # 0.5 x 1000
    assert rates[("asyncio_protocol", "open-loop")] == pytest.approx(2000.0)  # its own half
    assert rates[("blocking_loop", "open-loop")] == pytest.approx(50.0)


# -- harness: the ramp --------------------------------------------------------------------------


def test_connections_never_admitted_are_their_own_failure() -> None:
    case = SCENARIOS["echo-small"].cases[0]
    # Only the figures run_failure reads (the engine's Fairness gains not_admitted in issue 9).
    fairness = SimpleNamespace(connections=64, starved=3, not_admitted=3)
    result: Any = SimpleNamespace(
        partial=False, errors_total=0, errors={}, fairness=fairness, requests=1000, idle=None
    )
    reason = harness.run_failure(result, case) or ""
    assert "3 of 64 connections not admitted" in reason and "starved" not in reason
    fairness.not_admitted = 0
    assert "3 of 64 connections starved" in (harness.run_failure(result, case) or "")


def test_the_ramp_timeout_grows_with_the_connections() -> None:
    cases = {c.key: c for s in SCENARIOS.values() for c in s.cases}
    assert harness.admit_timeout(cases["echo-small"]) == pytest.approx(2.256)
    assert harness.admit_timeout(cases["connections-1000"]) == 6.0
    # a variant whose own cap is below the level can never admit them all: a short wait
    assert harness.admit_timeout(cases["echo-small"], max_clients=1) == 0.5
    assert harness.admit_timeout(cases["connections-16"], max_clients=39) == pytest.approx(2.064)
    server = type(
        "S",
        (),
        {"host": "127.0.0.1", "port": 1, "unix": None, "pid": 1, "name": "thread_per_client"},
    )()
    cfg = harness.load_config(server, cases["connections-1000"], duration=1.0, warmup=0.0)  # type: ignore[arg-type]
    assert cfg.admit_timeout == 6.0
    server.name = "blocking_loop"
    cfg = harness.load_config(server, cases["connections-1000"], duration=1.0, warmup=0.0)  # type: ignore[arg-type]
    assert cfg.admit_timeout == 0.5


def test_a_run_far_below_its_own_median_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # One slow spell on the server's CPU: thread_per_client's round 2 only; the reference
    # (generator-bound on 2 cores) did not see it, so no round is redone.
    def one_slow_run(name: str, case: str, round_no: int) -> float:
        slow = name == "thread_per_client" and round_no == 2
        return steady(name, case, round_no) * (0.6 if slow else 1.0)

    fake = FakeHarness(one_slow_run)
    data, _ = run(plan_for(MODELS, repeat=3), fake, monkeypatch)
    assert data["cases"][0].get("redone_rounds") == []
    (slow,) = [r for r in data["runs"] if r["discarded"]]
    assert slow["variant"] == "thread_per_client" and slow["round"] == 2
    assert "60% of its median" in slow["discarded"]
    (again,) = runs_of(data, rerun_of=2)
    assert again["variant"] == "thread_per_client" and again["round"] == 4
    assert again["discarded"] is None
    assert data["cases"][0]["redone_runs"] == [{"variant": "thread_per_client", "round": 2}]
    assert len(fake.calls) == 10  # 9 planned, 1 again: nobody else was re-measured


# -- disturbed runs: steal and other processes' CPU over the window (issue 18) ------------------

Foreign = Callable[[str, int], float]  # (variant, round) -> other processes' CPU, in CPUs


class NoisyHarness(FakeHarness):
    """FakeHarness whose runs record a disturbance: other processes' CPU as ``foreign`` says,
    judged as the real harness judges it."""

    def __init__(self, foreign: Foreign) -> None:
        super().__init__(steady)
        self.foreign = foreign

    def measure(self, name: str, case: Case, *, round_no: int, **kw: Any) -> harness.RunOutcome:
        out = super().measure(name, case, round_no=round_no, **kw)
        other = self.foreign(name, round_no)
        share = {"cpus": [0, 1], "steal_fraction": 0.001, "busy_cores": 1.5 + other,
                 "own_cores": 1.5, "foreign_cores": other}  # fmt: skip
        record = {"wall_s": 1.0, "run": share, "server": None, "generator": None}
        out.result["disturbance"] = record  # type: ignore[index]  # its JSON form
        out.disturbed = disturbed(record)
        return out


def test_a_disturbed_run_is_measured_again_and_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    # a neighbour took 0.4 of a CPU during thread_per_client's round-2 run, and only then
    def neighbour(name: str, round_no: int) -> float:
        return 0.4 if (name, round_no) == ("thread_per_client", 2) else 0.01

    fake = NoisyHarness(neighbour)
    data, _ = run(plan_for(MODELS, repeat=3), fake, monkeypatch)
    (noisy,) = [r for r in data["runs"] if r["disturbed"]]
    assert noisy["variant"] == "thread_per_client" and noisy["round"] == 2
    assert "other processes used 0.40 of a CPU (> 0.10)" in noisy["disturbed"]
    assert noisy["discarded"] and "disturbed" in noisy["discarded"]
    (again,) = runs_of(data, rerun_of=2)
    assert again["variant"] == "thread_per_client" and again["round"] == 4
    assert again["discarded"] is None and again["disturbed"] is None
    assert data["cases"][0]["redone_disturbed"] == [{"variant": "thread_per_client", "round": 2}]
    assert "disturbed" in data["rounds"][-1]["reason"] and data["rounds"][-1]["rerun_of"] == 2
    assert len(fake.calls) == 10  # nobody else was measured again
    record = noise.machine_disturbance(data["runs"])
    assert record["runs"] == 10 and record["disturbed"] == 1 and record["redone"] == 1
    line = noise.header_line(record)
    assert "over 10 timed runs" in line and "1 run beyond the limits" in line
    assert "1 measured again" in line


def test_a_noisy_machine_is_measured_again_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every = NoisyHarness(lambda name, round_no: 0.5 + 0.01 * round_no)  # noisy throughout
    data, _ = run(plan_for(MODELS, repeat=3), every, monkeypatch)
    redone = data["cases"][0]["redone_disturbed"]
    assert len(redone) == 2 * MAX_RERUNS  # then the machine is left to the header to say
    assert len(every.calls) == 9 + 2 * MAX_RERUNS
    again = [r for r in data["runs"] if r["rerun_of"] is not None]
    assert all(r["disturbed"] and not r["discarded"] for r in again)  # kept, and marked
    # the most disturbed first: round 3's runs (0.53), then one of round 2's (0.52)
    assert sorted(r["round"] for r in redone) == [2, 3, 3, 3]
    late, _ = run(plan_for(MODELS, repeat=3, time_cap_s=0.0), NoisyHarness(lambda n, r: 0.5),
                  monkeypatch)  # fmt: skip
    assert late["cases"][0]["redone_disturbed"] == []  # no time left: marked, not redone
    assert sum(1 for r in late["runs"] if r["disturbed"]) == 9
