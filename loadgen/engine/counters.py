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

:class:`SyscallCounter` -- system calls by name, with ``perf stat`` attached
to the tree's pids (``-p``). ``perf stat`` opens its counters with
*inherit*: a thread or child created after the attach by a traced task is
counted, and its counts survive its exit (checked: a child forked after the
attach and reaped before the end is counted in full). What is *not* counted:
a process of the tree that is not among ``pids`` at ``start`` (pass the whole
tree: :func:`tree_pids`), or a child forked between that walk and perf's
attach. perf starts with its counters disabled (``-D -1``) and is enabled and
disabled through its control pipe (``--control fd:``), acknowledged: the
window is the caller's, not perf's start-up time, which grows with
events x threads (one file descriptor per event per thread).

By default the counted names are :data:`SYSCALLS`, the calls the servers of
this suite spend their time in, plus ``raw_syscalls:sys_enter`` for the exact
total; ``stop()`` returns the rest as ``"other"`` so the counts add up to the
total. ``names="all"`` expands ``syscalls:sys_enter_*`` (about 360
tracepoints, so 360 file descriptors per thread and a much slower stop).
Either way, enabling a syscall tracepoint makes *every* task on the machine
take the kernel's slower traced syscall entry while perf runs (the
tracepoint is global; perf only keeps the events of the traced tasks), so
the load generator pays a little too. Counts, not times, are what this
module promises.

Measured here (2 cores, busy, one ``getppid`` loop in Python; noisy, so only
gross effects count): attaching takes ~10-100 ms before the window (start()
returns once counting runs); with :data:`SYSCALLS` the traced loop's cost per
call did not change beyond the noise (~0.75-0.95 us either way), nor did an
untraced process's; ``names="all"`` likewise. Counting names as filters on
the single ``raw_syscalls:sys_enter`` tracepoint (``--filter 'id == N'``,
one event per name) made the traced loop ~4x slower per call (every event's
filter runs on every call): rejected. Ending perf is the expensive part:
unregistering each tracepoint waits for an RCU grace period, ~40 ms each, so
:meth:`SyscallCounter.stop` takes ~2.5 s with :data:`SYSCALLS` and ~13 s with
``"all"`` -- unless a :class:`TracepointHold` keeps them registered (~10 ms).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType

import psutil

from loadgen.procs import die_with_parent

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

# The calls the suite's servers are made of: I/O on sockets and files, the
# readiness APIs of every model, accept/close, thread and process machinery
# (futex, clone, wait4), memory and signals. Names absent from this kernel's
# tracefs are dropped at start.
SYSCALLS: tuple[str, ...] = (
    "read", "write", "readv", "writev", "pread64", "pwrite64",
    "recvfrom", "sendto", "recvmsg", "sendmsg", "sendfile64",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "epoll_create1",
    "select", "pselect6", "poll", "ppoll", "io_uring_enter",
    "accept", "accept4", "close", "shutdown", "socket", "setsockopt", "getsockopt",
    "getsockname", "getpeername", "fcntl", "ioctl",
    "openat", "newfstatat", "fstat", "lseek", "unlink", "rename",
    "futex", "sched_yield", "nanosleep", "clock_nanosleep", "clock_gettime",
    "clone", "clone3", "wait4", "waitid", "exit", "exit_group", "set_robust_list",
    "mmap", "munmap", "mprotect", "brk", "madvise", "mremap",
    "getpid", "gettid", "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "kill", "tgkill",
    "eventfd2", "pipe2", "dup", "dup2", "dup3",
)  # fmt: skip

TOTAL_EVENT = "raw_syscalls:sys_enter"
OTHER = "other"  # not a system call: the total minus the named counts
_TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
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


# -- system calls ------------------------------------------------------------


def _tracefs_names() -> set[str] | None:
    """Syscall names with a sys_enter tracepoint here, or None if tracefs is unreadable."""
    for root in _TRACEFS:
        try:
            entries = os.listdir(root / "events" / "syscalls")
        except OSError:
            continue
        return {e[len("sys_enter_") :] for e in entries if e.startswith("sys_enter_")}
    return None


def _paranoid() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    except (OSError, ValueError):
        return None


def _perf_reason() -> str | None:
    """Why ``perf stat`` on syscall tracepoints cannot work here, or None."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf not found: apt-get install linux-perf (Debian) or linux-tools-$(uname -r)"
    paranoid = _paranoid()
    if paranoid is not None and paranoid > 1 and os.geteuid() != 0:
        return (
            f"perf_event_paranoid={paranoid} forbids tracepoints: run as root or "
            "sysctl kernel.perf_event_paranoid=1"
        )
    try:
        probe = subprocess.run(
            [perf, "stat", "-x,", "-e", "syscalls:sys_enter_getpid", "--", "true"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"perf stat failed to run: {exc}"
    if probe.returncode != 0 or "<not supported>" in probe.stderr:
        lines = [line for line in probe.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {probe.returncode}"
        return f"perf stat cannot count syscall tracepoints: {detail}"
    return None


def _parse_perf_csv(text: str) -> dict[str, int]:
    """``perf stat -x,`` lines (``count,unit,event,...``) as {event: count}.

    ``<not counted>`` (the event never ran: no traced task made that call
    while enabled) is 0; ``<not supported>`` events are left out.
    """
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#"):
            continue
        value, event = fields[0], fields[2]
        if value.isdigit():
            counts[event] = int(value)
        elif value == "<not counted>":
            counts[event] = 0
    return counts


class SyscallCounter:
    """System calls by name of a set of processes (and what they spawn), with ``perf stat``.

    ``names``: the syscall names to count (default :data:`SYSCALLS`), or
    ``"all"`` for every ``syscalls:sys_enter_*`` tracepoint. Use as a context
    manager, or call :meth:`stop` (or :meth:`close`) in a ``finally``: perf
    runs in its own process group and is always ended and reaped.
    """

    _reason_cache: str | None = None
    _probed = False

    def __init__(self, names: Iterable[str] | str = SYSCALLS, timeout: float = 10.0) -> None:
        self.names = names if names == "all" else tuple(names)
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: int | None = None  # we write enable/disable here
        self._ack: int | None = None  # perf answers "ack" here
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.attach_s: float | None = None  # start(): perf launched -> counting, seconds
        self._disabled = False  # disable() was acknowledged

    @classmethod
    def available(cls) -> str | None:
        """None if perf can count syscall tracepoints here, else why not (with the fix)."""
        if not cls._probed:
            cls._reason_cache, cls._probed = _perf_reason(), True
        return cls._reason_cache

    def start(self, pids: list[int]) -> None:
        """Attach perf to ``pids`` and start counting; returns once perf acknowledged.

        Raises :class:`RuntimeError` (perf stopped and reaped) if perf is
        unusable, exits, or does not acknowledge within ``timeout``.
        """
        began = time.perf_counter()
        self.attach(pids)
        self.enable()
        self.attach_s = time.perf_counter() - began

    def attach(self, pids: list[int]) -> None:
        """Attach perf to ``pids`` with counting off; returns once perf's events are open.

        Attaching takes 10-100 ms (one descriptor per event per thread): done
        before a window, :meth:`enable` at its edge costs one pipe round trip.
        Raises :class:`RuntimeError` (perf stopped and reaped) as :meth:`start`.
        """
        if self._proc is not None:
            raise RuntimeError("SyscallCounter already started")
        if not pids:
            raise ValueError("no pids to attach to")
        reason = self.available()
        if reason is not None:
            raise RuntimeError(reason)
        try:
            self._launch(pids)
            # perf reads its control pipe only once every event is open: its ack says so.
            self._command(b"disable")
        except BaseException:
            self.close()
            raise

    def enable(self) -> None:
        """Start counting (the window's start): one acknowledged command to perf."""
        try:
            self._command(b"enable")
        except BaseException:
            self.close()
            raise

    def disable(self) -> None:
        """Stop counting (the window's end) without ending perf; :meth:`stop` reads the counts."""
        if self._proc is not None and self._proc.poll() is None and not self._disabled:
            self._command(b"disable")
            self._disabled = True

    def stop(self) -> dict[str, int]:
        """Stop counting and end perf: {syscall name: count}, plus ``"other"``; zeros left out.

        ``"other"`` is the total (``raw_syscalls:sys_enter``) minus the named
        counts; the values add up to the total. With ``names="all"`` there is
        no ``"other"``.
        """
        if self._proc is None:
            raise RuntimeError("SyscallCounter not started")
        try:
            self.disable()  # a perf whose targets all exited has ended by itself
            self._end_perf()
            assert self._dir is not None
            text = Path(self._dir.name, "counts.csv").read_text()
        finally:
            self.close()
        return self._by_name(_parse_perf_csv(text))

    def close(self) -> None:
        """End perf whatever its state (SIGINT, then SIGKILL its group); reap it. Idempotent."""
        try:
            if self._proc is not None and self._proc.returncode is None:
                self._end_perf()
        finally:
            for fd in (self._ctl, self._ack):
                if fd is not None:
                    os.close(fd)
            self._ctl = self._ack = None
            self._proc = None
            self._disabled = False
            if self._dir is not None:
                self._dir.cleanup()
                self._dir = None

    def __enter__(self) -> SyscallCounter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """perf's pid while it runs (its process group id too)."""
        return self._proc.pid if self._proc is not None else None

    # -- perf ------------------------------------------------------------------

    def _events(self) -> list[str]:
        if self.names == "all":
            return ["syscalls:sys_enter_*"]
        known = _tracefs_names()
        names = [n for n in self.names if known is None or n in known]
        return [TOTAL_EVENT, *(f"syscalls:sys_enter_{n}" for n in names)]

    def _launch(self, pids: list[int]) -> None:
        """perf stat on ``pids``, counters disabled until :meth:`_command` enables them."""
        self._dir = tempfile.TemporaryDirectory(prefix="syscalls-")
        ctl_r, self._ctl = os.pipe()
        self._ack, ack_w = os.pipe()
        out = Path(self._dir.name)
        cmd = ["perf", "stat", "-x,", "-o", str(out / "counts.csv"), "-D", "-1"]
        cmd += ["--control", f"fd:{ctl_r},{ack_w}", "-e", ",".join(self._events())]
        cmd += ["-p", ",".join(str(p) for p in pids)]
        with open(out / "stderr.txt", "wb") as err:
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    pass_fds=(ctl_r, ack_w),
                    start_new_session=True,  # its own group: our Ctrl-C is not its, we end it
                    preexec_fn=die_with_parent,  # ...and if we are killed, so is perf
                )
            finally:
                os.close(ctl_r)
                os.close(ack_w)

    def _command(self, word: bytes) -> None:
        """Send enable/disable on the control pipe and wait for perf's ``ack``."""
        assert self._ctl is not None and self._ack is not None and self._proc is not None
        os.write(self._ctl, word + b"\n")
        deadline = time.monotonic() + self.timeout
        reply = b""
        while b"ack" not in reply:
            left = deadline - time.monotonic()
            ready = select.select([self._ack], [], [], max(0.0, min(left, 0.1)))[0]
            if ready:
                chunk = os.read(self._ack, 64)
                if not chunk:
                    raise RuntimeError(f"perf exited before acknowledging: {self._stderr()}")
                reply += chunk
            elif self._proc.poll() is not None:
                raise RuntimeError(f"perf exited ({self._proc.returncode}): {self._stderr()}")
            elif left <= 0:
                raise RuntimeError(f"perf did not acknowledge {word.decode()} in {self.timeout}s")

    def _end_perf(self) -> None:
        """SIGINT makes perf write its counts; SIGKILL the group if it does not end in time."""
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass  # already ended by itself
        try:
            self._proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()

    def _stderr(self) -> str:
        if self._dir is None:
            return ""
        try:
            lines = Path(self._dir.name, "stderr.txt").read_text().splitlines()
        except OSError:
            return ""
        lines = [line.strip() for line in lines if line.strip() and "Events" not in line]
        return lines[-1] if lines else ""

    def _by_name(self, events: dict[str, int]) -> dict[str, int]:
        prefix = "syscalls:sys_enter_"
        counts = {e[len(prefix) :]: n for e, n in events.items() if e.startswith(prefix)}
        if TOTAL_EVENT in events:
            counts[OTHER] = events[TOTAL_EVENT] - sum(counts.values())
        return {name: n for name, n in counts.items() if n > 0}  # absent means zero


class TracepointHold:
    """Keep the syscall tracepoints registered between windows, so each stop() is quick.

    Ending a perf that holds the last event of a tracepoint unregisters it,
    and the kernel waits for an RCU grace period per tracepoint: about 40 ms
    each here, so ~2.5 s for :data:`SYSCALLS` and ~13 s for ``"all"``, on
    every :meth:`SyscallCounter.stop`. While a hold lives (a perf counting
    the same events on a ``sleep`` of its own), a stop takes ~10 ms. The
    price: while the tracepoints are registered, every task on the machine
    (the load generator too) takes the traced syscall entry, between windows
    as well as during them. A context manager; ``close()`` ends and reaps perf
    and the ``sleep`` it watches (each in its own process group).
    """

    def __init__(self, names: Iterable[str] | str = SYSCALLS, timeout: float = 10.0) -> None:
        self._counter = SyscallCounter(names, timeout)
        self._sleeper: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # perf attaches to a sleep we own and reap: given a workload of its own
        # (``perf stat -- sleep``), perf exits on SIGINT without reaping it.
        self._sleeper = subprocess.Popen(
            ["sleep", "86400"], start_new_session=True, preexec_fn=die_with_parent
        )
        try:
            self._counter.start([self._sleeper.pid])  # events are registered once enabled
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self._counter.close()
        finally:
            if self._sleeper is not None:
                try:
                    os.killpg(self._sleeper.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._sleeper.wait()
                self._sleeper = None

    def __enter__(self) -> TracepointHold:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """perf's pid (and process group) while the hold lives."""
        return self._counter.pid

    @property
    def sleeper_pid(self) -> int | None:
        """The watched sleep's pid (and process group) while the hold lives."""
        return self._sleeper.pid if self._sleeper is not None else None


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
