"""The soak's leak rule on synthetic series, and one tiny real soak that leaves nothing behind."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import psutil
import pytest
from rich.console import Console

import servers
from loadgen.suite import soak


def series(requests: list[int], **resources: list[float]) -> list[dict[str, float]]:
    """Samples as the soak records them; resources not given stay flat."""
    flat = {"rss_bytes": 20 * soak.MIB, "fds": 5, "threads": 1, "children": 0}
    out = []
    for i, r in enumerate(requests):
        sample = {"segment": i, "requests": r, **flat}
        sample.update({k: v[i] for k, v in resources.items()})
        out.append(sample)
    return out


REQUESTS = [i * 7_919 for i in range(30)]  # a run of about 230k requests


def test_fit_by_hand() -> None:
    # y = 0, 1, 3 at 0, 1, 2 million: slope 1.5, SSE 1/6, se sqrt(1/12), t(0.975, 1) = 12.706
    fit = soak.fit_slope([0, 1_000_000, 2_000_000], [0, 1, 3])
    assert fit is not None
    assert fit.slope == pytest.approx(1.5)
    half = 12.7062 * math.sqrt(1 / 12)
    assert (fit.low, fit.high) == pytest.approx((1.5 - half, 1.5 + half), rel=1e-4)
    assert fit.growth == pytest.approx(3.0)


def test_flat_series_is_no_leak() -> None:
    rng = random.Random(1)
    noisy_rss = [20 * soak.MIB + rng.randint(-300_000, 300_000) for _ in REQUESTS]
    fits = soak.judge(series(REQUESTS, rss_bytes=noisy_rss))
    assert all(f["leak"] is False for f in fits.values())
    assert fits["fds"]["slope"] == 0
    assert soak.verdict(fits) == "no leak"


def test_one_fd_per_10k_requests_is_a_leak_with_the_right_slope() -> None:
    fds = [5 + r // 10_000 for r in REQUESTS]
    fits = soak.judge(series(REQUESTS, fds=fds))
    assert fits["fds"]["leak"] is True
    assert fits["fds"]["slope"] == pytest.approx(100, rel=0.05)  # per million requests
    assert fits["fds"]["low"] > 0
    assert soak.verdict(fits) == "leaks fds"


def test_growth_below_the_threshold_is_not_a_leak() -> None:
    # one thread more over the whole run, steadily: significant, but under 2 threads
    threads = [1 + i / len(REQUESTS) for i in range(len(REQUESTS))]
    fits = soak.judge(series(REQUESTS, threads=threads))
    assert fits["threads"]["low"] > 0
    assert fits["threads"]["leak"] is False


def test_warm_up_growth_is_discarded() -> None:
    rss = [10 * soak.MIB, 30 * soak.MIB] + [40 * soak.MIB] * (len(REQUESTS) - 2)
    assert soak.verdict(soak.judge(series(REQUESTS, rss_bytes=rss))) == "no leak"


# -- leak or plateau: the later half decides ------------------------------------------------

SOAK = [i * 110_000 for i in range(30)]  # a 4-minute soak: 3.3M requests in 30 samples


def noisy(values: list[float], sd: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [v + rng.gauss(0, sd) for v in values]


@pytest.mark.parametrize("seed", range(5))
def test_a_line_leaks(seed: int) -> None:
    # 2.4 MiB per million requests, steadily, with 150 KiB of noise: what the straight-line
    # rule called thread_per_client's growth, as a real leak would show it
    rss = noisy([26 * soak.MIB + 2.4 * soak.MIB * r / 1e6 for r in SOAK], 150_000, seed)
    fits = soak.judge(series(SOAK, rss_bytes=rss))
    f = fits["rss_bytes"]
    assert f["trend"] == "leaks" and f["leak"] is True
    assert f["later_half"]["low"] > 0
    assert soak.verdict(fits) == "leaks rss"


@pytest.mark.parametrize("seed", range(5))
def test_a_saturating_curve_plateaus(seed: int) -> None:
    # 26.4 -> ~34 MiB, growth falling from ~1.8 to ~0.2 MiB per 360k requests (as
    # thread_per_client's did): the whole-run line's slope is significant and far above
    # the threshold, yet the later half grows at a fraction of the first half's rate
    curve = [26.4 * soak.MIB + 8 * soak.MIB * (1 - math.exp(-r / 1.3e6)) for r in SOAK]
    fits = soak.judge(series(SOAK, rss_bytes=noisy(curve, 150_000, seed)))
    f = fits["rss_bytes"]
    assert f["low"] > 0 and f["growth"] > soak.THRESHOLDS["rss_bytes"]  # a line would leak
    assert f["later_half"]["high"] < soak.LEVEL_OFF * f["first_half"]["slope"]
    assert f["trend"] == "plateaus" and f["leak"] is False
    assert soak.verdict(fits) == "no leak (rss plateaus)"


@pytest.mark.parametrize("seed", range(5))
def test_noise_is_neither_a_leak_nor_a_plateau(seed: int) -> None:
    rss = noisy([30 * soak.MIB] * len(SOAK), 400_000, seed)
    fits = soak.judge(series(SOAK, rss_bytes=rss))
    assert fits["rss_bytes"]["trend"] == "flat" and fits["rss_bytes"]["leak"] is False
    assert soak.verdict(fits) == "no leak"


def test_a_curve_that_has_not_slowed_yet_is_not_called_a_plateau() -> None:
    # the same kind of curve seen over a tenth of its scale: nearly straight, still a leak
    curve = [20 * soak.MIB + 80 * soak.MIB * (1 - math.exp(-r / 40e6)) for r in SOAK]
    fits = soak.judge(series(SOAK, rss_bytes=noisy(curve, 50_000, 7)))
    assert fits["rss_bytes"]["trend"] == "leaks"


def test_a_short_noisy_later_half_is_too_short_to_tell_never_a_plateau() -> None:
    # six samples: halves of three points, so t(0.975, 1) = 12.7 makes the later half's
    # interval wide: neither a plateau nor a leak is shown
    xs = SOAK[:8]
    rss = noisy([20 * soak.MIB + 10 * soak.MIB * r / 1e6 for r in xs], 600_000, 3)
    fits = soak.judge(series(xs, rss_bytes=rss))
    f = fits["rss_bytes"]
    assert f["points"] == 6 and f["low"] > 0
    assert f["trend"] is None and f["leak"] is None
    assert soak.verdict(fits) == "too short to tell"


def test_the_report_says_which_and_shows_both_halves(tmp_path: Path) -> None:
    curve = [26 * soak.MIB + 8 * soak.MIB * (1 - math.exp(-r / 1.3e6)) for r in SOAK]
    rec = soak.new_record()
    rec.update(status="ok", requests=SOAK[-1], samples=series(SOAK, rss_bytes=curve))
    soak._analyse(rec)
    report = {"minutes_per_variant": 4, "segment_seconds": 6, "rule": soak.rule_text(),
              "interrupted": False, "variants": {"thread_per_client": rec}}  # fmt: skip
    text = soak.markdown(report)
    assert "no leak (rss plateaus)" in text and "→" in text
    assert "thread_per_client: RSS grew" in text and "plateaus, not a leak" in text


def test_too_few_samples_give_no_verdict() -> None:
    fits = soak.judge(series([0, 1000, 2000, 3000]))
    assert fits["fds"]["leak"] is None
    assert soak.verdict(fits) == "too short to tell"


@pytest.mark.skipif(
    not servers.get("epoll_reactor").available, reason="epoll_reactor unavailable here"
)
def test_tiny_real_soak(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    console = Console(file=open(tmp_path / "console.txt", "w"), width=120)  # noqa: SIM115
    with console.file:
        # 3 s of 0.5 s segments: a segment with its resets and sample takes ~1 s here, so
        # even twice slower the loop begins a second one (three samples) before 3 s.
        report = soak.run_soak(["epoll_reactor"], 3 / 60, tmp_path, console, segment=0.5)
    rec = report["variants"]["epoll_reactor"]
    assert rec["status"] == "ok"
    assert len(rec["samples"]) >= 3
    assert rec["samples"][-1]["requests"] == rec["requests"] > 0
    assert rec["resets"] > 0
    assert rec["verdict"] in ("no leak", "too short to tell") or rec["verdict"].startswith("leaks")
    assert not {"wrong_reply", "protocol"} & set(rec["errors"])
    saved = json.loads((tmp_path / "soak.json").read_text())
    assert saved["variants"]["epoll_reactor"]["verdict"] == rec["verdict"]
    assert "epoll_reactor" in (tmp_path / "soak.md").read_text()
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before  # every server and load generator stopped and reaped
