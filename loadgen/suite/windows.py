"""How the spread of a run's requests/s falls with its window, on this machine.

    python -m loadgen.suite.windows [--servers a,b] [--windows 0.25,0.5,1,2] [--runs 8]

Runs echo-small's load (64-byte ECHO, 64 connections, server and generator
pinned apart as run_all.py pins them) ``--runs`` times back to back per
variant and window, each on a freshly started server with run_all's warm-up,
and prints one Markdown row per (variant, window): the runs' mean req/s, their
coefficient of variation (CV: sd / mean), and the 95% confidence half-width of
a mean over 3 and over 6 such runs (Student's t: what a profile's 3 repeats, or
3 more until stable, would show), with the runs' hypervisor steal and other
processes' CPU beside them, because a shared machine's noise mostly does not
show as steal.  docs/RESULTS.md ("Windows and repeats") holds a table made by
it and the profiles' settings chosen from it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from typing import Any

from loadgen.report.ranking import t_quantile
from loadgen.suite import harness
from loadgen.suite.plan import cases_by_key

DEFAULT_SERVERS = "epoll_reactor,thread_per_client,asyncio_streams,gevent_server"
DEFAULT_WINDOWS = "0.25,0.5,1,2"
DEFAULT_RUNS = 8
WARMUP_S = 0.25  # the profiles' warm-up


def half_width(cv: float, n: int) -> float:
    """The 95% CI half-width of a mean of ``n`` runs, relative to it, for a run CV ``cv``."""
    return t_quantile(0.975, n - 1) * cv / math.sqrt(n)


def study(
    names: list[str], windows: list[float], runs: int, warmup: float = WARMUP_S
) -> list[dict[str, Any]]:
    """One record per (variant, window): its runs' req/s and disturbance, and the spread."""
    case = cases_by_key()["echo-small"]
    pinning = harness.Pinning.choose(True, 1)
    out = []
    for name in names:
        for window in windows:
            rps, steal, foreign = [], [], []
            for i in range(runs):
                run = harness.measure(
                    name, case, round_no=i + 1, duration=window, warmup=warmup, pinning=pinning
                )
                if run.status != "ok" or run.result is None:
                    print(f"{name} {window} s run {i + 1}: {run.error}", file=sys.stderr)
                    continue
                rps.append(run.result.throughput_rps)
                d = (run.to_json().get("result") or {}).get("disturbance") or {}
                share = d.get("run") or d.get("server") or {}
                steal.append(share.get("steal_fraction") or 0.0)
                foreign.append(share.get("foreign_cores") or 0.0)
            out.append(record(name, window, rps, steal, foreign))
            print(markdown_row(out[-1]), flush=True)
    return out


def record(
    name: str, window: float, rps: list[float], steal: list[float], foreign: list[float]
) -> dict[str, Any]:
    mean = statistics.fmean(rps) if rps else 0.0
    cv = statistics.stdev(rps) / mean if len(rps) > 1 and mean else None
    return {
        "variant": name,
        "window_s": window,
        "runs": len(rps),
        "rps": [round(x, 1) for x in rps],
        "mean_rps": round(mean, 1),
        "cv": cv,
        "ci95_n3": half_width(cv, 3) if cv is not None else None,
        "ci95_n6": half_width(cv, 6) if cv is not None else None,
        "steal_mean": statistics.fmean(steal) if steal else None,
        "foreign_mean": statistics.fmean(foreign) if foreign else None,
    }


HEADER = (
    "| variant | window | runs | mean req/s | CV | CI95 of 3 | CI95 of 6 | steal | other CPU |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def markdown_row(r: dict[str, Any]) -> str:
    def pct(x: float | None, sign: str = "±") -> str:
        return "–" if x is None else f"{sign}{x:.1%}"

    return (
        f"| {r['variant']} | {r['window_s']:g} s | {r['runs']} | {r['mean_rps']:,.0f} | "
        f"{pct(r['cv'], '')} | {pct(r['ci95_n3'])} | "
        f"{pct(r['ci95_n6'])} | {(r['steal_mean'] or 0):.1%} | {(r['foreign_mean'] or 0):.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadgen.suite.windows", description=__doc__)
    p.add_argument("--servers", default=DEFAULT_SERVERS)
    p.add_argument("--windows", default=DEFAULT_WINDOWS, help="seconds, comma-separated")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per (variant, window)")
    p.add_argument("--json", metavar="PATH", help="also write every record here")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error("--runs must be >= 2 (a CV needs two runs)")
    names = [n for n in args.servers.split(",") if n]
    windows = [float(w) for w in args.windows.split(",") if w]
    t0 = time.perf_counter()
    print(HEADER, flush=True)
    try:
        records = study(names, windows, args.runs)
    finally:
        harness.kill_all()
    print(f"\n{len(records)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
