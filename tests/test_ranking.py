"""loadgen.suite.ranking: bottleneck classes, the t distribution, intervals, Welch's test,
rank ties,
compare, paired ratios. Pure functions: no server, no timing."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.suite import ranking as rk

# -- bottleneck ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "cpus", "workers", "expected"),
    [
        (0.98, 1, [0.40, 0.55], "server"),
        (0.50, 1, [0.95], "generator"),
        (0.98, 1, [0.91], "both"),  # issue 9: thread_per_client's run, read as "generator" before
        (0.30, 1, [0.20], "neither"),  # one connection: waiting for wake-ups, not CPU
        (1.00, 2, [0.50], "neither"),  # one core of the two it may use is not its limit
        (1.90, 2, [0.50], "server"),
        (0.20, 1, [0.10, 0.95, 0.10], "generator"),  # any worker saturated is enough
        (0.90, 1, [0.10], "server"),  # the threshold itself counts as saturated
        (0.10, 1, [0.90], "generator"),
        (0.899, 1, [0.899], "neither"),
    ],
)
def test_classify_bottleneck(server: float, cpus: float, workers: list[float], expected: str):
    assert rk.classify_bottleneck(server, cpus, workers) == expected


def test_classify_bottleneck_threshold_is_a_parameter() -> None:
    assert rk.classify_bottleneck(0.85, 1, [0.2], threshold=0.8) == "server"
    assert rk.classify_bottleneck(0.85, 1, [0.2], threshold=0.95) == "neither"


def test_classify_bottleneck_rejects_what_it_cannot_judge() -> None:
    with pytest.raises(ValueError):
        rk.classify_bottleneck(0.5, 0, [0.5])
    with pytest.raises(ValueError):
        rk.classify_bottleneck(0.5, 1, [])


def test_row_bottleneck_majority_with_every_count() -> None:
    cls, counts = rk.row_bottleneck(["server", "both", "server", "neither", "server"])
    assert cls == "server"
    assert counts == {"server": 3, "generator": 0, "both": 1, "neither": 1}


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (["server", "generator"], "generator"),  # a floor is the claim that stays true
        (["generator", "server", "both", "both", "server", "generator"], "generator"),
        (["server", "both"], "both"),
        (["neither", "server"], "server"),
        (["neither"], "neither"),
    ],
)
def test_row_bottleneck_tie_break(classes: list[str], expected: str) -> None:
    assert rk.row_bottleneck(classes)[0] == expected
    assert rk.row_bottleneck(list(reversed(classes)))[0] == expected  # not first-seen


def test_row_bottleneck_rejects_empty_and_unknown() -> None:
    with pytest.raises(ValueError):
        rk.row_bottleneck([])
    with pytest.raises(ValueError):
        rk.row_bottleneck(["server", "saturated"])


# -- the t distribution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, math.tan(math.pi * 0.475)),  # Cauchy: closed form
        (2, 0.95 / math.sqrt(2 * 0.975 * 0.025)),  # closed form for df = 2
        (4, 2.776445),  # tables
        (9, 2.262157),
        (30, 2.042272),
        (1e7, 1.959964),  # the normal limit
    ],
)
def test_t_quantile_975(df: float, expected: float) -> None:
    assert rk.t_quantile(0.975, df) == pytest.approx(expected, rel=1e-6)


@given(st.floats(0.0, 1e4))
def test_t_p_value_matches_closed_forms(t: float) -> None:
    assert rk.t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, abs=1e-9)
    assert rk.t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-9)


# -- ci95 ---------------------------------------------------------------------------------------


def test_ci95_known_value() -> None:
    # mean 2, sd 1, n 3: 2 ± 4.302653 / sqrt(3)
    low, high = rk.ci95([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 2.484138, rel=1e-6)
    assert high == pytest.approx(2 + 2.484138, rel=1e-6)


finite = st.floats(-1e9, 1e9, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=12))
def test_ci95_contains_the_mean_and_is_centred_on_it(samples: list[float]) -> None:
    low, high = rk.ci95(samples)
    mean = math.fsum(samples) / len(samples)
    assert low <= mean <= high or math.isclose(low, high, abs_tol=1e-6)
    assert (low + high) / 2 == pytest.approx(mean, rel=1e-9, abs=1e-6)


def test_ci95_shrinks_with_more_repeats() -> None:
    pattern = [95.0, 100.0, 105.0]
    widths = []
    for k in range(1, 6):
        low, high = rk.ci95(pattern * k)
        widths.append(high - low)
    assert all(a > b for a, b in zip(widths, widths[1:], strict=False))


@pytest.mark.parametrize("n", [3, 5])
def test_ci95_covers_the_true_mean_95_percent_of_the_time(n: int) -> None:
    # with the normal 1.96 instead of the t quantile, n = 3 covers ~81%: this would fail
    rng = random.Random(9 + n)
    trials, hits = 4000, 0
    for _ in range(trials):
        low, high = rk.ci95([rng.gauss(100.0, 7.0) for _ in range(n)])
        hits += low <= 100.0 <= high
    assert 0.935 <= hits / trials <= 0.965


def test_ci95_single_sample_is_flagged_and_no_sample_raises() -> None:
    one = rk.ci95([123.0])
    assert tuple(one) == (123.0, 123.0)
    assert not one.spread_known
    assert rk.ci95([1.0, 2.0]).spread_known
    assert json.loads(json.dumps({"ci95": one})) == {"ci95": [123.0, 123.0]}
    with pytest.raises(ValueError):
        rk.ci95([])
    with pytest.raises(ValueError):
        rk.ci95([1.0, math.nan])


def test_relative_ci_halfwidth() -> None:
    assert rk.relative_ci_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(2.484138 / 2, rel=1e-6)
    assert rk.relative_ci_halfwidth([7.0, 7.0, 7.0]) == 0.0  # deterministic: stable now
    assert rk.relative_ci_halfwidth([7.0]) == math.inf  # unknown spread: never stable
    tight = [100.0, 101.0, 99.0, 100.5, 99.5]
    assert rk.relative_ci_halfwidth(tight) < 0.05 < rk.relative_ci_halfwidth([80.0, 100, 120])


# -- Welch's test -------------------------------------------------------------------------------


def test_welch_p_value_known_value() -> None:
    # scipy.stats.ttest_ind([1, 2, 3], [4, 5, 6], equal_var=False).pvalue
    assert rk.welch_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx(0.021311641, rel=1e-6)


def test_significantly_different_clear_cases() -> None:
    assert rk.significantly_different([100, 101, 99], [120, 121, 119])
    assert not rk.significantly_different([100, 101, 99], [100, 101, 99])
    assert not rk.significantly_different([100, 110, 90], [104, 94, 112])  # overlapping noise


def test_significantly_different_zero_spread_and_single_samples() -> None:
    assert not rk.significantly_different([5, 5, 5], [5, 5, 5, 5])
    assert rk.significantly_different([5, 5, 5], [6, 6, 6])  # counts: any difference is real
    assert not rk.significantly_different([100, 100, 100], [90, 100, 110])
    assert rk.significantly_different([100, 100, 100], [50, 51, 52])
    assert not rk.significantly_different([100], [1, 2, 3])  # one run: spread unknown
    assert not rk.significantly_different([100], [1])


@pytest.mark.parametrize(("na", "nb"), [(3, 3), (3, 10), (10, 3), (5, 5)])
def test_welch_false_positive_rate_is_about_5_percent(na: int, nb: int) -> None:
    # same mean, very different spreads: Student's pooled test (or Welch with the pooled df)
    # rejects far more often than 5% when the small sample has the big spread
    rng = random.Random(na * 100 + nb)
    trials = 3000
    hits = sum(
        rk.significantly_different(
            [rng.gauss(50.0, 4.0) for _ in range(na)], [rng.gauss(50.0, 1.0) for _ in range(nb)]
        )
        for _ in range(trials)
    )
    assert 0.03 <= hits / trials <= 0.07


ints = st.lists(st.integers(1, 10**6), min_size=2, max_size=10)


@given(ints, ints, st.integers(-1000, 1000))
def test_welch_is_symmetric_and_unit_free(a: list[int], b: list[int], shift: int) -> None:
    p = rk.welch_p_value(a, b)
    assert 0.0 <= p <= 1.0
    assert rk.welch_p_value(b, a) == p
    assert rk.welch_p_value([2 * x for x in a], [2 * x for x in b]) == pytest.approx(p, abs=1e-9)
    shifted = rk.welch_p_value([x + shift for x in a], [x + shift for x in b])
    assert shifted == pytest.approx(p, abs=1e-9)


# -- ranks --------------------------------------------------------------------------------------


def _ranks(rows: list[tuple[str, list[float]]], **kw: bool) -> list[tuple[str, int]]:
    return rk.rank_rows(rows, **kw)


def test_clearly_separated_rows_get_distinct_ranks_in_mean_order() -> None:
    rows = [("mid", [100, 101, 99]), ("top", [150, 149, 151]), ("low", [50, 52, 48])]
    assert _ranks(rows) == [("top", 1), ("mid", 2), ("low", 3)]
    assert _ranks(rows, higher_is_better=False) == [("low", 1), ("mid", 2), ("top", 3)]


def test_overlapping_noisy_rows_share_a_rank() -> None:
    rows = [("a", [100, 110, 90]), ("b", [104, 94, 112]), ("c", [97, 108, 92])]
    assert [r for _, r in _ranks(rows)] == [1, 1, 1]
    assert rk.rank_labels(_ranks(rows)) == ["1=", "1=", "1="]


def test_competition_ranks_1_2_2_4() -> None:
    rows = [
        ("d", [50, 51, 49]),
        ("b", [100, 110, 90]),
        ("a", [200, 201, 199]),
        ("c", [97, 108, 92]),
    ]
    ranked = _ranks(rows)
    assert ranked == [("a", 1), ("b", 2), ("c", 2), ("d", 4)]
    assert rk.rank_labels(ranked) == ["1", "2=", "2=", "4"]


def test_chain_rule_ties_a_whole_chain_of_neighbours() -> None:
    spread = [-6.0, -3.0, 0.0, 3.0, 6.0]
    a, b, c = ([m + d for d in spread] for m in (100.0, 95.0, 90.0))
    assert not rk.significantly_different(a, b)  # the premises of the rule
    assert not rk.significantly_different(b, c)
    assert rk.significantly_different(a, c)
    assert _ranks([("c", c), ("a", a), ("b", b)]) == [("a", 1), ("b", 1), ("c", 1)]


def test_equal_means_share_a_rank_and_are_ordered_by_name() -> None:
    rows = [("zeta", [10, 10, 10]), ("alpha", [10, 10, 10]), ("mid", [5, 5, 5])]
    assert _ranks(rows) == [("alpha", 1), ("zeta", 1), ("mid", 3)]


def test_rank_label() -> None:
    assert rk.rank_label(2, tied=True) == "2="
    assert rk.rank_label(2, tied=False) == "2"


def test_rank_rows_rejects_a_row_without_samples_or_twice_named() -> None:
    with pytest.raises(ValueError):
        rk.rank_rows([("a", [1.0, 2.0]), ("b", [])])
    with pytest.raises(ValueError):
        rk.rank_rows([("a", [1.0, 2.0]), ("a", [3.0, 4.0])])


# a table of up to 8 rows, each 1 to 6 noisy repeats around its own level
row_samples = st.tuples(st.integers(50, 150), st.integers(0, 30), st.integers(1, 6)).flatmap(
    lambda t: st.lists(
        st.integers(t[0] - t[1], t[0] + t[1]).map(float), min_size=t[2], max_size=t[2]
    )
)
tables = st.lists(row_samples, min_size=1, max_size=8).map(
    lambda rows: [(f"v{i}", s) for i, s in enumerate(rows)]
)


@settings(max_examples=300)
@given(tables, st.booleans())
def test_rank_invariants(rows: list[tuple[str, list[float]]], higher: bool) -> None:
    ranked = rk.rank_rows(rows, higher_is_better=higher)
    samples = dict(rows)
    sign = 1.0 if higher else -1.0
    score = [sign * math.fsum(samples[n]) / len(samples[n]) for n, _ in ranked]
    ranks = [r for _, r in ranked]
    assert sorted(n for n, _ in ranked) == sorted(samples)
    assert ranks[0] == 1
    for i in range(1, len(ranked)):
        above, here = samples[ranked[i - 1][0]], samples[ranked[i][0]]
        # competition ranks, non-decreasing: either the rank above or the position
        assert ranks[i] in (ranks[i - 1], i + 1)
        # a break exactly where the test separates neighbours
        assert (ranks[i] == i + 1) == rk.significantly_different(above, here)
    for i in range(len(ranked)):
        for j in range(i + 1, len(ranked)):
            if score[i] < score[j]:  # above a better mean only when sharing its rank
                assert ranks[i] == ranks[j]


@given(tables, st.randoms(use_true_random=False))
def test_rank_rows_does_not_depend_on_input_order(rows: list, rnd: random.Random) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert rk.rank_rows(shuffled) == rk.rank_rows(rows)
    negated = [(n, [-x for x in s]) for n, s in rows]
    assert rk.rank_rows(negated, higher_is_better=False) == rk.rank_rows(rows)


# -- compare ------------------------------------------------------------------------------------


def test_compare_identical_distributions_is_not_significant() -> None:
    rng = random.Random(7)
    a = [rng.gauss(100_000, 5_000) for _ in range(5)]
    b = [rng.gauss(100_000, 5_000) for _ in range(5)]
    for left, right in ((a, a), (a, b)):
        out = rk.compare(left, right)
        assert out["significant"] is False
        assert out["text"] == "not significant"
        assert out["better"] is None


def test_compare_gives_the_ratio_when_clearly_different() -> None:
    out = rk.compare([99, 100, 101], [122, 123, 124])
    assert out["ratio"] == pytest.approx(1.23)
    assert out["significant"] is True and out["better"] is True
    assert out["text"] == "1.23x faster"
    assert rk.compare([99, 100, 101], [90, 91, 92])["text"] == "1.10x slower"


def test_compare_lower_is_better_and_words() -> None:
    p99 = rk.compare([100, 101, 99], [80, 81, 79], higher_is_better=False)
    assert p99["text"] == "1.25x faster" and p99["better"] is True
    mem = rk.compare(
        [100, 101, 99], [120, 121, 119], higher_is_better=False, words=("smaller", "larger")
    )
    assert mem["text"] == "1.20x larger" and mem["better"] is False


def test_compare_single_run_and_zero_mean() -> None:
    assert rk.compare([100], [200, 201])["text"] == "not significant (n<2)"
    zero = rk.compare([0, 0, 0], [3, 3, 3])
    assert zero["ratio"] is None and zero["significant"] is True
    assert zero["text"] == "significant (0 -> 3)"


# -- noise control ------------------------------------------------------------------------------


def test_paired_ratios_pairs_rounds_and_skips_missing_ones() -> None:
    assert rk.paired_ratios([100, 90, None, 50], [200, 180, 190, None]) == [0.5, 0.5]
    with pytest.raises(ValueError):
        rk.paired_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        rk.paired_ratios([1.0], [0.0])


def test_paired_ratio_cancels_machine_drift() -> None:
    # issue 9: the last two rounds were slower for every variant (112k ... 81k)
    drift = [1.00, 0.97, 0.93, 0.80, 0.72]
    noise = [1.01, 0.99, 1.00, 1.01, 0.99]
    variant = [112_000 * d * e for d, e in zip(drift, noise, strict=True)]
    reference = [166_000 * d for d in drift]
    paired = rk.paired_ratios(variant, reference)
    assert rk.relative_ci_halfwidth(paired) < 0.05 < rk.relative_ci_halfwidth(variant)
    assert rk.tighter_basis(variant, paired) == "paired"


def test_raw_is_kept_when_the_reference_only_adds_noise() -> None:
    variant = [100.0, 101.0, 99.0, 100.0, 100.5]
    reference = [200.0, 240.0, 170.0, 210.0, 190.0]  # no shared drift, its own noise
    paired = rk.paired_ratios(variant, reference)
    assert rk.tighter_basis(variant, paired) == "raw"
    assert rk.tighter_basis(variant, []) == "raw"


def test_table_basis_uses_one_basis_for_every_row() -> None:
    drift = [1.0, 0.9, 0.8]
    raw = {"a": [100 * d for d in drift], "b": [50 * d * 1.01 for d in drift]}
    paired = {"a": [0.5, 0.5, 0.5], "b": [0.25, 0.2525, 0.25]}
    assert rk.table_basis(raw, paired) == "paired"
    assert rk.table_basis(raw, {"a": paired["a"]}) == "raw"  # b has no paired figure
    assert rk.table_basis({}, {}) == "raw"
