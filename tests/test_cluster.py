"""run_all.py --cluster on a ray.cluster_utils.Cluster of three nodes on this machine.

One module-scoped simulated cluster (a server node, two load nodes; no
dashboard) shared by the tests, small durations.  Checks: the merged count
is the sum over hosts, a load host that dies mid-run fails the run cleanly,
and nothing of Ray or of the servers survives.  Without --cluster nothing imports Ray.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.suite.launch import suite_env
from loadgen.suite.scenarios import Case

NO_RAY = """
import sys
import run_all, loadgen.__main__, servers.__main__, loadgen.suite.runner, loadgen.cluster.merge
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "ray imported"
"""


def test_without_cluster_nothing_imports_ray() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_RAY], capture_output=True, text=True, env=suite_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr


ray = pytest.importorskip("ray")

from loadgen.cluster import local  # noqa: E402
from loadgen.cluster.backend import ClusterBackend  # noqa: E402

CASE = Case(key="echo-tiny", scenario="echo-small", label="8 connections", workload="echo",
            size=64, connections=8)  # fmt: skip


@pytest.fixture(scope="module")
def backend() -> Iterator[ClusterBackend]:
    with local.local_cluster(3) as address:
        be = ClusterBackend(address, "127.0.0.1", local.node_cpus(3))
        try:
            yield be
        finally:
            be.close()
            ray.shutdown()
    assert local.ray_processes() == []  # no Ray process outlives the cluster


def test_merged_request_count_is_the_sum_over_hosts(backend: ClusterBackend) -> None:
    out = backend.measure("epoll_reactor", CASE, duration=0.5, warmup=0.1)
    assert out.status == "ok", out.error
    assert out.result is not None and out.hosts is not None
    loads = [h for h in out.hosts if h["role"] == "load"]
    assert [h["role"] for h in out.hosts].count("server") == 1 and len(loads) == 2
    assert sum(h["requests"] for h in loads) == out.result.requests > 0
    assert out.result.fairness.connections == CASE.connections
    assert all(h["clock_offset_ms"] is not None for h in loads)


def test_a_load_host_that_dies_fails_the_run_cleanly(backend: ClusterBackend) -> None:
    victim = backend.loads[1]
    killer = threading.Timer(1.0, lambda: ray.kill(victim))
    killer.start()
    try:
        out = backend.measure("epoll_reactor", CASE, duration=1.0, warmup=0.1)
    finally:
        killer.join()
    assert out.status == "failed"
    assert "died" in (out.error or "")
    assert out.hosts is not None
    assert [h["status"] for h in out.hosts if h["role"] == "load"] == ["ok", "failed"]
    assert out.leftover is False  # the server was stopped whole; the fixture checks the rest


def test_the_backend_takes_every_keyword_the_harness_takes() -> None:
    """The runner calls either one with the same keywords (a merge once broke this)."""
    import inspect

    from loadgen.suite import harness

    for name in ("verify", "measure"):
        local_kw = set(inspect.signature(getattr(harness, name)).parameters)
        cluster_kw = set(inspect.signature(getattr(ClusterBackend, name)).parameters) - {"self"}
        assert local_kw <= cluster_kw, f"{name}: missing {sorted(local_kw - cluster_kw)}"


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "run_all.py"),
         "--cluster", f"127.0.0.1:{port}",
         "--servers", "epoll_reactor", "--scenarios", "echo-small", "--output", str(tmp_path)],
        capture_output=True, text=True, env=suite_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Ray cluster" in done.stdout and "Traceback" not in done.stderr
