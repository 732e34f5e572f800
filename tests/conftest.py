"""Shared fixtures: every registered variant, started the way a user starts it.

``variant`` is parametrized over the registry, so adding a variant to
``servers/__init__.py`` adds it to every test that asks for ``variant`` or
``server`` -- no test names a variant.  Unavailable variants are skipped
with the registry's reason, never silently dropped.  The TCP suites take the
stream variants only (``transport="tcp"``, the default); the datagram suites
(``tests/test_datagram*.py``) ask for ``transport="udp"``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import servers
from loadgen.suite.launch import RunningServer, start_server


def variant_params(
    keep: Callable[[servers.Variant], bool] = lambda v: True, transport: str = "tcp"
) -> list[object]:
    """pytest params for the registered variants of ``transport`` that ``keep`` accepts
    (test-only fakes never).

    An unavailable variant stays in the list, skipped with the registry's reason.
    """
    params = []
    for variant in servers.REGISTRY.values():
        if variant.code == "test" or variant.transport != transport or not keep(variant):
            continue
        reason = variant.unavailable_reason
        marks = [pytest.mark.skip(reason=f"{variant.name} unavailable: {reason}")] if reason else []
        params.append(pytest.param(variant.name, id=variant.name, marks=marks))
    return params


ALL_VARIANTS = variant_params()
FORKING_VARIANTS = variant_params(lambda v: v.forks)
DATAGRAM_VARIANTS = variant_params(transport="udp")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The benchmarks' --instructions options (tests/benchmarks/instructions.py): here, so
    that ``pytest --instructions`` works from the top as well as in tests/benchmarks."""
    from tests.benchmarks.instructions import add_options

    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (``timeout``, a CI runner giving up) ends pytest like Ctrl-C does.

    Left to Python's default, SIGTERM kills pytest without running a finalizer, and
    every server a fixture started -- in its own process group, so that killpg reaches
    all of it -- outlives the run as an orphan.  As KeyboardInterrupt, the fixtures'
    teardowns stop and reap them.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    # An ignored SIGINT is inherited across exec: started as a shell script's background
    # job (`pytest &`), every process a test starts would ignore the Ctrl-C the tests
    # press on it. A handler here makes their SIGINT the default again (exec resets it).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks last: tests first say the servers are right, then they are measured.

    Tests marked ``fuzz`` (the large fuzzing budget) run only when ``-m`` names them.
    """
    items.sort(key=lambda item: item.nodeid.startswith("tests/benchmarks/"))
    if "fuzz" not in (config.getoption("-m") or ""):
        skip = pytest.mark.skip(reason="the large fuzzing budget runs with -m fuzz")
        for item in items:
            if item.get_closest_marker("fuzz"):
                item.add_marker(skip)


@pytest.fixture(scope="module", params=ALL_VARIANTS)
def variant(request: pytest.FixtureRequest) -> servers.Variant:
    return servers.get(request.param)


@pytest.fixture(scope="module")
def server_root(variant: servers.Variant, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"root-{variant.name}")


@pytest.fixture(scope="module")
def server(variant: servers.Variant, server_root: Path) -> Iterator[RunningServer]:
    """One framed server per variant per test module, serving ``server_root``."""
    with start_server(variant.name, server_root) as running:
        yield running


@pytest.fixture(scope="module")
def raw_server(
    variant: servers.Variant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp(f"raw-{variant.name}")
    with start_server(variant.name, root, protocol="raw") as running:
        yield running


@pytest.fixture
def fresh_server(variant: servers.Variant, tmp_path: Path) -> Iterator[RunningServer]:
    """A server of our own, for tests that stop or disturb it."""
    with start_server(variant.name, tmp_path) as running:
        yield running


def dir_entries(root: str | os.PathLike[str]) -> set[str]:
    """Every name in the directory, hidden temporary files included."""
    return set(os.listdir(root))
