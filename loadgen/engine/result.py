"""The result of one load run, typed: what ``--json`` writes and the suite reads back.

Every class mirrors one object of docs/RESULTS.md, field for field and in
the same order, so :meth:`LoadResult.to_dict` is the documented JSON and
:meth:`LoadResult.from_dict` reads it back (a missing or unknown key is a
ValueError: the two sides cannot drift apart silently).  :func:`aggregate`
merges the workers' reports into one.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from loadgen.engine import disturbance as noise
from loadgen.engine import stats
from loadgen.engine.bottleneck import classify_bottleneck
from loadgen.engine.config import LoadConfig
from loadgen.engine.messages import WorkerResult
from loadgen.engine.worker import ERROR_KINDS
from loadgen.procs import MALLOC_ENV

SCHEMA = 1
SATURATED_CORE = 0.9  # a worker above this fraction of a core may be the bottleneck
RATE_SHORTFALL = 0.97  # open loop: achieved below this fraction of the asked rate
# ``server.syscalls_unavailable`` of a run asked for no cost counts (the suite's timed runs)
COUNTERS_OFF = "off (--no-counters)"


@dataclass
class ResultConfig:
    target: str
    workload: str
    size: int
    connections: int
    duration_s: float
    warmup_s: float
    rate: float | None
    pipeline: int
    processes: int
    mode: str
    slow_clients: int
    cpus: list[int] | None
    timeout_s: float
    admit_timeout_s: float
    work: str | None  # workload work: KIND:AMOUNT of every request; null otherwise
    neighbours: int
    neighbour_work: str | None  # KIND:AMOUNT the neighbours send; null without neighbours


@dataclass
class Latency:
    """Microseconds; every value None when nothing completed."""

    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    max: float | None
    mean: float | None


@dataclass
class Fairness:
    connections: int
    jain: float
    min_share: float
    max_share: float
    starved: int
    not_admitted: int


@dataclass
class WorkerFigures:
    cpu_util: float
    cpu_user_s: float
    cpu_system_s: float
    requests: int
    cpu: list[int] | None


@dataclass
class LoadgenFigures:
    workers: list[WorkerFigures]
    cpu_util_max: float
    cpu_us_per_request: float | None
    saturated: bool
    saturation_reasons: list[str]
    achieved_rate_ratio: float | None
    admit_s: float | None
    ramp_s: float | None


@dataclass
class ServerFigures:
    """What :class:`~loadgen.engine.monitor.ServerMonitor` measured of the server's tree."""

    pid: int
    cpus_allowed: int | None
    cpu_s: float | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    cpu_util: float | None
    cpu_us_per_request: float | None
    cpu_user_us_per_request: float | None
    cpu_system_us_per_request: float | None
    memory_pss_bytes: int
    memory_rss_bytes: int
    memory_pss_is_rss: bool
    peak_threads: int
    peak_fds: int
    peak_children: int
    processes: int
    samples: int
    interval_s: float
    sampler_cpu_s: float
    error: str | None
    # cost counters (loadgen.engine.counters), over the same period; null with --no-counters
    context_switches: dict[str, int] | None
    context_switches_per_request: float | None
    syscalls: dict[str, int] | None
    syscalls_per_request: float | None
    syscalls_by_name: dict[str, float] | None
    syscalls_unavailable: str | None


@dataclass
class SlowClients:
    connections: int
    requests: int
    latency_us: Latency
    byte_interval_s: float


@dataclass
class Neighbours:
    """The neighbours' own figures (``--neighbours``), kept out of the headline ones."""

    connections: int
    work: str  # KIND:AMOUNT, as --neighbour-work
    requests: int  # completed in the measured period
    throughput_rps: float  # requests / the run's duration_s
    latency_us: Latency  # from each request's send to its whole reply


@dataclass
class IdleFigures:
    connections: int
    served: int
    server_uss_before_bytes: int | None
    server_uss_after_bytes: int | None
    memory_per_connection_bytes: float | None


@dataclass
class CpuShare:
    """Steal and other processes' CPU on a set of CPUs over the measured period."""

    cpus: list[int]
    steal_fraction: float  # stolen by the hypervisor ÷ the CPUs' time
    busy_cores: float  # CPUs' time not idle, iowait or stolen ÷ wall: CPUs' worth
    own_cores: float | None  # the server tree's and/or the generator's CPU ÷ wall
    foreign_cores: float | None  # busy - own: every other process, in CPUs' worth


@dataclass
class Disturbance:
    """What else used the run's CPUs (:mod:`loadgen.engine.disturbance`); null without
    ``--server-pid`` or where ``/proc/stat`` cannot be read."""

    wall_s: float
    run: CpuShare  # every CPU of the run: the server's and the generator's
    server: CpuShare | None  # the server's CPUs alone, when apart from the generator's
    generator: CpuShare | None


@dataclass
class Environment:
    malloc: dict[str, str]
    malloc_applied: str
    malloc_env_at_start: bool
    python: str
    engine: str


@dataclass
class DatagramFigures:
    """A UDP load's own counts (``--target udp:...``, issue 17): the measured period's
    requests and what became of each; null for a TCP or Unix-socket load."""

    flows: int  # UDP sockets, one request in flight each (closed loop)
    sent: int  # requests sent (closed) or scheduled (open) in the measured period
    sent_rps: float  # sent ÷ the measured period: the load the server was offered
    answered: int  # the right reply within the loss timeout (= requests)
    lost: int  # no reply within the loss timeout
    late: int  # a reply to a request already counted lost
    duplicated: int  # a second reply to a request already answered
    busy: int  # ERROR server busy: the server's own limit, counted apart from errors
    lost_fraction: float | None  # lost / (answered + lost + busy)
    loss_timeout_s: float  # --loss-timeout plus a WORK's own time
    # /proc/net/snmp's Udp counters over the period and its drain, machine-wide:
    # InErrors, RcvbufErrors, SndbufErrors; null where unreadable
    kernel: dict[str, int] | None
    kernel_drops: int | None  # kernel["InErrors"]: datagrams the kernel dropped on receipt


@dataclass
class LoadResult:
    """docs/RESULTS.md, schema 1."""

    schema: int
    config: ResultConfig
    throughput_rps: float
    requests: int
    duration_s: float
    latency_kind: str
    latency_us: Latency
    latency_us_uncorrected: Latency | None
    latency_out_of_range: int
    errors: dict[str, int]  # by kind: ERROR_KINDS
    errors_total: int
    reconnects: int
    fairness: Fairness
    bottleneck: str | None
    loadgen: LoadgenFigures
    server: ServerFigures | None
    slow_clients: SlowClients | None
    neighbours: Neighbours | None
    idle: IdleFigures | None
    disturbance: Disturbance | None
    environment: Environment
    partial: bool
    datagram: DatagramFigures | None = None  # a UDP load's counts; null otherwise

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of docs/RESULTS.md (keys in the documented order)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        """Read :meth:`to_dict`'s output back; ValueError on a missing or unknown key."""
        return _build(cls, data)


# -- from_dict: nested dataclasses from their type hints ----------------------------

T = TypeVar("T")


def _build(cls: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    optional = {f.name for f in dataclasses.fields(cls) if f.default is None}  # type: ignore[arg-type]
    missing = [n for n in names if n not in data and n not in optional]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        raise ValueError(f"{cls.__name__}: missing keys {missing}, unknown keys {unknown}")
    return cls(**{n: _convert(hints[n], data[n]) for n in names if n in data})


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)  # type: ignore[arg-type]
    return value


# -- the workers' reports, merged ---------------------------------------------------


@dataclass
class RunFacts:
    """What the parent knows besides the workers' reports."""

    server: dict[str, Any] | None  # ServerMonitor.stop()'s dict, or None
    uss_before: int | None  # idle: the server tree's USS before / after the connections
    uss_after: int | None
    partial: bool
    admit_s: float | None  # T0 to the last connection's first reply; None: admit timeout
    ramp_s: float | None = None  # the slowest worker's ramp-up: every connection opened
    # the monitor's /proc/stat readings at both ends of the period, and the CPUs of each side
    window: tuple[noise.Snapshot, noise.Snapshot] | None = None
    server_cpus: list[int] | None = None
    generator_cpus: list[int] | None = None


def aggregate(cfg: LoadConfig, results: list[WorkerResult], facts: RunFacts) -> LoadResult:
    """One :class:`LoadResult` from every worker's :class:`WorkerResult` (at least one)."""
    requests = sum(r.requests for r in results)
    elapsed = max(r.elapsed_s for r in results)
    hist = stats.merge(r.hist for r in results)
    unc = stats.merge(r.hist_unc or b"" for r in results) if cfg.rate is not None else None
    per_slot = [0] * cfg.connections
    admitted = [0] * cfg.connections
    for r in results:
        for slot, n, a in zip(r.slots, r.done, r.admitted, strict=True):
            per_slot[slot] = n
            admitted[slot] = a
    errors = dict.fromkeys(ERROR_KINDS, 0)
    for r in results:
        for k, v in r.errors.items():
            errors[k] += v
    throughput = requests / elapsed if elapsed > 0 else 0.0
    loadgen = _loadgen_figures(cfg, results, requests, throughput, facts)
    server = _build(ServerFigures, facts.server) if facts.server is not None else None
    return LoadResult(
        schema=SCHEMA,
        config=ResultConfig(
            target=cfg.target,
            workload=cfg.workload,
            size=cfg.size,
            connections=cfg.connections,
            duration_s=cfg.duration,
            warmup_s=cfg.warmup,
            rate=cfg.rate,
            pipeline=cfg.pipeline,
            processes=cfg.processes,
            mode=cfg.mode,
            slow_clients=cfg.slow_clients,
            cpus=cfg.cpus,
            timeout_s=cfg.timeout,
            admit_timeout_s=cfg.admit_timeout,
            work=cfg.work if cfg.workload == "work" else None,
            neighbours=cfg.neighbours,
            neighbour_work=cfg.neighbour_work if cfg.neighbours else None,
        ),
        throughput_rps=throughput,
        requests=requests,
        duration_s=elapsed,
        latency_kind="response_time" if cfg.rate is not None else "service_time",
        latency_us=Latency(**stats.summary(hist)),
        latency_us_uncorrected=Latency(**stats.summary(unc)) if unc is not None else None,
        latency_out_of_range=sum(r.out_of_range for r in results),
        errors=errors,
        errors_total=sum(errors.values()),
        reconnects=sum(r.reconnects for r in results),
        fairness=_fairness(per_slot[cfg.first_normal :], admitted[cfg.first_normal :]),
        bottleneck=_bottleneck(loadgen, server),
        loadgen=loadgen,
        server=server,
        slow_clients=_slow_clients(cfg, results),
        neighbours=_neighbours(cfg, results, elapsed),
        idle=_idle(cfg, results, facts),
        disturbance=_disturbance(loadgen, server, facts),
        environment=Environment(
            malloc=dict(MALLOC_ENV),
            malloc_applied="+".join(sorted({r.malloc for r in results})),
            malloc_env_at_start=all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()),
            python=platform.python_version(),
            engine="epoll",
        ),
        partial=facts.partial,
    )


def mergeable(cfg: LoadConfig, results: list[WorkerResult]) -> dict[str, Any]:
    """What merging several hosts' results needs: ``--histograms``' ``mergeable`` object.

    The histograms merged over the workers, as HdrHistogram histoblobs (text),
    and each connection's completions and admission in slot order (slow
    clients or neighbours first), so that fairness can be computed over every host's
    connections.
    """
    done = [0] * cfg.connections
    admitted = [0] * cfg.connections
    for r in results:
        for slot, n, a in zip(r.slots, r.done, r.admitted, strict=True):
            done[slot], admitted[slot] = n, a

    def blob(parts: list[bytes | None]) -> str | None:
        if not any(parts):
            return None
        return stats.merge(p or b"" for p in parts).encode().decode("ascii")

    return {
        "latency": blob([r.hist for r in results]),
        "latency_uncorrected": blob([r.hist_unc for r in results]),
        "slow": blob([r.hist_slow for r in results]),
        "neighbours": blob([r.hist_neighbours for r in results]),
        "done": done,
        "admitted": admitted,
    }


def _fairness(done: list[int], admitted: list[int]) -> Fairness:
    """Shares over every normal connection; starved counts admitted ones only.

    A connection that never completed a request before the period is *not
    admitted* (a limit of the server, like a cap on children): it is counted
    there, not as starved, but its zero still weighs in Jain's index and the
    minimum share.
    """
    figures = stats.fairness(done)
    figures["starved"] = sum(1 for n, a in zip(done, admitted, strict=True) if a and n == 0)
    figures["not_admitted"] = admitted.count(0)
    return Fairness(**figures)  # type: ignore[arg-type]


def _bottleneck(loadgen: LoadgenFigures, server: ServerFigures | None) -> str | None:
    """bottleneck.classify_bottleneck over the measured CPU of both sides; None if unknown."""
    if server is None or server.cpu_util is None:
        return None
    cpus = server.cpus_allowed or os.cpu_count() or 1
    return classify_bottleneck(server.cpu_util, cpus, [w.cpu_util for w in loadgen.workers])


def _disturbance(
    loadgen: LoadgenFigures, server: ServerFigures | None, facts: RunFacts
) -> Disturbance | None:
    """Steal and foreign CPU over the window, the generator's own CPU being its workers'."""
    if facts.window is None or not facts.server_cpus or not facts.generator_cpus:
        return None
    record = noise.disturbance(
        *facts.window,
        server_cpus=facts.server_cpus,
        generator_cpus=facts.generator_cpus,
        server_cpu_s=server.cpu_s if server is not None else None,
        generator_cpu_s=sum(w.cpu_user_s + w.cpu_system_s for w in loadgen.workers),
    )
    return _build(Disturbance, record) if record is not None else None


def _loadgen_figures(
    cfg: LoadConfig,
    results: list[WorkerResult],
    requests: int,
    throughput: float,
    facts: RunFacts,
) -> LoadgenFigures:
    """The generator's own cost, and whether it (not the server) was the limit.

    Its CPU per request is over every request it sent and checked, the
    neighbours' included (it spent the CPU on them too).
    """
    served = requests + sum(r.neighbour_requests for r in results)
    workers = [
        WorkerFigures(r.cpu_util, r.cpu_user_s, r.cpu_system_s, r.requests, r.cpu) for r in results
    ]
    cpu_total = sum(w.cpu_user_s + w.cpu_system_s for w in workers)
    reasons = [
        f"worker {r.index} used {r.cpu_util:.2f} of a core"
        for r in results
        if r.cpu_util > SATURATED_CORE
    ]
    ratio = None
    if cfg.rate is not None:
        ratio = throughput / cfg.rate
        if ratio < RATE_SHORTFALL:
            reasons.append(
                f"achieved {throughput:.0f} req/s, {ratio:.1%} of the {cfg.rate:g} asked"
            )
    return LoadgenFigures(
        workers=workers,
        cpu_util_max=max(w.cpu_util for w in workers),
        cpu_us_per_request=cpu_total * 1e6 / served if served else None,
        saturated=bool(reasons),
        saturation_reasons=reasons,
        achieved_rate_ratio=ratio,
        admit_s=facts.admit_s,
        ramp_s=facts.ramp_s,
    )


def _slow_clients(cfg: LoadConfig, results: list[WorkerResult]) -> SlowClients | None:
    if not cfg.slow_clients:
        return None
    return SlowClients(
        connections=cfg.slow_clients,
        requests=sum(r.slow_requests for r in results),
        latency_us=Latency(**stats.summary(stats.merge(r.hist_slow or b"" for r in results))),
        byte_interval_s=cfg.slow_byte_interval,
    )


def _neighbours(cfg: LoadConfig, results: list[WorkerResult], elapsed: float) -> Neighbours | None:
    if not cfg.neighbours or cfg.neighbour_work is None:
        return None
    requests = sum(r.neighbour_requests for r in results)
    hist = stats.merge(r.hist_neighbours or b"" for r in results)
    return Neighbours(
        connections=cfg.neighbours,
        work=cfg.neighbour_work,
        requests=requests,
        throughput_rps=requests / elapsed if elapsed > 0 else 0.0,
        latency_us=Latency(**stats.summary(hist)),
    )


def _idle(cfg: LoadConfig, results: list[WorkerResult], facts: RunFacts) -> IdleFigures | None:
    if cfg.workload not in ("idle", "c10k"):
        return None
    served = sum(r.idle_served for r in results)
    before, after = facts.uss_before, facts.uss_after
    per_conn = None
    if before is not None and after is not None and served:
        per_conn = (after - before) / served
    return IdleFigures(
        connections=cfg.connections,
        served=served,
        server_uss_before_bytes=before,
        server_uss_after_bytes=after,
        memory_per_connection_bytes=per_conn,
    )
