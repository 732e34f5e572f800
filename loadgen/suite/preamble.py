"""What ``run_all.py`` prints and records before the first measurement.

The plan in a few lines (:func:`print_plan`), the load on the machine
(:func:`quiet_check_record`) and the descriptor limit (:func:`nofile_record`):
the suite raises its own soft ``RLIMIT_NOFILE`` to the hard limit at start, so
that every server and load generator it starts (they inherit it) may open
10,000 connections for the c10k scenario, and says so when the hard limit is
too low for that.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

from rich.console import Console

from loadgen.engine.disturbance import FOREIGN_MAX, STEAL_MAX
from loadgen.procs import raise_nofile
from loadgen.report.notes import describe_python
from loadgen.suite.plan import (
    MAX_EXTRA_ROUNDS,
    MAX_RERUNS,
    QUIET_SAMPLE_S,
    QUIET_WAIT_BUDGET_S,
    RunPlan,
)

LOAD_WARN_PER_CPU = 0.5  # load average per CPU above which the start warns
# descriptors a process needs besides its connections (listener, pipes, libraries, perf)
NOFILE_MARGIN = 256


def print_plan(plan: RunPlan, data: dict[str, Any], run_dir: Path, console: Console) -> None:
    """What is about to run, how long it may take, on what machine and interpreter."""
    env = data["environment"]
    console.print(
        f"[bold]concurrency-bench[/] profile {plan.profile}: {len(plan.variants)} variants"
        f" × {len(plan.cases)} cases ({', '.join(c.key for c in plan.cases)})"
        f" × {plan.repeat} repeats (fewer where a case caps them) = {plan.runs} runs of "
        f"{plan.warmup:g} s warm-up + {plan.duration:g} s"
    )
    extras = (
        f"redone rounds (≤ {MAX_RERUNS} per case), runs measured again when slow or "
        f"disturbed (steal > {STEAL_MAX:.0%}, other processes > {FOREIGN_MAX:.2f} CPU; "
        f"≤ {2 * MAX_RERUNS} each per case), "
    ) + (f"--until-stable rounds (≤ {MAX_EXTRA_ROUNDS} per case), " if plan.until_stable else "")
    console.print(
        f"estimated {plan.estimate_s() / 60:.1f} min (verify, every run, the reference's runs "
        f"and a {QUIET_SAMPLE_S:g} s quiet check per round); {extras}and waits for a quiet "
        f"machine (≤ {QUIET_WAIT_BUDGET_S:g} s in all) may add up to "
        f"{(plan.worst_case_s() - plan.estimate_s()) / 60:.1f} min: they stop at the "
        f"{plan.time_cap_s / 60:.1f} min time cap"
    )
    if plan.cost_table is not None:
        console.print(
            f"then the cost table ({plan.cost_table}: ~{plan.cost_table_s() / 60:.1f} min of "
            "the estimate): instructions per request under valgrind's cachegrind, two "
            "servers at a time (--no-cost-table to skip it)"
        )
    pin = env["pinning"]
    console.print(
        f"machine: {env['cpu_model']}, {env['cpu_count']} CPUs, {env['kernel']}, Python "
        f"{env['python_version']}; pinning: "
        + (f"server CPU {pin['server']}, loadgen CPU {pin['loadgen']}" if pin else "off")
        + f"; load average {', '.join(f'{x:.2f}' for x in env['load_average_start'] or [])}"
    )
    quiet = env["quiet_check"]
    if quiet["warned"]:
        console.print(
            f"[yellow bold]warning: load average {quiet['load_per_cpu_start']:.2f} per CPU "
            f"(> {LOAD_WARN_PER_CPU:g}): other work is running; figures will be lower and "
            "noisier than on a quiet machine (recorded in results.json)[/]"
        )
    short = [
        f"{c.key} ({plan.rounds(c)} round{'s' if plan.rounds(c) != 1 else ''}"
        + (
            f" of {plan.warmup_of(c):g} s warm-up + {plan.duration_of(c):g} s)"
            if c.duration or c.warmup is not None
            else ")"
        )
        for c in plan.cases
        if plan.rounds(c) < plan.repeat or c.duration or c.warmup is not None
    ]
    if short:
        console.print("fewer rounds or a shorter window: " + ", ".join(short))
    console.print("variants: " + ", ".join(plan.variants))
    if plan.reference_added:
        console.print(
            f"{plan.reference} added as the in-round reference of every throughput case "
            "(--servers did not name it; --no-reference leaves it out)"
        )
    elif plan.reference is None:
        console.print("[yellow]no in-round reference: rounds are not checked for drift[/]")
    for name, reason in plan.skipped.items():
        console.print(f"[yellow]skipped {name}: {reason}[/]")
    if plan.python:
        console.print(f"servers run under {describe_python(plan.server_python)} ({plan.python})")
    if "cluster" in env:
        console.print(
            f"cluster {env['cluster']['address']}: servers bind {env['cluster']['server_host']}; "
            "no quiet check and no counted runs across hosts"
        )
    for name, reason in plan.skipped_scenarios.items():
        console.print(f"[yellow]scenario {name} skipped: {reason}[/]")
    for c in plan.cases:
        for name, reason in c.declared_failures.items():
            console.print(f"{c.key}: {name} reported failing without a run: {reason}")
    nofile = env.get("nofile") or {}
    if nofile.get("too_low"):
        console.print(f"[yellow]{nofile['too_low']}[/]")
    console.print(f"writing to {run_dir}\n")


def quiet_check_record() -> dict[str, Any]:
    """``environment.quiet_check``: the load average per CPU we may use, and whether we warned."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    per_cpu = load / max(1, cpus or 1)
    return {"load_per_cpu_start": round(per_cpu, 3), "warned": per_cpu > LOAD_WARN_PER_CPU}


def nofile_record(plan: RunPlan) -> dict[str, Any]:
    """``environment.nofile``: raise our soft descriptor limit to the hard one (every server
    and generator started from here inherits it) and say whether that is enough for the
    planned cases; ``too_low`` is the one-line warning, or None."""
    soft_before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = raise_nofile(hard if hard != resource.RLIM_INFINITY else soft_before)
    needed = max((c.connections for c in _cases(plan)), default=0) + NOFILE_MARGIN
    too_low = None
    if hard != resource.RLIM_INFINITY and hard < needed:
        too_low = (
            f"the hard descriptor limit ({hard:,}) is below the {needed:,} a server (and the "
            f"generator, a separate process) needs for {needed - NOFILE_MARGIN:,} connections: "
            "those runs will fail with EMFILE; raise it (ulimit -Hn, limits.conf) to measure them"
        )
    infinite = resource.RLIM_INFINITY
    return {
        "soft_before": None if soft_before == infinite else soft_before,
        "soft": None if soft == infinite else soft,
        "hard": None if hard == infinite else hard,
        "needed": needed,
        "too_low": too_low,
    }


def _cases(plan: RunPlan) -> list[Any]:
    from loadgen.suite.plan import cases_by_key

    known = cases_by_key()
    return [known[c.key] for c in plan.cases if c.variants and c.key in known]


def cluster_record(address: str, server_host: str) -> dict[str, Any]:
    """``environment.cluster``: where the run went, and what a cluster run leaves out."""
    return {
        "address": address,
        "server_host": server_host,
        "skipped": {
            "quiet_check": "not across hosts: this machine's CPUs are not the hosts'",
            "counted_runs": "perf counts the server's system calls on one machine only",
        },
    }
