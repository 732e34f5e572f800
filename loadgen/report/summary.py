"""From raw runs to figures a reader can trust: mean with a 95% interval, flags, ranks, ties.

Rules (results/README.md explains them; :mod:`loadgen.report.ranking` has the statistics;
:mod:`loadgen.report.tables` turns rows into text):

* Only the runs that count: a ``discarded`` run (its round was redone: the machine drifted)
  is left out; a counted run (``purpose`` "count") gives the cost counters only.
* Every figure is the mean over the repeats with its sample standard deviation and its
  Student t 95% interval (``ci95``). A figure whose coefficient of variation is above
  :data:`UNSTABLE_CV` is flagged *unstable*, as pyperf does; the flag decides nothing.
* Each run's *bottleneck* (server, generator, both, neither) comes from the engine, or is
  computed from the CPU figures of older results; then the generator's capacity corrects it
  (:func:`loadgen.engine.bottleneck.capacity_rule`): ``generator`` or ``both`` only when the
  run's req/s came within 10% of ``native_epoll``'s in the same round of the case. A row's
  class is the most frequent one. A row whose class is ``generator`` shows its requests/s
  as a floor (``≥ 118k``).
* Rows are ranked by the table's headline figure (:func:`_ranking_figure`), best mean first, so a
  row is never above one with a better mean; each ranked row gets letters (``ab``): two rows
  share a letter exactly when Welch's test over all pairs, Holm-corrected, does not separate
  them (:func:`loadgen.report.ranking.rank_rows`). Throughput tables may rank by the *paired
  ratio* to the reference measured in the same round, when that is tighter (``ranked_by``).
* A reference variant (``native_epoll``) is shown as a ceiling row, never ranked. A variant
  that failed verification, or failed at this level, is shown and flagged, never ranked.
  The open-loop table at each variant's own rate (``rate_basis`` "own") is never ranked:
  its rows carry different loads.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadgen.engine.bottleneck import capacity_rule
from loadgen.engine.result import COUNTERS_OFF, RATE_SHORTFALL
from loadgen.report import datagram, noise, notes, ranking, work
from loadgen.report.figures import COST_FIGURES, FIGURES, RATIO, STABILITY_FIGURES, number
from loadgen.report.repeats import Stat
from loadgen.report.units import fmt_bytes

UNSTABLE_CV = 0.10
# memory per idle connection, in order of preference (see Row.memory_stat)
MEMORY_FIGURES = ("memory_per_connection_uss_bytes", "memory_per_connection_bytes")
# The smallest memory a connection can be seen to add: one page over all the connections.
# USS and PSS move by whole pages, so a smaller figure is below what was measured.
PAGE_BYTES = 4096
REFERENCE_NAME = "native_epoll"  # the preferred reference row of a paired ratio
# the kinds whose tables are read by closed-loop requests/s (a generator-bound row's is a floor)
CLOSED_LOOP_RATES = ("throughput", "wait", "cpu", "udp")


def run_bottleneck(run: dict[str, Any], ceiling: float | None = None) -> str | None:
    """The run's bottleneck class: the engine's, or computed from its CPU figures (older
    results), then corrected by the generator's ``ceiling`` (its req/s in the run's round,
    :func:`ceilings`) when known; None when the CPU figures are missing."""
    cpu_class = _cpu_class(run)
    if cpu_class is None:
        return None
    tp = number((run.get("result") or {}).get("throughput_rps"))
    return capacity_rule(cpu_class, tp, ceiling)


def _cpu_class(run: dict[str, Any]) -> str | None:
    result = run.get("result") or {}
    given = result.get("bottleneck")
    if given in ranking.BOTTLENECKS:
        return given
    server = result.get("server") or {}
    loadgen = result.get("loadgen") or {}
    util = number(server.get("cpu_util"))
    workers = [number(w.get("cpu_util")) for w in loadgen.get("workers") or []]
    generator = [w for w in workers if w is not None]
    if not generator and number(loadgen.get("cpu_util_max")) is not None:
        generator = [float(loadgen["cpu_util_max"])]
    if util is None or not generator:
        return None
    cpus = number(server.get("cpus_allowed")) or 1.0  # pinned to one CPU before this key
    return ranking.classify_bottleneck(util, cpus, generator)


def ceilings(runs: list[dict[str, Any]]) -> dict[Any, float]:
    """round -> the generator's ceiling in a case: ``native_epoll``'s req/s in that round
    (its timed, counted, successful runs); {} when the case did not measure it."""
    return {
        r.get("round"): tp
        for r in runs
        if r["variant"] == REFERENCE_NAME
        and r["status"] == "ok"
        and not r.get("discarded")
        and r.get("purpose", "timed") == "timed"
        and (tp := FIGURES["throughput_rps"](r))
    }


def ceiling_of(run: dict[str, Any], by_round: dict[Any, float] | None) -> float | None:
    """The ceiling a run is judged against: its round's, else (a run redone alone, in a round
    of its own) the median over the case's rounds; None without any."""
    if not by_round:
        return None
    return by_round.get(run.get("round")) or statistics.median(by_round.values())


@dataclass
class Row:
    variant: str
    family: str
    status: str  # "ok" | "failed" | "not verified" | "not run"
    stats: dict[str, Stat] = field(default_factory=dict)
    runs: int = 0
    failed_runs: int = 0
    discarded_runs: int = 0
    reasons: list[str] = field(default_factory=list)
    saturated: bool = False  # the generator said so in a repeat (informative; see floor)
    rate_missed: bool = False  # open loop: a repeat served under RATE_SHORTFALL of the rate
    unstable: list[str] = field(default_factory=list)
    rank: int | None = None  # position by mean among the ranked rows (1 = best): no claim
    letters: tuple[str, ...] = ()  # its tie groups: rows sharing a letter are not separated
    pct_of_best: float | None = None
    kind: str = "throughput"
    bottleneck: str | None = None
    bottleneck_counts: dict[str, int] = field(default_factory=dict)
    not_admitted: int = 0  # the most connections never served before the window, any repeat
    # runs the CPU rule called generator-limited that came under 90% of the generator's
    # ceiling in their round (loadgen.engine.bottleneck.capacity_rule): reclassified
    below_ceiling: int = 0
    syscalls_by_name: dict[str, float] | None = None  # per request, mean over the repeats
    syscalls_unavailable: str | None = None
    memory_resolution: float | None = None  # bytes: see memory_resolution()
    # (sentence, few words) flags that come from outside the row's own runs: the
    # TCP figure beside a Unix one, threads that run in parallel (loadgen.report.notes)
    notes: list[tuple[str, str]] = field(default_factory=list)
    # udp-echo: the TCP variant of the same model whose echo-small figures are set beside
    # (loadgen.report.datagram); None elsewhere
    tcp_sibling: str | None = None

    @property
    def reference(self) -> bool:
        return self.family == "reference"

    @property
    def ranked(self) -> bool:
        """Eligible for a rank: a verified Python variant that did not fail at this level."""
        return self.status == "ok" and not self.reference

    @property
    def floor(self) -> bool:
        """Its requests/s is a lower bound: the generator, not the server, was the limit.
        (Closed loop only: an open loop's req/s is the rate asked; see ``saturated``.)"""
        return self.bottleneck == "generator" and self.kind in CLOSED_LOOP_RATES

    @property
    def rank_label(self) -> str | None:
        return None if self.rank is None else ranking.letter_label(self.letters)

    @property
    def below_resolution(self) -> bool:
        stat = self.memory_stat()
        res = self.memory_resolution
        return stat is not None and res is not None and stat.mean < res

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
        elif self.status == "failed" and not self.runs:
            out.append("FAILED at this level (declared, not run): " + "; ".join(self.reasons))
        elif self.status == "failed":
            out.append(
                f"FAILED at this level ({self.failed_runs}/{self.runs} runs): "
                + "; ".join(dict.fromkeys(self.reasons))
            )
        elif self.status == "not run":
            out.append("not run: " + "; ".join(self.reasons))
        if self.floor:
            counts = _counts_text(self.bottleneck_counts)
            out.append(f"generator-bound ({counts}): req/s is a floor")
        if self.rate_missed:
            out.append(f"served under {RATE_SHORTFALL:.0%} of the asked rate in a repeat")
        if self.not_admitted:
            out.append(
                f"{self.not_admitted} not admitted (never served before the measured window: "
                "a limit of the model, not starvation during the window)"
            )
        if self.below_resolution and self.memory_resolution is not None:
            out.append(
                f"memory per connection below resolution (< {fmt_bytes(self.memory_resolution)})"
            )
        for fig in self.unstable:
            cv = self.stats[fig].cv or 0.0
            out.append(f"unstable {SHORT_NAMES.get(fig, fig)} (CV {cv:.0%})")
        if self.discarded_runs:
            out.append(f"{self.discarded_runs} run(s) discarded (disturbed: measured again)")
        return out + [sentence for sentence, _ in self.notes]

    def short_flags(self) -> str:
        """The flags column: a few words; :meth:`flags` has the sentences."""
        out = []
        if self.reference:
            out.append("ceiling")
        if self.status == "not verified":
            out.append("FAILED verify")
        elif self.status == "failed":
            out.append(f"FAILED {self.failed_runs}/{self.runs}" if self.runs else "FAILED (cap)")
        elif self.status == "not run":
            out.append("not run")
        if self.floor:
            out.append("floor")
        if self.rate_missed:
            out.append("rate not reached")
        if self.not_admitted:
            out.append(f"{self.not_admitted} not admitted")
        if self.unstable:
            out.append("unstable")
        return ", ".join(out + [words for _, words in self.notes])

    def to_json(self) -> dict[str, Any]:
        bottleneck = None
        if self.bottleneck is not None:
            bottleneck = {"class": self.bottleneck, "counts": self.bottleneck_counts}
        return {
            "variant": self.variant,
            "family": self.family,
            "status": self.status,
            "runs": self.runs,
            "failed_runs": self.failed_runs,
            "discarded_runs": self.discarded_runs,
            "reasons": list(dict.fromkeys(self.reasons)),
            "rank": self.rank,
            "rank_label": self.rank_label,
            "letters": list(self.letters),
            "pct_of_best": self.pct_of_best,
            "bottleneck": bottleneck,
            "floor": self.floor,
            "saturated": self.saturated,
            "rate_missed": self.rate_missed,
            "unstable": self.unstable,
            "not_admitted": self.not_admitted,
            "below_ceiling": self.below_ceiling,
            "syscalls_by_name": self.syscalls_by_name,
            "syscalls_unavailable": self.syscalls_unavailable,
            "tcp_sibling": self.tcp_sibling,
            "memory_resolution_bytes": self.memory_resolution,
            "below_resolution": self.below_resolution,
            "flags": self.flags(),
            "stats": {k: v.to_json() for k, v in self.stats.items()},
        }


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)


SHORT_NAMES = {
    "throughput_rps": "req/s",
    RATIO: "× ref",
    "cpu_user_us_per_request": "CPU user µs/req",
    "cpu_us_per_request": "CPU µs/req",
    "context_switches_per_request": "ctx switches/req",
    "syscalls_per_request": "syscalls/req",
    "p50_us": "p50",
    "p99_us": "p99",
    "memory_pss_bytes": "memory",
    "memory_per_connection_bytes": "memory/conn PSS",
    "memory_per_connection_uss_bytes": "memory/conn USS",
    "server_cpu_util": "server cores",
    "neighbour_rps": "neighbour req/s",
    "pct_of_ideal": "% of ideal",
    "lost_fraction": "lost %",
}


@dataclass
class CaseSummary:
    case: str
    scenario: str
    label: str
    kind: str
    rows: list[Row]
    x: int | None = None
    ranked_by: str | None = None  # the figure ranks were decided on; None: not ranked
    ties: ranking.Ranking | None = None  # the pairwise tests and letters of the ranked rows
    rate_basis: str | None = None  # open loop: "own" (each variant's) or "common"
    paired_reference: str | None = None  # the reference row of ratio_to_reference
    # backend-wait (loadgen.report.work): connections ÷ the wait, capped at the generator's
    # ceiling (the best echo-small req/s of this run, from ceiling_from); None: not that table
    ideal_rps: float | None = None
    uncapped_ideal_rps: float | None = None
    ceiling_rps: float | None = None
    ceiling_from: str | None = None  # the variant whose echo-small req/s is the ceiling
    # a case shown beside this one (Case.baseline) and whether this run measured it
    baseline: str | None = None
    baseline_found: bool = False
    # a case whose neighbour sends WORK offload: variant -> how it serves one (the registry's
    # Variant.offload: its framework's idiom, or why it needs none or has none)
    offload: dict[str, str] | None = None
    # the one line shown instead of a # column of "a" when the machine's noise left nearly
    # every ranked row in one tie group (loadgen.report.noise.too_noisy); None otherwise
    too_noisy: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "scenario": self.scenario,
            "label": self.label,
            "kind": self.kind,
            "x": self.x,
            "ranked_by": self.ranked_by,
            "ties": None if self.ties is None else self.ties.to_json(),
            "rate_basis": self.rate_basis,
            "paired_reference": self.paired_reference,
            "ideal_rps": self.ideal_rps,
            "uncapped_ideal_rps": self.uncapped_ideal_rps,
            "ceiling_rps": self.ceiling_rps,
            "ceiling_from": self.ceiling_from,
            "baseline": self.baseline,
            "baseline_found": self.baseline_found,
            "offload": self.offload,
            "too_noisy": self.too_noisy,
            "rows": [r.to_json() for r in self.rows],
        }


# -- building the rows ------------------------------------------------------------------------


def summarize_case(
    case: dict[str, Any],
    runs: list[dict[str, Any]],
    variants: dict[str, dict[str, Any]],
    verify: dict[str, dict[str, Any]],
    cost_table: bool = False,
) -> CaseSummary:
    """One table: a row per variant that was planned for this case.

    ``case`` is a case record (key, scenario, label, kind, x, variants, rate_basis),
    ``runs`` the run records of this case (discarded ones included: they are counted, not
    used), ``variants`` name -> {"family"}, ``verify`` name -> {"ok", "reason"};
    ``cost_table``: the run has one (a table too noisy to rank points to it).
    """
    rate_basis = case.get("rate_basis")
    if case["kind"] == "open" and rate_basis is None:
        rate_basis = "own"  # before the common-rate case, the open loop used each one's own
    summary = CaseSummary(
        case["key"],
        case["scenario"],
        case["label"],
        case["kind"],
        [],
        x=case.get("x"),
        rate_basis=rate_basis,
    )
    kept: dict[str, list[dict[str, Any]]] = {}
    ceiling = ceilings(runs)
    for name in case["variants"]:
        mine = [r for r in runs if r["variant"] == name and r["status"] != "interrupted"]
        row, kept[name] = _row(name, case["kind"], mine, variants, verify, ceiling)
        summary.rows.append(row)
    for name, reason in (case.get("declared_failures") or {}).items():
        family = variants.get(name, {}).get("family", "?")
        summary.rows.append(Row(name, family, "failed", reasons=[reason], kind=case["kind"]))
    _paired_ratios(summary, kept)
    _rank(summary)
    summary.too_noisy = noise.too_noisy(summary, cost_table)
    return summary


def _row(
    name: str,
    kind: str,
    mine: list[dict[str, Any]],
    variants: dict[str, dict[str, Any]],
    verify: dict[str, dict[str, Any]],
    ceiling: dict[Any, float] | None = None,
) -> tuple[Row, list[dict[str, Any]]]:
    """The row of one variant, and the runs its figures come from; ``ceiling``: the
    generator's by round (:func:`ceilings`)."""
    family = variants.get(name, {}).get("family", "?")
    kept = [r for r in mine if not r.get("discarded")]
    # a counted run (purpose "count") gives the cost counters only; older
    # results, without counted runs, had them in the timed runs
    costs = [r for r in kept if r.get("purpose") == "count" and r.get("result") is not None]
    counted = [r for r in kept if r.get("purpose", "timed") != "count"]
    v = verify.get(name)
    if v is not None and not v.get("ok"):
        return Row(name, family, "not verified", reasons=[v.get("reason") or "?"]), []
    if not counted:
        return Row(name, family, "not run", reasons=["no completed measurement"]), []
    row = Row(name, family, "ok", runs=len(counted), kind=kind)
    row.discarded_runs = len(mine) - len(kept)
    measured = [r for r in counted if r.get("result") is not None]
    for fig, read in FIGURES.items():
        stat = Stat.of([read(r) for r in (costs if costs and fig in COST_FIGURES else measured)])
        if stat is not None:
            row.stats[fig] = stat
    for r in counted:
        if r["status"] != "ok":
            row.failed_runs += 1
            row.reasons.append(r.get("error") or "failed")
    if row.failed_runs:
        row.status = "failed"
    row.saturated = any(
        ((r.get("result") or {}).get("loadgen") or {}).get("saturated") for r in measured
    )
    row.rate_missed = any(
        x is not None and x < RATE_SHORTFALL for x in map(FIGURES["achieved_rate_ratio"], measured)
    )
    # (the CPU rule's class, the class with the generator's capacity) of each measured run
    judged = [
        (c, run_bottleneck(r, ceiling_of(r, ceiling)))
        for r in measured
        if (c := _cpu_class(r)) is not None
    ]
    classes = [after for _, after in judged]
    row.below_ceiling = sum(before != after for before, after in judged)
    if classes:
        row.bottleneck, row.bottleneck_counts = ranking.row_bottleneck(classes)
    row.not_admitted = int(max((FIGURES["not_admitted"](r) or 0 for r in measured), default=0))
    _syscalls(row, costs or measured)
    _flag_unstable(row)
    if kind in ("memory", "c10k"):
        row.memory_resolution = memory_resolution(row)
    return row, [r for r in measured if r["status"] == "ok"]


def _syscalls(row: Row, measured: list[dict[str, Any]]) -> None:
    """Per-name syscalls per request, mean over the repeats that have them; or why none."""
    servers = [(r.get("result") or {}).get("server") or {} for r in measured]
    tables = [s["syscalls_by_name"] for s in servers if isinstance(s.get("syscalls_by_name"), dict)]
    if tables:
        names = sorted({n for t in tables for n in t})
        row.syscalls_by_name = {
            n: statistics.fmean(v)
            for n in names
            if (v := [x for t in tables if (x := number(t.get(n))) is not None])
        }
    reasons = [s["syscalls_unavailable"] for s in servers if s.get("syscalls_unavailable")]
    if reasons and "syscalls_per_request" not in row.stats:
        why = Counter(reasons).most_common(1)[0][0]
        if why == COUNTERS_OFF:  # a timed run's: the suite counts in separate runs
            why = "no counted run of this case (--no-counters, or not in the profile's counted)"
        row.syscalls_unavailable = why


def _flag_unstable(row: Row) -> None:
    figures = STABILITY_FIGURES.get(row.kind, ())
    if row.kind == "memory":  # only the figure the table is read by
        figures = tuple(f for f in MEMORY_FIGURES if f in row.stats)[:1]
    for fig in figures:
        s = row.stats.get(fig)
        if s is not None and s.cv is not None and s.cv > UNSTABLE_CV:
            row.unstable.append(fig)


def memory_resolution(row: Row) -> float | None:
    """The smallest memory per connection this row could tell from zero, in bytes.

    The larger of one page spread over the connections served (USS and PSS move by whole
    pages) and the half-width of the 95% interval (a mean inside it is not told from zero).
    """
    return resolution(row.memory_stat(), row.figure("idle_served"))


def resolution(stat: Stat | None, served: float | None) -> float | None:
    if stat is None:
        return None
    page = PAGE_BYTES / served if served else 0.0
    return max(page, stat.half_width or 0.0) or None


# -- paired ratios and ranks ------------------------------------------------------------------


def _by_round(runs: list[dict[str, Any]]) -> dict[Any, float]:
    """round -> the mean requests/s of the runs of that round."""
    seen: dict[Any, list[float]] = {}
    for r in runs:
        tp = FIGURES["throughput_rps"](r)
        if tp is not None:
            seen.setdefault(r.get("round"), []).append(tp)
    return {k: statistics.fmean(v) for k, v in seen.items()}


def _paired_ratios(summary: CaseSummary, kept: dict[str, list[dict[str, Any]]]) -> None:
    """``ratio_to_reference``: per round, a row's req/s ÷ the reference's in that round."""
    if summary.kind != "throughput":
        return
    refs = [r.variant for r in summary.rows if r.reference and kept.get(r.variant)]
    if not refs:
        return
    ref = REFERENCE_NAME if REFERENCE_NAME in refs else refs[0]
    reference = {k: v for k, v in _by_round(kept[ref]).items() if v > 0}
    for row in summary.rows:
        if row.reference or not kept.get(row.variant):
            continue
        mine = _by_round(kept[row.variant])
        rounds = sorted(mine, key=str)
        ratios = ranking.paired_ratios(
            [mine[k] for k in rounds], [reference.get(k) for k in rounds]
        )
        stat = Stat.of(ratios)
        if stat is not None:
            row.stats[RATIO] = stat
            summary.paired_reference = ref


def _rank(summary: CaseSummary) -> None:
    rows = summary.rows
    candidates = [r for r in rows if r.ranked]
    if summary.kind in ("throughput", "cpu", "udp"):
        _pct_of_best(rows, candidates)
    figure, higher = _ranking_figure(summary, candidates)
    summary.ranked_by = figure
    ranked: list[Row] = []
    if figure is not None:
        candidates = [r for r in candidates if figure in r.stats]
        by_name = {r.variant: r for r in candidates}
        summary.ties = ranking.rank_rows(
            [(r.variant, r.stats[figure].values) for r in candidates], higher_is_better=higher
        )
        for position, name in enumerate(summary.ties.order, 1):
            row = by_name[name]
            row.rank, row.letters = position, summary.ties.letters[name]
            ranked.append(row)
    rest = [r for r in rows if r.rank is None]
    # ranked first, then unranked models (ok ones first), then reference ceilings last
    rest.sort(key=lambda r: (r.reference, r.status != "ok", _unranked_key(summary, r)))
    summary.rows = ranked + rest


def _ranking_figure(summary: CaseSummary, candidates: list[Row]) -> tuple[str | None, bool]:
    """The figure a table is ranked by and whether higher is better; None: not ranked."""
    if summary.kind == "memory":
        for fig in MEMORY_FIGURES:  # one unit for the whole table: USS if every row has it
            if candidates and all(fig in r.stats for r in candidates):
                return fig, False
        return (MEMORY_FIGURES[0] if candidates else None), False
    if summary.kind == "open":
        return ("p99_us" if summary.rate_basis == "common" else None), False
    if summary.kind in ("c10k", "neighbour"):  # c10k's round, the victims': less is better
        return ("p99_us" if candidates else None), False
    if summary.kind == "flood":  # each at the same multiple of its own capacity: who sheds less
        return ("lost_fraction" if candidates else None), False
    raw = {
        r.variant: r.stats["throughput_rps"].values
        for r in candidates
        if "throughput_rps" in r.stats
    }
    paired = {r.variant: r.stats[RATIO].values for r in candidates if RATIO in r.stats}
    if raw and ranking.table_basis(raw, paired) == "paired":
        return RATIO, True
    return "throughput_rps", True


def _unranked_key(summary: CaseSummary, row: Row) -> tuple[float, str]:
    """Unranked rows (the own-rate open loop, failures) by their headline mean, then name."""
    if summary.kind in ("open", "c10k", "neighbour"):
        return (_or_inf(row.figure("p99_us")), row.variant)
    if summary.kind == "memory":
        return (_or_inf(row.memory_per_connection()), row.variant)
    if summary.kind == "flood":
        return (_or_inf(row.figure("lost_fraction")), row.variant)
    return (-(row.figure("throughput_rps") or 0.0), row.variant)


def _pct_of_best(rows: list[Row], candidates: list[Row]) -> None:
    best = max((r.figure("throughput_rps") or 0.0 for r in candidates), default=0.0)
    for r in rows:
        tp = r.figure("throughput_rps")
        if best and tp is not None:
            r.pct_of_best = 100.0 * tp / best


def _or_inf(x: float | None) -> float:
    return math.inf if x is None else x


def summarize(data: dict[str, Any]) -> list[CaseSummary]:
    """Every case of a results.json dict, in plan order."""
    variants = data.get("variants", {})
    verify = data.get("verify", {})
    out = []
    cost_table = bool((data.get("costs") or {}).get("variants"))
    for case in data.get("cases", []):
        runs = [r for r in data.get("runs", []) if r["case"] == case["key"]]
        out.append(summarize_case(case, runs, variants, verify, cost_table))
    notes.add_notes(out, data)
    work.add_work_figures(out, data)
    datagram.add_tcp_figures(out, data)
    return out
