"""The load generator's side of WORK (issue 16): ``--workload work`` and ``--neighbours``.

The plan and the options are checked byte for byte and message for message;
the real runs are short (half a second of load against a server on loopback,
bounded by the engine's own deadline) and assert what the generator counts
and checks, never a speed: a WORK reply cannot come before its work is done,
so its latency has a floor, and that floor is all that is asserted of time.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadgen.cluster.merge import HostLoad, merge_loads
from loadgen.engine import ERROR_KINDS, LoadConfig, run_load
from loadgen.engine.config import build_parser, parse_work
from loadgen.engine.messages import WorkerResult
from loadgen.engine.plan import NEIGHBOUR_DATA, build_plan
from loadgen.engine.result import LoadResult, RunFacts, aggregate, mergeable
from loadgen.suite.launch import RunningServer, start_server, suite_env

HDR_SLACK = 0.999  # a percentile read back from the histogram is exact to within 0.1%


def cfg(**options: Any) -> LoadConfig:
    return LoadConfig("127.0.0.1", 8000, **options)


def parsed(argv: list[str]) -> LoadConfig:
    return LoadConfig.from_args(build_parser().parse_args(argv))


# -- the plan: every request and reply, byte for byte -------------------------------


def frame(code: int, payload: bytes) -> bytes:
    """The protocol's frame, written out here rather than with the code under test."""
    return bytes([code]) + len(payload).to_bytes(4, "big") + payload


def test_the_plan_encodes_work_exactly() -> None:
    plan = build_plan(cfg(workload="work", work="compute:200", size=16, connections=3), "t")
    (req, exp), *_ = plan.cycles[0]
    data = exp[5:]
    assert len(data) == 16 and exp == frame(0x00, data)  # OK carrying the 16 bytes
    assert req == frame(0x06, b"\x02" + struct.pack(">I", 200) + data)
    assert all(cycle == [(req, exp)] for cycle in plan.cycles)  # every connection the same


@pytest.mark.parametrize(
    ("spec", "kind", "amount"),
    [("wait:0", 1, 0), ("compute:1", 2, 1), ("block:10000", 3, 10_000),
     ("offload:4294967295", 4, 2**32 - 1)],
)  # fmt: skip
def test_each_kind_has_its_number(spec: str, kind: int, amount: int) -> None:
    assert parse_work(spec) == (kind, amount)
    (req, exp), *_ = build_plan(cfg(workload="work", work=spec, size=0), "t").cycles[0]
    assert req == frame(0x06, bytes([kind]) + amount.to_bytes(4, "big"))
    assert exp == frame(0x00, b"")


def test_the_neighbours_come_first_and_the_victims_run_the_workload() -> None:
    c = cfg(workload="echo", size=8, connections=4, neighbours=2, neighbour_work="wait:20000")
    plan = build_plan(c, "t")
    neighbour = (
        frame(0x06, b"\x01" + (20_000).to_bytes(4, "big") + NEIGHBOUR_DATA),
        frame(0x00, NEIGHBOUR_DATA),
    )
    assert plan.cycles[0] == plan.cycles[1] == [neighbour]
    (req, exp), *_ = plan.cycles[2]
    assert req[0] == 0x01 and req[5:] == exp[5:] and len(exp) == 5 + 8  # ECHO of 8 bytes
    assert plan.cycles[3] == plan.cycles[2]
    assert c.normal_connections == 2 and c.first_normal == 2


# -- the options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workload": "work", "work": "sleep:10"}, "KIND one of wait|compute|block|offload"),
        ({"workload": "work", "work": "wait"}, "must be KIND:AMOUNT"),
        ({"workload": "work", "work": "wait:-1"}, "must be KIND:AMOUNT"),
        ({"workload": "work", "work": "wait:1.5"}, "must be KIND:AMOUNT"),
        ({"workload": "work", "work": "wait:4294967296"}, r"<= 4294967295 \(a uint32\)"),
        ({"workload": "echo", "work": "compute:200"}, "--work is for --workload work"),
        ({"connections": 4, "neighbours": 4, "neighbour_work": "wait:1"}, "< connections"),
        ({"neighbours": 1}, "--neighbours needs --neighbour-work KIND:AMOUNT"),
        ({"neighbour_work": "wait:1"}, "--neighbour-work needs --neighbours N"),
        ({"neighbours": -1, "neighbour_work": "wait:1"}, "neighbours must be >= 0"),
        ({"neighbours": 1, "neighbour_work": "nap:1"}, "KIND one of wait|compute|block|offload"),
        (
            {"neighbours": 1, "neighbour_work": "wait:1", "slow_clients": 1},
            "neighbours and slow clients do not combine",
        ),
        ({"workload": "raw", "neighbours": 1, "neighbour_work": "wait:1"}, "raw has no neighb"),
        ({"workload": "c10k", "neighbours": 1, "neighbour_work": "wait:1"}, "c10k has no neighb"),
    ],
)
def test_bad_work_options_are_refused_in_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg(**options).validate()


@pytest.mark.parametrize(
    "c",
    [
        cfg(workload="work"),
        cfg(workload="work", work="compute:200", size=64, connections=16),
        cfg(connections=17, neighbours=1, neighbour_work="compute:20000"),
        cfg(workload="work", work="wait:1000", neighbours=2, neighbour_work="block:10000"),
        cfg(rate=500.0, neighbours=1, neighbour_work="offload:10000"),
    ],
    ids=lambda c: " ".join(c.to_argv()[2:]),
)
def test_work_configs_survive_their_command_line(c: LoadConfig) -> None:
    c.validate()
    assert parsed(c.to_argv()) == c


def test_the_reply_timeout_adds_the_longest_work_of_the_run() -> None:
    assert cfg().work_timeout == 2.0  # no WORK: as before
    assert cfg(workload="work", work="wait:500000").work_timeout == pytest.approx(2.5)
    both = cfg(workload="work", work="wait:1000", neighbours=1, neighbour_work="block:3000000")
    assert both.work_timeout == pytest.approx(5.0)
    assert cfg(workload="work", timeout=0.25).work_timeout == pytest.approx(0.251)


def test_help_describes_the_work_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadgen", "--help"],
        capture_output=True, text=True, timeout=30, env=suite_env({"COLUMNS": "100"}),
    ).stdout  # fmt: skip
    for option in ("--workload", "--work KIND:AMOUNT", "--neighbours N", "--neighbour-work"):
        assert option in out
    assert "wait|compute|block|offload" in out and "longest work" in out


# -- real runs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reactor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server("epoll_reactor", tmp_path_factory.mktemp("work")) as server:
        yield server


def test_work_runs_and_every_reply_is_checked(reactor: RunningServer) -> None:
    r = run_load(
        reactor.target, workload="work", work="wait:2000", size=32, connections=4,
        duration=0.5, warmup=0.1,
    ).to_dict()  # fmt: skip
    assert r["errors"] == dict.fromkeys(ERROR_KINDS, 0)
    assert r["requests"] > 0 and r["fairness"]["starved"] == 0
    assert r["config"]["workload"] == "work" and r["config"]["work"] == "wait:2000"
    assert r["neighbours"] is None and r["config"]["neighbours"] == 0
    # no reply before its work: the server waited 2 ms for every one of them
    assert r["latency_us"]["p50"] >= 2000 * HDR_SLACK


def test_a_work_longer_than_the_timeout_is_not_a_timeout(reactor: RunningServer) -> None:
    r = run_load(
        reactor.target, workload="work", work="wait:200000", connections=2, duration=0.5,
        warmup=0.0, timeout=0.05,
    ).to_dict()  # fmt: skip
    assert r["errors_total"] == 0, r["errors"]
    assert r["requests"] >= 1 and r["latency_us"]["p50"] >= 200_000 * HDR_SLACK


def test_a_refused_work_is_a_wrong_reply_never_a_success(reactor: RunningServer) -> None:
    # over the server's --max-work: its ERROR reply differs from the expected OK
    r = run_load(
        reactor.target, workload="work", work="wait:20000000", connections=2, duration=0.3,
        warmup=0.0, admit_timeout=0.3,
    ).to_dict()  # fmt: skip
    assert r["requests"] == 0 and r["errors"]["wrong_reply"] > 0
    assert r["errors_total"] == r["errors"]["wrong_reply"]


def test_neighbours_are_counted_apart_and_the_json_survives(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with start_server("thread_per_client", tmp_path) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "loadgen", "--target", server.target, "--connections", "5",
             "--neighbours", "1", "--neighbour-work", "wait:20000", "--duration", "0.5",
             "--warmup", "0.1", "--server-pid", str(server.pid), "--no-counters", "--json",
             str(out), "--histograms", "--quiet"],
            capture_output=True, text=True, timeout=30, env=suite_env(),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    mergeable_part = data.pop("mergeable")
    r = LoadResult.from_dict(data)
    assert r.to_dict() == data  # nothing lost on the way
    assert r.errors_total == 0 and r.requests > 0
    n = r.neighbours
    assert n is not None and n.connections == 1 and n.work == "wait:20000"
    assert n.requests > 0 and n.latency_us.p50 is not None
    assert n.latency_us.p50 >= 20_000 * HDR_SLACK  # the neighbours' own replies only
    assert n.throughput_rps == pytest.approx(n.requests / r.duration_s)
    # the headline is the victims': four connections, none of them waited 20 ms each time
    assert r.fairness.connections == 4 and r.fairness.starved == 0
    assert sum(w.requests for w in r.loadgen.workers) == r.requests
    assert r.config.neighbours == 1 and r.config.neighbour_work == "wait:20000"
    assert r.config.work is None
    assert mergeable_part["neighbours"] is not None and mergeable_part["done"][0] > 0
    # the server served the neighbours too: its cost per request is over both
    assert r.server is not None and r.server.cpu_s is not None
    served = r.requests + n.requests
    assert r.server.cpu_us_per_request == round(r.server.cpu_s * 1e6 / served, 4)


# -- merging hosts ------------------------------------------------------------------------


def _worker(rng: random.Random, index: int, slots: list[int], neighbours: int) -> WorkerResult:
    from loadgen.engine import stats

    def hist(samples: list[int]) -> bytes:
        h = stats.new_histogram()
        stats.record_ns(h, samples)
        return stats.encode(h)

    victims = [rng.randrange(100_000, 900_000) for _ in range(rng.randrange(1, 80))]
    theirs = [rng.randrange(20_000_000, 30_000_000) for _ in range(rng.randrange(1, 9))]
    return WorkerResult(
        index=index, slots=slots, done=[rng.randrange(1, 50) for _ in slots],
        admitted=[1] * len(slots), requests=len(victims), elapsed_s=1.0, hist=hist(victims),
        hist_unc=None, hist_slow=None, slow_requests=0, out_of_range=0,
        errors=dict.fromkeys(ERROR_KINDS, 0), reconnects=0, idle_served=0, cpu_user_s=0.1,
        cpu_system_s=0.1, cpu_util=0.2, cpu=None, malloc="env", stopped=False,
        hist_neighbours=hist(theirs) if neighbours else None,
        neighbour_requests=len(theirs) if neighbours else 0,
    )  # fmt: skip


def _host(name: str, workers: list[WorkerResult], neighbours: int) -> HostLoad:
    c = cfg(
        connections=sum(len(w.slots) for w in workers), processes=len(workers),
        neighbours=neighbours, neighbour_work="compute:20000" if neighbours else None,
    )  # fmt: skip
    result = aggregate(c, workers, RunFacts(None, None, None, False, 0.1))
    return HostLoad(name, 1, result, mergeable(c, workers), 0.0, 0.001, None)


def test_neighbours_merge_across_hosts_as_one_generator_keeps_them() -> None:
    rng = random.Random(16)
    # host a: 1 neighbour (slot 0) and 3 victims; host b: no neighbour, 3 victims
    a = [_worker(rng, 0, [0, 2], 1), _worker(rng, 1, [1, 3], 0)]
    b = [_worker(rng, 0, [0, 1, 2], 0)]
    a[1].hist_neighbours, a[1].neighbour_requests = None, 0  # slot 0 is worker 0's
    merged = merge_loads([_host("a", a, 1), _host("b", b, 0)], None)
    assert merged.neighbours is not None and merged.neighbours.connections == 1
    assert merged.neighbours.requests == a[0].neighbour_requests
    assert merged.neighbours.latency_us == _host("a", a, 1).result.neighbours.latency_us  # type: ignore[union-attr]
    assert merged.fairness.connections == 6  # 3 victims on each host
    assert merged.requests == sum(w.requests for w in a + b)
    assert merged.config.neighbours == 1 and merged.config.neighbour_work == "compute:20000"
