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

    total = sum over live tree processes of (user + system
                                             + children_user + children_system)

and the period's CPU is ``total(stop) - total(start)``.  Every reaped
descendant is counted exactly once: in the live ancestor that reaped it.
(For the leader alone, its ``children_*`` is the term that keeps exited
children; a live child's ``children_*`` keeps grandchildren it reaped.)

Limits, by construction: a child whose parent ignores ``SIGCHLD``
(``SIG_IGN``: the kernel reaps it, adds its time to nobody) or that is
re-parented out of the tree (an orphan adopted by init) takes its CPU with
it; ``/proc`` counts in clock ticks (10 ms), so very short periods are
coarse; a process reaped between the reading of itself and of its parent is
counted twice (descendants are read before ancestors so that the race can
only over-count by one short-lived child, never drop it).

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

from loadgen.procs import tree_memory

__all__ = ["ServerMonitor", "MAX_DUTY"]

MAX_DUTY = 0.02  # the sampler thread may use at most this fraction of one core

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
        self._cpu0: tuple[float, float] = (0.0, 0.0)
        self._cpus_allowed: int | None = None
        self._t0 = 0.0

    # -- the interface the engine uses -------------------------------------

    def start(self) -> None:
        """Baseline now (the start of the measured period); begin sampling peaks.

        Only the CPU baseline is taken here; the first peak sample is the
        sampler thread's, so the caller is held up for one read of the tree.
        """
        self._cpu0, self._t0 = self._cpu_snapshot(self._tree())
        self._cpus_allowed = _cpus_allowed(self._leader)
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
        wall = t1 - self._t0
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(tree)
        mem = tree_memory(tree)
        pss_is_rss = not mem.full  # smaps unreadable: RSS stands in, flagged
        pss, rss = (mem.rss if pss_is_rss else mem.pss), mem.rss
        result: dict[str, object] = {"pid": self.pid, "cpus_allowed": self._cpus_allowed}
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
    def _cpu_snapshot(tree: list[psutil.Process]) -> tuple[tuple[float, float], float]:
        """((user, system) seconds of the tree, live plus reaped), and when.

        The time is the middle of the reads: with a thousand processes they
        take tens of milliseconds.
        """
        began = time.perf_counter()
        user = system = 0.0
        # Children before parents: a child reaped between the two reads is
        # then counted twice (a few ms) instead of not at all.
        for proc in reversed(tree):
            try:
                t = proc.cpu_times()
            except _GONE:
                continue  # gone before we read it: now in its reaper's children_*
            user += t.user + t.children_user
            system += t.system + t.children_system
        return (user, system), (began + time.perf_counter()) / 2

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


def _cpus_allowed(proc: psutil.Process) -> int | None:
    """How many CPUs the leader may run on (its affinity), None if unknown.

    Read at start: the server's CPU use is judged against it (a server pinned
    to one CPU is saturated at one core, not at the machine's count).
    """
    try:
        return len(proc.cpu_affinity())
    except (*_GONE, AttributeError, OSError):
        return None


def _cpu_figures(
    cpu0: tuple[float, float], cpu1: tuple[float, float] | None, wall: float, requests: int
) -> dict[str, float | None]:
    if cpu1 is None:
        keys = ("cpu_s", "cpu_user_s", "cpu_system_s", "cpu_util")
        keys += ("cpu_us_per_request", "cpu_user_us_per_request", "cpu_system_us_per_request")
        return dict.fromkeys(keys)
    # /proc counts in clock ticks: round off the float noise of the sums.
    user = round(cpu1[0] - cpu0[0], 6)
    system = round(cpu1[1] - cpu0[1], 6)
    total = round(user + system, 6)

    def per_request(seconds: float) -> float | None:
        return round(seconds * 1e6 / requests, 4) if requests > 0 else None

    return {
        "cpu_s": total,
        "cpu_user_s": user,
        "cpu_system_s": system,
        "cpu_util": round(total / wall, 6) if wall > 0 else None,
        "cpu_us_per_request": per_request(total),
        "cpu_user_us_per_request": per_request(user),
        "cpu_system_us_per_request": per_request(system),
    }
