"""pytest-benchmark: echo-small against every registered variant, about a second each.

    pytest tests/benchmarks --benchmark-json results/ci/benchmark.json
    pytest tests/benchmarks --benchmark-compare         # against the previous saved run

One benchmark per variant of the registry (a new variant gets one without
editing this file), each a single ``benchmark.pedantic`` round that runs the
real load generator (``python -m loadgen``, 64-byte ECHO, 64 connections,
0.3 s warm-up + 1 s measured) against a server started once per variant by a
fixture, pinned apart from the generator when there are two CPUs.

pytest-benchmark's own timing is the wall time of that round (~1.5 s) and
means little; the figures are in ``extra_info``: throughput, p99, server
CPU µs per request and whether the generator was saturated.  These are
measurements, not tests of speed: the only assertions are correctness --
every reply was right (zero errors) and requests were served.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

import servers
from loadgen.suite import harness
from loadgen.suite.launch import RunningServer, start_server
from loadgen.suite.scenarios import SCENARIOS
from tests.conftest import ALL_VARIANTS

ECHO_SMALL = SCENARIOS["echo-small"].cases[0]
WARMUP_S = 0.3
DURATION_S = 1.0


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


def test_echo_small(benchmark, bench_server) -> None:  # type: ignore[no-untyped-def]
    variant, server, pinning = bench_server
    # A variant with a hard cap (blocking_loop: one client) gets as many
    # connections as it can hold: the benchmark measures, it does not fail it
    # (run_all.py's connections scenario shows where it fails).
    connections = min(ECHO_SMALL.connections, variant.max_clients or ECHO_SMALL.connections)
    case = dataclasses.replace(ECHO_SMALL, connections=connections)

    def once() -> dict:
        result, error = harness.run_load(
            server, case, duration=DURATION_S, warmup=WARMUP_S, pinning=pinning
        )
        assert error is None, error
        assert result is not None
        return result.to_dict()

    result = benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=0)
    srv = result.get("server") or {}
    benchmark.extra_info.update(
        {
            "variant": variant.name,
            "family": variant.family,
            "connections": connections,
            "throughput_rps": result["throughput_rps"],
            "p99_us": result["latency_us"]["p99"],
            "server_cpu_us_per_request": srv.get("cpu_us_per_request"),
            "server_cpu_user_us_per_request": srv.get("cpu_user_us_per_request"),
            "saturated": result["loadgen"]["saturated"],
            "errors_total": result["errors_total"],
            "starved_connections": result["fairness"]["starved"],
            "pinned": dataclasses.asdict(pinning) if pinning else None,
        }
    )
    assert result["errors_total"] == 0, result["errors"]
    assert result["requests"] > 0
