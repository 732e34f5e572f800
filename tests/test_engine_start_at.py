"""``python -m loadgen --start-at EPOCH --histograms``: what the cluster's load hosts run.

Several hosts must measure one wall-clock window, and return what a merge
needs without loss (the histograms as histoblobs, every connection's completions).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.cluster.merge import merge_histograms
from loadgen.suite.launch import RunningServer, start_server, suite_env


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server("epoll_reactor", tmp_path_factory.mktemp("root")) as running:
        yield running


def _loadgen(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "loadgen", *args, "-q"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=suite_env())


def test_start_at_starts_then_and_histograms_hold_every_request(
    echo: RunningServer, tmp_path: Path
) -> None:
    start = time.time() + 1.0
    out = tmp_path / "r.json"
    done = _loadgen(
        "--target", echo.target, "-c", "6", "-d", "0.3", "--warmup", "0.1",
        "--admit-timeout", "0.3", "--start-at", repr(start), "--json", str(out), "--histograms",
    )  # fmt: skip
    ended = time.time()
    assert done.returncode == 0, done.stderr
    # the window is start + admit-timeout + warm-up, for duration: it cannot end earlier
    assert ended >= start + 0.3 + 0.1 + 0.3
    data = json.loads(out.read_text())
    merge = data.pop("mergeable")
    assert data["requests"] > 0
    assert sum(merge["done"]) == data["requests"] and len(merge["done"]) == 6
    assert merge_histograms([merge["latency"]]).get_total_count() == data["requests"]
    assert merge["latency_uncorrected"] is None and merge["slow"] is None


def test_without_histograms_the_json_is_unchanged(echo: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = _loadgen(
        "--target", echo.target, "-c", "2", "-d", "0.1", "--warmup", "0", "--json", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "mergeable" not in json.loads(out.read_text())


@pytest.mark.parametrize(
    "extra, message",
    [(["--start-at", "1000"], "in the past"), (["--histograms"], "needs --json")],
)
def test_a_start_long_past_or_histograms_without_json_is_one_line(
    echo: RunningServer, extra: list[str], message: str
) -> None:
    done = _loadgen("--target", echo.target, "-c", "1", "-d", "0.1", *extra)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
