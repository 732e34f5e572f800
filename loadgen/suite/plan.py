"""What one ``run_all.py`` invocation will measure: variants x scenario cases x repeats.

:func:`make_plan` turns the command line and a profile into a
:class:`RunPlan`; results.json keeps it (``plan``, and one ``cases`` record
per :class:`PlannedCase`), so a saved run says what it set out to do.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import servers
from loadgen.suite import harness
from loadgen.suite.scenarios import PROFILES, SCENARIOS, Case, Scenario, resolve


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

    @classmethod
    def of(cls, scenario: Scenario, case: Case, names: list[str]) -> PlannedCase:
        not_applicable = {n: r for n in names if (r := scenario.applies(servers.get(n)))}
        return cls(
            key=case.key,
            scenario=scenario.name,
            label=case.label,
            kind=case.kind,
            x=case.x,
            question=scenario.question,
            settings=case.describe(),
            variants=[n for n in names if n not in not_applicable],
            not_applicable=not_applicable,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    runs: int = field(init=False)  # measurements planned

    def __post_init__(self) -> None:
        self.runs = sum(len(c.variants) for c in self.cases) * self.repeat

    def to_json(self) -> dict[str, Any]:
        """results.json's ``plan`` (the cases are stored beside it, as ``cases``)."""
        return {k: v for k, v in asdict(self).items() if k not in ("cases", "runs")}

    def estimate_s(self) -> float:
        """Rough wall time of the whole plan."""
        cases = cases_by_key()
        per_round = sum(
            harness.expected_seconds(cases[c.key], self.duration, self.warmup) + self.rest
            for c in self.cases
            for _ in c.variants
        )
        return len(self.variants) * 1.0 + per_round * self.repeat


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
    skipped = {n: r for n in names if (r := servers.get(n).unavailable_reason)}
    runnable = [n for n in names if n not in skipped]
    return RunPlan(
        profile=profile.name,
        variants=runnable,
        skipped=skipped,
        scenarios=[s.name for s in scenarios],
        cases=[PlannedCase.of(s, case, runnable) for s in scenarios for case in s.cases],
        repeat=repeat,
        duration=duration,
        warmup=warmup,
        rest=profile.rest,
        seed=args.seed if args.seed is not None else random.randrange(1 << 30),
        pin=not args.no_pin,
    )


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cases_by_key() -> dict[str, Case]:
    return {c.key: c for s in SCENARIOS.values() for c in s.cases}
