"""One figure over a case's repeats: mean, sample standard deviation, 95% interval.

:mod:`loadgen.report.summary` keeps a :class:`Stat` per figure of a row;
:mod:`loadgen.report.ranking` has the statistics it uses.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadgen.report import ranking


@dataclass(frozen=True)
class Stat:
    mean: float
    sd: float  # sample standard deviation; 0.0 for a single value
    n: int
    values: tuple[float, ...] = ()  # the repeats: the interval and the tests need them

    @property
    def cv(self) -> float | None:
        return self.sd / abs(self.mean) if self.n > 1 and self.mean else None

    @property
    def ci95(self) -> tuple[float, float]:
        """Student t 95% interval of the mean; ``(mean, mean)`` with one value."""
        if len(self.values) < 2:
            return (self.mean, self.mean)
        low, high = ranking.ci95(self.values)
        return (low, high)

    @property
    def half_width(self) -> float | None:
        """Half the 95% interval; None with one value (the spread is unknown, not zero)."""
        if self.n < 2 or len(self.values) < 2:
            return None
        low, high = self.ci95
        return (high - low) / 2.0

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat | None:
        kept = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not kept:
            return None
        sd = statistics.stdev(kept) if len(kept) > 1 else 0.0
        return cls(statistics.fmean(kept), sd, len(kept), tuple(kept))

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "sd": self.sd,
            "n": self.n,
            "cv": self.cv,
            "ci95": list(self.ci95),
        }
