"""What one ``run_all.py`` invocation will measure: variants x scenario cases x repeats.

:func:`make_plan` turns the command line and a profile into a
:class:`RunPlan`; results.json keeps it (``plan``, and one ``cases`` record
per :class:`PlannedCase`), so a saved run says what it set out to do.

Noise control (the numbers below) is planned here too, so that the
estimate printed before the run counts it: the reference measured in every
round of every throughput case, a quiet check before each round, rounds
redone when the reference drifts, and ``--until-stable`` rounds -- the last
two only while the run stays under the profile's time cap.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import servers
from loadgen.suite import harness
from loadgen.suite.launch import probe_python
from loadgen.suite.scenarios import (
    CORE_LEVELS,
    PROFILES,
    SCENARIOS,
    Case,
    Profile,
    Scenario,
    resolve,
)

# The in-round reference: measured beside the variants in every round of every
# throughput case, so a round where the machine was slow shows in its figure.
REFERENCE = "native_epoll"
QUIET_SAMPLE_S = 0.5  # CPU sample before each round
QUIET_BUSY = 0.10  # others using more than this share of our CPUs: wait
QUIET_MAX_WAIT_S = 10.0  # per round ...
QUIET_WAIT_BUDGET_S = 60.0  # ... and in all (and never past the time cap): a busy
# machine delays a run, it does not stall it
DRIFT_FRACTION = 0.15  # a round whose reference is this far below its median is redone
MAX_RERUNS = 2  # redone rounds per case
UNTIL_STABLE_CI = 0.05  # ±5% of the centre
MAX_EXTRA_ROUNDS = 3  # --until-stable rounds per case
# Cost counters (context switches, system calls by name) come from one short
# counted run per (case, variant) after the timed rounds, never from a timed
# run: perf attached to a thread-per-client server cut its throughput to a
# quarter (docs/RESULTS.md, "Cost counters"), while the counts per request
# need no long window.
COUNT_WARMUP_S = 0.2
COUNT_DURATION_S = 0.5
RUN_OVERHEAD_S = 0.6  # server start, interpreter start-up, stop (measured, see expected_seconds)


@dataclass
class PlannedCase:
    """One scenario case as planned: which variants run it and which it does not apply to."""

    key: str
    scenario: str
    label: str
    kind: str
    x: int | None
    question: str
    settings: str  # the case's settings as python -m loadgen options (Case.describe)
    variants: list[str]
    not_applicable: dict[str, str]  # variant -> why
    rate_basis: str | None = None  # open loop: "own" | "common" (Case.rate_basis)
    # variant -> its declared client cap, below the case's connections: shown failing, not run
    declared_failures: dict[str, str] = field(default_factory=dict)
    max_repeat: int | None = None  # Case.max_repeat
    server_cpus: int | None = None  # Case.server_cpus
    transport: str = "tcp"  # "tcp" | "unix" (Case.transport)
    tcp_case: str | None = None  # a unix case: its TCP twin, shown beside it (Case.tcp_case)
    connections: int | None = None  # Case.connections (backend-wait's ideal divides by it)
    work: str | None = None  # workload work: KIND:AMOUNT of every request (Case.work)
    neighbours: int = 0  # Case.neighbours: connections that send neighbour_work instead
    neighbour_work: str | None = None  # Case.neighbour_work
    all_cpus: bool = False  # Case.all_cpus: the server on every CPU, the generator sharing them
    baseline: str | None = None  # Case.baseline: the case whose figures each row shows beside
    duration: float | None = None  # measured seconds of its runs, when the profile trims it
    warmup: float | None = None  # warm-up seconds of its runs, when the profile trims it

    @classmethod
    def of(
        cls, scenario: Scenario, case: Case, names: list[str], reference: str | None = None
    ) -> PlannedCase:
        """``reference``: measured in this case too when it is a throughput case."""
        # a TCP case takes the stream variants only, a UDP case the datagram ones: the rest
        # are not "not applicable", they are another table's (no line in this one)
        names = [n for n in names if _same_transport(case, n)]
        not_applicable = {n: r for n in names if (r := _applies(scenario, case, n))}
        declared = {n: r for n in names if n not in not_applicable and (r := _over_cap(case, n))}
        if reference and case.kind == "throughput" and reference not in names:
            if not scenario.applies(servers.get(reference)):
                names = [*names, reference]
        return cls(
            key=case.key,
            scenario=scenario.name,
            label=case.label,
            kind=case.kind,
            x=case.x,
            question=scenario.question,
            settings=case.describe(),
            variants=[n for n in names if n not in not_applicable and n not in declared],
            not_applicable=not_applicable,
            rate_basis=case.rate_basis,
            declared_failures=declared,
            max_repeat=case.max_repeat,
            server_cpus=case.server_cpus,
            transport=case.transport,
            tcp_case=case.tcp_case,
            connections=case.connections,
            work=case.work,
            neighbours=case.neighbours,
            neighbour_work=case.neighbour_work,
            all_cpus=case.all_cpus,
            baseline=case.baseline,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _same_transport(case: Case, name: str) -> bool:
    """A udp case is for the datagram variants, every other case for the stream ones."""
    return (case.transport == "udp") == (servers.get(name).transport == "udp")


def _applies(scenario: Scenario, case: Case, name: str) -> str | None:
    """Why ``name`` does not run ``case`` (None: it does)."""
    variant = servers.get(name)
    if case.rate_basis == "common":
        # One rate for the models that can hold 64 clients at once: a
        # one-at-a-time server cannot, and the reference is not a model.
        if variant.is_reference:
            return "the common rate is set for the models, not the reference"
        if not variant.concurrent:
            return f"serves one client at a time: cannot hold {case.connections} connections"
    return scenario.applies(variant)


def _over_cap(case: Case, name: str) -> str | None:
    """c10k: why ``name`` is sure to fail (its declared client cap is below the level), or None.

    A run that cannot succeed would cost ~10,000 connects; the registry's own cap says
    why it fails as well as a run would.  Other kinds run such variants: their failure
    at a level is cheap and measured.
    """
    cap = servers.get(name).client_cap()
    if case.kind != "c10k" or cap is None or cap[0] >= case.connections:
        return None
    return f"{cap[1]}: cannot hold {case.connections:,} connections (declared, not run)"


def core_levels(cpus: list[int]) -> list[int]:
    """The cores scenario's server-CPU levels on a machine: those up to half its CPUs."""
    return [n for n in CORE_LEVELS if n <= len(cpus) // 2]


@dataclass
class RunPlan:
    profile: str
    variants: list[str]  # runnable variants, in registry order
    skipped: dict[str, str]  # unavailable here -> why
    scenarios: list[str]
    cases: list[PlannedCase]
    repeat: int
    duration: float  # measured seconds per run
    warmup: float
    rest: float  # pause between runs
    seed: int  # of the shuffled order
    pin: bool
    reference: str | None = None  # measured in every round of throughput cases (drift)
    reference_added: bool = False  # ... although --servers did not name it
    until_stable: bool = False
    time_cap_s: float = 0.0  # no extra round starts if it would end the run after this
    count_costs: bool = True  # one counted run per (throughput case, variant) at the end
    # the cases whose costs are counted (Profile.counted); None: every throughput case
    counted: tuple[str, ...] | None = None
    server_cpus: int = 1  # --server-cpus: CPUs the server may use (the generator: the rest)
    skipped_scenarios: dict[str, str] = field(default_factory=dict)  # not run here -> why
    python: str | None = None  # --python: the interpreter that runs the servers (None: this one)
    server_python: dict[str, Any] | None = None  # its version, implementation, gil_enabled
    # the cost table's plan (loadgen.suite.costs.PLANS) after the timed rounds; None: none
    cost_table: str | None = None
    runs: int = field(init=False)  # measurements planned

    def __post_init__(self) -> None:
        self.runs = sum(len(c.variants) * self.rounds(c) for c in self.cases)

    def rounds(self, record: PlannedCase) -> int:
        """The planned rounds of a case: the profile's repeats, or fewer (``max_repeat``)."""
        return min(self.repeat, record.max_repeat or self.repeat)

    def duration_of(self, record: PlannedCase) -> float:
        """Measured seconds of a case's runs: the plan's, or the profile's trim of it."""
        return record.duration or self.duration

    def warmup_of(self, record: PlannedCase) -> float:
        """Warm-up seconds of a case's runs: the plan's, or the profile's trim of it."""
        return self.warmup if record.warmup is None else record.warmup

    def to_json(self) -> dict[str, Any]:
        """results.json's ``plan`` (the cases are stored beside it, as ``cases``)."""
        return {k: v for k, v in asdict(self).items() if k not in ("cases", "runs")}

    def round_s(self, record: PlannedCase) -> float:
        """Rough wall time of one round of one case: quiet check + every variant's run."""
        case = cases_by_key()[record.key]
        run = harness.expected_seconds(case, self.duration_of(record), self.warmup_of(record))
        run += self.rest
        return QUIET_SAMPLE_S + run * len(record.variants)

    def estimate_s(self) -> float:
        """Rough wall time of the planned rounds (verify, reference runs, quiet checks) and
        of the counted runs."""
        rounds = sum(self.round_s(c) * self.rounds(c) for c in self.cases)
        return len(self.variants) * 1.0 + rounds + self.after_rounds_s()

    def after_rounds_s(self) -> float:
        """Rough wall time of what runs after the timed rounds: the counted runs and the
        cost table (the time cap keeps room for both)."""
        return self.counting_s() + self.cost_table_s()

    def cost_table_s(self) -> float:
        """Rough wall time of the cost table (loadgen.suite.costs.estimate_s)."""
        if self.cost_table is None:
            return 0.0
        from loadgen.suite import costs  # imports the client and the counters: only here

        streams = [n for n in self.variants if servers.get(n).transport == "tcp"]
        return costs.estimate_s(streams, costs.PLANS[self.cost_table])

    def counted_cases(self) -> list[PlannedCase]:
        """The cases whose cost counters are measured: throughput cases, not the
        connection levels (their 64 is echo-small's, the rest would double a full run)
        nor the server-CPU levels (the same load as echo-small); only the profile's
        ``counted`` cases when it names them."""
        if not self.count_costs:
            return []
        skip = ("connections", "cores")
        return [
            c
            for c in self.cases
            # udp-echo's table is its costs beside TCP's: always counted
            if c.kind == "udp"
            or c.kind == "throughput"
            and c.scenario not in skip
            and (self.counted is None or c.key in self.counted)
        ]

    def counting_s(self) -> float:
        """Rough wall time of the counted runs (short: a count needs no long window)."""
        per_run = COUNT_WARMUP_S + COUNT_DURATION_S + RUN_OVERHEAD_S
        return sum(len(c.variants) for c in self.counted_cases()) * per_run

    def extra_rounds_s(self) -> float:
        """Rough wall time of every extra round and run allowed (before the time cap cuts
        them): rounds redone for drift, --until-stable rounds, and single runs measured
        again (2 x MAX_RERUNS each: slow ones in throughput cases, disturbed ones in every
        timed case)."""
        total = 0.0
        for c in self.cases:
            extra = MAX_RERUNS if self.drift_checked(c) else 0
            extra += MAX_EXTRA_ROUNDS if self.until_stable and c.kind == "throughput" else 0
            runs = 2 * MAX_RERUNS * ((c.kind == "throughput") + (c.kind != "memory"))
            total += (extra + runs / max(1, len(c.variants))) * self.round_s(c)
        return total

    def worst_case_s(self) -> float:
        """The longest the run may take (at the estimated pace): quiet waits and extra
        rounds stop at the time cap."""
        extra = self.extra_rounds_s() + QUIET_WAIT_BUDGET_S
        return max(self.estimate_s(), min(self.estimate_s() + extra, self.time_cap_s))

    def drift_checked(self, record: PlannedCase) -> bool:
        """Whether the case's rounds are checked against the reference (and redone)."""
        return record.kind == "throughput" and self.reference in record.variants


def make_plan(args: argparse.Namespace) -> RunPlan:
    """The plan the command line asks for; KeyError/ValueError with a message if it cannot be."""
    profile = PROFILES[args.profile]
    names = _split(args.servers) or [n for n, v in servers.REGISTRY.items() if v.family != "test"]
    for name in names:
        servers.get(name)  # KeyError with the known names
    scenarios = resolve(_split(args.scenarios) or list(profile.scenarios))
    repeat = args.repeat if args.repeat is not None else profile.repeat
    duration = args.duration if args.duration is not None else profile.duration
    warmup = args.warmup if args.warmup is not None else profile.warmup
    if repeat < 1 or duration <= 0 or warmup < 0:
        raise ValueError("--repeat must be >= 1, --duration > 0, --warmup >= 0")
    if getattr(args, "no_reference", False) and not _split(args.servers):
        names = [n for n in names if n != REFERENCE]
    python = getattr(args, "python", None)
    probed = probe_python(python) if python else {"python": servers.interpreter()}
    unavailable = probed.get("unavailable") or {}
    skipped = {
        n: f"{r} (under {python})" if python else r
        for n in names
        if (r := unavailable.get(n) if python else servers.get(n).unavailable_reason)
    }
    runnable = [n for n in names if n not in skipped]
    reference = _reference(args, runnable)
    if reference in skipped:  # unavailable under --python
        reference = None
    server_cpus = getattr(args, "server_cpus", None) or 1
    cluster = getattr(args, "cluster", None)
    if not cluster:  # across hosts the server host has CPUs of its own (docs/CLUSTER.md)
        harness.Pinning.choose(not args.no_pin, server_cpus)  # ValueError: no CPU left
    unpinned = (
        "it pins the server to 1, 2, 4 ... CPUs: --no-pin was given"
        if args.no_pin
        else "not across hosts yet: give the server host's CPUs with --server-cpus instead"
        if cluster
        else None
    )
    levels, skipped_scenarios = _cpu_levels(scenarios, unpinned)
    for s in scenarios:
        if cluster and any(c.transport == "udp" for c in s.cases):
            skipped_scenarios[s.name] = (
                "not across hosts: a UDP load is sent to this machine only (loopback)"
            )
        if cluster and any(c.all_cpus for c in s.cases):
            skipped_scenarios[s.name] = (
                "not across hosts yet: the server host runs the server on its first "
                "--server-cpus CPUs, not on all of them"
            )
    asked = _split(args.scenarios) or list(profile.scenarios)
    if _siblings_only(scenarios, asked):
        # echo-small is here only for udp-echo's TCP figures: the datagram variants' TCP
        # siblings (the reference among them) are all it needs to measure
        udp = [n for n in runnable if servers.get(n).transport == "udp"]
        runnable = _with_siblings(udp, skipped)
    cases = [
        PlannedCase.of(s, case, runnable, reference)
        for s in scenarios
        if s.name not in skipped_scenarios
        for case in s.cases
        if case.server_cpus is None or case.server_cpus in levels
    ]
    # a variant of a transport no planned case uses is neither verified nor listed
    used = {"udp" if c.transport == "udp" else "tcp" for c in cases}
    runnable = [n for n in runnable if servers.get(n).transport in used]
    skipped = {n: r for n, r in skipped.items() if servers.get(n).transport in used}
    if not _split(args.scenarios):  # the profile's own list: its budget, its short versions
        _trim(cases, profile, args)
    added = reference is not None and reference not in runnable
    if added and any(reference in c.variants for c in cases):
        runnable.append(reference)  # verified like any other
    until_stable = getattr(args, "until_stable", None)
    return RunPlan(
        profile=profile.name,
        variants=runnable,
        skipped=skipped,
        scenarios=[s.name for s in scenarios],
        cases=cases,
        repeat=repeat,
        duration=duration,
        warmup=warmup,
        rest=profile.rest,
        seed=args.seed if args.seed is not None else random.randrange(1 << 30),
        pin=not args.no_pin,
        reference=reference,
        reference_added=added,
        until_stable=profile.until_stable if until_stable is None else until_stable,
        time_cap_s=profile.time_cap_s,
        count_costs=not getattr(args, "no_counters", False),
        counted=profile.counted,
        server_cpus=server_cpus,
        skipped_scenarios=skipped_scenarios,
        python=python,
        server_python=probed["python"],
        cost_table=_cost_table(args, profile),
    )


def _cost_table(args: argparse.Namespace, profile: Profile) -> str | None:
    """The cost table's plan: the profile's when it runs its own scenarios (or with
    ``--cost-table``), none with ``--no-cost-table``, with ``--scenarios`` (a run of a few
    scenarios asks about those) or across hosts (the counts are this machine's servers')."""
    wanted = getattr(args, "cost_table", None)
    if wanted is None:
        wanted = not _split(args.scenarios)
    if not wanted or getattr(args, "cluster", None):
        return None
    return profile.costs or "quick"


def _siblings_only(scenarios: list[Scenario], asked: list[str]) -> bool:
    """True when echo-small runs only because udp-echo needs it (its TCP siblings' figures)."""
    needers = {s.name for s in scenarios if "echo-small" in s.needs}
    return "echo-small" not in asked and bool(needers) and needers <= {"udp-echo"}


def _with_siblings(runnable: list[str], skipped: dict[str, str]) -> list[str]:
    """The datagram variants ``runnable`` plus their TCP siblings, in registry order (a
    sibling unavailable here is left out; udp-echo then shows no TCP figure for it)."""
    wanted = set(runnable) | {
        sib for n in runnable if (sib := servers.get(n).tcp_sibling) and sib not in skipped
    }
    return [n for n in servers.REGISTRY if n in wanted and servers.get(n).available]


def _trim(cases: list[PlannedCase], profile: Profile, args: argparse.Namespace) -> None:
    """The profile's short versions of its scenarios or cases (``Profile.trims``, by case
    key first, then scenario): fewer rounds, a
    shorter window and warm-up, so that the profile keeps its time; an explicit
    ``--repeat``, ``--duration`` or ``--warmup`` wins over the trim, and scenarios named
    with ``--scenarios`` are not trimmed (they run at the profile's settings)."""
    for record in cases:
        trim = profile.trims.get(record.key) or profile.trims.get(record.scenario)
        if trim is None:
            continue
        if args.repeat is None:
            record.max_repeat = min(record.max_repeat or trim.repeat, trim.repeat)
        if args.duration is None:
            record.duration = trim.duration
        if args.warmup is None and trim.warmup is not None:
            record.warmup = trim.warmup


def _cpu_levels(
    scenarios: list[Scenario], unpinned: str | None
) -> tuple[list[int], dict[str, str]]:
    """The server-CPU levels this machine allows, and the scenarios that need levels but
    get fewer than two (name -> why: printed, and kept in results.json); ``unpinned``:
    why the server is not pinned here (every such scenario is skipped), or None."""
    cpus = harness.usable_cpus()
    levels = core_levels(cpus)
    skipped = {}
    for s in scenarios:
        if not any(c.server_cpus is not None for c in s.cases):
            continue
        if unpinned:
            skipped[s.name] = unpinned
        elif len(levels) < 2:
            skipped[s.name] = (
                f"needs 2 or more levels of server CPUs (1, 2, 4 ... up to half the CPUs): "
                f"this run may use {len(cpus)} CPU(s), which gives "
                + (f"only {levels[0]}" if levels else "none")
            )
    return levels, skipped


def _reference(args: argparse.Namespace, runnable: list[str]) -> str | None:
    """The in-round reference, or None (--no-reference, or it cannot run here)."""
    if getattr(args, "no_reference", False) or REFERENCE not in servers.REGISTRY:
        return None
    if REFERENCE in runnable or servers.get(REFERENCE).available:
        return REFERENCE
    return None


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cases_by_key() -> dict[str, Case]:
    return {c.key: c for s in SCENARIOS.values() for c in s.cases}
