"""The benchmarks' regression gate on instruction counts, which a busy machine cannot move.

pytest-benchmark's ``--benchmark-compare-fail`` reads its timing statistics
only; on a shared machine an unchanged server's mean moves by more than 10%
from run to run.  The benchmarks (``pytest tests/benchmarks --instructions``)
also put each server's user-space instructions per request, counted by
cachegrind (:mod:`loadgen.suite.costs`), into the benchmark's ``extra_info``;
this module compares two such saves:

    python -m tests.benchmarks.gate BASELINE.json CURRENT.json [--fail 10%]

and ``tests/benchmarks/conftest.py``'s ``--instructions-compare`` does the same
inside the benchmark run.  A server whose instructions per request rose by
the limit or more fails; one missing from either side is listed, not failed;
the wall-clock means stand beside, reported, never gated.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIGURE = "instructions_per_request"  # the extra_info key the gate reads
DEFAULT_FAIL = 0.10


def parse_fraction(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1; ValueError for anything else or a value <= 0."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if value <= 0:
        raise ValueError(f"the limit must be > 0, got {text!r}")
    return value


def resolve(spec: str, storage: Path) -> Path:
    """A saved run: a path, or a pytest-benchmark save's number (``0001``) under ``storage``
    (``.benchmarks``); an empty spec is the newest save.  FileNotFoundError if none."""
    path = Path(spec)
    if spec and path.is_file():
        return path
    saves = sorted(storage.glob(f"*/{spec}*.json" if spec else "*/*.json"))
    if not saves:
        raise FileNotFoundError(f"no saved benchmark {spec or '(any)'} under {storage}")
    return max(saves, key=lambda p: p.name)  # saves are numbered: the highest is the newest


def figures(saved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Benchmark name -> its instructions per request and wall-clock mean (None if absent)."""
    out = {}
    for b in saved.get("benchmarks", []):
        info = b.get("extra_info") or {}
        out[b["name"]] = {
            "variant": info.get("variant", b["name"]),
            FIGURE: info.get(FIGURE),
            "spread": info.get("instructions_spread"),
            "mean_s": (b.get("stats") or {}).get("mean"),
        }
    return out


@dataclass
class Verdict:
    """One benchmark compared: the figures and whether it passes."""

    name: str
    variant: str
    baseline: float | None
    current: float | None
    change: float | None  # current / baseline - 1
    failed: bool
    baseline_mean_s: float | None = None
    current_mean_s: float | None = None

    @property
    def status(self) -> str:
        if self.change is None:
            return "not compared"
        return "FAIL" if self.failed else "ok"


def check(baseline: float | None, current: float | None, fail: float) -> tuple[float | None, bool]:
    """(the change, whether it fails): a rise of ``fail`` or more fails."""
    if not baseline or current is None:
        return None, False
    change = current / baseline - 1
    return change, change >= fail - 1e-12


def compare(
    baseline: dict[str, Any], current: dict[str, Any], fail: float = DEFAULT_FAIL
) -> list[Verdict]:
    """Every benchmark of either save, compared on instructions per request."""
    old, new = figures(baseline), figures(current)
    out = []
    for name in sorted(old.keys() | new.keys()):
        o, n = old.get(name, {}), new.get(name, {})
        change, failed = check(o.get(FIGURE), n.get(FIGURE), fail)
        out.append(
            Verdict(name, n.get("variant") or o.get("variant") or name, o.get(FIGURE),
                    n.get(FIGURE), change, failed, o.get("mean_s"), n.get("mean_s"))
        )  # fmt: skip
    return out


def report(verdicts: list[Verdict], fail: float) -> list[str]:
    """The comparison as text lines: one per benchmark, then the verdict."""

    def num(x: float | None) -> str:
        return "–" if x is None else f"{x:,.0f}"

    def ms(x: float | None) -> str:
        return "–" if x is None else f"{x * 1e3:.1f} ms"

    lines = [
        f"{'variant':<24} {'instr/req before':>16} {'after':>10} {'change':>8}  "
        f"{'status':<12} wall-clock mean before / after (not gated)"
    ]
    for v in verdicts:
        change = "–" if v.change is None else f"{v.change:+.2%}"
        lines.append(
            f"{v.variant:<24} {num(v.baseline):>16} {num(v.current):>10} {change:>8}  "
            f"{v.status:<12} {ms(v.baseline_mean_s)} / {ms(v.current_mean_s)}"
        )
    failed = [v.variant for v in verdicts if v.failed]
    lines.append(
        f"instructions gate ({fail:.0%}): "
        + (f"FAILED: {', '.join(failed)}" if failed else "passed")
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.gate",
        description="Compare two pytest-benchmark saves on instructions per request "
        "(tests/benchmarks --instructions); exit 1 when one rose by the limit or more.",
    )
    p.add_argument("baseline", help="a saved JSON, or a save's number under .benchmarks")
    p.add_argument("current", help="a saved JSON, or a save's number under .benchmarks")
    p.add_argument("--fail", default="10%", help="the rise that fails (default 10%%)")
    p.add_argument("--storage", default=".benchmarks", help="where numbered saves are")
    args = p.parse_args(argv)
    try:
        fail = parse_fraction(args.fail)
        old, new = (json.loads(resolve(s, Path(args.storage)).read_text())
                    for s in (args.baseline, args.current))  # fmt: skip
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    verdicts = compare(old, new, fail)
    print("\n".join(report(verdicts, fail)))
    return 1 if any(v.failed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
