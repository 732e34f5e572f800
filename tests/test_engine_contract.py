"""The engine's two contracts with the suite: its command line and its result, both ways.

The suite runs ``python -m loadgen`` as a subprocess with the options
``LoadConfig.to_argv()`` writes and reads the JSON back with
``LoadResult.from_dict()``; nothing may be lost on the way.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest

from loadgen.engine.config import LoadConfig, build_parser
from loadgen.engine.result import LoadResult
from loadgen.suite import harness
from loadgen.suite.scenarios import SCENARIOS

CONFIGS = [
    LoadConfig("127.0.0.1", 8000),
    LoadConfig("127.0.0.1", 9, workload="raw", size=1024, connections=10),
    LoadConfig("::1", 65535, rate=12345.678, pipeline=4, connections=3, timeout=0.25),
    LoadConfig("localhost", 1, workload="slow", connections=16, duration=0.75, warmup=0.0),
    LoadConfig("127.0.0.1", 8000, workload="idle", connections=1000, cpus=[1], server_pid=42),
    LoadConfig("127.0.0.1", 8000, workload="mixed", processes=2, cpus=[0, 1], slow_clients=3),
    LoadConfig("127.0.0.1", 8000, size=0, duration=1e-3, warmup=2.5),
    LoadConfig("127.0.0.1", 8000, server_pid=42, admit_timeout=0.5, counters=False),
    LoadConfig("127.0.0.1", 8000, start_at=1767225600.123456),
    LoadConfig("", 0, unix="/tmp/cb-x/s.sock", connections=3),
    LoadConfig("192.0.2.7", 8000),  # any host: a target need not be loopback
    LoadConfig("127.0.0.1", 8001, udp=True, rate=5000.0, loss_timeout=0.5),  # issue 17
]


def parsed(argv: list[str]) -> LoadConfig:
    return LoadConfig.from_args(build_parser().parse_args(argv))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: " ".join(c.to_argv()[2:]) or "defaults")
def test_config_survives_its_command_line(cfg: LoadConfig) -> None:
    assert parsed(cfg.to_argv()) == cfg


def test_every_scenario_case_survives_the_command_line() -> None:
    tcp = SimpleNamespace(host="127.0.0.1", port=8000, unix=None, pid=4321, name="epoll_reactor")
    unix = SimpleNamespace(host="", port=0, unix="/tmp/cb/s.sock", pid=4321, name="epoll_reactor")
    udp = SimpleNamespace(
        host="127.0.0.1", port=8001, unix=None, pid=4321, name="udp_loop", transport="udp"
    )
    for scenario in SCENARIOS.values():
        for case in scenario.cases:
            rate = 1234.5 if case.rate_fraction is not None else None
            server = {"unix": unix, "udp": udp}.get(case.transport, tcp)
            cfg = harness.load_config(
                server,  # type: ignore[arg-type]
                case,
                duration=0.75,
                warmup=0.25,
                rate=rate,
                cpus=(1,),
            )
            assert parsed(cfg.to_argv()) == cfg, case.key
            assert (cfg.unix is not None) == (case.transport == "unix"), case.key
            assert cfg.udp == (case.transport == "udp"), case.key
            assert cfg.connections == case.connections and cfg.server_pid == 4321


def test_a_setting_without_an_option_is_refused() -> None:
    with pytest.raises(ValueError, match="slow_byte_interval"):
        LoadConfig("127.0.0.1", 8000, slow_byte_interval=0.5).to_argv()


def full_result() -> dict[str, Any]:
    """A result with every key of docs/RESULTS.md set (no null objects)."""
    lat = {"p50": 10.0, "p90": 20.0, "p99": 40.0, "p999": 80.0, "max": 90.0, "mean": 12.0}
    return {
        "schema": 1,
        "config": {
            "target": "127.0.0.1:8000", "workload": "echo", "size": 64, "connections": 4,
            "duration_s": 1.0, "warmup_s": 0.5, "rate": 100.0, "pipeline": 1, "processes": 2,
            "mode": "open", "slow_clients": 1, "cpus": [1], "timeout_s": 2.0,
            "admit_timeout_s": 5.0, "work": "compute:200", "neighbours": 1,
            "neighbour_work": "block:10000",
        },
        "throughput_rps": 99.0,
        "requests": 99,
        "duration_s": 1.0,
        "latency_kind": "response_time",
        "latency_us": lat,
        "latency_us_uncorrected": dict(lat, p99=30.0),
        "latency_out_of_range": 0,
        "errors": {"refused": 0, "reset": 1, "timeout": 0, "protocol": 0, "wrong_reply": 0},
        "errors_total": 1,
        "reconnects": 1,
        "fairness": {"connections": 3, "jain": 0.9, "min_share": 0.8, "max_share": 1.1,
                     "starved": 0, "not_admitted": 0},
        "bottleneck": "generator",
        "loadgen": {
            "workers": [
                {"cpu_util": 0.5, "cpu_user_s": 0.3, "cpu_system_s": 0.2, "requests": 50,
                 "cpu": [1]},
                {"cpu_util": 0.4, "cpu_user_s": 0.2, "cpu_system_s": 0.2, "requests": 49,
                 "cpu": [1]},
            ],
            "cpu_util_max": 0.5, "cpu_us_per_request": 9.1, "saturated": True,
            "saturation_reasons": ["achieved 99 req/s"], "achieved_rate_ratio": 0.99,
            "admit_s": 0.01, "ramp_s": 0.02,
        },
        "server": {
            "pid": 7, "cpus_allowed": 1, "cpu_s": 0.5, "cpu_user_s": 0.3, "cpu_system_s": 0.2,
            "cpu_util": 0.5,
            "cpu_us_per_request": 5.0, "cpu_user_us_per_request": 3.0,
            "cpu_system_us_per_request": 2.0, "memory_pss_bytes": 1000, "memory_rss_bytes": 2000,
            "memory_pss_is_rss": False, "peak_threads": 1, "peak_fds": 9, "peak_children": 0,
            "processes": 1, "samples": 5, "interval_s": 0.2, "sampler_cpu_s": 0.001,
            "error": None, "context_switches": {"voluntary": 10, "involuntary": 2},
            "context_switches_per_request": 0.1212, "syscalls": {"recvfrom": 99, "sendto": 99},
            "syscalls_per_request": 2.0, "syscalls_by_name": {"recvfrom": 1.0, "sendto": 1.0},
            "syscalls_unavailable": None,
        },
        "slow_clients": {"connections": 1, "requests": 2, "latency_us": lat,
                         "byte_interval_s": 0.005},
        "neighbours": {"connections": 1, "work": "block:10000", "requests": 90,
                       "throughput_rps": 90.0, "latency_us": dict(lat, p50=10_100.0)},
        "idle": {"connections": 4, "served": 4, "server_uss_before_bytes": 100,
                 "server_uss_after_bytes": 500, "memory_per_connection_bytes": 100.0},
        "disturbance": {
            "wall_s": 1.0,
            "run": {"cpus": [0, 1], "steal_fraction": 0.01, "busy_cores": 1.2,
                    "own_cores": 1.0, "foreign_cores": 0.2},
            "server": {"cpus": [0], "steal_fraction": 0.02, "busy_cores": 0.6,
                       "own_cores": 0.5, "foreign_cores": 0.1},
            "generator": None,
        },
        "environment": {"malloc": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
                        "malloc_applied": "mallopt", "malloc_env_at_start": True,
                        "python": "3.11.0", "engine": "epoll"},
        "partial": False,
        "datagram": {"flows": 4, "sent": 110, "sent_rps": 110.0, "answered": 99, "lost": 10,
                     "late": 2, "duplicated": 1, "busy": 1, "lost_fraction": 0.091,
                     "loss_timeout_s": 0.2,
                     "kernel": {"InErrors": 3, "RcvbufErrors": 3, "SndbufErrors": 0},
                     "kernel_drops": 3},
    }  # fmt: skip


def test_result_survives_its_json() -> None:
    data = full_result()
    result = LoadResult.from_dict(json.loads(json.dumps(data)))
    assert result.server is not None and result.server.cpu_user_us_per_request == 3.0
    assert result.loadgen.workers[1].requests == 49
    assert result.slow_clients is not None and result.slow_clients.latency_us.p99 == 40.0
    assert result.neighbours is not None and result.neighbours.latency_us.p50 == 10_100.0
    assert result.to_dict() == data
    assert list(result.to_dict()) == list(data)  # the documented order


def test_null_objects_survive_too() -> None:
    data = full_result()
    for key in ("server", "slow_clients", "neighbours", "idle", "latency_us_uncorrected",
                "disturbance", "datagram"):  # fmt: skip
        data[key] = None
    assert LoadResult.from_dict(copy.deepcopy(data)).to_dict() == data


@pytest.mark.parametrize("change", ["missing", "unknown"])
def test_result_with_other_keys_is_refused(change: str) -> None:
    data = full_result()
    if change == "missing":
        del data["fairness"]["starved"]
    else:
        data["server"]["surprise"] = 1
    with pytest.raises(ValueError, match="Fairness" if change == "missing" else "Server"):
        LoadResult.from_dict(data)
