"""The parent of a load run: fork the workers, drive them through the phases, merge a result.

A run, as seen by the parent (:func:`run_load`):

1. check the target answers a TCP connect (one-line error if not); prepare
   GET files with a blocking client (:mod:`loadgen.engine.plan`);
2. fork ``processes`` workers (:mod:`loadgen.engine.process`); each opens
   its share of the connections in batches (listen backlogs are small) and
   says :class:`~loadgen.engine.messages.Ready`;
3. send every worker the same start instant ``T0`` (traffic begins); each
   says :class:`~loadgen.engine.messages.Admitted` once every one of its
   connections has completed a first request; when all did (or
   ``admit_timeout`` after ``T0``), warm-up for ``warmup`` seconds (results
   discarded), then the measured period of ``duration``, sent to the workers
   as :class:`~loadgen.engine.messages.Window`; the server monitor and the
   cost counters (:mod:`loadgen.engine.counters`) bracket the measured period;
4. each worker sends its count (``Done``), then its histograms and CPU
   times (``WorkerResult``); :func:`loadgen.engine.result.aggregate` merges
   them into the :class:`~loadgen.engine.result.LoadResult`.

Every wait is bounded, and the parent kills and reaps what does not stop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from loadgen.client import connect, parse_address
from loadgen.engine.config import LoadConfig, LoadError
from loadgen.engine.messages import (
    Admitted,
    Done,
    Failed,
    Ready,
    Release,
    Start,
    Stop,
    Window,
    WorkerResult,
)
from loadgen.engine.plan import build_plan, prepare_files
from loadgen.engine.process import worker_entry
from loadgen.engine.result import COUNTERS_OFF, LoadResult, RunFacts, aggregate, mergeable
from loadgen.procs import process_tree, raise_nofile, tree_memory

M = TypeVar("M")
START_LATE_S = 0.05  # --start-at may be this far in the past when the ramp-up ends


@dataclass
class Progress:
    """What the live line shows; passed to the ``progress`` callback about 4 times a second."""

    phase: str  # "ramp-up", "admission", "warm-up", "measuring", "collecting"
    elapsed_s: float  # in this phase
    phase_s: float  # its length (0 if unknown)
    completed: int  # every correct reply so far (any phase)
    measured: int  # correct replies in the measured period so far
    errors: int
    connections: int  # open now
    rate_rps: float  # measured / seconds measured so far


def _check_reachable(cfg: LoadConfig) -> None:
    try:
        with connect(cfg.address, timeout=1.0):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LoadError(f"cannot connect to {cfg.target}: {reason}") from None


def _raise_nofile(needed: int) -> None:
    """Raise the soft descriptor limit (the workers inherit it), or fail in one line."""
    if raise_nofile(needed) < needed:
        hard = raise_nofile(0)
        raise LoadError(
            f"{needed} file descriptors needed per worker, the hard limit is {hard}: "
            "use more --processes or raise the limit (ulimit -Hn)"
        )


def _tree_uss(pid: int) -> int | None:
    """Sum of USS (memory private to the process) over the server's tree now.

    USS, not PSS, for the idle workload's per-connection figure: PSS also
    moves when *other* processes map or unmap the same libraries, which on a
    busy machine swamps a difference of a few KiB per connection.
    """
    tree = process_tree(pid)
    return tree_memory(tree).uss if tree else None


def run_load(
    target: str | None = None,
    *,
    config: LoadConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    **options: Any,
) -> LoadResult:
    """Run one load and return its result (docs/RESULTS.md: ``result.to_dict()``).

    Either ``config`` or ``target="HOST:PORT"`` (or ``"unix:PATH"``) plus :class:`LoadConfig`
    field names as keywords (``workload``, ``size``, ``connections``,
    ``duration``, ``warmup``, ``rate``, ``pipeline``, ``processes``,
    ``slow_clients``, ``cpus``, ``server_pid``, ``timeout``, ``admit_timeout``,
    ``counters``, ``work``, ``neighbours``, ``neighbour_work``).  Raises
    ValueError for bad options, :class:`LoadError` when the target cannot be
    loaded.  On KeyboardInterrupt the workers are stopped and reaped and the
    result is returned with ``partial: true``.
    """
    if config is None:
        if target is None:
            raise ValueError("give target or config")
        address = parse_address(target)
        if isinstance(address, str):
            config = LoadConfig(host="", port=0, unix=address, **options)
        else:
            config = LoadConfig(host=address[0], port=address[1], **options)
    cfg = config
    cfg.validate()
    return _Run(cfg, progress).run()


def run_load_mergeable(
    config: LoadConfig, progress: Callable[[Progress], None] | None = None
) -> tuple[LoadResult, dict[str, Any]]:
    """:func:`run_load`, plus what merging several hosts' results needs (``--histograms``).

    The second value is the ``mergeable`` object of docs/RESULTS.md: the
    encoded histograms and every connection's completions
    (:func:`loadgen.engine.result.mergeable`).
    """
    config.validate()
    run = _Run(config, progress)
    result = run.run()
    return result, run.mergeable


class _Run:
    def __init__(self, cfg: LoadConfig, progress: Callable[[Progress], None] | None) -> None:
        self.cfg = cfg
        self.progress_cb = progress
        self.procs: list[Any] = []
        self.ctls: list[Connection] = []
        self.messages: dict[int, dict[type, Any]] = {}  # worker -> message type -> message
        self.gone: set[int] = set()  # workers whose pipe closed
        self.partial = False
        self.monitor: Any = None
        self.monitor_started = False
        self.counters: Any = None  # CostCounters with --server-pid, unless --no-counters
        self.costs: dict[str, Any] | None = None
        self.admit_s: float | None = None
        self.ramp_s: float | None = None
        self.server: dict[str, Any] | None = None
        self.t_launch = time.perf_counter()
        self.worker_errors: list[str] = []
        self.mergeable: dict[str, Any] = {}

    def run(self) -> LoadResult:
        cfg = self.cfg
        _raise_nofile(cfg.connections // cfg.processes + 1 + 64)
        _check_reachable(cfg)
        token = f"{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        plan = build_plan(cfg, token)
        prepare_files(cfg, plan)
        idle_probe = cfg.server_pid is not None and cfg.workload in ("idle", "c10k")
        self.uss_before = _tree_uss(cfg.server_pid) if idle_probe else None  # type: ignore[arg-type]
        self.uss_after: int | None = None
        if cfg.server_pid is not None:
            from loadgen.engine.monitor import ServerMonitor

            try:
                self.monitor = ServerMonitor(cfg.server_pid)
            except ValueError as exc:
                raise LoadError(str(exc)) from None
            if cfg.counters:
                from loadgen.engine.counters import CostCounters

                self.counters = CostCounters(cfg.server_pid)
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.shared = ctx.Array("q", cfg.processes * 4, lock=False)
        pipes = [ctx.Pipe() for _ in range(cfg.processes)]
        all_ends = [end for pair in pipes for end in pair]
        try:
            for i, (mine, theirs) in enumerate(pipes):
                slots = list(range(i, cfg.connections, cfg.processes))
                proc = ctx.Process(
                    target=worker_entry,
                    args=(cfg, i, slots, plan, theirs, self.shared, all_ends),
                    name=f"loadgen-worker-{i}",
                    daemon=True,
                )
                proc.start()
                theirs.close()
                self.procs.append(proc)
                self.ctls.append(mine)
            self.drive()
        except KeyboardInterrupt:
            self.partial = True
            self.stop_workers()
            self.collect(WorkerResult, time.monotonic() + 2.0)
        finally:
            self.reap()
            if self.monitor_started:  # else the period never began: nothing to report
                if self.server is None:  # interrupted during the period
                    self.pause_counters()
                    self.server = self.monitor.stop(self.requests_done())
                self.stop_counters(self.requests_done())
            elif self.counters is not None:
                self.counters.close()
        return self.result()

    # -- steps ----------------------------------------------------------------

    def drive(self) -> None:
        cfg = self.cfg
        ready = self.collect(Ready, time.monotonic() + cfg.ramp_limit + 2.0, phase="ramp-up")
        if len(ready) < len(self.procs):
            raise LoadError(self.worker_failure("the workers did not finish opening connections"))
        self.ramp_s = max(m.ramp_ns for m in ready.values()) / 1e9
        if sum(m.connections for m in ready.values()) == 0:
            errors: dict[str, int] = {}
            for m in ready.values():
                for k, v in m.errors.items():
                    errors[k] = errors.get(k, 0) + v
            what = ", ".join(f"{k} {v}" for k, v in errors.items() if v) or "none connected"
            raise LoadError(f"no connection to {cfg.target} could be opened ({what})")
        if self.counters is not None:
            # perf's slow attach, before any traffic: a child the server forks from now on
            # is counted (perf inherits), and the window's edges cost one pipe round trip.
            self.counters.attach()
        t0 = self.start_instant()
        for ctl in self.ctls:
            ctl.send(Start(t0))
        t_measure = self.admit(t0) + cfg.warmup
        if cfg.start_at is not None:
            # several hosts measure one window: it cannot depend on when each one's
            # connections were admitted, so the whole admission budget is always waited
            t_measure = t0 / 1e9 + cfg.admit_timeout + cfg.warmup
        for ctl in self.ctls:
            try:
                ctl.send(Window(int(t_measure * 1e9)))
            except OSError:
                pass  # that worker is gone; collect() notices
        t_end = t_measure + cfg.duration
        self.t_measure = t_measure
        self.wait_until(t_measure, "warm-up", cfg.warmup)
        if self.counters is not None:
            self.counters.start()
        if self.monitor is not None:
            self.monitor.start()
            self.monitor_started = True
        self.wait_until(t_end, "measuring", cfg.duration)
        done = self.collect(Done, time.monotonic() + 2.5, phase="collecting")
        requests = sum(m.requests for m in done.values())
        self.pause_counters()
        if self.uss_before is not None:
            self.uss_after = _tree_uss(cfg.server_pid)  # type: ignore[arg-type]
        if self.monitor is not None:
            self.server = self.monitor.stop(requests)
        for ctl in self.ctls:  # the workers may close their connections now
            try:
                ctl.send(Release())
            except OSError:
                pass
        self.stop_counters(requests)  # ends perf: slow (~2.5 s) unless a TracepointHold runs
        # workers record their latencies into histograms now: allow for long runs
        self.collect(WorkerResult, time.monotonic() + 5.0 + cfg.duration, phase="collecting")

    def start_instant(self) -> int:
        """T0 in perf_counter_ns: in 20 ms, or ``--start-at`` (LoadError if long past)."""
        if self.cfg.start_at is None:
            return time.perf_counter_ns() + 20_000_000
        ahead = self.cfg.start_at - time.time()
        if ahead < -START_LATE_S:
            raise LoadError(
                f"--start-at is {-ahead:.3f} s in the past after the ramp-up: "
                "start the load hosts earlier"
            )
        return time.perf_counter_ns() + int(ahead * 1e9)

    def admit(self, t0: int) -> float:
        """Wait (at most ``admit_timeout``) until every connection completed a first request.

        Returns the instant (perf_counter seconds) the parent knew it, or the
        timeout's; sets ``admit_s`` (None when the timeout hit).
        """
        cfg = self.cfg
        deadline = time.monotonic() + (t0 - time.perf_counter_ns()) / 1e9 + cfg.admit_timeout
        admitted = self.collect(Admitted, deadline, phase="admission")
        if len(admitted) == len(self.procs):
            self.admit_s = max(0.0, max(m.at_ns for m in admitted.values()) - t0) / 1e9
        return time.perf_counter()

    def pause_counters(self) -> None:
        """The measured period's end for the cost counters (quick; perf keeps running)."""
        if self.counters is not None and self.costs is None:
            try:
                self.counters.pause()
            except (RuntimeError, OSError) as exc:
                self.counters.close()
                self.costs = _no_costs(f"counting failed: {exc}")

    def stop_counters(self, requests: int) -> None:
        """End perf and keep the counters' figures for the ``server`` object."""
        if self.counters is None or self.costs is not None:
            return
        try:
            self.costs = self.counters.stop(requests)
        except (RuntimeError, OSError, AssertionError) as exc:
            self.costs = _no_costs(f"counting failed: {exc}")
        finally:
            self.counters.close()

    def wait_until(self, t: float, phase: str, length: float) -> None:
        """Sleep until perf_counter() reaches ``t``, updating the live line."""
        start = t - length
        while True:
            now = time.perf_counter()
            if now >= t:
                return
            self.report(phase, now - start, length)
            # a worker that dies early says so on its pipe
            for ctl in wait(self.ctls, timeout=min(0.25, t - now)):
                self.receive(self.ctls.index(ctl), ctl)

    def receive(self, index: int, ctl: Connection) -> None:
        try:
            msg = ctl.recv()
        except (EOFError, OSError):
            self.gone.add(index)
            return
        if isinstance(msg, Failed):
            self.worker_errors.append(msg.message)
        self.messages.setdefault(index, {})[type(msg)] = msg

    def collect(self, kind: type[M], deadline: float, phase: str = "collecting") -> dict[int, M]:
        """Wait (bounded) until every worker sent a message of type ``kind``, or failed."""
        while True:
            have = {i: m[kind] for i, m in self.messages.items() if kind in m}
            pending = [
                c
                for i, c in enumerate(self.ctls)
                if i not in have and i not in self.gone and Failed not in self.messages.get(i, {})
            ]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return have
            self.report(phase, 0.0, 0.0)
            for ctl in wait(pending, timeout=min(0.25, left)):
                self.receive(self.ctls.index(ctl), ctl)

    def stop_workers(self) -> None:
        for ctl in self.ctls:
            try:
                ctl.send(Stop())
            except OSError:
                pass

    def reap(self) -> None:
        """Every worker ends here: joined, else terminated, else killed."""
        deadline = time.monotonic() + 2.0
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for ctl in self.ctls:
            ctl.close()

    def worker_failure(self, default: str) -> str:
        return f"worker failed: {self.worker_errors[0]}" if self.worker_errors else default

    def requests_done(self) -> int:
        return sum(m[Done].requests for m in self.messages.values() if Done in m)

    def report(self, phase: str, elapsed: float, length: float) -> None:
        if self.progress_cb is None:
            return
        p = self.shared
        n = len(self.procs)
        measured = sum(p[i * 4 + 1] for i in range(n))
        since = time.perf_counter() - getattr(self, "t_measure", float("inf"))
        self.progress_cb(
            Progress(
                phase=phase,
                elapsed_s=elapsed,
                phase_s=length,
                completed=sum(p[i * 4] for i in range(n)),
                measured=measured,
                errors=sum(p[i * 4 + 2] for i in range(n)),
                connections=sum(p[i * 4 + 3] for i in range(n)),
                rate_rps=measured / since if since > 0.2 else 0.0,
            )
        )

    def result(self) -> LoadResult:
        results = [m[WorkerResult] for _, m in sorted(self.messages.items()) if WorkerResult in m]
        if not results:
            raise LoadError(self.worker_failure("no worker returned a result"))
        # a worker that did not report, or was stopped early: the figures cover less
        partial = self.partial or len(results) < len(self.procs) or any(r.stopped for r in results)
        server = self.server
        if server is not None:
            reason = COUNTERS_OFF if not self.cfg.counters else "not measured"
            server = {**server, **(self.costs or _no_costs(reason))}
        facts = RunFacts(
            server, self.uss_before, self.uss_after, partial, self.admit_s, self.ramp_s
        )
        if self.monitor is not None and self.monitor.window is not None:
            facts.window = self.monitor.window
            facts.server_cpus = self.monitor.cpus
            facts.generator_cpus = _generator_cpus(self.cfg)
        self.mergeable = mergeable(self.cfg, results)
        return aggregate(self.cfg, results, facts)


def _generator_cpus(cfg: LoadConfig) -> list[int] | None:
    """The CPUs the generator runs on: its workers' ``--cpus``, else this process's affinity
    (the workers inherit it); None where affinity is unknown."""
    if cfg.cpus:
        return sorted(set(cfg.cpus))
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _no_costs(reason: str) -> dict[str, Any]:
    """The ``server`` object's cost-counter keys when nothing was counted, and why."""
    keys = ("context_switches", "context_switches_per_request", "syscalls")
    keys += ("syscalls_per_request", "syscalls_by_name")
    return {**dict.fromkeys(keys), "syscalls_unavailable": reason}
