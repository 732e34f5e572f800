"""A worker process from fork to exit: its settings, the talk with the parent, its result.

The parent (:mod:`loadgen.engine.driver`) forks one process per worker and
calls :func:`worker_entry`; the messages exchanged are the named types of
:mod:`loadgen.engine.messages`.
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from loadgen.engine import hotloop, stats
from loadgen.engine.config import LoadConfig
from loadgen.engine.messages import Done, Failed, Ready, Start, WorkerResult
from loadgen.engine.plan import Plan
from loadgen.engine.worker import Worker
from loadgen.procs import MALLOC_ENV

RELEASE_TIMEOUT = 5.0  # s a worker holds its connections after Done, waiting for Release


def worker_entry(
    cfg: LoadConfig,
    index: int,
    slots: list[int],
    plan: Plan,
    ctl: Connection,
    progress: Any,
    close: list[Connection],
) -> None:
    """The forked process's target: run the worker; report a crash as :class:`Failed`."""
    # Every pipe end but ours: we see EOF if the parent dies, and it sees ours if we do.
    for other in close:
        if other is not ctl:
            other.close()
    worker = Worker(cfg, index, slots, plan, ctl, progress)
    try:
        serve(worker)
    except BaseException as exc:  # report, do not print a traceback into the user's table
        try:
            ctl.send(Failed(f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        raise SystemExit(1) from None


def serve(w: Worker) -> None:
    """Ramp up, wait for Start, run the loop, report Done, hold, report the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    malloc = _apply_malloc_env()
    cpu = _pin(w.cfg, w.index)
    gc.disable()  # the loop makes no cycles; a collection would be a latency spike
    ramp_deadline = time.perf_counter_ns() + int(w.cfg.ramp_limit * 1e9)
    w.ep.register(w.ctl.fileno(), select.EPOLLIN)
    ramp_start = time.perf_counter_ns()
    w.ramp(ramp_deadline)
    w.ctl.send(Ready(len(w.live), dict(w.errors), time.perf_counter_ns() - ramp_start))
    # wait (bounded) for the common start instant
    if not w.ctl.poll(w.cfg.ramp_limit + 2.0):
        return
    msg = w.ctl.recv()
    if not isinstance(msg, Start):
        return
    w.t0 = msg.t0_ns
    # The parent's Window sets the period once every worker is admitted; until then
    # only this hard deadline bounds the loop (the parent may be gone).
    cfg = w.cfg
    w.deadline = w.t0 + int((cfg.admit_timeout + cfg.warmup + cfg.duration + 3.0) * 1e9)
    hotloop.run(w)
    if not w.measure_start_seen:  # no period: what was counted was admission, not the run
        w.done[:] = [0] * len(w.done)
    w.ctl.send(Done(sum(w.done), w.measuring_elapsed_ns()))  # the neighbours' too: see Done
    # Hold the connections until the parent has read the server's figures:
    # a forking server's children exit with their clients, and would leave
    # the tree before its memory is measured (bounded: the parent may be gone).
    try:
        if not w.stop_requested and w.ctl.poll(RELEASE_TIMEOUT):  # stopped: nothing to hold
            w.ctl.recv()  # Release
    except (EOFError, OSError):
        pass
    w.close_all()
    w.ctl.send(result(w, malloc, cpu))


def _pin(cfg: LoadConfig, index: int) -> list[int] | None:
    """Pin this worker as ``--cpus`` says; the CPUs it got, or None."""
    if not cfg.cpus or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = cfg.cpus
    mine = {cpus[index % len(cpus)]} if len(cpus) >= cfg.processes else set(cpus)
    os.sched_setaffinity(0, mine)
    return sorted(mine)


def _apply_malloc_env() -> str:
    """Put glibc malloc in the suite's fixed state inside this process.

    glibc reads ``MALLOC_*_`` only at process start, so a forked worker of a
    parent started without them would run with the dynamic mmap threshold;
    ``mallopt`` sets the same values (and, like the variables, turns the
    dynamic adjustment off).  Returns how it was applied.
    """
    os.environ.update(MALLOC_ENV)  # for anything this worker starts
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "unavailable"
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    ok = mallopt(m_mmap_threshold, int(MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]))
    ok &= mallopt(m_trim_threshold, int(MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]))
    return "mallopt" if ok else "failed"


def result(w: Worker, malloc: str, cpu: list[int] | None) -> WorkerResult:
    """The worker's latencies recorded into histograms (only now: see hotloop), and counters."""
    hist = stats.new_histogram()
    clamped = stats.record_ns(hist, w.lat)
    unc = None
    if w.open_loop:
        h2 = stats.new_histogram()
        clamped += stats.record_ns(h2, w.lat_unc)
        unc = stats.encode(h2)
    slow = None
    if w.cfg.slow_clients:
        h3 = stats.new_histogram()
        clamped += stats.record_ns(h3, w.slow_lat)
        slow = stats.encode(h3)
    neighbours = None
    if w.cfg.neighbours:
        h4 = stats.new_histogram()
        clamped += stats.record_ns(h4, w.neighbour_lat)
        neighbours = stats.encode(h4)
    elapsed = w.measuring_elapsed_ns() / 1e9
    user = system = 0.0
    if w.ru0 is not None and w.ru1 is not None:
        user = w.ru1.ru_utime - w.ru0.ru_utime
        system = w.ru1.ru_stime - w.ru0.ru_stime
    return WorkerResult(
        index=w.index,
        slots=w.slots,
        # idle: fairness is over "was this connection served at all"
        done=[(w.idle_ok if w.idle else w.done)[s] for s in w.slots],
        admitted=[w.admitted[s] for s in w.slots],
        requests=w.victims_done(),
        elapsed_s=elapsed,
        hist=stats.encode(hist),
        hist_unc=unc,
        hist_slow=slow,
        slow_requests=w.slow_done,
        out_of_range=clamped,
        errors=dict(w.errors),
        reconnects=w.reconnects,
        idle_served=w.idle_served,
        cpu_user_s=user,
        cpu_system_s=system,
        cpu_util=(user + system) / elapsed if elapsed > 0 else 0.0,
        cpu=cpu,
        malloc=malloc,
        stopped=w.stop_requested,
        hist_neighbours=neighbours,
        neighbour_requests=w.neighbour_done,
    )
