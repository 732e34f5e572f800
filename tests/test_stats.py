"""loadgen.engine.stats: histogram merging and clamping, Jain's index, shares, starvation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.engine import stats


def _values(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    # a spread from microseconds to seconds, in nanoseconds
    return [int(rng.lognormvariate(12, 2)) + 1000 for _ in range(n)]


def test_merged_worker_histograms_equal_one_histogram_of_all_values() -> None:
    chunks = [_values(seed, 2000) for seed in range(4)]
    encoded = []
    for chunk in chunks:
        h = stats.new_histogram()
        stats.record_ns(h, chunk)
        encoded.append(stats.encode(h))
    merged = stats.merge(encoded)
    single = stats.new_histogram()
    stats.record_ns(single, [v for chunk in chunks for v in chunk])
    assert merged.get_total_count() == single.get_total_count() == 8000
    assert stats.summary(merged) == stats.summary(single)
    for pct in (1, 25, 50, 75, 90, 99, 99.9, 100):
        assert merged.get_value_at_percentile(pct) == single.get_value_at_percentile(pct)


def test_out_of_range_values_are_clamped_and_counted() -> None:
    h = stats.new_histogram()
    values_ns = [200, 5_000, 61_000_000_000, 120_000_000_000, 3_000_000]
    clamped = stats.record_ns(h, values_ns)
    assert clamped == 3  # 0.2 us, 61 s and 120 s
    assert h.get_total_count() == len(values_ns)  # clamped, not dropped
    s = stats.summary(h)
    assert s["max"] == h.get_highest_equivalent_value(stats.HIGHEST_US)  # 60 s's bucket top
    assert h.get_min_value() == stats.LOWEST_US


def test_summary_of_known_values() -> None:
    # Below 2,048 us every bucket holds one microsecond: the figures are exact.
    h = stats.new_histogram()
    stats.record_us(h, range(1, 1001))  # 1..1000 us
    assert stats.summary(h) == {
        "p50": 500.0,
        "p90": 900.0,
        "p99": 990.0,
        "p999": 999.0,
        "max": 1000.0,
        "mean": 500.5,
    }


# Buckets at 3 significant digits: 1 us wide below 2,048 us, then twice as wide
# each time the value doubles (2 us from 2,048, 4 us from 4,096, 8 us from 8,192,
# 32 us from 32,768, 128 us from 131,072).  A percentile is reported as the top
# of the bucket it falls in, the mean from each bucket's middle.
BUCKETS = [  # (recorded value, lowest and highest value of its bucket, its middle)
    (3_000, 3_000, 3_001, 3_001),  # 2 us wide
    (10_000, 10_000, 10_007, 10_004),  # 8 us wide
    (50_000, 49_984, 50_015, 50_000),  # 32 us wide: 50,000 is inside, not on an edge
    (200_000, 199_936, 200_063, 200_000),  # 128 us wide
]


def test_bucket_boundaries_assumed_here_are_the_histograms() -> None:
    h = stats.new_histogram()
    for value, low, high, _ in BUCKETS:
        assert h.get_lowest_equivalent_value(value) == low
        assert h.get_highest_equivalent_value(value) == high
        assert h.get_highest_equivalent_value(high + 1) > high  # the next bucket starts there


def test_percentiles_are_the_top_of_their_bucket_exactly() -> None:
    h = stats.new_histogram()
    # 1,000 values: 900 at 3 ms, 90 at 10 ms, 9 at 50 ms, 1 at 200 ms
    for (value, *_), count in zip(BUCKETS, (900, 90, 9, 1), strict=True):
        stats.record_us(h, [value] * count)
    s = stats.summary(h)
    assert s["p50"] == s["p90"] == 3_001  # the 500th and 900th values: 3 ms
    assert s["p99"] == 10_007  # the 990th: 10 ms
    assert s["p999"] == 50_015  # the 999th: 50 ms
    assert s["max"] == 200_063
    assert s["mean"] == pytest.approx((900 * 3_001 + 90 * 10_004 + 9 * 50_000 + 200_000) / 1000)


def test_values_either_side_of_a_bucket_edge() -> None:
    h = stats.new_histogram()
    stats.record_us(h, [4_094, 4_096])  # buckets [4094, 4095] and [4096, 4099]
    s = stats.summary(h)
    assert s["p50"] == 4_095  # the first value's bucket, not the second's
    assert s["p90"] == s["p99"] == s["p999"] == s["max"] == 4_099


def test_microseconds_are_rounded_half_up_from_nanoseconds() -> None:
    h = stats.new_histogram()
    stats.record_ns(h, [1_499, 1_500, 2_499, 2_500])  # 1, 2, 2 and 3 us
    assert [h.get_count_at_value(us) for us in (1, 2, 3)] == [1, 2, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2_048, stats.HIGHEST_US), min_size=1, max_size=300))
def test_percentiles_are_nearest_rank_and_never_above_max(values_us: list[int]) -> None:
    # Above 2 ms buckets are wider than 1 us: a percentile reported one bucket
    # off shows as a p99.9 above the max, or a figure off its nearest rank.
    h = stats.new_histogram()
    stats.record_us(h, values_us)
    s = stats.summary(h)
    ordered = sorted(values_us)
    for key, pct in stats.PERCENTILES:
        rank = max(1, int(pct * len(ordered) / 100 + 0.5))  # nearest rank, as HdrHistogram
        assert s[key] == h.get_highest_equivalent_value(ordered[rank - 1]), key
    assert s["max"] == h.get_highest_equivalent_value(ordered[-1])
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["p999"] <= s["max"]


def test_empty_histogram_summary_is_none_not_zero() -> None:
    assert stats.summary(stats.new_histogram()) == dict.fromkeys(stats.LATENCY_KEYS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5, 5, 5, 5], 1.0),
        ([10, 0, 0, 0], 0.25),  # one takes all: 1/n
        ([1, 2, 3, 4], 100 / (4 * 30)),
        ([3, 1], 16 / 20),
        ([0, 0, 0], 0.0),
        ([], 0.0),
    ],
)
def test_jain_index_known_vectors(values: list[int], expected: float) -> None:
    assert stats.jain_index(values) == pytest.approx(expected)


def test_fairness_shares_and_starved() -> None:
    f = stats.fairness([0, 10, 20, 30, 0])  # fair share 12
    assert f["connections"] == 5
    assert f["starved"] == 2
    assert f["min_share"] == 0.0
    assert f["max_share"] == pytest.approx(30 / 12)
    assert f["jain"] == pytest.approx(60**2 / (5 * 1400))


def test_fairness_even_load() -> None:
    f = stats.fairness([7] * 64)
    assert f == {"connections": 64, "jain": 1.0, "min_share": 1.0, "max_share": 1.0, "starved": 0}


def test_fairness_nobody_served() -> None:
    f = stats.fairness([0, 0])
    assert f["starved"] == 2 and f["jain"] == 0.0
