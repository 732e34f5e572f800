#!/usr/bin/env python3
"""``python run_all.py``: every server variant, every scenario, one comparison report.

Plan -> verify every variant (a wrong answer is never timed) -> measure each
(scenario case, variant) on a freshly started server, repeated in a shuffled
order each round -> tables (mean ± sd, flags) -> ``results/<UTC timestamp>/``.
The pieces live in :mod:`loadgen.scenarios` (what is measured),
:mod:`loadgen.harness` (how one measurement runs), :mod:`loadgen.summary`
(statistics, flags, ranking), :mod:`loadgen.results` and
:mod:`loadgen.charts` (what is written).  How to read a report:
``results/README.md``.
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
from loadgen.suite.scenarios import PROFILES, SCENARIOS, Case, Scenario, help_text, resolve

# Piped output (CI logs, tests) gets a wide console so tables are not squeezed to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=180)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python run_all.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure every server concurrency model under the same load generator "
        "and write a comparison report (tables, charts, raw JSON) to results/<UTC timestamp>/.",
        epilog="profiles:\n"
        + "\n".join(
            f"  {p.name}: {p.description}; scenarios {', '.join(p.scenarios)}; "
            f"{p.repeat} repeats of {p.warmup:g} s warm-up + {p.duration:g} s"
            for p in PROFILES.values()
        )
        + "\n\nscenarios (--scenarios):\n"
        + help_text()
        + "\n\nvariants (--servers; `python -m servers --list` describes them):\n  "
        + ", ".join(n for n, v in servers.REGISTRY.items() if v.family != "test")
        + "\n\nexamples:\n"
        "  python run_all.py                                  # quick profile, every variant\n"
        "  python run_all.py --profile full                   # everything, 5 repeats\n"
        "  python run_all.py --servers thread_per_client,gevent_server --scenarios churn\n"
        "  python run_all.py --compare                        # newest run vs the one before\n"
        "  python run_all.py --compare results/A results/B\n"
        "How to read the report: results/README.md",
    )
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="quick",
        help="which scenarios and how many repeats (default: quick)",
    )
    p.add_argument(
        "--servers",
        metavar="A,B",
        help="only these variants (default: every "
        "registered variant, native_epoll included as a reference row)",
    )
    p.add_argument(
        "--scenarios",
        metavar="X,Y",
        help="only these scenarios (default: the "
        "profile's); scenarios a chosen one needs are added (open-loop needs echo-small)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="repeats of every measurement (default: the profile's; >= 2 gives a spread)",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="measured seconds per run (default: the profile's)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="discarded warm-up seconds per run (default: the profile's)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and the load "
        "generator to different CPUs (pinning is the default with >= 2 CPUs)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the shuffled order (default: random; recorded in results.json)",
    )
    p.add_argument(
        "--output",
        metavar="DIR",
        default="results",
        help="where result directories go (default: results)",
    )
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        help="write this run into exactly DIR (replacing its report, JSON and charts; no "
        "timestamp, no latest link), e.g. results/reference-2core",
    )
    p.add_argument("--no-charts", action="store_true", help="skip the matplotlib charts")
    p.add_argument(
        "--render",
        metavar="RUN",
        help="rewrite the tables, report.md and charts of a saved run from its results.json "
        "(no measuring), e.g. after upgrading the suite",
    )
    p.add_argument(
        "--compare",
        nargs="*",
        metavar="RUN",
        help="compare two saved runs instead "
        "of measuring: none given = the newest run in --output vs the one before; "
        "one = that run vs the newest; two = A vs B",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare is not None:
        return compare_runs(args, parser)
    if args.render:
        return render(Path(args.render), parser)
    try:
        plan = make_plan(args)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc.args[0]) if exc.args else str(exc))
    return execute(plan, args)


# -- the plan -------------------------------------------------------------------


def make_plan(args: argparse.Namespace) -> dict[str, Any]:
    profile = PROFILES[args.profile]
    names = _split(args.servers) or [n for n, v in servers.REGISTRY.items() if v.family != "test"]
    for name in names:
        servers.get(name)  # KeyError with the known names
    scenarios = resolve(_split(args.scenarios) or list(profile.scenarios))
    repeat = args.repeat if args.repeat is not None else profile.repeat
    duration = args.duration if args.duration is not None else profile.duration
    warmup = args.warmup if args.warmup is not None else profile.warmup
    if repeat < 1 or duration <= 0 or warmup < 0:
        raise ValueError("--repeat must be >= 1, --duration > 0, --warmup >= 0")
    skipped = {n: r for n in names if (r := servers.get(n).unavailable_reason)}
    runnable = [n for n in names if n not in skipped]
    cases = []
    for scenario in scenarios:
        for case in scenario.cases:
            cases.append(_case_record(scenario, case, runnable))
    return {
        "profile": profile.name,
        "variants": runnable,
        "skipped": skipped,
        "scenarios": [s.name for s in scenarios],
        "cases": cases,
        "repeat": repeat,
        "duration": duration,
        "warmup": warmup,
        "rest": profile.rest,
        "seed": args.seed if args.seed is not None else random.randrange(1 << 30),
        "pin": not args.no_pin,
    }


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _case_record(scenario: Scenario, case: Case, names: list[str]) -> dict[str, Any]:
    not_applicable = {n: r for n in names if (r := scenario.applies(servers.get(n)))}
    return {
        "key": case.key,
        "scenario": scenario.name,
        "label": case.label,
        "kind": case.kind,
        "x": case.x,
        "question": scenario.question,
        "settings": case.describe(),
        "variants": [n for n in names if n not in not_applicable],
        "not_applicable": not_applicable,
    }


def _cases_by_key() -> dict[str, Case]:
    return {c.key: c for s in SCENARIOS.values() for c in s.cases}


def _estimate(plan: dict[str, Any]) -> float:
    cases = _cases_by_key()
    per_round = sum(
        harness.expected_seconds(cases[c["key"]], plan["duration"], plan["warmup"]) + plan["rest"]
        for c in plan["cases"]
        for _ in c["variants"]
    )
    return len(plan["variants"]) * 1.0 + per_round * plan["repeat"]


# -- running it -------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def execute(plan: dict[str, Any], args: argparse.Namespace) -> int:
    pinning = harness.Pinning.choose(plan["pin"])
    data: dict[str, Any] = {
        "command": "python run_all.py " + shlex.join(sys.argv[1:]),
        "partial": True,
        "plan": {k: v for k, v in plan.items() if k != "cases"},
        "environment": results.environment(
            {"server": list(pinning.server), "loadgen": list(pinning.loadgen)} if pinning else None
        ),
        "variants": {
            n: {
                "family": servers.get(n).family,
                "summary": servers.get(n).summary,
                "max_clients": servers.get(n).max_clients,
            }
            for n in plan["variants"]
        },
        "skipped": plan["skipped"],
        "verify": {},
        "cases": plan["cases"],
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
    _print_tables(summaries, data)
    state = "PARTIAL results (interrupted)" if interrupted else "Results"
    console.print(
        f"\n{state} in [bold]{run_dir}[/] (report.md, results.json, charts/); "
        f"wall time {data['wall_s']:.0f} s."
    )
    return 130 if interrupted else 0


def _print_plan(plan: dict[str, Any], data: dict[str, Any], run_dir: Path) -> None:
    env = data["environment"]
    n_runs = sum(len(c["variants"]) for c in plan["cases"]) * plan["repeat"]
    console.print(
        f"[bold]concurrency-bench[/] profile {plan['profile']}: {len(plan['variants'])} variants"
        f" × {len(plan['cases'])} cases ({', '.join(c['key'] for c in plan['cases'])})"
        f" × {plan['repeat']} repeats = {n_runs} runs of {plan['warmup']:g} s warm-up + "
        f"{plan['duration']:g} s; estimated {_estimate(plan) / 60:.1f} min"
    )
    pin = env["pinning"]
    console.print(
        f"machine: {env['cpu_model']}, {env['cpu_count']} CPUs, {env['kernel']}, Python "
        f"{env['python_version']}; pinning: "
        + (f"server CPU {pin['server']}, loadgen CPU {pin['loadgen']}" if pin else "off")
        + f"; load average {', '.join(f'{x:.2f}' for x in env['load_average_start'] or [])}"
    )
    console.print("variants: " + ", ".join(plan["variants"]))
    for name, reason in plan["skipped"].items():
        console.print(f"[yellow]skipped {name}: {reason}[/]")
    console.print(f"writing to {run_dir}\n")


def _run_plan(
    plan: dict[str, Any],
    data: dict[str, Any],
    run_dir: Path,
    pinning: harness.Pinning | None,
) -> None:
    cases = _cases_by_key()
    rng = random.Random(plan["seed"])
    total = len(plan["variants"]) + sum(len(c["variants"]) for c in plan["cases"]) * plan["repeat"]
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

        for name in plan["variants"]:
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
        for round_no in range(1, plan["repeat"] + 1):
            for record in plan["cases"]:
                case = cases[record["key"]]
                order = list(record["variants"])
                rng.shuffle(order)
                for name in order:
                    if name in verified:
                        _one_run(name, case, round_no, plan, data, pinning, progress, current)
                        save()
                        time.sleep(plan["rest"])
                    progress.advance(whole)


def _one_run(
    name: str,
    case: Case,
    round_no: int,
    plan: dict[str, Any],
    data: dict[str, Any],
    pinning: harness.Pinning | None,
    progress: Progress,
    current: Any,
) -> None:
    expected = harness.expected_seconds(case, plan["duration"], plan["warmup"])
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
        duration=plan["duration"],
        warmup=plan["warmup"],
        rate=rate,
        pinning=pinning,
        on_tick=lambda elapsed: progress.update(current, completed=min(elapsed, expected)),
    )
    data["runs"].append(outcome.to_json())
    if outcome.status != "ok":
        progress.console.print(f"[yellow]{case.key} {name} round {round_no}: {outcome.error}[/]")


def _print_tables(summaries: list[sm.CaseSummary], data: dict[str, Any]) -> None:
    questions = {c["key"]: c["question"] for c in data["cases"]}
    na = {c["key"]: c.get("not_applicable", {}) for c in data["cases"]}
    for s in summaries:
        console.print()
        console.print(results.rich_table(s, questions.get(s.case, "")))
        for name, reason in na.get(s.case, {}).items():
            console.print(f"  [dim]{name}: not applicable ({reason})[/]")


def render(run_dir: Path, parser: argparse.ArgumentParser) -> int:
    try:
        data = results.load(run_dir)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read {run_dir}: {exc}")
    run_dir = run_dir.resolve()
    summaries = results.write(run_dir, data, latest=False)
    _print_tables(summaries, data)
    console.print(f"\nRewrote {run_dir}/report.md and charts/ from results.json.")
    return 0


# -- compare ------------------------------------------------------------------------


def compare_runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    given = [Path(p) for p in args.compare]
    if len(given) > 2:
        parser.error("--compare takes at most two runs")
    saved = results.run_dirs(Path(args.output))
    if len(given) == 2:
        a, b = given
    elif len(given) == 1:
        if not saved:
            parser.error(f"no saved run in {args.output} to compare {given[0]} with")
        a, b = given[0], saved[-1]
    else:
        if len(saved) < 2:
            parser.error(f"--compare needs two saved runs in {args.output}; found {len(saved)}")
        a, b = saved[-2], saved[-1]
    try:
        data_a, data_b = results.load(a), results.load(b)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read a run: {exc}")
    changes = sm.compare(data_a, data_b)
    if not changes:
        console.print(f"{a} and {b} have no (case, variant, figure) in common.")
        return 0
    for case in dict.fromkeys(c.case for c in changes):
        mine = [c for c in changes if c.case == case]
        console.print(results.compare_table(mine, f"{case}: A = {a}  B = {b}"))
    flagged = [c for c in changes if c.significant]
    console.print(
        f"\n{len(flagged)} of {len(changes)} figures changed by more than the "
        "combined spread (sd A + sd B)."
    )
    for c in flagged:
        console.print(
            f"  * {c.case} {c.variant} {sm.SHORT_NAMES.get(c.figure, c.figure)}: "
            f"{c.pct:+.1f}% ({'better' if c.better else 'worse'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
