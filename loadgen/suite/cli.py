"""``python run_all.py``: every server variant, every scenario, one comparison report.

Plan -> verify every variant (a wrong answer is never timed) -> measure each
(scenario case, variant) on a freshly started server, repeated in a shuffled
order each round -> tables (mean ± sd, flags) -> ``results/<UTC timestamp>/``.
The pieces: :mod:`~loadgen.suite.scenarios` (what is measured),
:mod:`~loadgen.suite.plan` and :mod:`~loadgen.suite.runner` (this run),
:mod:`~loadgen.suite.harness` (one measurement), :mod:`~loadgen.report.summary`
(statistics, flags, ranking), :mod:`~loadgen.report.results` and
:mod:`~loadgen.report.charts` (what is written), :mod:`~loadgen.report.compare`
(two saved runs).  How to read a report: ``results/README.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import servers
from loadgen.report import results
from loadgen.report.compare import compare_runs
from loadgen.suite import soak
from loadgen.suite.harness import Pinning
from loadgen.suite.plan import make_plan
from loadgen.suite.runner import console, execute, print_tables
from loadgen.suite.scenarios import PROFILES, help_text


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
            + ("; --until-stable" if p.until_stable else "")
            for p in PROFILES.values()
        )
        + "\n  soak: each variant once, for --soak-minutes of mixed load, churn, resets and slow "
        "clients: does RSS, descriptors, threads or children grow per million requests?"
        + "\n\nscenarios (--scenarios):\n"
        + help_text()
        + "\n\nvariants (--servers; `python -m servers --list` describes them):\n  "
        + ", ".join(n for n, v in servers.REGISTRY.items() if v.family != "test")
        + "\n\nexamples:\n"
        "  python run_all.py                                  # quick profile, every variant\n"
        "  python run_all.py --profile full                   # everything, 4+ repeats\n"
        "  python run_all.py --servers thread_per_client,gevent_server --scenarios churn\n"
        "  python run_all.py --scenarios backend-wait,cpu-bound,head-of-line,blocking-call\n"
        "                                                     # what the handler does (WORK)\n"
        "  python run_all.py --compare                        # newest run vs the one before\n"
        "  python run_all.py --compare results/A results/B\n"
        "  python run_all.py --python python3.13t --servers thread_per_client  # another Python\n"
        "How to read the report: results/README.md",
    )
    p.add_argument(
        "--profile",
        choices=(*PROFILES, "soak"),
        default="quick",
        help="which scenarios and how many repeats (default: quick); soak: each variant for "
        "a few minutes of mixed load, churn, resets and slow clients, reporting the growth of "
        "RSS, descriptors, threads and children per million requests (--soak-minutes)",
    )
    p.add_argument(
        "--soak-minutes",
        type=float,
        default=soak.DEFAULT_MINUTES,
        metavar="M",
        help=f"--profile soak: minutes per variant (default {soak.DEFAULT_MINUTES:g})",
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
        "--no-reference",
        action="store_true",
        help="do not measure native_epoll in every round of the throughput cases (it is the "
        "in-round reference: a round where it drops > 15%% below its median is redone)",
    )
    p.add_argument(
        "--no-counters",
        action="store_true",
        help="skip the counted runs (one short run per throughput case and variant, after "
        "the timed rounds, that counts context switches and, with perf, system calls)",
    )
    p.add_argument(
        "--cost-table",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the timed rounds, count each variant's user-space instructions per "
        "request under valgrind's cachegrind, beside its system calls and context switches "
        "(counts a busy machine cannot move; needs valgrind). Default: on when the profile "
        "runs its own scenarios, off with --scenarios",
    )
    p.add_argument(
        "--until-stable",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after a throughput case's planned rounds, add rounds (at most 3, and only while "
        "the run stays under the profile's time cap) until every ranked row's 95%% CI is "
        "within ±5%% of its centre (default: on in the full profile, off in quick)",
    )
    p.add_argument(
        "--python",
        metavar="EXE",
        help="run the servers under this interpreter (the load generator stays on this one); "
        "it is asked first which variants it can run (python -m servers --probe); the others "
        "are skipped with the reason",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and the load "
        "generator to different CPUs (pinning is the default with >= 2 CPUs)",
    )
    p.add_argument(
        "--server-cpus",
        type=int,
        default=1,
        metavar="N",
        help="how many CPUs the server may use (the first N this run may use; the load "
        "generator gets the others; default 1); an error if none would be left for the "
        "generator. The cores scenario sets its own levels (1, 2, 4 ... up to half the CPUs)",
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
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the servers on a Ray cluster's cb_server node and the load from its "
        "cb_loadgen nodes (docs/CLUSTER.md); local:N starts a throwaway simulated cluster "
        "of N nodes on this machine and tears it down",
    )
    p.add_argument(
        "--server-host",
        metavar="ADDR",
        default="127.0.0.1",
        help="with --cluster: the address the servers bind and the load hosts connect to "
        "(default 127.0.0.1: only a simulated cluster can reach it)",
    )
    p.add_argument("--no-charts", action="store_true", help="skip the matplotlib charts")
    p.add_argument(
        "--render",
        metavar="RUN",
        help="rewrite the tables, report.md, report.html and charts of a saved run from its "
        "results.json (no measuring), e.g. after upgrading the suite",
    )
    p.add_argument(
        "--compare",
        nargs="*",
        metavar="RUN",
        help="compare two saved runs instead "
        "of measuring: none given = the newest run in --output vs the one before; "
        "one = that run vs the newest; two = A vs B; also writes --output/compare.html",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare is not None:
        return compare_runs(args, parser, console)
    if args.render:
        return render(Path(args.render), parser)
    if args.profile == "soak":
        return run_soak_profile(args, parser)
    try:
        plan = make_plan(args)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc.args[0]) if exc.args else str(exc))
    return execute(plan, args)


def run_soak_profile(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--profile soak``: :mod:`loadgen.suite.soak` over the chosen variants; 130 on Ctrl-C."""
    names = [t.strip() for t in (args.servers or "").split(",") if t.strip()]
    names = names or soak.default_variants()
    unknown = [n for n in names if n not in servers.REGISTRY]
    if unknown:
        parser.error(
            f"unknown server(s) {', '.join(unknown)}; known: {', '.join(servers.REGISTRY)}"
        )
    if args.soak_minutes <= 0:
        parser.error("--soak-minutes must be > 0")
    run_dir = Path(args.run_dir) if args.run_dir else results.new_run_dir(Path(args.output))
    report = soak.run_soak(
        names, args.soak_minutes, run_dir, console, Pinning.choose(not args.no_pin)
    )
    console.print(f"\nSoak report in [bold]{run_dir}[/] (soak.md, soak.json).")
    return 130 if report["interrupted"] else 0


def render(run_dir: Path, parser: argparse.ArgumentParser) -> int:
    try:
        data = results.load(run_dir)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read {run_dir}: {exc}")
    run_dir = run_dir.resolve()
    summaries = results.write(run_dir, data, latest=False)
    print_tables(summaries, data)
    console.print(f"\nRewrote {run_dir}/report.md, report.html and charts/ from results.json.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
