"""The C load client (loadgen/native_client.c): built on demand, checks every byte, stops on time.

Servers are started through the real command line; every run is about a
second and bounded by the client itself and by ``run``'s own timeout.
Nothing asserts a speed.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import servers
from loadgen import native_client
from loadgen.suite.launch import RunningServer, start_server
from tests.fakes import fake_env

REASON = native_client.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"native_client unavailable: {REASON}")

FAKE_ENV = fake_env()  # the started servers know tests/fakes
KINDS = {"refused", "reset", "timeout", "protocol", "wrong_reply"}


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if why := servers.get("native_epoll").unavailable_reason:
        pytest.skip(f"native_epoll unavailable: {why}")
    root = tmp_path_factory.mktemp("native-client")
    with start_server("native_epoll", root, max_frame=4 * 1024 * 1024) as running:
        yield running


@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with start_server(request.param, tmp_path, env=FAKE_ENV) as server:
        yield server


def no_clients_left() -> bool:
    """No C client among our descendants, zombies included (fixtures' servers may still run)."""
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "native_client":  # a zombie keeps its name, not its command line
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def test_build_is_cached_by_source() -> None:
    first = native_client.build()
    assert first.name == "native_client" and first.stat().st_mode & 0o111
    assert native_client.build() == first  # second call: the cached binary, not a rebuild
    assert first.stat().st_mtime == native_client.build().stat().st_mtime


@pytest.mark.parametrize(
    ("connections", "pipeline", "size"),
    [(4, 1, 64), (3, 4, 64), (2, 2, 300_000), (2, 1, 0)],
    ids=["small", "pipelined", "large-partial-io", "empty"],
)
def test_echo_against_native_epoll(
    native: RunningServer, connections: int, pipeline: int, size: int
) -> None:
    r = native_client.run(
        native.host, native.port, connections, pipeline, size, warmup=0.2, duration=0.6, cpu=None
    )
    assert r["errors"] == 0 and set(r["error_kinds"]) == KINDS
    assert r["connections"] == connections and r["pipeline"] == pipeline and r["size"] == size
    assert r["requests"] > 0
    assert 0.6 <= r["elapsed_s"] < 0.9
    assert r["throughput"] == pytest.approx(r["requests"] / r["elapsed_s"], rel=1e-3)
    assert r["cpu_user_s"] + r["cpu_system_s"] > 0
    assert no_clients_left()


def test_pinned_to_the_cpu_asked(native: RunningServer) -> None:
    cpu = max(psutil.Process().cpu_affinity())
    r = native_client.run(native.host, native.port, 2, 1, 64, warmup=0.1, duration=0.3, cpu=cpu)
    assert r["cpu"] == cpu and r["errors"] == 0 and r["requests"] > 0


@pytest.mark.parametrize("fake", ["fake_bad_echo"], indirect=True)
def test_wrong_length_reply_is_an_error(fake: RunningServer) -> None:
    r = native_client.run(fake.host, fake.port, 3, 1, 64, warmup=0.1, duration=0.5)
    assert r["requests"] == 0
    # each connection is closed at its first wrong reply: no resynchronising a stream
    assert r["error_kinds"]["wrong_reply"] == r["errors"] == 3


@pytest.mark.parametrize("fake", ["fake_flip_echo"], indirect=True)
@pytest.mark.parametrize("size", [64, 65_536])
def test_one_wrong_byte_at_the_end_is_an_error(fake: RunningServer, size: int) -> None:
    r = native_client.run(fake.host, fake.port, 2, 2, size, warmup=0.1, duration=0.5)
    assert r["requests"] == 0
    assert r["error_kinds"]["wrong_reply"] == r["errors"] == 2


@pytest.mark.parametrize("fake", ["fake_never_reply"], indirect=True)
def test_silent_server_run_ends_on_time(fake: RunningServer) -> None:
    warmup, duration = 0.3, 0.7
    began = time.monotonic()
    r = native_client.run(fake.host, fake.port, 4, 1, 64, warmup=warmup, duration=duration)
    took = time.monotonic() - began
    assert took < warmup + duration + 1.0
    assert r["requests"] == 0 and r["elapsed_s"] == pytest.approx(duration, abs=0.1)
    assert r["error_kinds"]["timeout"] == r["errors"] == 4  # asked, never answered
    assert no_clients_left()


def test_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        native_client.run("192.0.2.1", 80, 1, 1, 64, warmup=0, duration=0.1)
    # the binary refuses on its own too, before opening anything
    binary = native_client.build()
    done = subprocess.run(
        [str(binary), "--host", "192.0.2.1", "--port", "80", "--duration", "0.1"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert done.returncode == 2 and "not a loopback address" in done.stderr


def test_refused_connections_are_counted() -> None:
    # A port nothing listens on: every connect is refused, the run still returns.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connects are refused
        r = native_client.run("127.0.0.1", port, 3, 1, 64, warmup=0.0, duration=0.2)
    assert r["connections"] == 0 and r["requests"] == 0
    assert r["error_kinds"]["refused"] == r["errors"] == 3


def test_calibrate_ceiling_alternates_and_pairs(native: RunningServer) -> None:
    c = native_client.calibrate_ceiling(
        native.target, connections=4, warmup=0.1, duration=0.3, cpu=None, rounds=2
    )
    assert [r["order"] for r in c["rounds"]] == [["native", "python"], ["python", "native"]]
    assert c["errors"] == {"native": 0, "python": 0}
    assert all(r["native_rps"] > 0 and r["python_rps"] > 0 for r in c["rounds"])
    assert c["fraction"] == pytest.approx(c["python_rps"] / c["native_rps"])
    assert c["native_rps"] == pytest.approx(sum(r["native_rps"] for r in c["rounds"]) / 2)
    assert no_clients_left()


def ceiling(fraction: float | None, errors: int = 0) -> dict:
    """A calibrate_ceiling result with two rounds around ``fraction`` (None: nothing measured)."""
    rounds = [{"fraction": None if fraction is None else fraction + d} for d in (-0.01, 0.01)]
    native = 100_000.0
    python = 0.0 if fraction is None else fraction * native
    return {
        "native_rps": native,
        "python_rps": python,
        "fraction": fraction,
        "rounds": rounds,
        "errors": {"native": 0, "python": errors},
    }


def test_calibrate_prints_the_ceiling_goal_and_why_it_is_missed() -> None:
    from loadgen.calibrate import CEILING_LIMIT_NOTE, ceiling_lines

    met = ceiling_lines(ceiling(0.93))
    assert "fraction 0.930 (goal >= 0.90) [green]met" in met[0]
    assert met[1].endswith("0.920, 0.940")  # the paired rounds, not only their mean
    assert not any(CEILING_LIMIT_NOTE in line for line in met)
    missed = ceiling_lines(ceiling(0.85))
    assert "[red]missed" in missed[0] and CEILING_LIMIT_NOTE in missed[-1]
    assert any("errors: C client 0, generator 3" in x for x in ceiling_lines(ceiling(0.95, 3)))
    assert "no ceiling measured" in ceiling_lines(ceiling(None))[0]
    assert not any("disagree" in line for line in met)  # rounds 0.02 apart: consistent
    noisy = ceiling(0.7)
    noisy["rounds"] = [{"fraction": 0.41}, {"fraction": 1.01}]
    assert any("rounds disagree by 0.60" in line for line in ceiling_lines(noisy))
