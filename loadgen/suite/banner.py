"""What ``run_all.py`` prints before it measures: the plan, the machine, the warnings.

Also :func:`quiet_check_record`, the load average at the start that
results.json keeps (``environment.quiet_check``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from loadgen.suite.plan import (
    MAX_EXTRA_ROUNDS,
    MAX_RERUNS,
    QUIET_SAMPLE_S,
    QUIET_WAIT_BUDGET_S,
    RunPlan,
)

LOAD_WARN_PER_CPU = 0.5  # load average per CPU above which the start warns


def print_plan(console: Console, plan: RunPlan, data: dict[str, Any], run_dir: Path) -> None:
    env = data["environment"]
    console.print(
        f"[bold]concurrency-bench[/] profile {plan.profile}: {len(plan.variants)} variants"
        f" × {len(plan.cases)} cases ({', '.join(c.key for c in plan.cases)})"
        f" × {plan.repeat} repeats = {plan.runs} runs of {plan.warmup:g} s warm-up + "
        f"{plan.duration:g} s"
    )
    extras = f"redone rounds (≤ {MAX_RERUNS} per case), " + (
        f"--until-stable rounds (≤ {MAX_EXTRA_ROUNDS} per case), " if plan.until_stable else ""
    )
    console.print(
        f"estimated {plan.estimate_s() / 60:.1f} min (verify, every run, the reference's runs "
        f"and a {QUIET_SAMPLE_S:g} s quiet check per round); {extras}and waits for a quiet "
        f"machine (≤ {QUIET_WAIT_BUDGET_S:g} s in all) may add up to "
        f"{(plan.worst_case_s() - plan.estimate_s()) / 60:.1f} min: they stop at the "
        f"{plan.time_cap_s / 60:.1f} min time cap"
    )
    if "cluster" in env:
        console.print(
            f"cluster {env['cluster']['address']}: servers bind {env['cluster']['server_host']}; "
            "no quiet check and no counted runs across hosts"
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
    console.print(f"writing to {run_dir}\n")


def quiet_check_record() -> dict[str, Any]:
    """``environment.quiet_check``: the load average per CPU we may use, and whether we warned."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    per_cpu = load / max(1, cpus or 1)
    return {"load_per_cpu_start": round(per_cpu, 3), "warned": per_cpu > LOAD_WARN_PER_CPU}


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
