"""Running a plan: verify every variant, then measure each case, round after round.

Each (case, variant) is measured on a freshly started server
(:func:`loadgen.suite.harness.measure`), in a shuffled order each round;
each measurement is appended to disk as soon as it is done, and the report
is written at the end or on Ctrl-C (:mod:`loadgen.suite.results`).
"""

from __future__ import annotations

import argparse
import random
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import servers
from loadgen.suite import harness, results
from loadgen.suite import summary as sm
from loadgen.suite.plan import RunPlan, cases_by_key
from loadgen.suite.scenarios import Case

# Piped output (CI logs, tests) gets a wide console so tables are not squeezed to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=180)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def execute(plan: RunPlan, args: argparse.Namespace) -> int:
    pinning = harness.Pinning.choose(plan.pin)
    data: dict[str, Any] = {
        "command": "python run_all.py " + shlex.join(sys.argv[1:]),
        "partial": True,
        "plan": plan.to_json(),
        "environment": results.environment(
            {"server": list(pinning.server), "loadgen": list(pinning.loadgen)} if pinning else None
        ),
        "variants": {
            n: {
                "family": servers.get(n).family,
                "summary": servers.get(n).summary,
                "max_clients": servers.get(n).max_clients,
            }
            for n in plan.variants
        },
        "skipped": plan.skipped,
        "verify": {},
        "cases": [c.to_json() for c in plan.cases],
        "runs": [],
        "wall_s": 0.0,
    }
    if args.run_dir:
        run_dir = results.reuse_run_dir(Path(args.run_dir))
    else:
        run_dir = results.new_run_dir(Path(args.output))
    _print_plan(plan, data, run_dir)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    t0 = time.perf_counter()
    interrupted = False
    try:
        _run_plan(plan, data, run_dir, pinning)
        data["partial"] = False
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        harness.kill_all()  # whatever line was interrupted, nothing stays running
        data["wall_s"] = time.perf_counter() - t0
        summaries = results.write(run_dir, data, charts=not args.no_charts, latest=not args.run_dir)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print_tables(summaries, data)
    state = "PARTIAL results (interrupted)" if interrupted else "Results"
    console.print(
        f"\n{state} in [bold]{run_dir}[/] (report.md, results.json, charts/); "
        f"wall time {data['wall_s']:.0f} s."
    )
    return 130 if interrupted else 0


def _print_plan(plan: RunPlan, data: dict[str, Any], run_dir: Path) -> None:
    env = data["environment"]
    console.print(
        f"[bold]concurrency-bench[/] profile {plan.profile}: {len(plan.variants)} variants"
        f" × {len(plan.cases)} cases ({', '.join(c.key for c in plan.cases)})"
        f" × {plan.repeat} repeats = {plan.runs} runs of {plan.warmup:g} s warm-up + "
        f"{plan.duration:g} s; estimated {plan.estimate_s() / 60:.1f} min"
    )
    pin = env["pinning"]
    console.print(
        f"machine: {env['cpu_model']}, {env['cpu_count']} CPUs, {env['kernel']}, Python "
        f"{env['python_version']}; pinning: "
        + (f"server CPU {pin['server']}, loadgen CPU {pin['loadgen']}" if pin else "off")
        + f"; load average {', '.join(f'{x:.2f}' for x in env['load_average_start'] or [])}"
    )
    console.print("variants: " + ", ".join(plan.variants))
    for name, reason in plan.skipped.items():
        console.print(f"[yellow]skipped {name}: {reason}[/]")
    console.print(f"writing to {run_dir}\n")


def _run_plan(
    plan: RunPlan,
    data: dict[str, Any],
    run_dir: Path,
    pinning: harness.Pinning | None,
) -> None:
    cases = cases_by_key()
    rng = random.Random(plan.seed)
    total = len(plan.variants) + plan.runs
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        whole = progress.add_task("plan", total=total)
        current = progress.add_task("", total=1.0)

        def save() -> None:
            # Cheap: one line per measurement.  The summaries, report and charts
            # are written once at the end (or on Ctrl-C), so a long plan does
            # not spend its rests re-summarising everything.
            results.append_progress(run_dir, data)

        for name in plan.variants:
            progress.update(current, description=f"verify {name}", completed=0, total=1)
            v = harness.verify(
                name,
                reference=servers.get(name).is_reference,
                cpus=pinning.server if pinning else None,
            )
            data["verify"][name] = {"ok": v.ok, "reason": v.reason, "seconds": v.seconds}
            if not v.ok:
                progress.console.print(f"[red]{name} FAILED verification: {v.reason}[/]")
            progress.advance(whole)
        save()
        verified = {n for n, v in data["verify"].items() if v["ok"]}
        for round_no in range(1, plan.repeat + 1):
            for record in plan.cases:
                case = cases[record.key]
                order = list(record.variants)
                rng.shuffle(order)
                for name in order:
                    if name in verified:
                        _one_run(name, case, round_no, plan, data, pinning, progress, current)
                        save()
                        time.sleep(plan.rest)
                    progress.advance(whole)


def _one_run(
    name: str,
    case: Case,
    round_no: int,
    plan: RunPlan,
    data: dict[str, Any],
    pinning: harness.Pinning | None,
    progress: Progress,
    current: Any,
) -> None:
    expected = harness.expected_seconds(case, plan.duration, plan.warmup)
    progress.update(
        current, description=f"{case.key} {name} (round {round_no})", completed=0, total=expected
    )
    rate = None
    if case.rate_fraction is not None:
        capacity = sm.Stat.of(
            [
                r["result"]["throughput_rps"]
                for r in data["runs"]
                if r["variant"] == name and r["case"] == "echo-small" and r.get("result")
            ]
        )
        if capacity is None or capacity.mean <= 0:
            data["runs"].append(
                harness.RunOutcome(
                    name,
                    case.key,
                    case.scenario,
                    round_no,
                    "failed",
                    error="no echo-small capacity measured to derive the open-loop rate from",
                ).to_json()
            )
            return
        rate = capacity.mean * case.rate_fraction
    outcome = harness.measure(
        name,
        case,
        round_no=round_no,
        duration=plan.duration,
        warmup=plan.warmup,
        rate=rate,
        pinning=pinning,
        on_tick=lambda elapsed: progress.update(current, completed=min(elapsed, expected)),
    )
    data["runs"].append(outcome.to_json())
    if outcome.status != "ok":
        progress.console.print(f"[yellow]{case.key} {name} round {round_no}: {outcome.error}[/]")


def print_tables(summaries: list[sm.CaseSummary], data: dict[str, Any]) -> None:
    questions = {c["key"]: c["question"] for c in data["cases"]}
    na = {c["key"]: c.get("not_applicable", {}) for c in data["cases"]}
    for s in summaries:
        console.print()
        console.print(results.rich_table(s, questions.get(s.case, "")))
        for name, reason in na.get(s.case, {}).items():
            console.print(f"  [dim]{name}: not applicable ({reason})[/]")
