"""Deterministic costs of a server's process tree over a window: context switches and system calls.

CPU seconds on a shared machine drift with everything else that runs; *counts*
do not. A server that makes three system calls per request makes three calls
whatever the load average. Two counters, both with ``start(pids)`` at the
start of the measured window and ``stop()`` at its end:

:class:`ContextSwitchCounter` -- voluntary switches (the task blocked: waited
for a socket, a lock, a sleep) and involuntary ones (preempted) of every
thread of the tree. From ``/proc/<pid>/task/<tid>/status``, per *thread*:
``psutil.Process.num_ctx_switches()`` reads ``/proc/<pid>/status``, which the
kernel fills from the main thread only -- a thread-per-client server would
show a handful of switches for thousands. The kernel folds an exited
thread's or reaped child's counts into figures that ``/proc`` does not show
to other processes, so a task that ends during the window keeps only the
counts of its *last sample*. The tree is therefore sampled at ``start``,
every ``interval`` seconds by a daemon thread (at most :data:`MAX_DUTY` of one
core, like :mod:`loadgen.monitor`), and at ``stop``; the figure is a lower
bound by at most what exited tasks did since their last sample
(``tasks_exited`` says how many did). Tasks are keyed by (tid, start time):
a recycled tid is a new task.

System calls by name are counted by :mod:`loadgen.engine.syscalls` (perf);
:class:`CostCounters` runs both over one window.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import psutil

from loadgen.engine.syscalls import OTHER, SYSCALLS, SyscallCounter, TracepointHold

__all__ = [
    "MAX_DUTY",
    "SYSCALLS",
    "ContextSwitchCounter",
    "CostCounters",
    "SyscallCounter",
    "TracepointHold",
    "hold_for_suite",
    "per_request",
    "top_syscalls",
    "tree_pids",
]

MAX_DUTY = 0.02  # the context-switch sampler may use at most this fraction of one core

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant, parents first (``[]`` if root is gone)."""
    try:
        leader = psutil.Process(root)
        return [root, *(child.pid for child in leader.children(recursive=True))]
    except _GONE:
        return []


# -- context switches --------------------------------------------------------


def _read_task(pid: int, tid: int) -> tuple[tuple[int, int], int, int] | None:
    """((tid, start time), voluntary, involuntary) of one thread, None if it is gone."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read()
        with open(f"{base}/status", "rb") as f:
            status = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and ')': fields count from the last ')'.
    start_time = int(stat[stat.rindex(b")") + 2 :].split()[19])  # field 22, starttime
    vol = re.search(rb"^voluntary_ctxt_switches:\s*(\d+)", status, re.M)
    invol = re.search(rb"^nonvoluntary_ctxt_switches:\s*(\d+)", status, re.M)
    if vol is None or invol is None:
        return None  # a zombie's status has no counters
    return (tid, start_time), int(vol.group(1)), int(invol.group(1))


class ContextSwitchCounter:
    """Voluntary and involuntary context switches of every thread of a tree, over a window."""

    def __init__(self, interval: float = 0.1) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self._roots: list[int] = []
        self._base: dict[tuple[int, int], tuple[int, int]] = {}  # task -> counts at start
        self._last: dict[tuple[int, int], tuple[int, int]] = {}  # task -> latest counts seen
        self._samples = 0
        self._sampler_cpu = 0.0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pids: list[int]) -> None:
        """Baseline every thread of ``pids`` and their descendants; begin sampling."""
        self._roots = list(pids)
        self._base = self._snapshot()
        self._last = dict(self._base)
        self._samples = 1
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="ctxsw-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, int]:
        """Switches over the window: ``voluntary``, ``involuntary``, and how they were seen.

        ``tasks`` threads were seen; ``tasks_exited`` of them ended before the
        last sample (their counts stop at the sample before), ``samples``
        walks of the tree were made.
        """
        final = self._snapshot()
        self.close()
        with self._lock:
            self._last.update(final)
            self._samples += 1
            vol = invol = 0
            for task, (v, i) in self._last.items():
                v0, i0 = self._base.get(task, (0, 0))  # born in the window: from zero
                vol += v - v0
                invol += i - i0
            return {
                "voluntary": vol,
                "involuntary": invol,
                "tasks": len(self._last),
                "tasks_exited": len(self._last.keys() - final.keys()),
                "samples": self._samples,
            }

    def close(self) -> None:
        """Stop the sampler thread if it runs (error paths). Idempotent."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def sampler_cpu_s(self) -> float:
        """CPU seconds the sampler thread spent (not the start/stop walks)."""
        return self._sampler_cpu

    def _snapshot(self) -> dict[tuple[int, int], tuple[int, int]]:
        tasks: dict[tuple[int, int], tuple[int, int]] = {}
        pids: set[int] = set()
        for root in self._roots:
            pids.update(tree_pids(root))
        for pid in pids:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue  # gone since the walk
            for tid in tids:
                read = _read_task(pid, int(tid))
                if read is not None:
                    tasks[read[0]] = (read[1], read[2])
        return tasks

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            began = time.thread_time()
            sample = self._snapshot()
            with self._lock:
                self._last.update(sample)
                self._samples += 1
            cost = time.thread_time() - began
            self._sampler_cpu += cost
            # Stretch the pause so that a large tree cannot make the sampler eat a core.
            if self._halt.wait(max(0.0, cost / MAX_DUTY - cost - self.interval)):
                return


# -- figures -----------------------------------------------------------------


def per_request(counts: dict[str, int], requests: int) -> dict[str, float | None]:
    """Each count divided by ``requests`` (4 decimals); all None when no request completed."""
    if requests <= 0:
        return dict.fromkeys(counts)
    return {name: round(n / requests, 4) for name, n in counts.items()}


def top_syscalls(per_request_dict: dict[str, float | None], n: int = 5) -> str:
    """The ``n`` most frequent calls per request, most frequent first: ``"recvfrom 1.00, ..."``.

    ``"other"`` is left out (it is not a call); so are None values.
    """
    items = [
        (name, value)
        for name, value in per_request_dict.items()
        if name != OTHER and value is not None and value > 0
    ]
    items.sort(key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {value:.2f}" for name, value in items[:n])


class CostCounters:
    """Both counters over one window of the tree rooted at ``root``; syscalls when perf works.

    :meth:`attach` (optional, before the window: perf's slow part), :meth:`start`
    at the window's start, :meth:`pause` at its end (both quick), then
    :meth:`stop` ``(requests)`` ends perf and returns the figures of a result:
    totals, per request, and ``syscalls_unavailable`` (None, or why the
    syscall figures are None, with the install hint). :meth:`close` in a
    ``finally`` ends whatever still runs.
    """

    def __init__(self, root: int, syscalls: Iterable[str] | str = SYSCALLS) -> None:
        self.root = root
        self.switches = ContextSwitchCounter()
        self.syscalls: SyscallCounter | None = None
        self.unavailable = SyscallCounter.available()
        if self.unavailable is None:
            self.syscalls = SyscallCounter(syscalls)
        self._attached = False
        self._switches: dict[str, int] | None = None  # pause()'s reading

    def attach(self) -> None:
        """Attach perf (if available) to the tree as it is now, counting off."""
        pids = tree_pids(self.root)
        if not pids:
            raise ValueError(f"no process with pid {self.root}")
        if self.syscalls is not None:
            try:
                self.syscalls.attach(pids)
            except RuntimeError as exc:  # perf refused or died: count context switches only
                self._give_up_syscalls(exc)
        self._attached = True

    def _give_up_syscalls(self, exc: RuntimeError) -> None:
        self.unavailable = f"perf failed: {exc}"
        self.syscalls = None

    def start(self) -> None:
        """The window's start: context-switch baseline, perf counting on."""
        if not self._attached:
            self.attach()
        if self.syscalls is not None:
            try:
                self.syscalls.enable()
            except RuntimeError as exc:
                self._give_up_syscalls(exc)
        # the sampler walks the tree from the root each time: children born later are seen
        self.switches.start([self.root])

    def pause(self) -> None:
        """The window's end: last context-switch reading, perf counting off (perf still runs)."""
        if self._switches is None:
            try:
                self._switches = self.switches.stop()
            finally:
                if self.syscalls is not None:
                    self.syscalls.disable()

    def stop(self, requests: int) -> dict[str, object]:
        """End perf (slow without a :class:`TracepointHold`); the window's figures."""
        try:
            self.pause()
        finally:
            by_name = self.syscalls.stop() if self.syscalls is not None else None
        assert self._switches is not None
        vol, invol = self._switches["voluntary"], self._switches["involuntary"]
        result: dict[str, object] = {
            "context_switches": {"voluntary": vol, "involuntary": invol},
            "context_switches_per_request": per_request({"cs": vol + invol}, requests)["cs"],
            "syscalls": None,
            "syscalls_per_request": None,
            "syscalls_by_name": None,
            "syscalls_unavailable": self.unavailable,
        }
        if by_name is not None:
            total = sum(by_name.values())
            result["syscalls"] = by_name
            result["syscalls_per_request"] = per_request({"all": total}, requests)["all"]
            result["syscalls_by_name"] = per_request(by_name, requests)
        return result

    def close(self) -> None:
        """Stop whatever still runs (for error paths)."""
        try:
            self.switches.close()
        finally:
            if self.syscalls is not None:
                self.syscalls.close()


def hold_for_suite() -> AbstractContextManager[object]:
    """What a suite run enters around all its load runs: a :class:`TracepointHold` if perf
    can count syscalls here (each run's perf then stops in ~10 ms instead of ~2.5 s), else a
    context manager that does nothing."""
    if SyscallCounter.available() is not None:
        return nullcontext()
    return TracepointHold()
