"""System calls by name of a server's process tree, counted by ``perf stat``.

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
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from loadgen.procs import die_with_parent

# The calls the suite's servers are made of: I/O on sockets and files, the
# readiness APIs of every model, accept/close, thread and process machinery
# (futex, clone, wait4), memory and signals. Names absent from this kernel's
# tracefs are dropped at start.
SYSCALLS: tuple[str, ...] = (
    "read", "write", "readv", "writev", "pread64", "pwrite64",
    "recvfrom", "sendto", "recvmsg", "sendmsg", "recvmmsg", "sendmmsg", "sendfile64",
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
