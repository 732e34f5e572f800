"""Check a run's tie groups: ``python -m loadgen.report.checkties results/latest/results.json``.

For every ranked table of a results.json (its ``summaries``), from the table's ``ties`` record
(:meth:`loadgen.report.ranking.Ranking.to_json`), this recomputes what the grouping rests on and
says what does not hold:

* the rule is the documented one (Welch's test, Holm's correction, 5%);
* the samples are the rows' figures (their count and mean are the row's ``stats``);
* each pair's p-value is Welch's on those samples, and its adjusted p-value Holm's over the
  table's pairs (so a stale or hand-edited record is caught);
* **no tie group (letter) holds two rows that test separates** (issue 18's invariant);
* every two rows the test does not separate share a letter, and each row's ``letters`` are
  the groups that hold it (what results/README.md promises a reader).

Exit status 0 when every table holds, 1 otherwise (2: the file cannot be read). A run made
before the ``ties`` record existed can be regrouped first: ``python run_all.py --render RUN``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from loadgen.report import ranking, results

REL_TOL = 1e-9  # p-values are recomputed by the same arithmetic: only float noise may differ


def check(data: dict[str, Any]) -> list[str]:
    """Every problem found in a results.json dict's tie groups ([] when all hold)."""
    problems = []
    for summary in data.get("summaries") or []:
        problems += [f"{summary.get('case')}: {p}" for p in check_summary(summary)]
    return problems


def check_summary(summary: dict[str, Any]) -> list[str]:
    """The problems of one table (a ``summaries[]`` entry); [] for a table not ranked."""
    ranked = [r for r in summary.get("rows") or [] if r.get("rank") is not None]
    if summary.get("ranked_by") is None:
        return ["rows ranked in a table that is not ranked"] if ranked else []
    ties = summary.get("ties")
    if ties is None:
        return ["no ties record (a run made before it: regroup it with run_all.py --render)"]
    problems = _rule(ties) + _samples(ties, ranked, summary["ranked_by"])
    if problems:
        return problems
    separated, problems = _pairs(ties)
    groups = {k: list(v) for k, v in (ties.get("groups") or {}).items()}
    for letter, members in groups.items():
        for a, b in itertools.combinations(members, 2):
            if frozenset((a, b)) in separated:
                problems.append(f"group {letter} holds {a} and {b}, which the test separates")
    for a, b in itertools.combinations(ties["order"], 2):
        shared = any(a in m and b in m for m in groups.values())
        if frozenset((a, b)) not in separated and not shared:
            problems.append(f"{a} and {b} are not separated but share no letter")
    for row in ranked:
        mine = sorted(k for k, m in groups.items() if row["variant"] in m)
        if sorted(row.get("letters") or []) != mine:
            problems.append(f"{row['variant']}: letters {row.get('letters')} but groups {mine}")
    return problems


def _rule(ties: dict[str, Any]) -> list[str]:
    rule = (ties.get("test"), ties.get("correction"), ties.get("alpha"))
    documented = (ranking.TIE_TEST, ranking.CORRECTION, ranking.ALPHA)
    return [] if rule == documented else [f"rule {rule}, not the documented {documented}"]


def _samples(ties: dict[str, Any], ranked: list[dict[str, Any]], figure: str) -> list[str]:
    """The recorded samples are the ranked rows' figures, in table order."""
    order, samples = ties.get("order") or [], ties.get("samples") or {}
    if order != [r["variant"] for r in ranked] or set(samples) != set(order):
        return [f"ties order {order} is not the ranked rows'"]
    problems = []
    for row in ranked:
        values, stat = samples[row["variant"]], row["stats"].get(figure) or {}
        same_mean = values and math.isclose(statistics.fmean(values), stat.get("mean", math.nan))
        if len(values) != stat.get("n") or not same_mean:
            problems.append(f"{row['variant']}: samples are not its {figure} (n, mean)")
    return problems


def _pairs(ties: dict[str, Any]) -> tuple[set[frozenset[str]], list[str]]:
    """The pairs the test separates, recomputed; and where the record says otherwise."""
    order, samples = ties["order"], ties["samples"]
    recorded = {frozenset((p["a"], p["b"])): p for p in ties.get("pairs") or []}
    pairs = list(itertools.combinations(order, 2))
    raw = [ranking.welch_p_value(samples[a], samples[b]) for a, b in pairs]
    adjusted = ranking.holm(raw)
    separated, problems = set(), []
    for (a, b), p, q in zip(pairs, raw, adjusted, strict=True):
        key = frozenset((a, b))
        if q < ties["alpha"]:
            separated.add(key)
        got = recorded.get(key)
        if got is None:
            problems.append(f"no recorded test of {a} and {b}")
        elif not (_close(got["p"], p) and _close(got["p_adjusted"], q)):
            problems.append(f"{a} vs {b}: recorded p {got['p']:.3g}, recomputed {p:.3g}")
        elif bool(got["separated"]) != (q < ties["alpha"]):
            problems.append(f"{a} vs {b}: recorded separated={got['separated']}")
    return separated, problems


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=1e-12)


def describe(summary: dict[str, Any]) -> str:
    """One line per table: rows, pairs separated, groups (or why it is not ranked)."""
    ties = summary.get("ties")
    if summary.get("ranked_by") is None or not ties:
        return f"{summary.get('case')}: not ranked"
    n, pairs = len(ties["order"]), ties["pairs"]
    separated = sum(bool(p["separated"]) for p in pairs)
    return (
        f"{summary['case']}: {n} rows, {separated} of {len(pairs)} pairs separated, "
        f"{len(ties['groups'])} letter(s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen.report.checkties", description=__doc__.splitlines()[0]
    )
    parser.add_argument("runs", nargs="+", help="results.json files or run directories")
    args = parser.parse_args(argv)
    status = 0
    for path in args.runs:
        try:
            data = results.load(path)
        except (OSError, ValueError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            return 2
        problems = check(data)
        print(f"{path}:")
        for summary in data.get("summaries") or []:
            print(f"  {describe(summary)}")
        for p in problems:
            print(f"  ! {p}")
        print(
            f"  {len(problems)} problem(s)" if problems else "  ok: no group holds a separated pair"
        )
        status = status or (1 if problems else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
