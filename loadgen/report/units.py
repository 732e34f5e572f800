"""Number formats shared by the summaries, the tables and --compare: one way to write a rate,
a latency, a size, a ratio or a count per request."""

from __future__ import annotations


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


def fmt_ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def fmt_count(x: float | None) -> str:
    """A per-request count: 2 decimals under 10 (0.31 futex per request), else 1."""
    if x is None:
        return "–"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"
