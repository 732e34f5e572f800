"""Which side limited one measured run: the server, the load generator, both, or neither.

The engine classifies every run it measures (the result's ``"bottleneck"``);
the suite (:mod:`loadgen.report.ranking`) reuses the same rule for a row of
repeats.  Pure function over CPU fractions: no I/O.

A run is ``server`` when the server tree used at least :data:`SATURATED` of
the CPUs it may use (its affinity: pinned to one CPU means 1) and no
generator worker reached that fraction of its core; ``generator`` the other
way round; ``both`` when both did; ``neither`` when nobody was CPU-bound
(latency-bound: one connection waits for wake-ups, not CPU).  A worker is one
process, so at most one core; the generator is saturated if ANY worker is,
because that worker's connections wait for it.

CPU alone over-calls the generator: a generator busy at 0.9 of a core is not
necessarily the limit, since it polls more per request when the server is
slower (issue 18: the reference's top echo-small rows were ``both`` while 15
to 25% below the generator's own ceiling).  :func:`capacity_rule` adds the
generator's capacity: where the suite measured the generator's ceiling in
the same round (``native_epoll``'s req/s), a run counts as generator-limited
only if its req/s came within :data:`NEAR_CEILING` of it.
"""

from __future__ import annotations

from collections.abc import Sequence

SATURATED = 0.9  # a CPU at or above this fraction of its capacity is the limit
BOTTLENECKS = ("server", "generator", "both", "neither")
NEAR_CEILING = 0.9  # generator-limited only at >= 90% of its ceiling (within 10%)


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


def capacity_rule(
    cpu_class: str, throughput: float | None, ceiling: float | None, near: float = NEAR_CEILING
) -> str:
    """The CPU rule's class, with the generator's capacity: ``generator`` and ``both`` stand
    only when ``throughput`` is at least ``near`` × ``ceiling`` (the generator's own req/s
    against the reference in the same round); below it the generator was not the limit, so
    ``both`` becomes ``server`` and ``generator`` becomes ``neither``. Unchanged when the
    ceiling or the throughput is unknown.
    """
    if cpu_class not in ("generator", "both") or throughput is None or not ceiling:
        return cpu_class
    if throughput >= near * ceiling:
        return cpu_class
    return "server" if cpu_class == "both" else "neither"
