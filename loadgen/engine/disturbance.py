"""What else used the run's CPUs during the measured period: hypervisor steal, other processes.

A benchmark on a shared machine measures the machine as well as the server. Two things
take CPU time away from a run without showing in its own figures:

* **steal**: time the hypervisor ran something else while this VM's CPU wanted to run
  (``/proc/stat``, the ``steal`` column of each CPU);
* **foreign CPU**: other processes on the run's CPUs. Computed, not sampled per process
  (walking every process of the machine twice per run would cost more than it measures):

      busy    = the CPUs' time - their idle, iowait and steal time   (``/proc/stat``)
      foreign = busy - the server tree's CPU - the generator's own CPU

  The server tree's CPU is the monitor's (:mod:`loadgen.engine.monitor`), the generator's
  is its workers' (``getrusage`` over their window) plus this parent process's (the
  monitor thread included). On a tickless kernel (``NO_HZ_IDLE``, every distribution's)
  ``idle`` is counted exactly when a CPU enters and leaves idle, so ``busy`` is exact to
  the 10 ms of ``/proc/stat``'s units at each end; ``user`` and ``system`` are only tick
  samples, which is why ``busy`` is not their sum.

Kernel threads (``ksoftirqd``, ``kworker``) and the suite's own harness process count as
foreign: they are not the server or the generator, and the harness sleeps during a run.
Small negative figures are the 10 ms rounding of ``/proc/stat``, kept as measured. Under
steal ``foreign`` is a floor: a vCPU woken from idle that the host runs late counts that
wait as idle *and* as steal (the idle clock stops only when the vCPU runs again), so
``busy`` is low by up to the steal -- which is judged on its own (:data:`STEAL_MAX`).

Cheap by construction: one read of ``/proc/stat`` and one ``getrusage`` at each end of the
period, beside the monitor's own readings. The figures are ``LoadResult.disturbance``
(docs/RESULTS.md); the suite redoes a run above :data:`STEAL_MAX` or :data:`FOREIGN_MAX`
(:func:`disturbed`).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FOREIGN_MAX",
    "STEAL_MAX",
    "CpuTimes",
    "Snapshot",
    "disturbance",
    "disturbed",
    "excess",
    "parse_proc_stat",
    "steal_resolution",
    "snapshot",
]

# A run is disturbed (and the suite measures it again) beyond either limit:
# steal above 2% of a side's CPU time (the server's or the generator's CPUs), by more than
# /proc/stat's resolution (steal_resolution: 10 ms, 2% of a 0.5 s window)
STEAL_MAX = 0.02
FOREIGN_MAX = 0.10  # other processes above 0.10 of one CPU, summed over the run's CPUs
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuTimes:
    """One CPU's ``/proc/stat`` counters that say it was not running anything, in seconds."""

    idle: float
    iowait: float
    steal: float


def parse_proc_stat(text: str, hz: int = USER_HZ) -> dict[int, CpuTimes]:
    """CPU number -> its idle, iowait and steal seconds, from the text of ``/proc/stat``.

    Lines ``cpuN user nice system idle iowait irq softirq steal ...`` in units of
    ``1/hz`` s; the aggregate ``cpu`` line is skipped, and so is a CPU line too short to
    have a steal column (kernels before 2.6.11).
    """
    out: dict[int, CpuTimes] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        fields = rest.split()
        if len(fields) < 8:
            continue
        out[int(name[3:])] = CpuTimes(
            idle=int(fields[3]) / hz, iowait=int(fields[4]) / hz, steal=int(fields[7]) / hz
        )
    return out


@dataclass(frozen=True)
class Snapshot:
    """The readings at one end of the measured period."""

    at: float  # time.perf_counter()
    cpus: dict[int, CpuTimes]  # empty where /proc/stat is unreadable (not Linux)
    self_cpu_s: float  # this process's user + system CPU (its threads included)


def snapshot(path: str = "/proc/stat") -> Snapshot:
    """Read ``/proc/stat`` and this process's CPU now."""
    try:
        with open(path) as f:
            cpus = parse_proc_stat(f.read())
    except OSError:
        cpus = {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(time.perf_counter(), cpus, usage.ru_utime + usage.ru_stime)


def _share(
    before: Snapshot, after: Snapshot, cpus: Iterable[int], own_s: float | None
) -> dict[str, Any] | None:
    """Steal and foreign CPU over ``cpus`` (the ``CpuShare`` of docs/RESULTS.md)."""
    chosen = sorted(set(cpus))
    wall = after.at - before.at
    if not chosen or wall <= 0 or any(c not in before.cpus or c not in after.cpus for c in chosen):
        return None
    steal = busy = 0.0
    for c in chosen:
        a, b = before.cpus[c], after.cpus[c]
        stolen = b.steal - a.steal
        resting = (b.idle - a.idle) + (b.iowait - a.iowait) + stolen
        steal += stolen
        busy += wall - resting
    own = None if own_s is None else own_s / wall
    return {
        "cpus": chosen,
        "steal_fraction": round(steal / (wall * len(chosen)), 4),
        "busy_cores": round(busy / wall, 4),
        "own_cores": None if own is None else round(own, 4),
        "foreign_cores": None if own is None else round(busy / wall - own, 4),
    }


def disturbance(
    before: Snapshot,
    after: Snapshot,
    *,
    server_cpus: Iterable[int],
    generator_cpus: Iterable[int],
    server_cpu_s: float | None,
    generator_cpu_s: float,
) -> dict[str, Any] | None:
    """``LoadResult.disturbance``: over the run's CPUs, and over each side's when apart.

    ``generator_cpu_s`` is the workers' CPU; this process's (``self_cpu_s``) is added here.
    ``server_cpu_s`` None (the server's CPU is unknown): the foreign figures are None.
    None when ``/proc/stat`` could not be read or names none of the CPUs.
    """
    server, generator = set(server_cpus), set(generator_cpus)
    mine = generator_cpu_s + (after.self_cpu_s - before.self_cpu_s)
    both = None if server_cpu_s is None else server_cpu_s + mine
    run = _share(before, after, server | generator, both)
    if run is None:
        return None
    apart = bool(server) and bool(generator) and not server & generator
    return {
        "wall_s": round(after.at - before.at, 6),
        "run": run,
        "server": _share(before, after, server, server_cpu_s) if apart else None,
        "generator": _share(before, after, generator, mine) if apart else None,
    }


def _judged(record: Mapping[str, Any]) -> list[tuple[str, str, float | None]]:
    """(what, where, value) of every figure :func:`disturbed` judges, with its limit's key:
    steal on each side's CPUs (the run's when the sides share them), foreign over the run's."""
    run = record.get("run") or {}
    sides = [(n, s) for n in ("server", "generator") if (s := record.get(n))] or [("run", run)]
    out = [("steal", name, side.get("steal_fraction")) for name, side in sides]
    return [*out, ("foreign", "run", run.get("foreign_cores"))]


def excess(record: Mapping[str, Any] | None) -> float:
    """How many times its limit the worst figure of a run's ``disturbance`` is (0.0 when
    not measured): the runner measures the most disturbed runs again first."""
    limits = {"steal": STEAL_MAX, "foreign": FOREIGN_MAX}
    values = [v / limits[what] for what, _, v in _judged(record or {}) if v is not None]
    return max(values, default=0.0)


def steal_resolution(wall_s: float, hz: int = USER_HZ) -> float:
    """The steal fraction one ``/proc/stat`` unit (1/hz s per CPU) makes over ``wall_s``:
    a measured steal is within it of the true one (each end truncates once)."""
    return 1.0 / (hz * wall_s) if wall_s > 0 else float("inf")


def disturbed(record: Mapping[str, Any] | None) -> str | None:
    """Why a run's ``disturbance`` is beyond the limits, in words; None when it is not (or
    was not measured).

    Steal is judged on each side's CPUs (a side is the limit of its own figures), or over
    the run's CPUs when the sides share them; foreign CPU over the run's CPUs. ``/proc/stat``
    counts steal in 10 ms units, so over a 0.5 s window one unit is already 2%: steal is
    beyond its limit only when it is by more than one unit (:func:`steal_resolution`).
    """
    if not record:
        return None
    reasons = []
    margin = steal_resolution(record.get("wall_s") or 0.0)
    for what, where, value in _judged(record):
        if value is None:
            continue
        if what == "steal" and value - margin > STEAL_MAX:
            side = "the run's CPU time" if where == "run" else f"the {where}'s CPU time"
            reasons.append(f"steal {value:.1%} of {side} (> {STEAL_MAX:.0%})")
        elif what == "foreign" and value > FOREIGN_MAX:
            reasons.append(f"other processes used {value:.2f} of a CPU (> {FOREIGN_MAX:.2f})")
    return "; ".join(reasons) or None
