"""From raw runs to figures a reader can trust: mean ± sd, flags, ranking, comparison.

Rules (results/README.md explains them to readers):

* Every figure is the mean over the repeats with its sample standard
  deviation; a figure whose coefficient of variation (sd / mean) is above
  :data:`UNSTABLE_CV` is flagged *unstable*, as pyperf does.
* *% of best* is relative to the best Python variant's mean requests/s
  (reference rows excluded, failing rows excluded).
* Where the load generator was saturated in any repeat, that variant's
  requests/s is a floor (the generator, not the server, was the limit):
  those variants are ranked first, among themselves by server *user* CPU
  µs per request (less is better), then the others by requests/s.
* A reference variant (``native_epoll``) is shown as a ceiling row, never
  ranked.  A variant that failed verification, or failed at this level
  (errors, starved connections, crash), is shown and flagged, never ranked.
* :func:`compare` marks a change only when it is larger than the two runs'
  combined spread (sd of A + sd of B).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UNSTABLE_CV = 0.10
# memory per idle connection, in order of preference (see Row.memory_stat)
MEMORY_FIGURES = ("memory_per_connection_uss_bytes", "memory_per_connection_bytes")


def _dig(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(run: dict[str, Any]) -> float | None:
        node: Any = run
        for key in path:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return (
            float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None
        )

    return get


# figure name -> how to read it from a run record ({"result": loadgen JSON, ...})
FIGURES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "throughput_rps": _dig("result", "throughput_rps"),
    "p50_us": _dig("result", "latency_us", "p50"),
    "p90_us": _dig("result", "latency_us", "p90"),
    "p99_us": _dig("result", "latency_us", "p99"),
    "p999_us": _dig("result", "latency_us", "p999"),
    "max_us": _dig("result", "latency_us", "max"),
    "p99_uncorrected_us": _dig("result", "latency_us_uncorrected", "p99"),
    "cpu_us_per_request": _dig("result", "server", "cpu_us_per_request"),
    "cpu_user_us_per_request": _dig("result", "server", "cpu_user_us_per_request"),
    "cpu_system_us_per_request": _dig("result", "server", "cpu_system_us_per_request"),
    "server_cpu_util": _dig("result", "server", "cpu_util"),
    "memory_pss_bytes": _dig("result", "server", "memory_pss_bytes"),
    "peak_threads": _dig("result", "server", "peak_threads"),
    "peak_children": _dig("result", "server", "peak_children"),
    "peak_fds": _dig("result", "server", "peak_fds"),
    "jain": _dig("result", "fairness", "jain"),
    "starved": _dig("result", "fairness", "starved"),
    "errors_total": _dig("result", "errors_total"),
    "loadgen_cpu_util": _dig("result", "loadgen", "cpu_util_max"),
    "loadgen_cpu_us_per_request": _dig("result", "loadgen", "cpu_us_per_request"),
    "achieved_rate_ratio": _dig("result", "loadgen", "achieved_rate_ratio"),
    "slow_client_requests": _dig("result", "slow_clients", "requests"),
    "rate": _dig("rate"),
    "baseline_pss_bytes": _dig("baseline_pss_bytes"),
    "memory_per_connection_bytes": _dig("memory_per_connection_bytes"),
    "memory_per_connection_uss_bytes": _dig("result", "idle", "memory_per_connection_bytes"),
    "idle_served": _dig("result", "idle", "served"),
}

# the figures whose instability is flagged (the ones rows are ranked or read by)
STABILITY_FIGURES = {
    "throughput": ("throughput_rps", "cpu_user_us_per_request"),
    "open": ("p99_us", "cpu_user_us_per_request"),
    "memory": ("memory_per_connection_uss_bytes", "memory_per_connection_bytes"),
}


@dataclass(frozen=True)
class Stat:
    mean: float
    sd: float  # sample standard deviation; 0.0 for a single value
    n: int

    @property
    def cv(self) -> float | None:
        return self.sd / abs(self.mean) if self.n > 1 and self.mean else None

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        values = [v for v in values if v is not None and math.isfinite(v)]
        if not values:
            return None
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, len(values))

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "cv": self.cv}


@dataclass
class Row:
    variant: str
    family: str
    status: str  # "ok" | "failed" | "not verified" | "not run"
    stats: dict[str, Stat] = field(default_factory=dict)
    runs: int = 0
    failed_runs: int = 0
    reasons: list[str] = field(default_factory=list)
    saturated: bool = False
    unstable: list[str] = field(default_factory=list)
    rank: int | None = None
    pct_of_best: float | None = None
    kind: str = "throughput"

    @property
    def reference(self) -> bool:
        return self.family == "reference"

    @property
    def ranked(self) -> bool:
        return self.status == "ok" and not self.reference

    def figure(self, name: str) -> float | None:
        s = self.stats.get(name)
        return s.mean if s else None

    def memory_stat(self) -> Stat | None:
        """Memory per idle connection: USS when measured (steady on a busy machine), else PSS."""
        return self.stats.get(MEMORY_FIGURES[0]) or self.stats.get(MEMORY_FIGURES[1])

    def memory_per_connection(self) -> float | None:
        stat = self.memory_stat()
        return stat.mean if stat else None

    def flags(self) -> list[str]:
        out = []
        if self.reference:
            out.append("reference (ceiling, not ranked)")
        if self.status == "not verified":
            out.append("FAILED verify: " + "; ".join(self.reasons))
        elif self.status == "failed":
            out.append(
                f"FAILED at this level ({self.failed_runs}/{self.runs} runs): "
                + "; ".join(dict.fromkeys(self.reasons))
            )
        elif self.status == "not run":
            out.append("not run: " + "; ".join(self.reasons))
        if self.saturated and self.kind != "memory":  # idle connections load nobody
            out.append("loadgen saturated: req/s is a floor")
        for fig in self.unstable:
            cv = self.stats[fig].cv or 0.0
            out.append(f"unstable {SHORT_NAMES.get(fig, fig)} (CV {cv:.0%})")
        return out

    def short_flags(self) -> str:
        """The flags column: a few words; :meth:`flags` has the sentences."""
        out = []
        if self.reference:
            out.append("ceiling")
        if self.status == "not verified":
            out.append("FAILED verify")
        elif self.status == "failed":
            out.append(f"FAILED {self.failed_runs}/{self.runs}")
        elif self.status == "not run":
            out.append("not run")
        if self.saturated and self.kind != "memory":
            out.append("saturated")
        if self.unstable:
            out.append("unstable")
        return ", ".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "family": self.family,
            "status": self.status,
            "runs": self.runs,
            "failed_runs": self.failed_runs,
            "reasons": list(dict.fromkeys(self.reasons)),
            "saturated": self.saturated,
            "unstable": self.unstable,
            "rank": self.rank,
            "pct_of_best": self.pct_of_best,
            "flags": self.flags(),
            "stats": {k: v.to_json() for k, v in self.stats.items()},
        }


SHORT_NAMES = {
    "throughput_rps": "req/s",
    "cpu_user_us_per_request": "CPU user µs/req",
    "cpu_us_per_request": "CPU µs/req",
    "p50_us": "p50",
    "p99_us": "p99",
    "memory_pss_bytes": "memory",
    "memory_per_connection_bytes": "memory/conn PSS",
    "memory_per_connection_uss_bytes": "memory/conn USS",
}


@dataclass
class CaseSummary:
    case: str
    scenario: str
    label: str
    kind: str
    rows: list[Row]
    ranked_by_cpu: list[str] = field(default_factory=list)  # saturated variants
    x: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "scenario": self.scenario,
            "label": self.label,
            "kind": self.kind,
            "x": self.x,
            "ranked_by_cpu": self.ranked_by_cpu,
            "rows": [r.to_json() for r in self.rows],
        }


def summarize_case(
    case: dict[str, Any],
    runs: list[dict[str, Any]],
    variants: dict[str, dict[str, Any]],
    verify: dict[str, dict[str, Any]],
) -> CaseSummary:
    """One table: a row per variant that was planned for this case.

    ``case`` is a case record (key, scenario, label, kind, x, variants),
    ``runs`` the run records of this case, ``variants`` name -> {"family"},
    ``verify`` name -> {"ok", "reason"}.
    """
    rows = []
    for name in case["variants"]:
        family = variants.get(name, {}).get("family", "?")
        mine = [r for r in runs if r["variant"] == name and r["status"] != "interrupted"]
        v = verify.get(name)
        if v is not None and not v.get("ok"):
            rows.append(Row(name, family, "not verified", reasons=[v.get("reason") or "?"]))
            continue
        if not mine:
            rows.append(Row(name, family, "not run", reasons=["no completed measurement"]))
            continue
        row = Row(name, family, "ok", runs=len(mine), kind=case["kind"])
        measured = [r for r in mine if r.get("result") is not None]
        for fig, read in FIGURES.items():
            stat = Stat.of([x for r in measured if (x := read(r)) is not None])
            if stat is not None:
                row.stats[fig] = stat
        for r in mine:
            if r["status"] != "ok":
                row.failed_runs += 1
                row.reasons.append(r.get("error") or "failed")
        if row.failed_runs:
            row.status = "failed"
        row.saturated = any(
            ((r.get("result") or {}).get("loadgen") or {}).get("saturated") for r in measured
        )
        figures = STABILITY_FIGURES.get(case["kind"], ())
        if case["kind"] == "memory":  # only the figure the table is ranked by
            figures = tuple(f for f in MEMORY_FIGURES if f in row.stats)[:1]
        for fig in figures:
            s = row.stats.get(fig)
            if s is not None and s.cv is not None and s.cv > UNSTABLE_CV:
                row.unstable.append(fig)
        rows.append(row)
    summary = CaseSummary(
        case["key"], case["scenario"], case["label"], case["kind"], rows, x=case.get("x")
    )
    _rank(summary)
    return summary


def _rank(summary: CaseSummary) -> None:
    rows = summary.rows
    if summary.kind == "memory":
        ranked = sorted(
            (r for r in rows if r.ranked and r.memory_per_connection() is not None),
            key=lambda r: r.memory_per_connection(),  # type: ignore[arg-type,return-value]
        )
    else:
        best = max((r.figure("throughput_rps") or 0.0 for r in rows if r.ranked), default=0.0)
        for r in rows:
            tp = r.figure("throughput_rps")
            if best and tp is not None:
                r.pct_of_best = 100.0 * tp / best
        if summary.kind == "open":  # a fixed rate: rank by corrected p99, lower is better
            ranked = sorted(
                (r for r in rows if r.ranked and r.figure("p99_us") is not None),
                key=lambda r: r.figure("p99_us"),  # type: ignore[arg-type,return-value]
            )
        else:
            floor = [r for r in rows if r.ranked and r.saturated]
            rest = [r for r in rows if r.ranked and not r.saturated]
            floor.sort(key=lambda r: _or_inf(r.figure("cpu_user_us_per_request")))
            rest.sort(key=lambda r: -(r.figure("throughput_rps") or 0.0))
            ranked = floor + rest
            summary.ranked_by_cpu = [r.variant for r in floor]
    for i, r in enumerate(ranked, 1):
        r.rank = i
    unranked = [r for r in rows if r.rank is None]
    # ranked first, then failing/unmeasured models, then reference ceilings last
    unranked.sort(key=lambda r: (r.reference, r.status == "ok", r.variant))
    summary.rows = ranked + unranked


def _or_inf(x: float | None) -> float:
    return math.inf if x is None else x


def summarize(data: dict[str, Any]) -> list[CaseSummary]:
    """Every case of a results.json dict, in plan order."""
    variants = data.get("variants", {})
    verify = data.get("verify", {})
    out = []
    for case in data.get("cases", []):
        runs = [r for r in data.get("runs", []) if r["case"] == case["key"]]
        out.append(summarize_case(case, runs, variants, verify))
    return out


# -- cells: the same text in the terminal and in report.md --------------------


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1000:.1f}k" if x >= 10_000 else f"{x:,.0f}"


def fmt_us(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 10_000:
        return f"{x / 1000:,.0f} ms"
    if x >= 1000:
        return f"{x / 1000:.1f} ms"
    return f"{x:.0f} µs"


def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "–"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(x) >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} B"


def _pm(stat: Stat | None, fmt: Callable[[float | None], str]) -> str:
    if stat is None:
        return "–"
    if stat.n < 2:
        return fmt(stat.mean)
    return f"{fmt(stat.mean)} ± {fmt(stat.sd)}"


def columns(kind: str) -> list[str]:
    if kind == "memory":
        return [
            "#",
            "variant",
            "memory/conn USS",
            "memory/conn PSS",
            "PSS before",
            "PSS with N",
            "threads",
            "children",
            "errors",
            "flags",
        ]
    cols = [
        "#",
        "variant",
        "req/s ± sd",
        "% best",
        "p50 / p99 / p99.9",
        "CPU µs/req user/sys",
        "PSS",
        "Jain, starved",
        "errors",
        "flags",
    ]
    if kind == "open":
        cols[2] = "req/s achieved"
        cols[3] = "rate asked"  # each variant's own: % of best would compare nothing
        cols.insert(5, "p99 uncorr.")
    return cols


def cells(row: Row, kind: str) -> list[str]:
    s = row.stats
    rank = str(row.rank) if row.rank else ("ref" if row.reference else "–")
    err = s.get("errors_total")
    errors = "–" if err is None else f"{err.mean:,.1f}".removesuffix(".0")
    if kind == "memory":
        return [
            rank,
            row.variant,
            _pm(s.get("memory_per_connection_uss_bytes"), fmt_bytes),
            _pm(s.get("memory_per_connection_bytes"), fmt_bytes),
            fmt_bytes(row.figure("baseline_pss_bytes")),
            fmt_bytes(row.figure("memory_pss_bytes")),
            _num(row.figure("peak_threads")),
            _num(row.figure("peak_children")),
            errors,
            row.short_flags(),
        ]
    user, sysc = row.figure("cpu_user_us_per_request"), row.figure("cpu_system_us_per_request")
    cpu = "–" if user is None else f"{user:.1f} / {sysc:.1f}" if sysc is not None else f"{user:.1f}"
    jain, starved = row.figure("jain"), row.figure("starved")
    fair = "–" if jain is None else f"{jain:.2f}, {starved or 0:.0f}"
    pct = "–" if row.pct_of_best is None else f"{row.pct_of_best:.0f}%"
    lat = " / ".join(fmt_us(row.figure(f)) for f in ("p50_us", "p99_us", "p999_us"))
    out = [
        rank,
        row.variant,
        _pm(s.get("throughput_rps"), fmt_rate),
        pct,
        lat,
        cpu,
        fmt_bytes(row.figure("memory_pss_bytes")),
        fair,
        errors,
        row.short_flags(),
    ]
    if kind == "open":
        out[3] = fmt_rate(row.figure("rate"))
        out.insert(5, fmt_us(row.figure("p99_uncorrected_us")))
    return out


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def notes(summary: CaseSummary) -> list[str]:
    """Sentences printed under a table: how it is ranked, what is a floor."""
    out = []
    if summary.kind == "memory":
        out.append(
            "Ranked by memory per connection, USS (memory private to the server's processes; "
            "PSS where USS was not measured); less is better."
        )
    elif summary.kind == "open":
        out.append(
            "Fixed rate (half of each variant's echo-small req/s); latency is measured from the "
            "scheduled send time; ranked by that p99 (less is better)."
        )
    else:
        out.append("Ranked by requests/s; % best is relative to the best ranked Python variant.")
    for row in summary.rows:
        details = row.flags()
        if details:
            out.append(f"{row.variant}: " + "; ".join(details) + ".")
    if summary.ranked_by_cpu:
        out.append(
            "The load generator was saturated for "
            + ", ".join(summary.ranked_by_cpu)
            + ": their requests/s is a floor, not a ranking, so they are ranked first among "
            "themselves by server user CPU µs per request (less is better)."
        )
    return out
