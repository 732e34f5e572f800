"""Merge the load hosts' results into one, without loss: no Ray here, a pure function.

Every load host measures the same wall-clock window (the driver's
``start_at``) and returns its :class:`~loadgen.engine.result.LoadResult`
plus its *mergeable* data (``python -m loadgen --histograms``): the
encoded HDR histograms (HdrHistogram's histoblob) and the completions of
each of its connections.  :func:`merge_loads` combines them:

* requests, errors (by kind), reconnects and out-of-range latencies are summed;
* throughput is the total requests divided by the common window;
* latency percentiles come from the *merged histograms* (never from averaged
  percentiles, which are meaningless);
* fairness (Jain's index, shares, starved, not admitted) is computed over
  every connection of every host, as if one generator held them all;
* slow clients and neighbours are merged apart, as one generator keeps them;
* the bottleneck is classified over the server's CPU and every worker of every host.

:func:`host_records` describes each host for the report's ``hosts`` section.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from loadgen.engine import stats
from loadgen.engine.bottleneck import classify_bottleneck
from loadgen.engine.result import (
    Fairness,
    Latency,
    LoadgenFigures,
    LoadResult,
    Neighbours,
    ServerFigures,
    SlowClients,
)

CLOCK_FLAG_S = 0.005  # a host whose clock is further than this from the driver's is flagged


@dataclass
class HostLoad:
    """What one load host returned for one measurement."""

    name: str  # the node's name (its IP address on a real cluster)
    cpus: int  # CPUs the engine could use there
    result: LoadResult
    mergeable: dict[str, Any]  # the engine's "mergeable" object (docs/RESULTS.md)
    offset_s: float | None  # its clock minus the driver's, at the smallest round trip
    rtt_s: float | None  # that round trip
    ray_cpu_s: float | None  # CPU seconds Ray's own processes used there during the window


def encode_blob(histogram: HdrHistogram) -> str:
    """A histogram as JSON text: HdrHistogram's histoblob (``encode()``: already base64)."""
    return histogram.encode().decode("ascii")


def merge_histograms(blobs: Iterable[str | bytes | None]) -> HdrHistogram:
    """One histogram with every value of the encoded ones (None or empty ones skipped)."""
    total = stats.new_histogram()
    for blob in blobs:
        if blob:
            total.decode_and_add(blob)
    return total


def merge_loads(
    loads: Sequence[HostLoad], server: dict[str, Any] | None, partial: bool = False
) -> LoadResult:
    """One :class:`LoadResult` for the run, from every load host's (at least one).

    ``server``: the server host's :class:`ServerFigures` as a dict (its
    per-request figures are recomputed here over the total requests), or None.
    ``partial``: something did not report (a failed host); also set if any host's run was.
    """
    if not loads:
        raise ValueError("no load host returned a result")
    results = [h.result for h in loads]
    first = results[0]
    requests = sum(r.requests for r in results)
    window = max(r.duration_s for r in results)  # the common window, as the hosts measured it
    throughput = requests / window if window > 0 else 0.0
    rate = sum(r.config.rate or 0.0 for r in results) if first.config.rate is not None else None
    errors: dict[str, int] = {}
    for r in results:
        for kind, n in r.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    hist = merge_histograms(h.mergeable.get("latency") for h in loads)
    unc = None
    if rate is not None:
        unc = merge_histograms(h.mergeable.get("latency_uncorrected") for h in loads)
    neighbours = _neighbours(loads, window)
    # the server served the neighbours' requests too: its per-request costs are over all
    served = requests + (neighbours.requests if neighbours is not None else 0)
    server_figs = _server_figures(server, served)
    loadgen = _loadgen(loads, requests, throughput, rate, served)
    config = dataclasses.replace(
        first.config,
        connections=sum(r.config.connections for r in results),
        processes=sum(r.config.processes for r in results),
        slow_clients=sum(r.config.slow_clients for r in results),
        neighbours=sum(r.config.neighbours for r in results),
        # a host may have no neighbour of the run's (fewer neighbours than hosts)
        neighbour_work=neighbours.work if neighbours is not None else None,
        rate=rate,
        cpus=None,  # per host: see the hosts section
    )
    return LoadResult(
        schema=first.schema,
        config=config,
        throughput_rps=throughput,
        requests=requests,
        duration_s=window,
        latency_kind=first.latency_kind,
        latency_us=Latency(**stats.summary(hist)),
        latency_us_uncorrected=Latency(**stats.summary(unc)) if unc is not None else None,
        latency_out_of_range=sum(r.latency_out_of_range for r in results),
        errors=errors,
        errors_total=sum(errors.values()),
        reconnects=sum(r.reconnects for r in results),
        fairness=merged_fairness(loads),
        bottleneck=_bottleneck(server_figs, [w.cpu_util for w in loadgen.workers]),
        loadgen=loadgen,
        server=server_figs,
        slow_clients=_slow(loads),
        neighbours=neighbours,
        idle=_idle(results),
        # not across hosts: a load host does not watch the server (no --server-pid)
        disturbance=None,
        environment=first.environment,
        partial=partial or any(r.partial for r in results),
    )


def merged_fairness(loads: Sequence[HostLoad]) -> Fairness:
    """Fairness over every normal connection of every host (slow clients or neighbours come
    first per host)."""
    done: list[int] = []
    admitted: list[int] = []
    for h in loads:
        skip = h.result.config.slow_clients + h.result.config.neighbours
        done += h.mergeable["done"][skip:]
        admitted += h.mergeable["admitted"][skip:]
    figures = stats.fairness(done)
    figures["starved"] = sum(1 for n, a in zip(done, admitted, strict=True) if a and n == 0)
    figures["not_admitted"] = admitted.count(0)
    return Fairness(**figures)  # type: ignore[arg-type]


def _server_figures(server: dict[str, Any] | None, requests: int) -> ServerFigures | None:
    """The server host's figures, with the per-request ones over the merged request count."""
    if server is None:
        return None
    data = dict(server)
    for key, total in (
        ("cpu_us_per_request", "cpu_s"),
        ("cpu_user_us_per_request", "cpu_user_s"),
        ("cpu_system_us_per_request", "cpu_system_s"),
    ):
        seconds = data.get(total)
        data[key] = round(seconds * 1e6 / requests, 4) if seconds is not None and requests else None
    return ServerFigures(**data)


def _bottleneck(server: ServerFigures | None, generator_cores: list[float]) -> str | None:
    if server is None or server.cpu_util is None or not generator_cores:
        return None
    return classify_bottleneck(server.cpu_util, server.cpus_allowed or 1, generator_cores)


def _loadgen(
    loads: Sequence[HostLoad],
    requests: int,
    throughput: float,
    rate: float | None,
    served: int | None = None,
) -> LoadgenFigures:
    """``served``: every request the generators checked, the neighbours' too (default: requests)."""
    served = requests if served is None else served
    workers = [w for h in loads for w in h.result.loadgen.workers]
    cpu_total = sum(w.cpu_user_s + w.cpu_system_s for w in workers)
    reasons = [
        f"{h.name}: {reason}"
        for h in loads
        for reason in h.result.loadgen.saturation_reasons
        if not reason.startswith("achieved")  # the rate is judged over all hosts below
    ]
    ratio = throughput / rate if rate else None
    if ratio is not None and any(h.result.loadgen.achieved_rate_ratio is not None for h in loads):
        from loadgen.engine.result import RATE_SHORTFALL

        if ratio < RATE_SHORTFALL:
            reasons.append(f"achieved {throughput:.0f} req/s, {ratio:.1%} of the {rate:g} asked")
    admits = [h.result.loadgen.admit_s for h in loads]
    ramps = [h.result.loadgen.ramp_s for h in loads]
    return LoadgenFigures(
        workers=workers,
        cpu_util_max=max(w.cpu_util for w in workers),
        cpu_us_per_request=cpu_total * 1e6 / served if served else None,
        saturated=bool(reasons),
        saturation_reasons=reasons,
        achieved_rate_ratio=ratio,
        admit_s=None if any(a is None for a in admits) else max(admits),  # type: ignore[type-var]
        # the hosts open their connections at once: the slowest one is the cluster's ramp
        ramp_s=None if any(r is None for r in ramps) else max(ramps),  # type: ignore[type-var]
    )


def _slow(loads: Sequence[HostLoad]) -> SlowClients | None:
    slow = [h for h in loads if h.result.slow_clients is not None]
    if not slow:
        return None
    parts = [h.result.slow_clients for h in slow if h.result.slow_clients is not None]
    hist = merge_histograms(h.mergeable.get("slow") for h in slow)
    return SlowClients(
        connections=sum(p.connections for p in parts),
        requests=sum(p.requests for p in parts),
        latency_us=Latency(**stats.summary(hist)),
        byte_interval_s=parts[0].byte_interval_s,
    )


def _neighbours(loads: Sequence[HostLoad], window: float) -> Neighbours | None:
    """The neighbours of every host as one generator's: summed, histograms merged."""
    hosts = [h for h in loads if h.result.neighbours is not None]
    if not hosts:
        return None
    parts = [h.result.neighbours for h in hosts if h.result.neighbours is not None]
    requests = sum(p.requests for p in parts)
    hist = merge_histograms(h.mergeable.get("neighbours") for h in hosts)
    return Neighbours(
        connections=sum(p.connections for p in parts),
        work=parts[0].work,
        requests=requests,
        throughput_rps=requests / window if window > 0 else 0.0,
        latency_us=Latency(**stats.summary(hist)),
    )


def _idle(results: list[LoadResult]) -> Any:
    idle = [r.idle for r in results if r.idle is not None]
    if not idle:
        return None
    # the server's memory is measured on its own host, not by the load hosts: unknown here
    return dataclasses.replace(
        idle[0],
        connections=sum(i.connections for i in idle),
        served=sum(i.served for i in idle),
        server_uss_before_bytes=None,
        server_uss_after_bytes=None,
        memory_per_connection_bytes=None,
    )


def host_records(
    server: dict[str, Any], loads: Sequence[HostLoad], failed: dict[str, str]
) -> list[dict[str, Any]]:
    """The run's ``hosts`` section: the server host, then each load host (failed ones too).

    ``server``: ``{"name", "cpus", "ran", "figures"}`` (figures: ServerFigures dict or None);
    ``failed``: load host name -> why it returned nothing.
    """
    figs = server.get("figures") or {}
    util = figs.get("cpu_util")
    records = [
        {
            "name": server["name"],
            "role": "server",
            "cpus": server["cpus"],
            "ran": server["ran"],
            "status": "ok" if server.get("error") is None else "failed",
            "error": server.get("error"),
            "cpu_util": util,
            "requests": None,
            "clock_offset_ms": None,  # the driver's own clock is the reference
            "clock_flagged": False,
            "ray_cpu_util": None,
            "bottleneck": _host_bottleneck(figs, [0.0]),
        }
    ]
    for h in loads:
        workers = [w.cpu_util for w in h.result.loadgen.workers]
        window = h.result.duration_s
        offset = h.offset_s
        records.append(
            {
                "name": h.name,
                "role": "load",
                "cpus": h.cpus,
                "ran": f"python -m loadgen, {h.result.config.connections} connections",
                "status": "ok",
                "error": None,
                "cpu_util": round(sum(workers), 4),
                "requests": h.result.requests,
                "clock_offset_ms": round(offset * 1e3, 3) if offset is not None else None,
                "clock_flagged": offset is not None and abs(offset) > CLOCK_FLAG_S,
                "ray_cpu_util": (
                    round(h.ray_cpu_s / window, 4) if h.ray_cpu_s is not None and window else None
                ),
                "bottleneck": _host_bottleneck(figs, workers),
            }
        )
    for name, why in failed.items():
        records.append(
            {"name": name, "role": "load", "cpus": None, "ran": "python -m loadgen",
             "status": "failed", "error": why, "cpu_util": None, "requests": None,
             "clock_offset_ms": None, "clock_flagged": False, "ray_cpu_util": None,
             "bottleneck": None}
        )  # fmt: skip
    return records


def _host_bottleneck(server: dict[str, Any], generator_cores: list[float]) -> str | None:
    """This host's side of the classification: the server's CPU, or these workers'."""
    if server.get("cpu_util") is None or not generator_cores:
        return None
    return classify_bottleneck(server["cpu_util"], server.get("cpus_allowed") or 1, generator_cores)


def hosts_section(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.json's top-level ``hosts``: each host over every timed run that has one.

    ``cpu_util`` and ``ray_cpu_util`` are means over the runs (CPUs busy, in
    cores); ``requests`` the total; ``clock_offset_ms`` the largest offset seen.
    """
    hosts: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        if run.get("purpose", "timed") != "timed" or run.get("discarded"):
            continue
        for h in run.get("hosts") or []:
            rec = hosts.setdefault(
                (h["role"], h["name"]),
                {"name": h["name"], "role": h["role"], "cpus": h["cpus"], "ran": [], "runs": 0,
                 "failed": 0, "requests": 0, "_cpu": [], "_ray": [], "clock_offset_ms": None,
                 "clock_flagged": False},
            )  # fmt: skip
            rec["runs"] += 1
            rec["failed"] += h["status"] != "ok"
            rec["cpus"] = rec["cpus"] or h["cpus"]
            rec["ran"].append(h["ran"] if h["role"] == "server" else "python -m loadgen")
            rec["requests"] += h["requests"] or 0
            if h["cpu_util"] is not None:
                rec["_cpu"].append(h["cpu_util"])
            if h["ray_cpu_util"] is not None:
                rec["_ray"].append(h["ray_cpu_util"])
            off = h["clock_offset_ms"]
            if off is not None and (
                rec["clock_offset_ms"] is None or abs(off) > abs(rec["clock_offset_ms"])
            ):
                rec["clock_offset_ms"] = off
            rec["clock_flagged"] |= h["clock_flagged"]
    out = []
    for rec in hosts.values():
        cpu, ray_cpu = rec.pop("_cpu"), rec.pop("_ray")
        rec["ran"] = sorted(set(rec["ran"]))
        rec["cpu_util_mean"] = round(sum(cpu) / len(cpu), 4) if cpu else None
        rec["ray_cpu_util_mean"] = round(sum(ray_cpu) / len(ray_cpu), 4) if ray_cpu else None
        if rec["role"] == "server":
            rec["requests"] = None
        out.append(rec)
    return sorted(out, key=lambda r: (r["role"] != "server", r["name"]))
