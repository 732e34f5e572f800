"""Latency histograms and fairness figures for the load generator.

Latencies are recorded in microseconds into HdrHistogram histograms that
track 1 us to 60 s with 3 significant digits (a value is known to within
0.1%).  Each worker process fills its own histogram after its run (the hot
loop only appends nanosecond integers to a list: ``record_value`` costs ten
times a list append) and sends it to the parent encoded; the parent decodes
and adds them.  A value outside the range is clamped to the nearest end and
counted, never dropped silently.

Fairness: per-connection completion counts summarised as Jain's index
``(sum x)^2 / (n * sum x^2)`` (1.0 when every connection got the same
service, ``1/n`` when one connection got everything), the smallest and
largest *share* (completions divided by the fair share ``sum x / n``), and
the number of starved connections (zero completions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # 60 s
SIGNIFICANT_DIGITS = 3
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max", "mean")


def new_histogram() -> HdrHistogram:
    """An empty histogram for 1 us .. 60 s at 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_ns(histogram: HdrHistogram, values_ns: Iterable[int]) -> int:
    """Record nanosecond latencies, rounded to microseconds; return how many were clamped.

    Values below 1 us count as 1 us and above 60 s as 60 s; the return value
    says how many values needed it.
    """
    return _record_counts(histogram, Counter((v + 500) // 1000 for v in values_ns))


def record_us(histogram: HdrHistogram, values_us: Iterable[float]) -> int:
    """Record microsecond latencies, clamped into range; return how many were clamped."""
    return _record_counts(histogram, Counter(round(v) for v in values_us))


def _record_counts(histogram: HdrHistogram, counts: Counter[int]) -> int:
    # Equal values are recorded once with their count: record_value costs
    # ~0.6 us in pure Python, and half a million latencies hold a few
    # thousand distinct microsecond values.
    clamped = 0
    low = high = 0
    for value, count in counts.items():
        if value < LOWEST_US:
            low += count
        elif value > HIGHEST_US:
            high += count
        else:
            histogram.record_value(value, count)
    if low:
        histogram.record_value(LOWEST_US, low)
        clamped += low
    if high:
        histogram.record_value(HIGHEST_US, high)
        clamped += high
    return clamped


def encode(histogram: HdrHistogram) -> bytes:
    """A compact, picklable form for sending a histogram to another process."""
    return histogram.encode()


def merge(encoded: Iterable[bytes]) -> HdrHistogram:
    """One histogram holding every value of the encoded ones."""
    total = new_histogram()
    for blob in encoded:
        if blob:
            total.add(HdrHistogram.decode(blob))
    return total


def summary(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50/p90/p99/p999/max/mean in microseconds; every value None if it is empty."""
    if histogram.get_total_count() == 0:
        return dict.fromkeys(LATENCY_KEYS)
    out: dict[str, float | None] = {
        key: float(histogram.get_value_at_percentile(pct)) for key, pct in PERCENTILES
    }
    out["max"] = float(histogram.get_max_value())
    out["mean"] = float(histogram.get_mean_value())
    return out


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of ``values``: 1.0 = perfectly even, 1/n = one takes all.

    An empty vector or one of zeros (nobody was served) gives 0.0.
    """
    n = len(values)
    total = sum(values)
    squares = sum(v * v for v in values)
    if n == 0 or squares == 0:
        return 0.0
    return total * total / (n * squares)


def fairness(completions: Sequence[int]) -> dict[str, float | int]:
    """The result's ``fairness`` object for per-connection completion counts."""
    n = len(completions)
    total = sum(completions)
    fair = total / n if n else 0.0
    shares = [c / fair for c in completions] if fair > 0 else [0.0] * n
    return {
        "connections": n,
        "jain": jain_index(completions),
        "min_share": min(shares) if shares else 0.0,
        "max_share": max(shares) if shares else 0.0,
        "starved": sum(1 for c in completions if c == 0),
    }
