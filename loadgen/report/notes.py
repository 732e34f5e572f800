"""Flags a row gets from outside its own runs: the other transport, the interpreter.

:func:`add_notes` runs once every case is summarised (:func:`loadgen.report.summary.summarize`)
and appends ``(sentence, few words)`` pairs to ``Row.notes``, which the flags show:

* A Unix-socket case (``transport`` "unix") sets each row beside the same variant's figure
  in its TCP twin (``tcp_case``, e.g. ``unix-echo`` beside ``echo-small``): the TCP req/s
  and the Unix/TCP ratio.  The TCP figure is the twin's own measurement, not a second one,
  so it is also stored as the row's ``tcp_throughput_rps`` stat.
* On an interpreter without a GIL (``python.gil_enabled`` false in a run), the rows of the
  thread-scheduled models are flagged: their threads ran Python in parallel, which the
  same rows on a GIL build do not -- shown, never hidden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import servers
from loadgen.report.units import fmt_rate

if TYPE_CHECKING:
    from loadgen.report.summary import CaseSummary

NO_GIL = (
    "no GIL: parallel threads (the server's interpreter ran with the GIL disabled, so "
    "its threads ran Python on several cores at once)",
    "no GIL: parallel threads",
)


def add_notes(summaries: list[CaseSummary], data: dict[str, Any]) -> None:
    by_key = {s.case: s for s in summaries}
    for record in data.get("cases", []):
        summary = by_key.get(record["key"])
        twin = by_key.get(record.get("tcp_case") or "")
        if summary is not None and twin is not None and record.get("transport") == "unix":
            _beside_tcp(summary, twin)
    free = _gil_free_variants(data.get("runs", []))
    for summary in summaries:
        for row in summary.rows:
            if row.variant in free and _threads(row.variant):
                row.notes.append(NO_GIL)


def _beside_tcp(summary: CaseSummary, twin: CaseSummary) -> None:
    """Each Unix row gains the TCP figure of the same variant and the ratio of the means."""
    tcp_rows = {r.variant: r for r in twin.rows}
    for row in summary.rows:
        tcp = tcp_rows.get(row.variant)
        stat = tcp.stats.get("throughput_rps") if tcp is not None else None
        unix = row.figure("throughput_rps")
        if tcp is None or stat is None or tcp.status != "ok":
            row.notes.append((f"no TCP figure from {twin.case} to set beside", "no TCP figure"))
            continue
        row.stats["tcp_throughput_rps"] = stat
        if unix is None or not stat.mean:
            continue
        ratio = unix / stat.mean
        row.notes.append(
            (
                f"TCP loopback ({twin.case}): {fmt_rate(stat.mean)} req/s; "
                f"Unix socket / TCP = {ratio:.2f}×",
                f"TCP {fmt_rate(stat.mean)}, ×{ratio:.2f} on Unix",
            )
        )


def _gil_free_variants(runs: list[dict[str, Any]]) -> set[str]:
    """Variants with a run whose server reported ``gil_enabled`` false."""
    return {r["variant"] for r in runs if (r.get("python") or {}).get("gil_enabled") is False}


def _threads(name: str) -> bool:
    variant = servers.REGISTRY.get(name)
    return variant is not None and variant.scheduling == "threads"


def server_pythons(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.json's ``server_python``: each distinct interpreter that ran a server."""
    seen: list[dict[str, Any]] = []
    for run in runs:
        info = run.get("python")
        if info and info not in seen:
            seen.append(info)
    return seen


def describe_python(info: dict[str, Any] | None) -> str:
    """``Python 3.13.0 (cpython, GIL disabled)`` -- for the start line and the report."""
    if not info:
        return "Python ?"
    gil = {True: ", GIL enabled", False: ", GIL disabled", None: ""}[info.get("gil_enabled")]
    return f"Python {info.get('version')} ({info.get('implementation')}{gil})"
