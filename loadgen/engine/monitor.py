"""What the server spent: CPU, memory, threads, descriptors and processes of a process tree.

``--server-pid PID`` makes the load generator watch the server with a
:class:`ServerMonitor`: :meth:`~ServerMonitor.start` at the start of the
measured period, :meth:`~ServerMonitor.stop` at its end, which returns the
``"server"`` object of the result (docs/RESULTS.md).

CPU is counted for the whole tree -- the leader and every descendant -- and
a child that exits during the period is not lost: a process's counters in
``/proc`` end when it is reaped, but the kernel adds them (and those of its
own reaped descendants) to the reaper's ``children_user``/``children_system``.
So at any instant::

    total = sum over live tree processes of (own CPU + children_user + children_system)

and the period's CPU is ``total(stop) - total(start)``.  Every reaped
descendant is counted exactly once: in the live ancestor that reaped it.
(For the leader alone, its ``children_*`` is the term that keeps exited
children; a live child's ``children_*`` keeps grandchildren it reaped.)

A live process's own CPU is read from its CPU clock (``clock_gettime`` on
the process's clock id, as ``clock_getcpuclockid`` makes it: the kernel's
``sum_exec_runtime``, in nanoseconds), not from ``/proc/PID/stat``, whose
``utime``/``stime`` are truncated to 10 ms clock ticks *per process*: a
fork server's young children, each a few ms old, read 0 at both ends of the
window, so an open loop at 2,000 req/s over 64 children counted no CPU at
all (issue 18; ``tests/test_monitor.py``).  The ticks still split the total
into user and system: ``cpu_user_s`` and ``cpu_system_s`` share ``cpu_s`` in
the ratio of the tree's user and system ticks over the period, and are
``None`` when those ticks saw less than :data:`SPLIT_MIN_SEEN` of it (the
split is then unknown, not zero).

Limits, by construction: a child whose parent ignores ``SIGCHLD``
(``SIG_IGN``: the kernel reaps it, adds its time to nobody) or that is
re-parented out of the tree (an orphan adopted by init) takes its CPU with
it; reaped children's CPU comes in ``/proc``'s 10 ms ticks (one truncation
per reaper, not per child), and so does the user/system split; a process
reaped between the reading of itself and of its parent is counted twice
(descendants are read before ancestors so that the race can only
over-count by one short-lived child, never drop it).

Peaks (threads, descriptors, descendants) come from a daemon thread that
samples at once, then every ``interval`` seconds, plus one last sample at
stop.  A sample walks ``/proc`` for the tree and reads two files per
process, so its cost grows with the tree; to keep the sampler from eating a
core (a fork server with a thousand children), the thread stretches its
sleep so that it spends at most :data:`MAX_DUTY` of one core, and reports
what it cost (``sampler_cpu_s``).  Memory (PSS and RSS) is read once, at
stop: PSS needs a walk of every page table.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

from loadgen.engine import disturbance
from loadgen.procs import tree_memory

__all__ = ["ServerMonitor", "MAX_DUTY", "SPLIT_MIN_SEEN", "process_cpu_s"]

MAX_DUTY = 0.02  # the sampler thread may use at most this fraction of one core
# the tree's clock ticks must have seen this share of its CPU for them to split it
SPLIT_MIN_SEEN = 0.5

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


@dataclass
class _Peaks:
    threads: int = 0
    fds: int = 0
    children: int = 0
    samples: int = 0

    def update(self, threads: int, fds: int, children: int) -> None:
        self.threads = max(self.threads, threads)
        self.fds = max(self.fds, fds)
        self.children = max(self.children, children)
        self.samples += 1


class ServerMonitor:
    """Watch the process tree rooted at ``pid`` over one measured period.

    Raises :class:`ValueError` if no process ``pid`` exists.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        try:
            self._leader = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise ValueError(f"no process with pid {pid}") from None
        self.pid = pid
        self.interval = interval
        self._peaks = _Peaks()
        self._lock = threading.Lock()  # peaks are updated by two threads
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler_cpu = 0.0  # CPU seconds the sampler thread used
        self._cpu0 = _CpuReading(0.0, 0.0, 0.0)
        self.cpus: list[int] | None = None  # the leader's affinity at start, None if unknown
        self._t0 = 0.0
        # /proc/stat and this process's CPU at both ends (loadgen.engine.disturbance)
        self.window: tuple[disturbance.Snapshot, disturbance.Snapshot] | None = None
        self._stat0: disturbance.Snapshot | None = None

    # -- the interface the engine uses -------------------------------------

    def start(self) -> None:
        """Baseline now (the start of the measured period); begin sampling peaks.

        Only the CPU baseline is taken here; the first peak sample is the
        sampler thread's, so the caller is held up for one read of the tree.
        """
        self._cpu0, self._t0 = self._cpu_snapshot(self._tree())
        self._stat0 = disturbance.snapshot()
        self.cpus = _cpus_allowed(self._leader)
        self._thread = threading.Thread(target=self._run, name="server-monitor", daemon=True)
        self._thread.start()

    def stop(self, requests: int) -> dict[str, object]:
        """End of the measured period: the result's ``"server"`` dict.

        ``requests`` is the number of correct replies completed in the period;
        the per-request figures are ``None`` when it is 0.  If the leader is
        gone, the CPU figures are ``None`` and ``error`` says why.
        """
        tree = self._tree()
        alive = self._alive()
        cpu1, t1 = self._cpu_snapshot(tree)
        if self._stat0 is not None:
            self.window = (self._stat0, disturbance.snapshot())
        wall = t1 - self._t0
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(tree)
        mem = tree_memory(tree)
        pss_is_rss = not mem.full  # smaps unreadable: RSS stands in, flagged
        pss, rss = (mem.rss if pss_is_rss else mem.pss), mem.rss
        allowed = len(self.cpus) if self.cpus is not None else None
        result: dict[str, object] = {"pid": self.pid, "cpus_allowed": allowed}
        result.update(_cpu_figures(self._cpu0, cpu1 if alive else None, wall, requests))
        with self._lock:
            peaks = self._peaks
            result.update(
                memory_pss_bytes=pss,
                memory_rss_bytes=rss,
                memory_pss_is_rss=pss_is_rss,
                peak_threads=peaks.threads,
                peak_fds=peaks.fds,
                peak_children=peaks.children,
                processes=len(tree) if alive else 0,
                samples=peaks.samples,
                interval_s=self.interval,
                sampler_cpu_s=round(self._sampler_cpu, 6),
                error=None if alive else f"server process {self.pid} exited",
            )
        return result

    # -- the tree ----------------------------------------------------------

    def _alive(self) -> bool:
        try:
            return self._leader.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def _tree(self) -> list[psutil.Process]:
        """The leader and its descendants, parents before their children."""
        try:
            return [self._leader, *self._leader.children(recursive=True)]
        except _GONE:
            return [self._leader]

    @staticmethod
    def _cpu_snapshot(tree: list[psutil.Process]) -> tuple[_CpuReading, float]:
        """The tree's CPU seconds (live plus reaped) and its user and system ticks, and when.

        The time is the middle of the reads: with a thousand processes they
        take tens of milliseconds.
        """
        began = time.perf_counter()
        total = user = system = 0.0
        # Children before parents: a child reaped between the two reads is
        # then counted twice (a few ms) instead of not at all.
        for proc in reversed(tree):
            try:
                t = proc.cpu_times()
            except _GONE:
                continue  # gone before we read it: now in its reaper's children_*
            own = process_cpu_s(proc.pid)
            reaped = t.children_user + t.children_system
            total += (t.user + t.system if own is None else own) + reaped
            user += t.user + t.children_user
            system += t.system + t.children_system
        return _CpuReading(total, user, system), (began + time.perf_counter()) / 2

    # -- peaks ---------------------------------------------------------------

    def _run(self) -> None:
        """The sampler thread: sample, then sleep long enough to stay under MAX_DUTY."""
        while True:
            began = time.thread_time()
            self._sample()
            cost = time.thread_time() - began
            self._sampler_cpu += cost
            if self._halt.wait(max(self.interval, cost / MAX_DUTY - cost)):
                return

    def _sample(self, tree: list[psutil.Process] | None = None) -> None:
        tree = self._tree() if tree is None else tree
        threads = fds = 0
        for proc in tree:
            try:
                threads += proc.num_threads()
                fds += proc.num_fds()
            except _GONE:
                continue  # exited (or a zombie: no threads, no fds) since the walk
        with self._lock:
            self._peaks.update(threads, fds, len(tree) - 1)


def _cpus_allowed(proc: psutil.Process) -> list[int] | None:
    """The CPUs the leader may run on (its affinity), None if unknown.

    Read at start: the server's CPU use is judged against their number (a
    server pinned to one CPU is saturated at one core, not at the machine's
    count), and the disturbance is measured on them.
    """
    try:
        return sorted(proc.cpu_affinity())
    except (*_GONE, AttributeError, OSError):
        return None


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds process ``pid`` has used (every thread, live and exited), to the
    nanosecond; None where its CPU clock cannot be read (gone, a zombie, not Linux).

    The clock id is the one ``clock_getcpuclockid(3)`` computes (the kernel's
    ``CPUCLOCK_SCHED`` of a process: ``(~pid << 3) | 2``); Linux lets any
    process read another's.
    """
    if not hasattr(time, "clock_gettime"):
        return None
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        return None


@dataclass(frozen=True)
class _CpuReading:
    total: float  # seconds, exact for live processes (their CPU clocks)
    user_ticks: float  # seconds of /proc's ticks, for the split
    system_ticks: float


def _cpu_figures(
    cpu0: _CpuReading, cpu1: _CpuReading | None, wall: float, requests: int
) -> dict[str, float | None]:
    if cpu1 is None:
        keys = ("cpu_s", "cpu_user_s", "cpu_system_s", "cpu_util")
        keys += ("cpu_us_per_request", "cpu_user_us_per_request", "cpu_system_us_per_request")
        return dict.fromkeys(keys)
    total = round(cpu1.total - cpu0.total, 6)
    user, system = _split(
        total, cpu1.user_ticks - cpu0.user_ticks, cpu1.system_ticks - cpu0.system_ticks
    )

    def per_request(seconds: float | None) -> float | None:
        if seconds is None or requests <= 0:
            return None
        return round(seconds * 1e6 / requests, 4)

    return {
        "cpu_s": total,
        "cpu_user_s": user,
        "cpu_system_s": system,
        "cpu_util": round(total / wall, 6) if wall > 0 else None,
        "cpu_us_per_request": per_request(total),
        "cpu_user_us_per_request": per_request(user),
        "cpu_system_us_per_request": per_request(system),
    }


def _split(total: float, user_ticks: float, system_ticks: float) -> tuple[float | None, ...]:
    """(user, system) seconds: ``total`` shared in the ratio of the ticks, or (None, None)
    when the ticks saw less than SPLIT_MIN_SEEN of it (processes too young or too idle for
    /proc's per-process ticks to have moved)."""
    ticks = user_ticks + system_ticks
    if total <= 0:
        return 0.0, 0.0
    if ticks < SPLIT_MIN_SEEN * total:
        return None, None
    user = round(total * user_ticks / ticks, 6)
    return user, round(total - user, 6)
