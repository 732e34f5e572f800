"""Where each figure of a row is read from a run record: one table, ``FIGURES``.

A run record is what ``results.json`` keeps of one measurement
(:class:`loadgen.suite.harness.RunOutcome`): ``{"result": <the engine's
JSON, docs/RESULTS.md>, "rate": ..., "memory_per_connection_bytes": ...}``.
:mod:`loadgen.report.summary` turns these figures into rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _dig(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(run: dict[str, Any]) -> float | None:
        node: Any = run
        for key in path:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return number(node)

    return get


def number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


# figure name -> how to read it from a run record ({"result": loadgen JSON, ...})
FIGURES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "throughput_rps": _dig("result", "throughput_rps"),
    "p50_us": _dig("result", "latency_us", "p50"),
    "p90_us": _dig("result", "latency_us", "p90"),
    "p99_us": _dig("result", "latency_us", "p99"),
    "p999_us": _dig("result", "latency_us", "p999"),
    "max_us": _dig("result", "latency_us", "max"),
    "p50_uncorrected_us": _dig("result", "latency_us_uncorrected", "p50"),
    "p99_uncorrected_us": _dig("result", "latency_us_uncorrected", "p99"),
    "cpu_us_per_request": _dig("result", "server", "cpu_us_per_request"),
    "cpu_user_us_per_request": _dig("result", "server", "cpu_user_us_per_request"),
    "cpu_system_us_per_request": _dig("result", "server", "cpu_system_us_per_request"),
    "server_cpu_util": _dig("result", "server", "cpu_util"),
    "server_cpus_allowed": _dig("result", "server", "cpus_allowed"),
    "context_switches_per_request": _dig("result", "server", "context_switches_per_request"),
    "syscalls_per_request": _dig("result", "server", "syscalls_per_request"),
    "memory_pss_bytes": _dig("result", "server", "memory_pss_bytes"),
    "peak_threads": _dig("result", "server", "peak_threads"),
    "peak_children": _dig("result", "server", "peak_children"),
    "peak_fds": _dig("result", "server", "peak_fds"),
    "jain": _dig("result", "fairness", "jain"),
    "starved": _dig("result", "fairness", "starved"),
    "not_admitted": _dig("result", "fairness", "not_admitted"),
    "errors_total": _dig("result", "errors_total"),
    "loadgen_cpu_util": _dig("result", "loadgen", "cpu_util_max"),
    "loadgen_cpu_us_per_request": _dig("result", "loadgen", "cpu_us_per_request"),
    "achieved_rate_ratio": _dig("result", "loadgen", "achieved_rate_ratio"),
    "slow_client_requests": _dig("result", "slow_clients", "requests"),
    "rate": _dig("rate"),
    "baseline_pss_bytes": _dig("baseline_pss_bytes"),
    "memory_per_connection_bytes": _dig("memory_per_connection_bytes"),
    "memory_per_connection_uss_bytes": _dig("result", "idle", "memory_per_connection_bytes"),
    "idle_served": _dig("result", "idle", "served"),
    "ramp_s": _dig("result", "loadgen", "ramp_s"),
    "admit_s": _dig("result", "loadgen", "admit_s"),
    # the neighbours (WORK scenarios): their own figures, apart from the victims' headline
    "neighbour_rps": _dig("result", "neighbours", "throughput_rps"),
    "neighbour_requests": _dig("result", "neighbours", "requests"),
    "neighbour_p50_us": _dig("result", "neighbours", "latency_us", "p50"),
    "neighbour_p99_us": _dig("result", "neighbours", "latency_us", "p99"),
    # a UDP load (issue 17): what became of the measured period's requests
    "lost_fraction": _dig("result", "datagram", "lost_fraction"),
    "sent_rps": _dig("result", "datagram", "sent_rps"),
    "lost": _dig("result", "datagram", "lost"),
    "late": _dig("result", "datagram", "late"),
    "duplicated": _dig("result", "datagram", "duplicated"),
    "busy": _dig("result", "datagram", "busy"),
    "kernel_drops": _dig("result", "datagram", "kernel_drops"),
    "rcvbuf_errors": _dig("result", "datagram", "kernel", "RcvbufErrors"),
}
COST_FIGURES = ("context_switches_per_request", "syscalls_per_request")  # from counted runs
RATIO = "ratio_to_reference"  # not read from a run: computed per round (_paired_ratios)

# the figures whose instability is flagged (the ones rows are ranked or read by)
STABILITY_FIGURES = {
    "throughput": ("throughput_rps", "cpu_user_us_per_request"),
    "open": ("p99_us", "cpu_user_us_per_request"),
    "memory": ("memory_per_connection_uss_bytes", "memory_per_connection_bytes"),
    "c10k": ("p99_us",),
    "wait": ("throughput_rps",),
    "cpu": ("throughput_rps", "server_cpu_util"),
    "neighbour": ("p99_us",),
    "udp": ("throughput_rps", "cpu_user_us_per_request"),
    "flood": ("lost_fraction",),
}
