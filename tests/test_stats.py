"""loadgen.engine.stats: histogram merging and clamping, Jain's index, shares, starvation."""

from __future__ import annotations

import random

import pytest

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
    assert s["max"] == pytest.approx(stats.HIGHEST_US, rel=1e-3)
    assert h.get_min_value() == stats.LOWEST_US


def test_summary_of_known_values() -> None:
    h = stats.new_histogram()
    stats.record_us(h, range(1, 1001))  # 1..1000 us
    s = stats.summary(h)
    assert s["p50"] == pytest.approx(500, rel=2e-3)
    assert s["p99"] == pytest.approx(990, rel=2e-3)
    assert s["max"] == pytest.approx(1000, rel=2e-3)
    assert s["mean"] == pytest.approx(500.5, rel=2e-3)
    assert set(s) == set(stats.LATENCY_KEYS)


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
