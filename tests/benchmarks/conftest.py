"""Let ``--benchmark-json results/ci/benchmark.json`` work on a fresh checkout.

pytest-benchmark opens that path as given and fails at the very end of the
session if its directory does not exist; create it up front.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("benchmark_json", default=None)
    if path:
        Path(str(path)).parent.mkdir(parents=True, exist_ok=True)
