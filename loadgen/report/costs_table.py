"""The cost table as text: one table per kind of request, the same in the terminal and in
report.md (:mod:`loadgen.suite.costs` measures it; results.json ``costs`` holds it).

Rows are ordered by instructions per request, fewest first.  A rank is
shared (``2=``) by the rows within the tolerance of the first row of their
group (the *leader*): the larger of 1% and the spreads of the two rows.
Each row is compared with its group's leader, never with its neighbour, so
a chain of small steps cannot tie rows that differ by more than that.  The
reference (``native_epoll``) is shown, dim, and not ranked.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

import servers
from loadgen.report.units import fmt_count

TIE_FLOOR = 0.01  # rows closer than this (relative) are never told apart
COLUMNS = (
    "rank",
    "variant",
    "instructions / req",
    "spread",
    "× fewest",
    "syscalls / req",
    "waits / req",
    "top syscalls / req",
)


def fmt_instructions(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def fmt_spread(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}"


def is_reference(name: str) -> bool:
    return name in servers.REGISTRY and servers.get(name).is_reference


def tolerance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far apart (relative) two rows may be and still share a rank."""
    return max(TIE_FLOOR, a.get("spread") or 0.0, b.get("spread") or 0.0)


def ranks(figures: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Variant -> its rank (``1``, ``2=``...) among the rows with a figure, by leaders."""
    rows = sorted(
        (f["instructions_per_request"], name)
        for name, f in figures.items()
        if f.get("instructions_per_request") and not is_reference(name)
    )
    out: dict[str, str] = {}
    leader: tuple[float, str] | None = None
    rank = 0
    shared: dict[int, int] = {}
    for position, (value, name) in enumerate(rows, start=1):
        if leader is None or value > leader[0] * (1 + tolerance(figures[leader[1]], figures[name])):
            leader, rank = (value, name), position
        shared[rank] = shared.get(rank, 0) + 1
        out[name] = str(rank)
    return {n: r + ("=" if shared[int(r)] > 1 else "") for n, r in out.items()}


def order(figures: dict[str, dict[str, Any]]) -> list[str]:
    """Rows: the measured ones by instructions per request, then those without a figure."""
    measured = [n for n, f in figures.items() if f.get("instructions_per_request")]
    measured.sort(key=lambda n: figures[n]["instructions_per_request"])
    return measured + [n for n in figures if n not in measured]


def top_syscalls(by_name: dict[str, float] | None, n: int = 3) -> str:
    if not by_name:
        return ""
    items = sorted(
        ((k, v) for k, v in by_name.items() if k != "other" and v), key=lambda kv: (-kv[1], kv[0])
    )
    return ", ".join(f"{k} {v:.2f}" for k, v in items[:n])


def cells(name: str, f: dict[str, Any], rank: str, fewest: float | None) -> list[str]:
    value = f.get("instructions_per_request")
    if f.get("error") and value is None:
        return ["–", name, f"error: {f['error']}", "", "", "", "", ""]
    ratio = f"{value / fewest:.2f}×" if value and fewest else "–"
    return [
        "ref" if is_reference(name) else rank or "–",
        name,
        fmt_instructions(value),
        fmt_spread(f.get("spread")),
        ratio,
        fmt_count(f.get("syscalls_per_request")),
        fmt_count(f.get("context_switches_per_request")),
        top_syscalls(f.get("syscalls_by_name")),
    ]


def kind_rows(costs: dict[str, Any], kind: str) -> list[list[str]]:
    """The cells of one kind's table, in row order."""
    figures = {n: k[kind] for n, k in costs.get("variants", {}).items() if kind in k}
    rank = ranks(figures)
    python = [
        f["instructions_per_request"]
        for n, f in figures.items()
        if f.get("instructions_per_request") and not is_reference(n)
    ]
    fewest = min(python, default=None)
    return [cells(n, figures[n], rank.get(n, ""), fewest) for n in order(figures)]


def kinds(costs: dict[str, Any]) -> list[dict[str, Any]]:
    return list((costs.get("plan") or {}).get("kinds", []))


def notes(costs: dict[str, Any], kind: dict[str, Any]) -> list[str]:
    """What a reader needs beside one kind's table."""
    runs = costs.get("runs", [])
    variants = len(costs.get("variants", {}))
    batch = f" ({kind['batch']} per write)" if kind.get("batch", 1) > 1 else ""
    env = ", ".join(f"{k}={v}" for k, v in costs.get("env", {"PYTHONHASHSEED": "0"}).items())
    lines = [
        f"Instructions: user space, the server's whole tree (threads, children), counted by "
        f"{costs.get('tool')}; per request = the difference of two server runs that served "
        f"{kind['low']:,} and {kind['high']:,} requests{batch} ({len(runs)} runs for {variants} "
        f"variants give each kind 2 estimates; {env}). Spread: (largest - "
        f"smallest) / mean of the estimates. Rows within max(1%, their spreads) of their "
        f"group's first row share its rank.",
        f"System calls and waits (voluntary context switches: the server blocked, in "
        f"epoll_wait, a read, a lock): a separate run without valgrind, "
        f"{kind['calls_window']:,} requests counted after {kind.get('calls_warmup', '?')} of "
        "warm-up (perf, "
        f"/proc), beside the counted runs; involuntary switches, which a busy machine moves, "
        f"are in results.json only.",
    ]
    not_idle = sorted({r["variant"] for r in runs if not r.get("idle", True)})
    if not_idle:
        lines.append(
            "Never idle around a counted window (counted anyway): " + ", ".join(not_idle) + "."
        )
    return lines


def skipped_line(costs: dict[str, Any]) -> str:
    return f"Cost table skipped: {costs['skipped']}."


def title(costs: dict[str, Any], kind: dict[str, Any]) -> str:
    return f"costs per request — {kind['label']}"


def rich_tables(costs: dict[str, Any] | None) -> list[Table | str]:
    """The terminal's cost tables (or the one line saying why there are none)."""
    if not costs:
        return []
    if costs.get("skipped"):
        return [skipped_line(costs)]
    out: list[Table | str] = []
    for kind in kinds(costs):
        table = Table(
            title=title(costs, kind),
            title_justify="left",
            caption="\n".join(notes(costs, kind)),
            caption_justify="left",
        )
        for col in COLUMNS:
            table.add_column(col, justify="left" if col in ("variant", COLUMNS[-1]) else "right")
        for row in kind_rows(costs, kind["key"]):
            table.add_row(*row, style="dim" if row[0] == "ref" else None)
        out.append(table)
    out.append(f"(cost table: {costs.get('wall_s', 0):.0f} s)")
    return out


def markdown(costs: dict[str, Any] | None) -> list[str]:
    """report.md's section: one table per kind, its notes (or why it was skipped)."""
    if not costs:
        return []
    out = ["## Costs per request: instructions, system calls, context switches", ""]
    if costs.get("skipped"):
        return [*out, skipped_line(costs), ""]
    out += [
        "Counts, not times: they do not move with the machine's load "
        f"(measured in {costs.get('wall_s', 0):.0f} s).",
        "",
    ]
    for kind in kinds(costs):
        out += [f"### {kind['label']}", ""]
        out += ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        for row in kind_rows(costs, kind["key"]):
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        out += ["", *[f"- {n}" for n in notes(costs, kind)], ""]
    return out
