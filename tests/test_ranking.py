"""loadgen.report.ranking: bottleneck classes, the t distribution, intervals, Welch's test,
tie letters after Holm's correction, compare, paired ratios. Pure functions: no server, no
timing."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.report import ranking as rk

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


# -- ties: Holm's correction, letters ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm")
        ([0.01, 0.02, 0.03, 0.04, 0.05], [0.05, 0.08, 0.09, 0.09, 0.09]),
        # R: p.adjust(c(0.04, 0.001, 0.5), "holm"): input order kept
        ([0.04, 0.001, 0.5], [0.08, 0.003, 0.5]),
        ([0.3], [0.3]),  # one pair: nothing to correct
        ([0.6, 0.7], [1.0, 1.0]),  # capped at 1
        ([], []),
    ],
)
def test_holm_known_values(raw: list[float], expected: list[float]) -> None:
    assert rk.holm(raw) == pytest.approx(expected)


@given(st.lists(st.floats(0.0, 1.0), max_size=40))
def test_holm_never_below_the_raw_p_and_keeps_its_order(raw: list[float]) -> None:
    adjusted = rk.holm(raw)
    assert all(p <= q <= 1.0 for p, q in zip(raw, adjusted, strict=True))
    for i, j in itertools.combinations(range(len(raw)), 2):
        if raw[i] < raw[j]:
            assert adjusted[i] <= adjusted[j]


def _letters(ranking: rk.Ranking) -> list[str]:
    return [ranking.label(n) for n in ranking.order]


def test_clearly_separated_rows_get_their_own_letters_in_mean_order() -> None:
    rows = [("mid", [100, 101, 99]), ("top", [150, 149, 151]), ("low", [50, 52, 48])]
    ranked = rk.rank_rows(rows)
    assert ranked.order == ("top", "mid", "low")
    assert _letters(ranked) == ["a", "b", "c"]
    assert rk.rank_rows(rows, higher_is_better=False).order == ("low", "mid", "top")
    assert ranked.separates_any and ranked.separated_share == 1.0


def test_overlapping_noisy_rows_share_one_letter() -> None:
    rows = [("a", [100, 110, 90]), ("b", [104, 94, 112]), ("c", [97, 108, 92])]
    ranked = rk.rank_rows(rows)
    assert _letters(ranked) == ["a", "a", "a"]
    assert ranked.groups() == {"a": list(ranked.order)}
    assert not ranked.separates_any and ranked.separated_share == 0.0


def test_a_tie_between_two_rows_is_one_shared_letter() -> None:
    rows = [
        ("d", [50, 51, 49]),
        ("b", [100, 110, 90]),
        ("a", [200, 201, 199]),
        ("c", [97, 108, 92]),
    ]
    ranked = rk.rank_rows(rows)
    assert ranked.order == ("a", "b", "c", "d")
    assert _letters(ranked) == ["a", "b", "b", "c"]


def test_a_chain_of_small_steps_is_overlapping_letters_not_one_group() -> None:
    # the chain rule tied all three: a ~ b and b ~ c, but the test separates a from c
    spread = [-6.0, -3.0, 0.0, 3.0, 6.0]
    a, b, c = ([m + d for d in spread] for m in (100.0, 95.0, 90.0))
    ranked = rk.rank_rows([("c", c), ("a", a), ("b", b)])
    separated = {frozenset((p.a, p.b)) for p in ranked.pairs if p.separated}
    assert separated == {frozenset("ac")}  # after Holm's correction over the three pairs
    assert _letters(ranked) == ["a", "ab", "b"]
    assert ranked.groups() == {"a": ["a", "b"], "b": ["b", "c"]}


def test_issue_18_chain_no_longer_ties_its_ends() -> None:
    # ten rows 4% apart, each 5 repeats at ±3%: every neighbour is tied, the ends are 1.4x
    # apart and separated, so no letter may span the table
    rows = [
        (f"v{i}", [100.0 * 0.96**i * (1 + d) for d in (-0.03, -0.015, 0.0, 0.015, 0.03)])
        for i in range(10)
    ]
    ranked = rk.rank_rows(rows)
    assert all(not p.separated for p in ranked.pairs if int(p.b[1:]) - int(p.a[1:]) == 1)
    groups = ranked.groups()
    assert len(groups) > 1
    assert not any({"v0", "v9"} <= set(members) for members in groups.values())


def test_equal_means_are_ordered_by_name_and_zero_spreads_differ_when_means_do() -> None:
    rows = [("zeta", [10, 10, 10]), ("alpha", [10, 10, 10]), ("mid", [5, 5, 5])]
    ranked = rk.rank_rows(rows)
    assert ranked.order == ("alpha", "zeta", "mid")
    assert _letters(ranked) == ["a", "a", "b"]


def test_one_repeat_separates_nothing() -> None:
    ranked = rk.rank_rows([("a", [100.0]), ("b", [1.0]), ("c", [50.0, 51.0])])
    assert _letters(ranked) == ["a", "a", "a"] and not ranked.separates_any


def test_letter_label_spans_three_or_more_letters() -> None:
    assert rk.letter_label(("a",)) == "a"
    assert rk.letter_label(("a", "b")) == "ab"
    assert rk.letter_label(("a", "b", "c", "e")) == "a–ce"
    assert rk.letter_label(("b", "d", "e", "f", "g")) == "bd–g"
    assert [rk.letter_name(i) for i in (0, 25, 26, 51, 52)] == ["a", "z", "A", "Z", "a2"]


def test_rank_rows_rejects_a_row_without_samples_or_twice_named() -> None:
    with pytest.raises(ValueError):
        rk.rank_rows([("a", [1.0, 2.0]), ("b", [])])
    with pytest.raises(ValueError):
        rk.rank_rows([("a", [1.0, 2.0]), ("a", [3.0, 4.0])])
    empty = rk.rank_rows([])
    assert empty.order == () and empty.groups() == {} and not empty.separates_any


def test_ties_record_round_trips_through_json() -> None:
    ranked = rk.rank_rows([("x", [1.0, 2.0, 3.0]), ("y", [10.0, 11.0, 12.0])])
    saved = json.loads(json.dumps(ranked.to_json()))
    assert saved["test"] == "welch" and saved["correction"] == "holm" and saved["alpha"] == 0.05
    assert saved["order"] == ["y", "x"] and saved["samples"]["x"] == [1.0, 2.0, 3.0]
    assert saved["groups"] == {"a": ["y"], "b": ["x"]}
    (pair,) = saved["pairs"]
    assert pair["a"] == "y" and pair["separated"] is True and pair["p"] == pair["p_adjusted"]


# a table of up to 8 rows, each 1 to 6 noisy repeats around its own level (spread 0: counts)
row_samples = st.tuples(st.integers(50, 150), st.integers(0, 30), st.integers(1, 6)).flatmap(
    lambda t: st.lists(
        st.integers(t[0] - t[1], t[0] + t[1]).map(float), min_size=t[2], max_size=t[2]
    )
)
tables = st.lists(row_samples, min_size=1, max_size=8).map(
    lambda rows: [(f"v{i}", s) for i, s in enumerate(rows)]
)


def _separated_by_definition(samples: dict[str, list[float]]) -> set[frozenset[str]]:
    """Holm's step-down procedure as defined, not as adjusted p-values: sort the m p-values,
    reject while the k-th smallest (from 0) is below alpha / (m - k), stop at the first not."""
    pairs = list(itertools.combinations(sorted(samples), 2))
    tested = sorted((rk.welch_p_value(samples[a], samples[b]), a, b) for a, b in pairs)
    out = set()
    for k, (p, a, b) in enumerate(tested):
        if p >= rk.ALPHA / (len(tested) - k):
            break
        out.add(frozenset((a, b)))
    return out


@settings(max_examples=300)
@given(tables, st.booleans())
def test_no_letter_holds_two_rows_the_test_separates(rows: list, higher: bool) -> None:
    ranked = rk.rank_rows(rows, higher_is_better=higher)
    samples = dict(rows)
    separated = _separated_by_definition(samples)
    groups = ranked.groups()
    assert sorted(ranked.order) == sorted(samples)
    for members in groups.values():  # the invariant: a tie group holds no separated pair
        assert not any(frozenset(p) in separated for p in itertools.combinations(members, 2))
    for a, b in itertools.combinations(ranked.order, 2):  # and the converse: no letter shared
        shared = any(a in m and b in m for m in groups.values())
        assert shared == (frozenset((a, b)) not in separated)
    for members in groups.values():  # each group is as large as it can be
        for other in set(samples) - set(members):
            assert any(frozenset((other, m)) in separated for m in members)
    assert all(ranked.letters[n] for n in ranked.order)  # every row has a letter
    assert "a" in ranked.letters[ranked.order[0]]  # the best row has a
    firsts = [ranked.order.index(m[0]) for m in groups.values()]
    assert firsts == sorted(firsts)  # letters in the order of their best row
    assert {frozenset((p.a, p.b)) for p in ranked.pairs if p.separated} == separated


@settings(max_examples=200)
@given(tables, st.booleans())
def test_rows_are_in_mean_order(rows: list, higher: bool) -> None:
    ranked = rk.rank_rows(rows, higher_is_better=higher)
    sign = 1.0 if higher else -1.0
    score = [sign * math.fsum(dict(rows)[n]) / len(dict(rows)[n]) for n in ranked.order]
    assert score == sorted(score, reverse=True)


@given(tables, st.randoms(use_true_random=False))
def test_rank_rows_does_not_depend_on_input_order(rows: list, rnd: random.Random) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert rk.rank_rows(shuffled) == rk.rank_rows(rows)
    negated = [(n, [-x for x in s]) for n, s in rows]
    mirrored = rk.rank_rows(negated, higher_is_better=False)
    assert mirrored.order == rk.rank_rows(rows).order
    assert mirrored.letters == rk.rank_rows(rows).letters


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
