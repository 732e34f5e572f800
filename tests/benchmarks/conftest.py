"""The benchmarks' instruction counts and their gate (:mod:`tests.benchmarks.instructions`):
measured once per session before the first benchmark is timed, compared per benchmark, and
the comparison printed at the end."""

from __future__ import annotations

from typing import Any

import pytest

from tests.benchmarks import gate, instructions

VERDICTS = pytest.StashKey[list[gate.Verdict]]()


def benchmarked_variants(session: pytest.Session) -> list[str]:
    """The variants of the collected ``test_echo_small`` items, in their order."""
    names: list[str] = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "originalname", "") == "test_echo_small" and callspec is not None:
            name = callspec.params.get("bench_server")
            if name and name not in names:
                names.append(name)
    return names


@pytest.fixture(scope="session")
def instruction_counts(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """costs.measure's record for every benchmarked variant, or None without --instructions."""
    if not instructions.wanted(request.config):
        return None
    return instructions.measure(benchmarked_variants(request.session))


@pytest.fixture(scope="session")
def instruction_gate(request: pytest.FixtureRequest) -> tuple[dict[str, Any], float] | None:
    """(the baseline's figures by benchmark name, the failing rise), or None: no gate."""
    if instructions.baseline_spec(request.config) is None:
        return None
    return instructions.load_baseline(request.config), instructions.fail_limit(request.config)


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Any:
    def record(verdict: gate.Verdict) -> None:
        request.config.stash.setdefault(VERDICTS, []).append(verdict)

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    verdicts = config.stash.get(VERDICTS, [])
    if verdicts:
        terminalreporter.section("instructions per request vs the baseline")
        for line in gate.report(verdicts, instructions.fail_limit(config)):
            terminalreporter.write_line(line)
