"""Is a resource growing with the requests served? The soak's leak rule, as pure functions.

:func:`fit_slope` fits a least-squares line through (cumulative requests,
resource) with a Student t interval on the slope; :func:`judge` applies it
to every resource of a soak's samples (after discarding the warm-up ones) and
:func:`verdict` says "no leak" or which resources leak.

A resource *grows* when the interval over the whole (post-warm-up) run lies
wholly above zero *and* the fitted growth over the run exceeds
:data:`THRESHOLDS`.  Growth alone does not tell a leak from a plateau (an
allocator filling its arenas, a cache reaching its size): :func:`trend` then
judges on the later half of the run.  The growth *plateaus* when the later
half's rate is, at 95%, below :data:`LEVEL_OFF` of the first half's (the
interval's upper end under half the first half's slope); it *leaks* when the
later half still grows (its own interval above zero) and does not slow so.
Neither shown (a later half too short or noisy to say) is "too short to
tell", never a leak.  Used by :mod:`loadgen.suite.soak`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from loadgen.report.ranking import t_quantile

MIB = 1024 * 1024
RESOURCES = ("rss_bytes", "fds", "threads", "children")
THRESHOLDS: dict[str, float] = {"rss_bytes": MIB, "fds": 2, "threads": 2, "children": 2}
CONFIDENCE = 0.95
MIN_FIT_POINTS = 3  # after warm-up; a line through fewer has no interval
# a plateau: the later half grows at under this share of the first half's rate (95% sure)
LEVEL_OFF = 0.5


@dataclass(frozen=True)
class Fit:
    """A least-squares line through (requests, resource), slope per million requests."""

    slope: float  # resource units per million requests
    low: float  # the slope's confidence interval
    high: float
    points: int
    growth: float  # slope x the requests the fitted samples span: growth over the run

    @property
    def significant(self) -> bool:
        """The interval lies wholly above zero: the resource grows, beyond noise."""
        return self.low > 0


def fit_slope(
    requests: Sequence[float], values: Sequence[float], confidence: float = CONFIDENCE
) -> Fit | None:
    """Least squares ``values ~ a + b * requests`` with a t interval on ``b``.

    None with fewer than :data:`MIN_FIT_POINTS` points or when every
    sample has the same request count (no x spread: no slope).
    """
    n = len(requests)
    if n != len(values):
        raise ValueError(f"{n} request counts for {len(values)} values")
    if n < MIN_FIT_POINTS:
        return None
    xs = [x / 1e6 for x in requests]  # millions: the slope comes out per million
    mx, my = sum(xs) / n, sum(values) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sxx
    sse = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, values, strict=True))
    stderr = math.sqrt(sse / (n - 2) / sxx)
    half = t_quantile(0.5 + confidence / 2, n - 2) * stderr
    return Fit(slope, slope - half, slope + half, n, slope * (max(xs) - min(xs)))


def warmup_samples(count: int) -> int:
    """How many leading samples the fit discards: the start sample and the first segment,
    and the second segment too when the run is long enough to spare it."""
    return 3 if count >= 10 else 2


def halves(requests: Sequence[float], values: Sequence[float]) -> tuple[Fit | None, Fit | None]:
    """The fits of the first and the later half of a series (the middle sample of an odd
    count in both): None for a half of fewer than :data:`MIN_FIT_POINTS` samples."""
    n = len(requests)
    first, later = slice(0, (n + 1) // 2), slice(n // 2, n)
    return (
        fit_slope(requests[first], values[first]),
        fit_slope(requests[later], values[later]),
    )


def trend(whole: Fit | None, first: Fit | None, later: Fit | None, threshold: float) -> str | None:
    """``flat``, ``plateaus``, ``leaks`` or None (too short to tell), by the rule above.

    The plateau needs evidence (the later rate shown below half the first's), not the
    absence of it: a later half too short for a narrow interval says nothing either way.
    """
    if whole is None:
        return None
    if not (whole.significant and whole.growth > threshold):
        return "flat"
    if first is None or later is None:
        return None
    if later.high < LEVEL_OFF * first.slope:
        return "plateaus"
    return "leaks" if later.significant else None


def judge(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per resource: the fit after warm-up and of its two halves, the threshold, the trend
    and whether it leaks (None: too short to tell)."""
    kept = list(samples[warmup_samples(len(samples)) :])
    xs = [s["requests"] for s in kept]
    fits: dict[str, dict[str, Any]] = {}
    for res in RESOURCES:
        ys = [s[res] for s in kept]
        fit = fit_slope(xs, ys)
        first, later = halves(xs, ys)
        kind = trend(fit, first, later, THRESHOLDS[res])
        entry: dict[str, Any] = {"threshold": THRESHOLDS[res], "trend": kind, "leak": None}
        if fit is not None:
            entry.update(asdict(fit))
        entry["first_half"] = asdict(first) if first is not None else None
        entry["later_half"] = asdict(later) if later is not None else None
        if kind is not None:
            entry["leak"] = kind == "leaks"
        fits[res] = entry
    return fits


def verdict(fits: dict[str, dict[str, Any]]) -> str:
    """``no leak``, ``no leak (rss plateaus)``, ``leaks fds, rss`` or ``too short to tell``."""
    leaking = [_SHORT[r] for r in RESOURCES if fits.get(r, {}).get("leak")]
    if leaking:
        return "leaks " + ", ".join(leaking)
    if any(fits.get(r, {}).get("leak") is None for r in RESOURCES):
        return "too short to tell"
    levelled = [_SHORT[r] for r in RESOURCES if fits[r].get("trend") == "plateaus"]
    return f"no leak ({', '.join(levelled)} plateaus)" if levelled else "no leak"


_SHORT = {"rss_bytes": "rss", "fds": "fds", "threads": "threads", "children": "children"}
