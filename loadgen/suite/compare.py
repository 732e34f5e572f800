"""Two saved runs side by side: ``python run_all.py --compare [A [B]]``.

A change is marked only when it is larger than the two runs' combined
spread (sd of A + sd of B): smaller differences are noise on a shared
machine (results/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen.suite import results
from loadgen.suite import summary as sm

COMPARED_FIGURES = (
    "throughput_rps",
    "p50_us",
    "p99_us",
    "cpu_us_per_request",
    "cpu_user_us_per_request",
    "memory_pss_bytes",
    "memory_per_connection_bytes",
    "memory_per_connection_uss_bytes",
)
LOWER_IS_BETTER = {f for f in COMPARED_FIGURES if f != "throughput_rps"}


@dataclass(frozen=True)
class Change:
    case: str
    variant: str
    figure: str
    a: sm.Stat
    b: sm.Stat

    @property
    def delta(self) -> float:
        return self.b.mean - self.a.mean

    @property
    def pct(self) -> float | None:
        return 100.0 * self.delta / self.a.mean if self.a.mean else None

    @property
    def spread(self) -> float | None:
        """The combined spread (sd A + sd B); None when either side has one run."""
        if self.a.n < 2 or self.b.n < 2:
            return None
        return self.a.sd + self.b.sd

    @property
    def significant(self) -> bool:
        return self.spread is not None and abs(self.delta) > self.spread

    @property
    def better(self) -> bool:
        return (self.delta < 0) if self.figure in LOWER_IS_BETTER else (self.delta > 0)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Every figure present in both runs, for every (case, variant) in both."""
    left = {s.case: s for s in sm.summarize(a)}
    changes = []
    for sb in sm.summarize(b):
        sa = left.get(sb.case)
        if sa is None:
            continue
        rows_a = {r.variant: r for r in sa.rows}
        for rb in sb.rows:
            ra = rows_a.get(rb.variant)
            if ra is None:
                continue
            for fig in COMPARED_FIGURES:
                if fig in ra.stats and fig in rb.stats:
                    changes.append(Change(sb.case, rb.variant, fig, ra.stats[fig], rb.stats[fig]))
    return changes


def compare_runs(
    args: argparse.Namespace, parser: argparse.ArgumentParser, console: Console
) -> int:
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
    changes = compare(data_a, data_b)
    if not changes:
        console.print(f"{a} and {b} have no (case, variant, figure) in common.")
        return 0
    for case in dict.fromkeys(c.case for c in changes):
        mine = [c for c in changes if c.case == case]
        console.print(compare_table(mine, f"{case}: A = {a}  B = {b}"))
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


def compare_table(changes: list[Change], title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        caption="* = change larger than the combined spread (sd A + sd B); "
        "no mark = within noise; 'n<2' = a side has one run, no spread known",
        caption_justify="left",
    )
    for col in ("case", "variant", "figure", "A mean ± sd", "B mean ± sd", "change", ""):
        table.add_column(col, justify="left" if col in ("case", "variant", "figure") else "right")
    for c in changes:
        fmt = _fmt_for(c.figure)
        pct = "–" if c.pct is None else f"{c.pct:+.1f}%"
        mark = "n<2" if c.spread is None else ("*" if c.significant else "")
        style = None
        if c.significant:
            style = "green" if c.better else "red"
        table.add_row(
            c.case,
            c.variant,
            sm.SHORT_NAMES.get(c.figure, c.figure),
            f"{fmt(c.a.mean)} ± {fmt(c.a.sd)}",
            f"{fmt(c.b.mean)} ± {fmt(c.b.sd)}",
            pct,
            mark,
            style=style,
        )
    return table


def _fmt_for(figure: str) -> Callable[[float], str]:
    if figure.endswith("_bytes"):
        return sm.fmt_bytes
    if figure == "throughput_rps":
        return sm.fmt_rate
    if figure.startswith("cpu"):
        return lambda x: f"{x:.2f} µs"
    return sm.fmt_us
