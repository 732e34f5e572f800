"""Which side limited one measured run: the server, the load generator, both, or neither.

The engine classifies every run it measures (the result's ``"bottleneck"``);
the suite (:mod:`loadgen.suite.ranking`) reuses the same rule for a row of
repeats.  Pure function over CPU fractions: no I/O.

A run is ``server`` when the server tree used at least :data:`SATURATED` of
the CPUs it may use (its affinity: pinned to one CPU means 1) and no
generator worker reached that fraction of its core; ``generator`` the other
way round; ``both`` when both did; ``neither`` when nobody was CPU-bound
(latency-bound: one connection waits for wake-ups, not CPU).  A worker is one
process, so at most one core; the generator is saturated if ANY worker is,
because that worker's connections wait for it.
"""

from __future__ import annotations

from collections.abc import Sequence

SATURATED = 0.9  # a CPU at or above this fraction of its capacity is the limit
BOTTLENECKS = ("server", "generator", "both", "neither")


def classify_bottleneck(
    server_cores: float,
    server_cpus: float,
    generator_cores: Sequence[float],
    threshold: float = SATURATED,
) -> str:
    """``"server" | "generator" | "both" | "neither"`` for one measured run.

    ``server_cores``: CPU seconds of the server tree per second; ``server_cpus``: how many CPUs
    it may run on; ``generator_cores``: each load-generator worker's CPU seconds per second.
    """
    if server_cpus <= 0:
        raise ValueError(f"server_cpus must be > 0, got {server_cpus}")
    if not generator_cores:
        raise ValueError("no generator worker measured")
    server = server_cores / server_cpus >= threshold
    generator = max(generator_cores) >= threshold
    if server and generator:
        return "both"
    if server:
        return "server"
    return "generator" if generator else "neither"
