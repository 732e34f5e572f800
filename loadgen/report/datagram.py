"""udp-echo's figures from outside its own runs: each row's TCP sibling in echo-small (issue 17).

:func:`add_tcp_figures` runs once every case is summarised
(:func:`loadgen.report.summary.summarize`), like :mod:`loadgen.report.notes`.  A datagram
variant's ``tcp_sibling`` (results.json's ``variants[].tcp_sibling``, else the registry's)
is the TCP variant of the same model -- ``udp_threading`` and ``socketserver_threading``,
``asyncio_datagram`` and ``asyncio_protocol``, ``native_epoll_udp`` and ``native_epoll``.
Each row of a udp case with a ``tcp_case`` gains that sibling's figures there, copied, not
measured again, as ``tcp_*`` stats (each with its own spread; from a sibling that failed
echo-small too -- ``blocking_loop`` serves one of its 64 connections, ``socketserver_forking``
refuses the 40th -- with a note: its costs are those of the requests it served): req/s,
CPU µs per request (total, user, system), system calls and context switches per request.
The table shows them beside the row's own, and the ratio of the CPU means: the notes' "UDP
costs less", checked per model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import servers

if TYPE_CHECKING:
    from loadgen.report.summary import CaseSummary

# figure of the sibling's row -> its name in the UDP row
TCP_FIGURES = {
    "throughput_rps": "tcp_throughput_rps",
    "cpu_us_per_request": "tcp_cpu_us_per_request",
    "cpu_user_us_per_request": "tcp_cpu_user_us_per_request",
    "cpu_system_us_per_request": "tcp_cpu_system_us_per_request",
    "syscalls_per_request": "tcp_syscalls_per_request",
    "context_switches_per_request": "tcp_context_switches_per_request",
}


def add_tcp_figures(summaries: list[CaseSummary], data: dict[str, Any]) -> None:
    by_key = {s.case: s for s in summaries}
    known = data.get("variants", {})
    for record in data.get("cases", []):
        summary = by_key.get(record["key"])
        if summary is None or record.get("transport") != "udp" or not record.get("tcp_case"):
            continue
        twin = by_key.get(record["tcp_case"])
        summary.baseline = record["tcp_case"]
        summary.baseline_found = twin is not None
        if twin is not None:
            _beside_siblings(summary, twin, known)


def sibling_of(name: str, known: dict[str, dict[str, Any]]) -> str | None:
    """The TCP variant of ``name``'s model: as recorded in the run, else the registry's."""
    if "tcp_sibling" in (known.get(name) or {}):
        return known[name]["tcp_sibling"]
    variant = servers.REGISTRY.get(name)
    return variant.tcp_sibling if variant is not None else None


def _beside_siblings(
    summary: CaseSummary, twin: CaseSummary, known: dict[str, dict[str, Any]]
) -> None:
    rows = {r.variant: r for r in twin.rows}
    for row in summary.rows:
        sibling = sibling_of(row.variant, known)
        other = rows.get(sibling or "")
        if other is None or "cpu_us_per_request" not in other.stats:
            what = f"{sibling} in {twin.case}" if sibling else "a TCP sibling"
            row.notes.append((f"no TCP figures from {what} to set beside", "no TCP figures"))
            continue
        if other.status != "ok":  # its costs are still those of the requests it served
            row.notes.append(
                (
                    f"TCP sibling {sibling} FAILED {twin.case} ({'; '.join(other.reasons[:1])}): "
                    "its figures beside are over the requests it did serve",
                    f"TCP sibling failed {twin.case}",
                )
            )
        row.tcp_sibling = sibling
        for figure, name in TCP_FIGURES.items():
            stat = other.stats.get(figure)
            if stat is not None:
                row.stats[name] = stat
