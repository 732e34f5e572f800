"""What the parent and a worker say to each other over their pipe, in order.

worker -> parent   Ready      connections open after the ramp-up
parent -> worker   Start      the common start instant T0: traffic begins
worker -> parent   Admitted   each of its connections has completed a first request
parent -> worker   Window     the measured period: every worker admitted (or the admit
                              timeout), plus the warm-up
parent -> worker   Stop       (Ctrl-C) end the loop now
worker -> parent   Done       the measured period's count, as soon as it ends
parent -> worker   Release    the server's figures are read: close the connections
worker -> parent   WorkerResult  histograms, counters, CPU times
worker -> parent   Failed     instead of any of the above, if the worker crashed
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Ready(NamedTuple):
    connections: int  # open now
    errors: dict[str, int]  # by kind, during the ramp-up
    ramp_ns: int = 0  # from the first connect to the last one done (or the ramp's deadline)


class Start(NamedTuple):
    t0_ns: int  # perf_counter_ns() at which warm-up starts


class Admitted(NamedTuple):
    at_ns: int  # perf_counter_ns() when the worker saw its last connection's first reply


class Window(NamedTuple):
    t_measure_ns: int  # perf_counter_ns() at which the measured period starts


class Stop(NamedTuple):
    pass


class Done(NamedTuple):
    # completions in the measured period, the neighbours' included: the denominator of the
    # server's per-request costs, which it spent on every request it served (slow clients'
    # are left out, as before: a few requests a second)
    requests: int
    elapsed_ns: int  # the measured period as this worker saw it


class Release(NamedTuple):
    pass


class Failed(NamedTuple):
    message: str  # "ExceptionType: text"


@dataclass
class WorkerResult:
    """One worker's share of the result; the parent merges them (result.aggregate)."""

    index: int
    slots: list[int]  # the connection slots this worker ran
    done: list[int]  # completions per slot (idle: 1 if served), in ``slots`` order
    admitted: list[int]  # 1 if the slot completed a request before the period, ``slots`` order
    requests: int
    elapsed_s: float
    hist: bytes  # encoded HdrHistogram (stats.encode)
    hist_unc: bytes | None  # open loop: from the actual send
    hist_slow: bytes | None  # slow clients
    slow_requests: int
    out_of_range: int
    errors: dict[str, int]
    reconnects: int
    idle_served: int
    cpu_user_s: float
    cpu_system_s: float
    cpu_util: float
    cpu: list[int] | None
    malloc: str  # how the malloc settings were applied
    stopped: bool  # the parent asked it to stop early
    hist_neighbours: bytes | None = None  # the neighbours' latencies (--neighbours)
    neighbour_requests: int = 0  # their completions in the measured period (not in requests)
