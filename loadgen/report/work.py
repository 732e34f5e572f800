"""The WORK scenarios' figures that come from outside a row's own runs (issue 16).

:func:`add_work_figures` runs once every case is summarised
(:func:`loadgen.report.summary.summarize`), like :mod:`loadgen.report.notes`:

* ``backend-wait`` (kind ``wait``): the table's **ideal** -- connections ÷ the wait, the
  rate of a model that overlaps every wait and costs nothing -- capped at the generator's
  ceiling, taken as the most req/s any variant reached in echo-small in this run (normally
  the native reference, which the generator cannot outrun on 2 cores); unbounded when
  echo-small was not run.  Each row gets ``pct_of_ideal``: each repeat's req/s ÷ the ideal.
* A case with a ``baseline`` (head-of-line: echo-small; the offload case: the block case):
  each row gets the same variant's figures there, copied, not measured again:
  ``baseline_p50_us``, ``baseline_p99_us``, ``baseline_throughput_rps`` and
  ``baseline_neighbour_rps`` (when the baseline has neighbours).
* A case whose neighbour sends WORK offload: how each variant serves one (``offload``:
  results.json's ``variants[].offload``, the registry's ``Variant.offload``, for runs made
  before that key), shown as a column: the framework's idiom, or why there is none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import servers
from loadgen.report.repeats import Stat

if TYPE_CHECKING:
    from loadgen.report.summary import CaseSummary

CEILING_CASE = "echo-small"  # whose best req/s is the generator's ceiling
# figure of the row -> its name when copied from the baseline case
BASELINE_FIGURES = {
    "p50_us": "baseline_p50_us",
    "p99_us": "baseline_p99_us",
    "throughput_rps": "baseline_throughput_rps",
    "neighbour_rps": "baseline_neighbour_rps",
}


def add_work_figures(summaries: list[CaseSummary], data: dict[str, Any]) -> None:
    by_key = {s.case: s for s in summaries}
    records = {c["key"]: c for c in data.get("cases", [])}
    ceiling = generator_ceiling(by_key.get(CEILING_CASE))
    for summary in summaries:
        record = records.get(summary.case, {})
        if summary.kind == "wait":
            _ideal(summary, record, ceiling)
        baseline = record.get("baseline")
        if baseline:
            _beside_baseline(summary, baseline, by_key.get(baseline))
        if str(record.get("neighbour_work") or "").startswith("offload:"):
            known = data.get("variants", {})
            summary.offload = {
                r.variant: text for r in summary.rows if (text := offload_of(r.variant, known))
            }


def offload_of(name: str, known: dict[str, dict[str, Any]]) -> str | None:
    """How ``name`` serves a WORK offload: as recorded in the run, else the registry's."""
    text = (known.get(name) or {}).get("offload")
    if text is None and name in servers.REGISTRY:
        text = getattr(servers.get(name), "offload", None)
    return text


def generator_ceiling(echo_small: CaseSummary | None) -> tuple[float, str] | None:
    """(the most req/s any variant reached in echo-small, that variant), or None when
    echo-small was not run (or no row of it succeeded)."""
    if echo_small is None:
        return None
    rates = [
        (tp, r.variant)
        for r in echo_small.rows
        if r.status == "ok" and (tp := r.figure("throughput_rps")) is not None
    ]
    return max(rates) if rates else None


def wait_seconds(work: str | None) -> float | None:
    """``wait:1000`` -> 0.001; None for any other work."""
    kind, _, amount = (work or "").partition(":")
    return int(amount) / 1e6 if kind == "wait" and amount.isdigit() and int(amount) else None


def _ideal(summary: CaseSummary, record: dict[str, Any], ceiling: tuple[float, str] | None) -> None:
    wait = wait_seconds(record.get("work"))
    connections = record.get("connections")
    if wait is None or not connections:
        return
    summary.uncapped_ideal_rps = connections / wait
    summary.ideal_rps = summary.uncapped_ideal_rps
    if ceiling is not None:
        summary.ceiling_rps, summary.ceiling_from = ceiling
        summary.ideal_rps = min(summary.uncapped_ideal_rps, ceiling[0])
    for row in summary.rows:
        tp = row.stats.get("throughput_rps")
        if tp is not None:
            pct = Stat.of([100.0 * v / summary.ideal_rps for v in tp.values])
            if pct is not None:
                row.stats["pct_of_ideal"] = pct


def _beside_baseline(summary: CaseSummary, baseline: str, twin: CaseSummary | None) -> None:
    """Each row gains the same variant's figures in the baseline case (a note when none)."""
    summary.baseline = baseline
    summary.baseline_found = twin is not None
    if twin is None:
        return  # the note under the table says the case was not run
    rows = {r.variant: r for r in twin.rows}
    for row in summary.rows:
        other = rows.get(row.variant)
        if other is None or other.status != "ok":
            row.notes.append(
                (f"no {baseline} figures to set beside (not run or failed there)",
                 f"no {baseline} figures")
            )  # fmt: skip
            continue
        for figure, name in BASELINE_FIGURES.items():
            stat = other.stats.get(figure)
            if stat is not None:
                row.stats[name] = stat
