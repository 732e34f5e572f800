"""What ``run_all.py`` prints before it measures: the plan, its time, the machine.

Kept out of :mod:`loadgen.suite.runner` so that the rounds loop stays readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from loadgen.suite.notes import describe_python
from loadgen.suite.plan import (
    MAX_EXTRA_ROUNDS,
    MAX_RERUNS,
    QUIET_SAMPLE_S,
    QUIET_WAIT_BUDGET_S,
    RunPlan,
)

LOAD_WARN_PER_CPU = 0.5  # load average per CPU above which the start warns


def print_plan(console: Console, plan: RunPlan, data: dict[str, Any], run_dir: Path) -> None:
    """What is about to run, how long it may take, on what machine and interpreter."""
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
    if plan.python:
        console.print(f"servers run under {describe_python(plan.server_python)} ({plan.python})")
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
