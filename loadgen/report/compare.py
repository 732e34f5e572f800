"""Two saved runs side by side: ``python run_all.py --compare [A [B]]``.

As ``pyperf compare_to``: for every figure, B's mean ÷ A's mean and whether the difference
is significant (Welch's t-test at 5% over the repeats, :func:`loadgen.report.ranking.compare`);
"not significant" instead of a percentage when it is not (results/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen.report import ranking, results, tables, units, webpage
from loadgen.report import summary as sm

COMPARED_FIGURES = (
    "throughput_rps",
    sm.RATIO,
    "p50_us",
    "p99_us",
    "cpu_us_per_request",
    "cpu_user_us_per_request",
    "context_switches_per_request",
    "syscalls_per_request",
    "memory_pss_bytes",
    "memory_per_connection_bytes",
    "memory_per_connection_uss_bytes",
)
HIGHER_IS_BETTER = {"throughput_rps", sm.RATIO}
# how a better / worse change reads, per figure (pyperf says "faster" / "slower")
WORDS = {
    "throughput_rps": ("faster", "slower"),
    sm.RATIO: ("faster", "slower"),
    "p50_us": ("faster", "slower"),
    "p99_us": ("faster", "slower"),
}
DEFAULT_WORDS = ("smaller", "larger")  # CPU, counts and memory: less is better


@dataclass(frozen=True)
class Change:
    case: str
    variant: str
    figure: str
    a: sm.Stat
    b: sm.Stat

    @cached_property
    def test(self) -> dict[str, Any]:
        """:func:`loadgen.report.ranking.compare` of the two sides' repeats."""
        return ranking.compare(
            self.a.values or (self.a.mean,),
            self.b.values or (self.b.mean,),
            higher_is_better=self.figure in HIGHER_IS_BETTER,
            words=WORDS.get(self.figure, DEFAULT_WORDS),
        )

    @property
    def delta(self) -> float:
        return self.b.mean - self.a.mean

    @property
    def pct(self) -> float | None:
        return 100.0 * self.delta / self.a.mean if self.a.mean else None

    @property
    def significant(self) -> bool:
        return bool(self.test["significant"])

    @property
    def better(self) -> bool:
        return bool(self.test["better"])

    @property
    def text(self) -> str:
        """ "1.23x faster (+23.0%)", or "not significant" (no percentage: it would be noise)."""
        if not self.significant or self.pct is None:
            return str(self.test["text"])
        return f"{self.test['text']} ({self.pct:+.1f}%)"


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
    page = webpage.write_compare(
        Path(args.output) / "compare.html", str(a), str(b), changes, _fmt_for
    )
    flagged = [c for c in changes if c.significant]
    console.print(
        f"\n{len(flagged)} of {len(changes)} figures changed significantly "
        "(Welch's t-test, 5%, over the repeats)."
    )
    for c in flagged:
        console.print(
            f"  * {c.case} {c.variant} {sm.SHORT_NAMES.get(c.figure, c.figure)}: {c.text}"
        )
    console.print(f"\nThe same as a page: {page}")
    return 0


def compare_table(changes: list[Change], title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        caption="ratio = mean B ÷ mean A; a change is given only where Welch's t-test (5%) "
        "over the repeats says it is significant; 'n<2' = a side has one run, no spread known",
        caption_justify="left",
    )
    for col in ("case", "variant", "figure", "A mean ± CI95", "B mean ± CI95", "ratio", "change"):
        table.add_column(col, justify="left" if col in ("case", "variant", "figure") else "right")
    for c in changes:
        fmt = _fmt_for(c.figure)
        ratio = c.test["ratio"]
        style = None
        if c.significant:
            style = "green" if c.better else "red"
        table.add_row(
            c.case,
            c.variant,
            sm.SHORT_NAMES.get(c.figure, c.figure),
            tables.fmt_ci(c.a, fmt),
            tables.fmt_ci(c.b, fmt),
            "–" if ratio is None else f"{ratio:.3f}",
            c.text,
            style=style,
        )
    return table


def _fmt_for(figure: str) -> Callable[[float | None], str]:
    if figure.endswith("_bytes"):
        return units.fmt_bytes
    if figure == "throughput_rps":
        return units.fmt_rate
    if figure == sm.RATIO:
        return units.fmt_ratio
    if figure.startswith("cpu"):
        return lambda x: "–" if x is None else f"{x:.2f} µs"
    if figure.endswith("per_request"):
        return units.fmt_count
    return units.fmt_us
