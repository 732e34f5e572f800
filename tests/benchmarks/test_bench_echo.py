"""pytest-benchmark: a fixed number of ECHO requests against every registered variant.

    pytest tests/benchmarks --benchmark-json results/ci/benchmark.json
    pytest tests/benchmarks --benchmark-autosave                  # save a baseline
    pytest tests/benchmarks --benchmark-compare --benchmark-compare-fail=mean:10%

One benchmark per variant of the registry (a new variant gets one without
editing this file), against a server started once per variant by a module
fixture, pinned apart from the client when there are two CPUs.  The timed
function sends exactly ``REQUESTS`` 64-byte ECHO requests (16 connections,
8 in flight on each; one connection for a variant that serves one client at
a time) through :class:`~tests.benchmarks.echo_driver.EchoDriver`, whose
connections are opened before timing starts and whose per-request Python
work is one slice of a ``sendall`` and of a byte comparison.  So
pytest-benchmark's own mean is the time the server takes for ``REQUESTS``
requests, its OPS is rounds per second (× ``REQUESTS`` = requests/s), and
``--benchmark-compare-fail=mean:10%`` catches a server that got slower.

The load generator's figures (throughput, p99, server CPU µs per request,
saturation) come from one short run of the real generator per variant,
outside the timed function, and are in ``extra_info``.  These are
measurements, not tests of speed: the only assertions are correctness --
every reply byte right, zero generator errors, requests served.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import servers
from loadgen.suite import harness
from loadgen.suite.launch import RunningServer, start_server
from loadgen.suite.scenarios import SCENARIOS
from tests.benchmarks import instructions
from tests.benchmarks.echo_driver import EchoDriver
from tests.conftest import ALL_VARIANTS

ECHO_SMALL = SCENARIOS["echo-small"].cases[0]
REQUESTS = 8192  # per timed round: 16 connections x 8 in flight x 64 batches
CONNECTIONS = 16
PIPELINE = 8
SIZE = 64
ROUNDS = 10  # timed rounds per variant (~20-100 ms each on a 2-core VM)
WARMUP_ROUNDS = 2
GEN_WARMUP_S = 0.2  # the generator's run for extra_info
GEN_DURATION_S = 0.5


@pytest.fixture(scope="module", params=ALL_VARIANTS)
def bench_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[servers.Variant, RunningServer, harness.Pinning | None]]:
    variant = servers.get(request.param)
    root: Path = tmp_path_factory.mktemp(f"bench-{variant.name}")
    pinning = harness.Pinning.choose()
    with start_server(variant.name, root, cpus=pinning.server if pinning else None) as server:
        yield variant, server, pinning
        assert server.process.poll() is None, "the server died during the benchmark"


def generator_figures(
    variant: servers.Variant, server: RunningServer, pinning: harness.Pinning | None
) -> dict:
    """One short run of the real load generator: the figures kept in ``extra_info``."""
    # A variant with a hard cap (blocking_loop: one client) gets as many
    # connections as it can hold: the benchmark measures, it does not fail it
    # (run_all.py's connections scenario shows where it fails).
    connections = min(ECHO_SMALL.connections, variant.max_clients or ECHO_SMALL.connections)
    case = dataclasses.replace(ECHO_SMALL, connections=connections)
    result, error = harness.run_load(
        server, case, duration=GEN_DURATION_S, warmup=GEN_WARMUP_S, pinning=pinning
    )
    assert error is None, error
    assert result is not None
    r = result.to_dict()
    assert r["errors_total"] == 0, r["errors"]
    assert r["requests"] > 0
    srv = r.get("server") or {}
    return {
        "loadgen_connections": connections,
        "throughput_rps": r["throughput_rps"],
        "p99_us": r["latency_us"]["p99"],
        "server_cpu_us_per_request": srv.get("cpu_us_per_request"),
        "server_cpu_user_us_per_request": srv.get("cpu_user_us_per_request"),
        "saturated": r["loadgen"]["saturated"],
        "errors_total": r["errors_total"],
        "starved_connections": r["fairness"]["starved"],
    }


@dataclasses.dataclass
class PinnedHere:
    """This process on the client's CPUs for the timed rounds, its old affinity restored after."""

    cpus: tuple[int, ...] | None

    def __enter__(self) -> None:
        self.saved = os.sched_getaffinity(0) if self.cpus else None
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.sched_setaffinity(0, self.saved)


def test_echo_small(  # type: ignore[no-untyped-def]
    benchmark, bench_server, instruction_counts, instruction_gate, record_verdict
) -> None:
    variant, server, pinning = bench_server
    info = generator_figures(variant, server, pinning)  # before: blocking_loop holds one client
    connections = 1 if variant.max_clients == 1 else CONNECTIONS
    driver = EchoDriver(
        server.host,
        server.port,
        requests=REQUESTS,
        connections=connections,
        pipeline=PIPELINE,
        size=SIZE,
    )
    with PinnedHere(pinning.loadgen if pinning else None), driver:
        answered = benchmark.pedantic(driver.run, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert answered == REQUESTS
    stats = getattr(benchmark.stats, "stats", None)  # None under --benchmark-disable
    benchmark.extra_info.update(
        {
            "variant": variant.name,
            "family": variant.family,
            "requests_per_round": REQUESTS,
            "connections": connections,
            "pipeline": PIPELINE,
            "size": SIZE,
            "timed_rps": REQUESTS / stats.mean if stats and stats.mean else None,
            **info,
            "pinned": dataclasses.asdict(pinning) if pinning else None,
        }
    )
    if instruction_counts is not None:  # --instructions: counted before the first benchmark
        benchmark.extra_info.update(instructions.extra_info(instruction_counts, variant.name))
    if instruction_gate is not None:
        baseline, fail = instruction_gate
        verdict = instructions.verdict(
            baseline, benchmark.name, benchmark.extra_info, stats.mean if stats else None, fail
        )
        record_verdict(verdict)
        if verdict.failed:
            pytest.fail(
                f"{variant.name}: instructions per request rose {verdict.change:+.2%} "
                f"({verdict.baseline:,.0f} -> {verdict.current:,.0f}), the limit is +{fail:.0%}"
            )
