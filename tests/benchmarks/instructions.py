"""The benchmarks' instruction counts: the options, the measurement, the gate's verdicts.

``pytest tests/benchmarks --instructions`` counts each benchmarked server's
user-space instructions per one-at-a-time 64-byte ECHO under cachegrind
(:func:`loadgen.suite.costs.measure`, 2 estimates from 4 server runs per
variant, two servers at a time) once, before the first benchmark is timed,
and puts them into each benchmark's ``extra_info``.
``--instructions-compare[=PATH|NUM]`` (implies ``--instructions``) then
fails every benchmark whose server's figure rose by ``--instructions-fail``
(default 10%) or more over the saved baseline's
(:mod:`tests.benchmarks.gate`), and prints the comparison with the
wall-clock means beside it, reported, not gated.

Off by default: on 2 cores the counts take about two minutes for every
variant, too long for the default ``pytest``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadgen.engine import cachegrind
from loadgen.suite import costs
from tests.benchmarks import gate

# One ECHO at a time: the figure a model's own code moves most. The counts keep the four
# server runs of a variant short under valgrind; their two estimates give the spread.
PLAN = costs.CostPlan("benchmarks", ("echo",), {"echo": (50, 450)}, {"echo": 500})


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("instructions", "instructions per request (cachegrind)")
    group.addoption(
        "--instructions",
        action="store_true",
        help="count each benchmarked server's instructions per ECHO under valgrind's "
        "cachegrind before the benchmarks and keep them in extra_info",
    )
    group.addoption(
        "--instructions-compare",
        nargs="?",
        const="",
        default=None,
        metavar="PATH|NUM",
        help="fail a benchmark whose server's instructions per request rose by "
        "--instructions-fail or more over this saved run (a JSON file, or a "
        "--benchmark-autosave number such as 0001; none: the newest save); implies "
        "--instructions",
    )
    group.addoption(
        "--instructions-fail",
        default="10%",
        metavar="PCT",
        help="the rise in instructions per request that fails (default 10%%)",
    )


def wanted(config: pytest.Config) -> bool:
    return bool(config.getoption("instructions")) or baseline_spec(config) is not None


def baseline_spec(config: pytest.Config) -> str | None:
    return config.getoption("instructions_compare")


def fail_limit(config: pytest.Config) -> float:
    try:
        return gate.parse_fraction(config.getoption("instructions_fail"))
    except ValueError as exc:
        raise pytest.UsageError(f"--instructions-fail: {exc}") from None


def load_baseline(config: pytest.Config) -> dict[str, Any]:
    """The saved run ``--instructions-compare`` names (UsageError if there is none)."""
    spec = baseline_spec(config)
    assert spec is not None
    storage = Path(config.rootpath, ".benchmarks")
    try:
        return gate.figures(json.loads(gate.resolve(spec, storage).read_text()))
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--instructions-compare: {exc}") from None


def measure(names: list[str]) -> dict[str, Any]:
    """costs.measure's record for ``names`` (skipped, with the reason, without valgrind)."""
    if cachegrind.unavailable() is not None:
        return {"skipped": cachegrind.unavailable(), "variants": {}}
    return costs.measure(names, PLAN)


def verdict(
    baseline: dict[str, Any], name: str, info: dict[str, Any], mean_s: float | None, fail: float
) -> gate.Verdict:
    """This benchmark against the baseline's benchmark of the same name."""
    old = baseline.get(name, {})
    change, failed = gate.check(old.get(gate.FIGURE), info.get(gate.FIGURE), fail)
    return gate.Verdict(
        name, info.get("variant") or name, old.get(gate.FIGURE), info.get(gate.FIGURE),
        change, failed, old.get("mean_s"), mean_s,
    )  # fmt: skip


def extra_info(record: dict[str, Any], name: str) -> dict[str, Any]:
    """The keys a benchmark's extra_info gets from the measurement."""
    if record.get("skipped"):
        return {gate.FIGURE: None, "instructions_unavailable": record["skipped"]}
    echo = record["variants"].get(name, {}).get("echo", {})
    return {
        gate.FIGURE: echo.get("instructions_per_request"),
        "instructions_spread": echo.get("spread"),
        "instructions_estimates": echo.get("estimates"),
        "instructions_kind": costs.KINDS["echo"].label,
        "instructions_error": echo.get("error"),
        "syscalls_per_echo": echo.get("syscalls_per_request"),
        "context_switches_per_echo": echo.get("context_switches_per_request"),
    }
