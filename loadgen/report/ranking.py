"""Statistics for rankings that survive a re-run: bottleneck class, 95% intervals, rank ties.

Pure functions over plain numbers (repeats of one figure, CPU fractions): no I/O, stdlib only.
The summary code feeds them; ``results/README.md`` explains the rules to readers.

Which statistics, and why
-------------------------
* **Student's t interval** for the mean (:func:`ci95`) and **Welch's t-test**, two-sided at
  5% (:func:`welch_p_value`, :func:`significantly_different`). The t distribution is computed
  here (regularized incomplete beta function, from ``math.lgamma`` and a continued fraction)
  because scipy is not a dependency; tests check it against closed forms and tables.
* Why not a bootstrap or a rank test: a row has 3 (quick) to 10 repeats. A bootstrap of 3
  values has 10 distinct resample means and its interval is too narrow: it does not allow for
  the spread itself being estimated from 3 values, which is exactly what the t quantile does
  (4.30 standard errors at n = 3, not 1.96). Mann-Whitney, or an exact permutation test, of 3
  repeats against 3 has 20 arrangements, so its smallest two-sided p-value is 0.1: at 5% it
  could never separate two variants in a quick run. The t procedures assume roughly normal
  repeats, which multi-second means are; Welch's form does not assume two variants have the
  same spread (they don't: a thread pool wanders more than a reactor). pyperf's
  ``compare_to`` uses Student's pooled t-test; Welch is the same test without that assumption.
* Edge cases, decided once: fewer than 2 repeats on a side means the spread is unknown, so
  nothing is called significantly different and the interval is ``(x, x)`` with
  ``spread_known`` False; two sides with zero spread (deterministic counts) differ exactly
  when their means differ.

Ties (:func:`rank_rows`): a compact letter display
---------------------------------------------------
Rows are sorted by mean, best first (equal means by name), so a row is never above one with a
better mean. Every pair of rows is compared by Welch's test, and the p-values of a table are
adjusted by **Holm's** step-down method (:func:`holm`): a pair is *separated* when its
adjusted p-value is below 5%, so the chance that a table calls any equal pair different is
at most 5% (whatever the tests' dependence: the rows share one machine). Each row then gets
one or more **letters** (:func:`letter_sets`, Piepho's insert-absorb algorithm): two rows
share a letter exactly when they are not separated. So a letter (a tie group) never holds two
rows the test separates, and two rows with no letter in common differ; a row whose letters
span others' (``ab``) is not told apart from either side. This replaces a chain rule that
tied neighbours only: its groups held rows the same test separates at once (a 1.73x span in
the issue-9 reference). Why not disjoint groups (each group = the rows not separated from its
best row): a cut between two groups claims every pair across it differs, which the test does
not support either. Why Holm and not no correction: 17 rows make 136 pairs, about 7 of them
"different" by chance at 5% each; Bonferroni is Holm's weaker form; Tukey's or Games-Howell's
studentized range would need a distribution scipy would bring.

Bottleneck (:func:`classify_bottleneck`, from :mod:`loadgen.engine.bottleneck`)
-------------------------------------------------------------------------------
A run is ``server`` when the server tree used at least 0.9 of the CPUs it may use (pinned: 1)
and no generator worker reached 0.9 of its core; ``generator`` the other way round; ``both``
when both did; ``neither`` when nobody was CPU-bound (latency-bound: one connection waits for
wake-ups, not CPU). A worker is one process, so at most one core. Over a row's repeats the most
frequent class wins (:func:`row_bottleneck`).

Noise control (:func:`paired_ratios`, :func:`tighter_basis`, :func:`table_basis`)
--------------------------------------------------------------------------------
A variant's figure divided by the reference's figure measured in the same round cancels drift
that slows every variant of that round alike. It is used when its relative interval is the
narrower one; a table uses one basis for all its rows, or its ranks would mix units.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# The per-run rule lives in the engine (it classifies every run); re-exported here for rows.
from loadgen.engine.bottleneck import BOTTLENECKS, SATURATED, classify_bottleneck  # noqa: F401

ALPHA = 0.05  # two-sided significance level of every test here
# row_bottleneck's tie-break, first wins. The classes in which the generator was saturated come
# first: then the row's req/s is shown as a floor, a claim that stays true whichever of the
# tied classes was the real one. "server" beats "neither": a CPU at its limit was observed.
TIE_PREFERENCE = ("generator", "both", "server", "neither")


# -- bottleneck ---------------------------------------------------------------------------------


def row_bottleneck(classes: Sequence[str]) -> tuple[str, dict[str, int]]:
    """The most frequent class over a row's repeats, and the count of every class.

    Ties go to the first class in :data:`TIE_PREFERENCE`.
    """
    if not classes:
        raise ValueError("no runs to classify")
    unknown = set(classes) - set(BOTTLENECKS)
    if unknown:
        raise ValueError(f"unknown bottleneck class(es): {sorted(unknown)}")
    seen = Counter(classes)
    counts = {c: seen[c] for c in BOTTLENECKS}
    top = max(counts.values())
    return next(c for c in TIE_PREFERENCE if counts[c] == top), counts


# -- the t distribution -------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        # each step applies the even then the odd term of the fraction
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # the fraction converges fast on this side of the mean of the beta distribution
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom (df may be fractional)."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    t2 = t * t
    if t2 < df:
        # df / (df + t²) rounds to 1.0 for a tiny t and the tail's size is lost: take
        # I_x(a, b) = 1 - I_(1-x)(b, a), with 1 - x computed directly.
        return 1.0 - _betainc(0.5, df / 2.0, t2 / (df + t2))
    return _betainc(df / 2.0, 0.5, df / (df + t2))


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (0.5 <= p < 1), by bisection on :func:`t_two_sided_p`."""
    if not 0.5 <= p < 1.0:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    tail = 2.0 * (1.0 - p)  # the two-sided p-value of the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):  # as close as floats get
            break
        if t_two_sided_p(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


# -- intervals and tests ------------------------------------------------------------------------


def _checked(samples: Sequence[float]) -> list[float]:
    values = [float(x) for x in samples]
    if not all(math.isfinite(x) for x in values):
        raise ValueError(f"samples must be finite numbers: {values}")
    return values


class Interval(tuple[float, float]):
    """``(low, high)``, a plain tuple (``json`` writes ``[low, high]``), plus ``n``.

    With one sample it is ``(x, x)`` and :attr:`spread_known` is False: not a zero spread, an
    unknown one.
    """

    n: int

    def __new__(cls, low: float, high: float, n: int) -> Interval:
        self = super().__new__(cls, (low, high))
        self.n = n
        return self

    @property
    def spread_known(self) -> bool:
        return self.n >= 2


def ci95(samples: Sequence[float]) -> Interval:
    """The 95% Student t interval for the mean: mean ± t(0.975, n-1) · sd / √n."""
    values = _checked(samples)
    if not values:
        raise ValueError("no samples")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Interval(mean, mean, 1)
    half = t_quantile(1.0 - ALPHA / 2.0, len(values) - 1) * statistics.stdev(values)
    half /= math.sqrt(len(values))
    return Interval(mean - half, mean + half, len(values))


def relative_ci_halfwidth(samples: Sequence[float]) -> float:
    """Half the width of :func:`ci95` over its centre (0.05 = ±5%); inf when not known.

    For ``--until-stable``: repeat until this is at most 0.05 for every headline figure.
    """
    low, high = interval = ci95(samples)
    half, centre = (high - low) / 2.0, (high + low) / 2.0
    if not interval.spread_known:
        return math.inf
    if half == 0.0:
        return 0.0
    return half / abs(centre) if centre else math.inf


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean.

    1.0 when a side has fewer than 2 samples (no spread known, so no evidence of a difference);
    with zero spread on both sides, 0.0 if the means differ and 1.0 if not.
    """
    xs, ys = _checked(a), _checked(b)
    if len(xs) < 2 or len(ys) < 2:
        return 1.0
    diff = statistics.fmean(xs) - statistics.fmean(ys)
    va, vb = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    se2 = va + vb
    if se2 == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    # Welch-Satterthwaite degrees of freedom, with weights in [0, 1] so nothing under/overflows
    wa, wb = va / se2, vb / se2
    df = 1.0 / (wa * wa / (len(xs) - 1) + wb * wb / (len(ys) - 1))
    return t_two_sided_p(diff / math.sqrt(se2), df)


def significantly_different(a: Sequence[float], b: Sequence[float]) -> bool:
    """Welch's t-test at 5%, two-sided (see :func:`welch_p_value` for the edge cases)."""
    return welch_p_value(a, b) < ALPHA


# -- ties: pairwise tests, Holm's correction, letters ---------------------------------------

TIE_TEST = "welch"  # the pairwise test of results.json's ties record
CORRECTION = "holm"  # its multiple-comparison correction, over the pairs of one table
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (R's ``p.adjust(p, "holm")``).

    The k-th smallest p (from 0) is multiplied by m - k, then made non-decreasing in that
    order and capped at 1: a pair is separated at family-wise level alpha when its adjusted p
    is below alpha.
    """
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for k, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - k) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PairTest:
    """Welch's test of two rows (``a`` above ``b`` in the table) and its Holm-adjusted p."""

    a: str
    b: str
    p: float
    p_adjusted: float

    @property
    def separated(self) -> bool:
        return self.p_adjusted < ALPHA


def pair_tests(order: Sequence[str], samples: Mapping[str, Sequence[float]]) -> list[PairTest]:
    """Every pair of ``order`` (table order), Welch's p-value and Holm's over all of them."""
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]
    raw = [welch_p_value(samples[a], samples[b]) for a, b in pairs]
    return [PairTest(a, b, p, q) for (a, b), p, q in zip(pairs, raw, holm(raw), strict=True)]


def letter_sets(order: Sequence[str], separated: set[frozenset[str]]) -> list[list[str]]:
    """The letters of a compact letter display, as the rows holding each, in table order.

    Piepho's insert-absorb (2004): start with one group of every row; for each separated
    pair, split every group holding both into one without each; drop a group inside another.
    What is left are the largest sets of rows no two of which are separated (the maximal
    cliques of the "not separated" graph), so two rows share a group exactly when they are
    not separated. Groups are sorted by their rows' positions, so the best row has "a".
    """
    groups: list[set[str]] = [set(order)] if order else []
    for pair in sorted(separated, key=lambda p: sorted(p)):
        a, b = sorted(pair)
        split = []
        for g in groups:
            split += [g - {a}, g - {b}] if pair <= g else [g]
        groups = _absorbed(split)
    position = {name: i for i, name in enumerate(order)}
    ranked = [sorted(g, key=position.__getitem__) for g in groups]
    return sorted(ranked, key=lambda g: [position[n] for n in g])


def _absorbed(groups: list[set[str]]) -> list[set[str]]:
    """The groups that are no other group's subset (one copy of equal ones)."""
    out: list[set[str]] = []
    for i, g in enumerate(groups):
        inside = any(g < h or (g == h and j < i) for j, h in enumerate(groups) if j != i)
        if not inside:
            out.append(g)
    return out


def letter_name(i: int) -> str:
    """The i-th letter (0 = ``a``); after ``Z`` (52 groups, rare even in 20 rows): ``a2`` ..."""
    return LETTERS[i % len(LETTERS)] + (str(i // len(LETTERS) + 1) if i >= len(LETTERS) else "")


def letter_label(letters: Sequence[str]) -> str:
    """``"ab"``; three or more letters in a row are spanned: ``a b c e`` -> ``"a–ce"``."""
    index = [_letter_index(x) for x in letters]
    out, i = [], 0
    while i < len(index):
        j = i
        while j + 1 < len(index) and index[j + 1] == index[j] + 1:
            j += 1
        out.append(f"{letters[i]}–{letters[j]}" if j - i >= 2 else "".join(letters[i : j + 1]))
        i = j + 1
    return "".join(out)


def _letter_index(name: str) -> int:
    lap = int(name[1:]) - 1 if len(name) > 1 else 0
    return lap * len(LETTERS) + LETTERS.index(name[0])


@dataclass(frozen=True)
class Ranking:
    """One table's order (best mean first), pairwise tests and letters (module doc, Ties)."""

    order: tuple[str, ...]
    samples: Mapping[str, tuple[float, ...]]
    pairs: tuple[PairTest, ...]
    letters: Mapping[str, tuple[str, ...]]  # row -> its letters, in order
    higher_is_better: bool = True

    def label(self, name: str) -> str:
        """The row's letters as shown in the table's ``#`` column (``ab``, ``a–d``)."""
        return letter_label(self.letters[name])

    def groups(self) -> dict[str, list[str]]:
        """letter -> the rows holding it, in table order: the tie groups."""
        out: dict[str, list[str]] = {}
        for name in self.order:
            for letter in self.letters[name]:
                out.setdefault(letter, []).append(name)
        return dict(sorted(out.items(), key=lambda kv: _letter_index(kv[0])))

    @property
    def separated_share(self) -> float:
        """The share of pairs the test separates: 0.0 = nothing told apart (or < 2 rows)."""
        return sum(p.separated for p in self.pairs) / len(self.pairs) if self.pairs else 0.0

    @property
    def separates_any(self) -> bool:
        """Whether any two rows of the table were told apart (False: every row is ``a``)."""
        return any(p.separated for p in self.pairs)

    def to_json(self) -> dict[str, Any]:
        """What a checker needs (``python -m loadgen.report.checkties``): the rule, the
        samples each p-value comes from, every pair's p-values and the groups."""
        return {
            "test": TIE_TEST,
            "alpha": ALPHA,
            "correction": CORRECTION,
            "higher_is_better": self.higher_is_better,
            "order": list(self.order),
            "samples": {n: list(self.samples[n]) for n in self.order},
            "pairs": [
                {"a": p.a, "b": p.b, "p": p.p, "p_adjusted": p.p_adjusted, "separated": p.separated}
                for p in self.pairs
            ],
            "groups": self.groups(),
        }


def rank_rows(
    rows: Sequence[tuple[str, Sequence[float]]], higher_is_better: bool = True
) -> Ranking:
    """The table's :class:`Ranking`: best mean first, letters after Holm-corrected Welch tests.

    Rows with equal means are ordered by name, so the table does not depend on input order.
    """
    samples: dict[str, tuple[float, ...]] = {}
    for name, values in rows:
        if name in samples:
            raise ValueError(f"row {name!r} appears twice")
        samples[name] = tuple(_checked(values))
        if not samples[name]:
            raise ValueError(f"row {name!r} has no samples")
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(samples, key=lambda n: (sign * statistics.fmean(samples[n]), n))
    pairs = pair_tests(order, samples)
    separated = {frozenset((p.a, p.b)) for p in pairs if p.separated}
    letters: dict[str, list[str]] = {n: [] for n in order}
    for i, group in enumerate(letter_sets(order, separated)):
        for name in group:
            letters[name].append(letter_name(i))
    return Ranking(
        tuple(order), samples, tuple(pairs), {n: tuple(v) for n, v in letters.items()},
        higher_is_better,
    )  # fmt: skip


# -- comparing two runs -------------------------------------------------------------------------


def compare(
    a: Sequence[float],
    b: Sequence[float],
    *,
    higher_is_better: bool = True,
    words: tuple[str, str] = ("faster", "slower"),
) -> dict[str, Any]:
    """B against A, as ``pyperf compare_to`` says it: "1.23x faster", or "not significant".

    ``ratio`` is mean(B) / mean(A); the text gives the factor (always >= 1) in the better or the
    worse direction, ``words`` = (better, worse), e.g. ("smaller", "larger") for memory.
    """
    xs, ys = _checked(a), _checked(b)
    if not xs or not ys:
        raise ValueError("both sides need samples")
    mean_a, mean_b = statistics.fmean(xs), statistics.fmean(ys)
    p = welch_p_value(xs, ys)
    significant = p < ALPHA
    ratio = mean_b / mean_a if mean_a else None
    better = None
    if not significant:
        text = "not significant" + ("" if min(len(xs), len(ys)) >= 2 else " (n<2)")
    elif ratio is None or ratio <= 0:  # a zero or sign-changing mean: no meaningful factor
        text = f"significant ({mean_a:g} -> {mean_b:g})"
    else:
        better = (ratio > 1.0) == higher_is_better
        factor = ratio if ratio >= 1.0 else 1.0 / ratio
        text = f"{factor:.2f}x {words[0] if better else words[1]}"
    return {
        "mean_a": mean_a,
        "mean_b": mean_b,
        "ratio": ratio,
        "p_value": p,
        "significant": significant,
        "better": better,
        "text": text,
    }


# -- noise control ------------------------------------------------------------------------------


def paired_ratios(
    variant: Sequence[float | None], reference: Sequence[float | None]
) -> list[float]:
    """Per round, the variant's figure ÷ the reference's figure measured in the same round.

    ``variant[i]`` and ``reference[i]`` belong to round i; a round where either was not
    measured (None) is left out. A reference figure must be > 0.
    """
    if len(variant) != len(reference):
        raise ValueError(f"{len(variant)} variant rounds but {len(reference)} reference rounds")
    out = []
    for v, r in zip(variant, reference, strict=True):
        if v is None or r is None:
            continue
        if not r > 0:
            raise ValueError(f"reference figure must be > 0, got {r}")
        out.append(v / r)
    return out


def tighter_basis(raw: Sequence[float], paired: Sequence[float]) -> str:
    """``"paired"`` when the paired ratios' relative interval is narrower, else ``"raw"``."""
    if not paired:
        return "raw"
    return "paired" if relative_ci_halfwidth(paired) < relative_ci_halfwidth(raw) else "raw"


def table_basis(
    raw_rows: Mapping[str, Sequence[float]], paired_rows: Mapping[str, Sequence[float]]
) -> str:
    """One basis for a whole table: ``"paired"`` when every row has paired ratios and their
    median relative interval half-width is smaller than the raw figures'; else ``"raw"``.

    Leave the reference row out of both mappings: its ratio to itself is always exactly 1.
    """
    if not raw_rows or any(len(paired_rows.get(name) or ()) == 0 for name in raw_rows):
        return "raw"
    raw = statistics.median(relative_ci_halfwidth(s) for s in raw_rows.values())
    paired = statistics.median(relative_ci_halfwidth(paired_rows[name]) for name in raw_rows)
    return "paired" if paired < raw else "raw"
