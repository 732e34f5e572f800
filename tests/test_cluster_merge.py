"""loadgen.cluster.merge: several load hosts' results merged into one, without loss (no Ray).

The reference for every property is the engine's own merge of workers on
one host (``result.aggregate``): splitting the same workers over several
hosts and merging the hosts must give the same requests, latency
percentiles (from the merged histograms) and fairness.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.cluster.merge import (
    CLOCK_FLAG_S,
    HostLoad,
    host_records,
    merge_histograms,
    merge_loads,
)
from loadgen.engine import stats
from loadgen.engine.config import LoadConfig
from loadgen.engine.messages import WorkerResult
from loadgen.engine.result import RunFacts, aggregate, mergeable
from loadgen.engine.worker import ERROR_KINDS


def _worker(rng: random.Random, index: int, slots: list[int], samples: list[int]) -> WorkerResult:
    hist = stats.new_histogram()
    stats.record_ns(hist, samples)
    done = [rng.randrange(0, 50) for _ in slots]
    return WorkerResult(
        index=index, slots=slots, done=done, admitted=[rng.choice((0, 1, 1, 1)) for _ in slots],
        requests=len(samples), elapsed_s=1.0 + rng.random() / 100, hist=stats.encode(hist),
        hist_unc=None, hist_slow=None, slow_requests=0, out_of_range=0,
        errors={k: rng.randrange(0, 3) for k in ERROR_KINDS}, reconnects=rng.randrange(0, 3),
        idle_served=0, cpu_user_s=0.3, cpu_system_s=0.2, cpu_util=rng.random(), cpu=None,
        malloc="env", stopped=False,
    )  # fmt: skip


def _host(name: str, workers: list[WorkerResult], offset: float = 0.0) -> HostLoad:
    """A load host whose engine ran ``workers`` (slots renumbered from 0, as on its own)."""
    local = []
    n = 0
    for i, w in enumerate(workers):
        slots = list(range(n, n + len(w.slots)))
        n += len(slots)
        local.append(WorkerResult(**{**w.__dict__, "index": i, "slots": slots}))
    cfg = LoadConfig("127.0.0.1", 9000, connections=n, processes=len(local))
    result = aggregate(cfg, local, RunFacts(None, None, None, False, 0.1))
    return HostLoad(name, 1, result, mergeable(cfg, local), offset, 0.001, 0.05)


def _split(rng: random.Random, workers: int, hosts: int, per_worker: int):
    """``workers`` synthetic workers over ``hosts`` hosts, and the latencies they recorded."""
    all_samples: list[int] = []
    made = []
    slot = 0
    for i in range(workers):
        samples = [
            int(rng.lognormvariate(12, 2)) + 1000 for _ in range(rng.randrange(0, per_worker))
        ]
        conns = rng.randrange(1, 6)
        made.append(_worker(rng, i, list(range(slot, slot + conns)), samples))
        slot += conns
        all_samples += samples
    groups: list[list[WorkerResult]] = [[] for _ in range(hosts)]
    for i, w in enumerate(made):
        groups[i % hosts].append(w)
    return made, [g for g in groups if g], all_samples


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), workers=st.integers(1, 6), hosts=st.integers(1, 4))
def test_merging_hosts_equals_one_generator_holding_every_connection(
    seed: int, workers: int, hosts: int
) -> None:
    rng = random.Random(seed)
    made, groups, samples = _split(rng, workers, hosts, 300)
    loads = [_host(f"h{i}", g) for i, g in enumerate(groups)]
    merged = merge_loads(loads, None)
    single = _host("one", made).result

    assert merged.requests == sum(h.result.requests for h in loads) == len(samples)
    assert merged.latency_us == single.latency_us  # percentiles from the merged histograms
    one = stats.new_histogram()
    stats.record_ns(one, samples)
    assert merged.latency_us.__dict__ == stats.summary(one)
    assert merged.fairness == single.fairness  # over every connection of every host
    assert merged.errors == single.errors and merged.errors_total == single.errors_total
    assert merged.reconnects == single.reconnects
    assert merged.config.connections == single.config.connections
    assert len(merged.loadgen.workers) == len(made)
    window = max(h.result.duration_s for h in loads)
    assert merged.duration_s == window
    assert merged.throughput_rps == merged.requests / window


@settings(max_examples=30, deadline=None)
@given(chunks=st.lists(st.lists(st.integers(1, 60_000_000), max_size=200), min_size=1, max_size=5))
def test_merged_histogram_equals_the_histogram_of_every_sample(chunks: list[list[int]]) -> None:
    blobs = []
    for chunk in chunks:
        h = stats.new_histogram()
        stats.record_us(h, chunk)
        blobs.append(h.encode().decode("ascii"))
    one = stats.new_histogram()
    stats.record_us(one, [v for c in chunks for v in c])
    merged = merge_histograms([*blobs, None])
    assert merged.get_total_count() == one.get_total_count()
    for pct in (0, 50, 90, 99, 99.9, 100):
        assert merged.get_value_at_percentile(pct) == one.get_value_at_percentile(pct)


def test_server_per_request_figures_are_over_the_merged_requests_and_hosts_are_listed() -> None:
    rng = random.Random(7)
    _, groups, _ = _split(rng, 4, 2, 200)
    loads = [_host("a", groups[0]), _host("b", groups[1], offset=2 * CLOCK_FLAG_S)]
    server = _server_dict(cpu_s=0.5, cpu_util=0.95)
    merged = merge_loads(loads, server)
    assert merged.server is not None
    assert merged.server.cpu_us_per_request == round(0.5e6 / merged.requests, 4)
    assert merged.bottleneck in ("server", "both")
    hosts = host_records(
        {"name": "s", "cpus": 1, "ran": "epoll_reactor", "figures": server}, loads, {"c": "died"}
    )
    assert [h["role"] for h in hosts] == ["server", "load", "load", "load"]
    assert sum(h["requests"] or 0 for h in hosts) == merged.requests
    assert [h["clock_flagged"] for h in hosts] == [False, False, True, False]
    assert hosts[-1]["status"] == "failed" and hosts[-1]["error"] == "died"


def _server_dict(cpu_s: float, cpu_util: float) -> dict:
    keys = (
        "pid cpus_allowed cpu_s cpu_user_s cpu_system_s cpu_util cpu_us_per_request "
        "cpu_user_us_per_request cpu_system_us_per_request memory_pss_bytes memory_rss_bytes "
        "memory_pss_is_rss peak_threads peak_fds peak_children processes samples interval_s "
        "sampler_cpu_s error context_switches context_switches_per_request syscalls "
        "syscalls_per_request syscalls_by_name syscalls_unavailable"
    ).split()
    d = dict.fromkeys(keys)
    d.update(pid=1, cpus_allowed=1, cpu_s=cpu_s, cpu_user_s=cpu_s / 2, cpu_system_s=cpu_s / 2)
    d.update(cpu_util=cpu_util, memory_pss_bytes=0, memory_rss_bytes=0, memory_pss_is_rss=False)
    d.update(peak_threads=1, peak_fds=1, peak_children=0, processes=1, samples=1)
    d.update(interval_s=0.2, sampler_cpu_s=0.0)
    return d
