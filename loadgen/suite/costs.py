"""The cost table: what one request costs each variant, in counts a busy machine cannot move.

For each variant and kind of request (:data:`KINDS`: one ECHO at a time,
ECHO pipelined 16 to a write, GET of 1 MiB, WORK compute), three figures
per request:

* **user-space instructions**, counted by valgrind's cachegrind
  (:mod:`loadgen.engine.cachegrind`) over the server's whole tree --
  threads, forked children and exec'd programs included;
* **system calls** and **waits** (voluntary context switches: the server
  blocked), counted by :class:`loadgen.engine.counters.CostCounters` (perf
  and ``/proc``) in a separate run of the server *without* valgrind, whose
  own system calls would be counted otherwise; it runs beside the counted
  runs (:func:`count_all_calls`), since pacing makes both counts, not times.

Start-up and shutdown cancel in a difference: a server run under cachegrind
serves ``low`` requests of each kind, another serves ``high`` of one kind
(and ``low`` of the others), and the kind's instructions per request is
``(I_high - I_low) / (high - low)``.  :func:`design` lays the runs out so
that every kind gets two such estimates from different runs (a base run with
every kind at ``low``, a top run with every kind at ``high``, and one run per
kind raised from the base or lowered from the top: ``2 (K + 1)`` runs for K
kinds, 4 for two); the table gives their mean and their spread, the
largest minus the smallest over the mean.

The servers of a variant's runs are forked, by a fork server started once
under valgrind per CPU (:mod:`loadgen.suite.forkserver`, :class:`Zygote`),
from a process that imported what ``python -m servers NAME`` imports: under
valgrind the interpreter's start-up costs seconds of CPU, a counted run of a
few hundred requests a fraction of one.  What each forked process inherited
from its fork server is taken off its counts (:func:`take_off_the_loop`), so
a run's total is its own server's, start-up from the command line on.

What keeps the counts still: ``PYTHONHASHSEED=0`` (string hashes, and so
dict and set layouts, the same in every run); every request and reply the
same bytes in every run, on one connection; and a client paced on the server
(:class:`Paced`): it writes only when every thread of the server's tree
sleeps, and ACKs every reply at once, so a model that tries a read before it
waits takes the same path every time, whatever the machine's load (without
it, runs of the same 500 ECHOs differed by millions of instructions for
asyncio_sockets, gevent_server, greenlet_hub and epoll_edge).  What still
moves them a little: work a server does per second rather than per request
(every model's main thread wakes at least every ``STOP_CHECK``: the counted
servers run with ``CB_STOP_CHECK=60``, once a minute) and trio's randomised
scheduling; the spread shows it.

Under valgrind a server runs ~20-50x slower and one thread at a time, so
two fork servers run at once on a 2-CPU machine (:data:`PARALLEL`), each
on a CPU of its own; never while timed runs measure (the runner calls
:func:`measure` after them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import servers
from loadgen.client import connect
from loadgen.engine import cachegrind, counters
from loadgen.procs import killpg, process_tree, wait_group_gone
from loadgen.suite import harness
from loadgen.suite.launch import RunningServer, ServerStartError, start_server, suite_env
from servers.protocol import (
    HEADER,
    HEADER_SIZE,
    Op,
    Status,
    WorkKind,
    encode_frame,
    encode_work_payload,
)

ECHO_SIZE = 64
PIPELINE = 16  # requests per write in the pipelined kind
GET_NAME = "cost-1mib.bin"
GET_SIZE = 1024 * 1024
WORK_UNITS = 100  # WORK compute units per request (about 0.1 ms on one core, unvalgrinded)
PARALLEL = 2  # counted servers at once (valgrind runs one thread at a time: one CPU each)
# PYTHONHASHSEED: the same string hashes in every run. CB_STOP_CHECK: a main thread's
# bounded wait (servers/tuning.py) wakes once a minute, not every 0.5 s of a server
# that valgrind slows ~50x: those wake-ups are per second, not per request, and the
# two runs of a difference last different times.
ENV = {"PYTHONHASHSEED": "0", "CB_STOP_CHECK": "60"}
READY_TIMEOUT_S = 120.0  # python -m servers under valgrind: interpreter start, imports
REPLY_TIMEOUT_S = 60.0  # one reply under valgrind (the first of a kind translates its code)
EXIT_TIMEOUT_S = 120.0  # SIGTERM to every out file written (valgrind writes at exit)
CALLS_WARMUP = 50  # requests before the system-call window (connection set up, buffers grown)
FORKSERVER = Path(__file__).with_name("forkserver.py").read_text()  # run with python -c


@dataclass(frozen=True)
class Kind:
    """One kind of request of the table."""

    key: str
    label: str
    batch: int = 1  # requests sent per write (their replies read after the write)
    echo: bool = True  # served by the ECHO-only reference too


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("echo", f"ECHO {ECHO_SIZE} B, one at a time"),
        Kind("echo-pipelined", f"ECHO {ECHO_SIZE} B, {PIPELINE} per write", batch=PIPELINE),
        Kind("get-1mib", "GET 1 MiB, one at a time", echo=False),
        Kind("work-compute", f"WORK compute {WORK_UNITS} units, one at a time", echo=False),
    )
}


@dataclass(frozen=True)
class CostPlan:
    """What a run's cost table measures: kinds, request counts, and the system-call window."""

    name: str
    kinds: tuple[str, ...]
    counts: dict[str, tuple[int, int]]  # kind -> (low, high) requests in a counted run
    calls: dict[str, int]  # kind -> requests in the system-call window
    # kinds measured in runs of their own, a design each (full: the ECHO pair, then GET and
    # WORK: 4 + 4 runs, where one design of the four kinds takes 10); None: one group
    groups: tuple[tuple[str, ...], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": [list(g) for g in self.groups] if self.groups else None,
            "kinds": [
                {**asdict(KINDS[k]), "low": self.counts[k][0], "high": self.counts[k][1],
                 "calls_window": self.calls[k], "calls_warmup": CALLS_WARMUP}
                for k in self.kinds
            ],
        }  # fmt: skip

    def kinds_for(self, name: str) -> tuple[str, ...]:
        """The kinds ``name`` serves (the ECHO-only reference: the ECHO kinds)."""
        reference = servers.get(name).is_reference
        return tuple(k for k in self.kinds if KINDS[k].echo or not reference)

    def design_for(self, name: str) -> tuple[list[dict[str, int]], list[Estimate]]:
        """``name``'s counted runs and estimates: :func:`design` per group of the kinds it
        serves, the groups' runs one after another."""
        served = self.kinds_for(name)
        runs: list[dict[str, int]] = []
        estimates: list[Estimate] = []
        for group in self.groups or (self.kinds,):
            kinds = tuple(k for k in group if k in served)
            if not kinds:
                continue
            vectors, mine = design(kinds, self.counts)
            offset = len(runs)
            runs += vectors
            estimates += [Estimate(e.kind, e.high + offset, e.low + offset) for e in mine]
        return runs, estimates


# Quick: the two ECHO kinds (how a model amortises a wake-up) at small counts; full: all four,
# the ECHO pair as in quick, then GET and WORK in runs of their own.  A counted run's time is
# mostly fixed (a forked server translating its serving code under valgrind, its exit): runs,
# not requests, make the table's time.  The counts' differences (200, 640, 40, 25 requests)
# keep two estimates within ~0.3% for most variants (measured: a run's total moves by
# ~3,000-30,000 instructions beside the requests'); asyncio_sockets' pipelined ECHO moves
# by whole paths (25.65k-26.37k a request in six runs of 320 or 1,280), which a larger
# difference does not remove: its spread says so.
PLANS: dict[str, CostPlan] = {
    "quick": CostPlan(
        "quick",
        ("echo", "echo-pipelined"),
        {"echo": (40, 240), "echo-pipelined": (64, 704)},
        {"echo": 400, "echo-pipelined": 1024},
    ),
    "full": CostPlan(
        "full",
        tuple(KINDS),
        {
            "echo": (40, 240),
            "echo-pipelined": (64, 704),
            "get-1mib": (10, 50),
            "work-compute": (5, 30),
        },
        {"echo": 1000, "echo-pipelined": 2048, "get-1mib": 100, "work-compute": 200},
        groups=(("echo", "echo-pipelined"), ("get-1mib", "work-compute")),
    ),
}


# Wall seconds per variant of a plan's table (counted runs two at a time, then the system
# calls' run), measured on a 2-core VM for 20 variants: what run_all.py's estimate and time
# cap reserve for it.
SECONDS_PER_VARIANT = {"quick": 3.0, "full": 4.5}  # measured: 47-70 s and 73-100 s for 20


def estimate_s(names: list[str], plan: CostPlan) -> float:
    """Rough wall time of the cost table of ``names`` (0 where valgrind cannot run)."""
    if cachegrind.unavailable() is not None:
        return 0.0
    return len(names) * SECONDS_PER_VARIANT.get(plan.name, SECONDS_PER_VARIANT["full"])


# -- the design ----------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One estimate of a kind's instructions per request: runs ``high`` minus ``low``."""

    kind: str
    high: int  # index of the run with more requests of the kind
    low: int  # ... and of the run with fewer (every other kind's count the same)


def design(
    kinds: tuple[str, ...], counts: dict[str, tuple[int, int]]
) -> tuple[list[dict[str, int]], list[Estimate]]:
    """The counted runs (kind -> requests, in ``kinds`` order) and two estimates per kind.

    Two kinds or more: a base run (every kind low), a top run (every kind
    high), each kind raised alone from the base and lowered alone from the
    top -- the same run serves several estimates when it is the same vector
    (two kinds: 4 runs).  One kind: its low and high runs, twice.
    """

    def vector(high: set[str]) -> dict[str, int]:
        return {k: counts[k][1] if k in high else counts[k][0] for k in kinds}

    if len(kinds) == 1:
        (kind,) = kinds
        runs = [vector(set()), vector({kind}), vector(set()), vector({kind})]
        return runs, [Estimate(kind, 1, 0), Estimate(kind, 3, 2)]
    runs: list[dict[str, int]] = []

    def at(v: dict[str, int]) -> int:
        if v not in runs:
            runs.append(v)
        return runs.index(v)

    base, top = at(vector(set())), at(vector(set(kinds)))
    estimates = []
    for k in kinds:
        estimates.append(Estimate(k, at(vector({k})), base))
        estimates.append(Estimate(k, top, at(vector(set(kinds) - {k}))))
    return runs, estimates


def per_request(
    totals: list[int | None], runs: list[dict[str, int]], estimates: list[Estimate]
) -> dict[str, list[float]]:
    """Kind -> its estimates of instructions per request (a run without a total is skipped)."""
    out: dict[str, list[float]] = {}
    for e in estimates:
        hi, lo = totals[e.high], totals[e.low]
        if hi is None or lo is None:
            continue
        requests = runs[e.high][e.kind] - runs[e.low][e.kind]
        out.setdefault(e.kind, []).append((hi - lo) / requests)
    return out


def summarise(values: list[float]) -> dict[str, Any]:
    """Mean, spread ((max - min) / mean) and the estimates themselves (rounded)."""
    if not values:
        return {"instructions_per_request": None, "spread": None, "estimates": []}
    mean = statistics.fmean(values)
    spread = (max(values) - min(values)) / mean if len(values) > 1 and mean > 0 else None
    return {
        "instructions_per_request": round(mean, 1),
        "spread": round(spread, 5) if spread is not None else None,
        "estimates": [round(v, 1) for v in values],
    }


# -- the client ------------------------------------------------------------------
#
# The count of a model that tries a read before it waits (asyncio's sock_recv, a greenlet
# hub, gevent, an edge-triggered loop reading until EAGAIN) depends on a race: whether the
# next request arrived before the server read again.  Under valgrind the server is ~30x
# slower than this client, and on a busy machine the client loses its CPU at random, so the
# race goes either way from run to run (millions of instructions apart over 500 ECHOs).  The
# client therefore paces itself on the server: it writes only once every thread of the
# server's tree sleeps (:func:`wait_asleep`), so every request finds the server waiting, and
# it acknowledges every reply at once (TCP_QUICKACK), so an edge-triggered loop gets its
# EPOLLOUT edge for the freed send buffer on its own, every time, rather than with the next
# request or after a delayed-ACK timer.

QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux: ACK what arrived now, not later
ASLEEP_GAP_S = 0.0002  # between two looks at the server's threads while it works
SETTLE_CHECKS = 3  # a tree is settled when it sleeps this many looks in a row ...
SETTLE_GAP_S = 0.01  # ... this far apart


class WrongReply(RuntimeError):
    """The server answered something else than the request's reply."""


def echo_payload(i: int) -> bytes:
    """The ``i``-th slot's ECHO payload: every run sends the same bytes."""
    return bytes((i * 7 + j) % 256 for j in range(ECHO_SIZE))


PAYLOADS = [echo_payload(i) for i in range(PIPELINE)]


def exchanges(kind: str, blob: bytes | None = None) -> list[tuple[bytes, list[bytes]]]:
    """The writes of ``kind``, in turn: (the bytes written, each reply frame expected)."""
    if kind == "echo":
        return [(encode_frame(Op.ECHO, p), [encode_frame(Status.OK, p)]) for p in PAYLOADS]
    if kind == "echo-pipelined":
        write = b"".join(encode_frame(Op.ECHO, p) for p in PAYLOADS)
        return [(write, [encode_frame(Status.OK, p) for p in PAYLOADS])]
    if kind == "get-1mib":
        assert blob is not None
        return [(encode_frame(Op.GET, GET_NAME.encode()), [encode_frame(Status.OK, blob)])]
    if kind == "work-compute":
        work = encode_work_payload(WorkKind.COMPUTE, WORK_UNITS, b"ok")
        return [(encode_frame(Op.WORK, work), [encode_frame(Status.OK, b"ok")])]
    raise ValueError(f"unknown kind {kind!r}")


def task_states(pids: list[int]) -> Iterator[bytes]:
    """The state letter (``R``, ``S``, ``D``...) of every thread of ``pids``."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            yield stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]


def asleep(pids: list[int]) -> bool:
    """Whether no thread of ``pids`` runs or waits for a CPU: each sleeps in a system call
    (``S``) or is a zombie; ``D`` (a disk read) is not asleep."""
    return all(state in (b"S", b"Z", b"I") for state in task_states(pids))


def wait_asleep(
    pids: list[int], *, checks: int = 1, gap: float = ASLEEP_GAP_S, timeout: float = 30.0
) -> bool:
    """Wait until ``pids`` are asleep ``checks`` looks in a row, ``gap`` apart; False if
    that did not happen within ``timeout`` (a server that never stops working)."""
    deadline = time.monotonic() + timeout
    row = 0
    while row < checks:
        row = row + 1 if asleep(pids) else 0
        if row < checks:
            if time.monotonic() > deadline:
                return False
            time.sleep(gap)
    return True


class Paced:
    """One connection to a server whose tree is ``root``'s: every write waits until the
    tree sleeps, every reply is read whole and checked, and ACKed at once."""

    def __init__(self, address: tuple[str, int], root: int) -> None:
        self.root = root
        self.sock = connect(address, REPLY_TIMEOUT_S)
        self.settled = self.settle()  # a forked child or a thread for this connection

    def settle(self) -> bool:
        """Wait until the server's tree sleeps for a while; refresh the pids it is made of."""
        self.pids = [p.pid for p in process_tree(self.root)]
        ok = wait_asleep(self.pids, checks=SETTLE_CHECKS, gap=SETTLE_GAP_S)
        self.pids = [p.pid for p in process_tree(self.root)]
        return ok

    def send(self, kind: str, n: int, blob: bytes | None = None) -> None:
        """``n`` requests of ``kind`` (whole writes of it), every reply checked."""
        turns = exchanges(kind, blob)
        for i in range(n // KINDS[kind].batch):
            write, replies = turns[i % len(turns)]
            wait_asleep(self.pids)
            self.sock.sendall(write)
            for reply in replies:
                self.read_reply(reply)

    def read_reply(self, expected: bytes) -> None:
        header = self.read(HEADER_SIZE)
        if header != expected[:HEADER_SIZE]:
            status, length = HEADER.unpack(header)
            text = self.read(min(length, 200)).decode("utf-8", "replace")
            raise WrongReply(f"status {status} reply of {length} bytes: {text!r}")
        if self.read(len(expected) - HEADER_SIZE) != expected[HEADER_SIZE:]:
            raise WrongReply(f"a reply of {len(expected)} bytes differs from the expected one")

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            if QUICKACK is not None:
                self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)  # reset by the kernel
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise ConnectionError(f"the server closed the connection ({got}/{n} bytes)")
            got += k
        return bytes(buf)

    def close(self) -> bool:
        """Close the connection; whether the server's tree then settled again."""
        self.sock.close()
        return self.settle()


def get_blob() -> bytes:
    """The file GET serves: 1 MiB, the same bytes in every run."""
    return random.Random(0).randbytes(GET_SIZE)


def served_root(path: Path, kinds: tuple[str, ...]) -> bytes | None:
    """Put the GET file into the served directory when a GET kind is measured."""
    if "get-1mib" not in kinds:
        return None
    blob = get_blob()
    (path / GET_NAME).write_bytes(blob)
    return blob


# -- one server's tree -----------------------------------------------------------


def stop_group(pgid: int, timeout: float = EXIT_TIMEOUT_S) -> str | None:
    """SIGTERM a counted server's group and wait until every process of it is gone (each
    writes its out file as it exits); None, or why its counts are lost (it had to be killed:
    a killed process writes nothing)."""
    killpg(pgid, signal.SIGTERM)
    if wait_group_gone(pgid, timeout):
        return None
    killpg(pgid, signal.SIGKILL)
    wait_group_gone(pgid, 5.0)
    return f"did not exit within {timeout:.0f} s of SIGTERM (killed: its counts are lost)"


LIVE: set[int] = set()  # process groups this module started and has not stopped yet


@contextlib.contextmanager
def tracked(pgid: int) -> Iterator[int]:
    """A process group listed here and in the harness's live groups (run_all.py kills them
    on Ctrl-C) while in use."""
    LIVE.add(pgid)
    harness.LIVE_GROUPS.add(pgid)
    try:
        yield pgid
    finally:
        harness.LIVE_GROUPS.discard(pgid)
        LIVE.discard(pgid)


def kill_live() -> None:
    """SIGKILL every group this module started and has not stopped (the Ctrl-C path: the
    threads serving them then fail at once instead of waiting out their timeouts)."""
    for pgid in list(LIVE):
        killpg(pgid, signal.SIGKILL)


# -- counted runs ------------------------------------------------------------------


@dataclass
class CountedRun:
    """One server run under cachegrind: what it served and the instructions of its tree."""

    variant: str
    requests: dict[str, int]
    instructions: int | None = None  # the tree's, less what its processes inherited
    by_pid: dict[int, int] = field(default_factory=dict)  # each out file's total, as written
    inherited: int | None = None  # what the fork server's loop added before this run's fork
    commands: dict[int, str | None] = field(default_factory=dict, repr=False)  # cmd: lines
    wall_s: float = 0.0
    idle: bool = True  # the tree went idle before the first request and after the last
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["by_pid"] = {str(k): v for k, v in self.by_pid.items()}
        del data["commands"]
        return data


class Zygote:
    """The fork server under cachegrind (:mod:`loadgen.suite.forkserver`), one per CPU slot:
    started once, it forks a variant server per variant, which forks the runs' servers."""

    def __init__(self, tmp: Path, *, python: str | None, cpus: tuple[int, ...] | None) -> None:
        self.out = tmp / "out"
        self.out.mkdir()
        self.stderr_path = tmp / "stderr"
        argv = [*cachegrind.wrapper(self.out), python or sys.executable, "-c", FORKSERVER]
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                env=suite_env(ENV), cwd=tmp, start_new_session=True,
            )  # fmt: skip
        LIVE.add(self.process.pid)
        harness.LIVE_GROUPS.add(self.process.pid)
        self.buffer = b""
        try:
            if cpus and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(self.process.pid, cpus)  # every fork inherits it
            self.read_line(READY_TIMEOUT_S)  # {"zygote": pid}: imported, listening
        except BaseException:
            self.close()
            raise

    def read_line(self, timeout: float, pid: int | None = None) -> dict[str, Any]:
        """The next line of JSON on stdout (the fork server's, a variant server's or a run's
        ready line); ServerStartError with stderr's last line if none comes in time, or if
        process ``pid`` (the run's server) is gone first."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerStartError(f"nothing within {timeout:.0f} s{self.stderr_tail()}")
            if not select.select([fd], [], [], min(left, 0.5))[0]:
                if pid is not None and not os.path.exists(f"/proc/{pid}"):
                    raise ServerStartError(f"it exited{self.stderr_tail()}")
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise ServerStartError(f"the fork server exited{self.stderr_tail()}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def stderr_tail(self) -> str:
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        lines = [x for x in lines if "warning: " not in x]  # valgrind's notes on caches
        return f": {lines[-1]}" if lines else ""

    def write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def open(self, name: str, runs: int) -> dict[str, Any]:
        """A variant server for ``name`` with ``runs`` servers forked: their pids and the
        calibration children's."""
        self.write(f"{name} {runs}")
        forked = self.read_line(READY_TIMEOUT_S)
        if "done" in forked:
            raise ServerStartError(f"{name} could not be loaded{self.stderr_tail()}")
        return forked

    def start(self, index: int, args: list[str], pid: int) -> dict[str, Any]:
        """Hand run ``index`` (process ``pid``) its ``python -m servers`` arguments; its
        ready line."""
        self.write(f"{index} {json.dumps(args)}")
        return self.read_line(READY_TIMEOUT_S, pid)

    def end(self) -> None:
        """End the variant server (its unused children exit); wait until it has."""
        self.write("end")
        while "done" not in self.read_line(EXIT_TIMEOUT_S):
            pass

    def close(self) -> None:
        """Close its stdin, wait for it, kill whatever is left of its group."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(EXIT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            harness.LIVE_GROUPS.discard(self.process.pid)
            LIVE.discard(self.process.pid)


def counted_runs(
    zygote: Zygote,
    name: str,
    vectors: list[dict[str, int]],
    *,
    on_run: Callable[[str], None] | None = None,
) -> list[CountedRun]:
    """One server under cachegrind per vector (kind -> requests, in order), each on one
    connection, stopped, its tree's out files summed; never raises for a failing variant."""
    runs = [CountedRun(name, dict(v)) for v in vectors]
    try:
        forked = zygote.open(name, len(runs))
    except (ServerStartError, OSError, ValueError) as exc:
        for run in runs:
            run.error = f"did not start under valgrind: {exc}"
        return runs
    try:
        for index, run in enumerate(runs):
            counted_run(zygote, index, run, int(forked["children"][index]))
            if on_run:
                on_run(f"{name} " + " + ".join(f"{n} {k}" for k, n in run.requests.items()))
    finally:
        zygote.end()
    take_off_the_loop(runs, zygote.out, forked["calibration"])
    return runs


def fork_step(out: Path, calibration: list[int], timeout: float = EXIT_TIMEOUT_S) -> int:
    """One iteration of a variant server's fork loop, in instructions: the difference of
    its two unused children's counts (they exit at its end; CachegrindError if they wrote
    nothing in time)."""
    paths = [out / f"{cachegrind.OUT_PREFIX}{pid}" for pid in calibration]
    deadline = time.monotonic() + timeout
    while True:
        try:
            first, second = (cachegrind.instructions(p.read_text()) for p in paths)
            return second - first
        except (OSError, cachegrind.CachegrindError):
            if time.monotonic() > deadline:
                raise cachegrind.CachegrindError(
                    "the fork server's calibration children wrote no counts"
                ) from None
            time.sleep(0.05)


def take_off_the_loop(runs: list[CountedRun], out: Path, calibration: list[int]) -> None:
    """Run ``k``'s processes were forked ``k`` loop iterations after run 0's: take ``k``
    steps off each of its files that carries the fork server's counts (a process that
    exec'd another program started its counts afresh), so that every run starts from the
    same count."""
    try:
        step = fork_step(out, calibration)
        ours = cachegrind.command((out / f"{cachegrind.OUT_PREFIX}{calibration[0]}").read_text())
    except (OSError, cachegrind.CachegrindError) as exc:
        for run in runs:
            run.error = run.error or str(exc)
        return
    for k, run in enumerate(runs):
        if run.instructions is not None:
            forked = sum(1 for cmd in run.commands.values() if cmd == ours)
            run.inherited = k * step * forked
            run.instructions -= run.inherited


def counted_run(zygote: Zygote, index: int, run: CountedRun, pid: int) -> None:
    """Run ``index`` of a variant server: start it, serve its requests, stop it, count."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"cb-costs-{run.variant}-") as root:
        blob = served_root(Path(root), tuple(run.requests))
        before = {p.name for p in zygote.out.iterdir()}  # the files of runs before this one
        args = [run.variant, "--host", "127.0.0.1", "--port", "0", "--root", root]
        with tracked(pid):
            try:
                ready = zygote.start(index, args, pid)
                run.error = serve(pid, (str(ready["host"]), int(ready["port"])), run, blob)
            except (ServerStartError, OSError, ValueError) as exc:
                run.error = f"did not start under valgrind: {exc}"
            finally:
                stopped = stop_group(pid)
    run.error = run.error or stopped
    if run.error is None:
        try:
            totals = cachegrind.total(zygote.out, skip=before)
            run.instructions, run.by_pid = totals.instructions, totals.by_pid
            run.commands = totals.commands
        except cachegrind.CachegrindError as exc:
            run.error = str(exc)
    run.wall_s = round(time.perf_counter() - t0, 2)


def serve(pid: int, address: tuple[str, int], run: CountedRun, blob: bytes | None) -> str | None:
    """A counted run's requests on one connection, the server asleep before and after each;
    None, or what went wrong."""
    run.idle = wait_asleep([p.pid for p in process_tree(pid)], checks=SETTLE_CHECKS,
                           gap=SETTLE_GAP_S)  # fmt: skip
    try:
        conn = Paced(address, pid)
        try:
            for kind, n in run.requests.items():
                conn.send(kind, n, blob)
        finally:
            run.idle = conn.close() and conn.settled and run.idle
    except (OSError, ConnectionError, RuntimeError) as exc:  # WrongReply
        return f"{exc.__class__.__name__}: {exc}"
    return None


# -- system calls and context switches (no valgrind) -----------------------------


def count_calls(
    name: str,
    kinds: tuple[str, ...],
    windows: dict[str, int],
    *,
    python: str | None = None,
    pinning: harness.Pinning | None = None,
) -> dict[str, dict[str, Any]]:
    """Kind -> system calls and context switches per request, each over its own window of
    ``windows[kind]`` requests on one connection to a server started without valgrind."""
    with tempfile.TemporaryDirectory(prefix=f"cb-calls-{name}-") as tmp:
        blob = served_root(Path(tmp), kinds)
        try:
            server = start_server(
                name, tmp, cpus=pinning.server if pinning else None, env=ENV, python=python
            )
        except (ServerStartError, OSError, ValueError) as exc:
            return {k: {"error": f"did not start: {exc}"} for k in kinds}
        with server, tracked(server.pid), pinned_here(pinning.loadgen if pinning else None):
            return {k: one_window(server, k, windows[k], blob) for k in kinds}


def one_window(server: RunningServer, kind: str, n: int, blob: bytes | None) -> dict[str, Any]:
    """A warm-up, then ``n`` requests of ``kind`` counted (their own connection)."""
    n -= n % KINDS[kind].batch
    cost = counters.CostCounters(server.pid)
    try:
        conn = Paced((server.host, server.port), server.pid)
        try:
            conn.send(kind, CALLS_WARMUP - CALLS_WARMUP % KINDS[kind].batch, blob)
            cost.attach()
            wait_asleep(conn.pids)
            cost.start()
            conn.send(kind, n, blob)
            wait_asleep(conn.pids)  # the last request's work done: whole requests counted
            cost.pause()
        finally:
            conn.close()
        figures = cost.stop(n)
    except (OSError, ConnectionError, RuntimeError, ValueError) as exc:
        return {"error": f"{exc.__class__.__name__}: {exc}"}
    finally:
        cost.close()
    switches = figures["context_switches"]
    assert isinstance(switches, dict)
    return {
        "requests": n,
        "syscalls_per_request": figures["syscalls_per_request"],
        "syscalls_by_name": figures["syscalls_by_name"],
        "syscalls_unavailable": figures["syscalls_unavailable"],
        # voluntary only: the model's own waits (a blocking read, epoll_wait, a lock); the
        # involuntary ones are the machine taking the CPU away, which a busy machine moves
        "context_switches_per_request": switches["voluntary"] / n if n else None,
        "context_switches": switches,
    }


@contextlib.contextmanager
def pinned_here(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """This process on ``cpus`` (the load generator's) for a while, its affinity restored."""
    saved = os.sched_getaffinity(0) if cpus and hasattr(os, "sched_getaffinity") else None
    if saved is not None:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)


# -- the whole table ---------------------------------------------------------------


def measure(
    names: list[str],
    plan: CostPlan,
    *,
    python: str | None = None,
    pinning: harness.Pinning | None = None,
    on_run: Callable[[str], None] | None = None,
    parallel: int = PARALLEL,
) -> dict[str, Any]:
    """The cost table's record (results.json ``costs``): every counted run, every estimate,
    and each variant's figures per kind; ``skipped`` (why) where valgrind cannot run."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "plan": plan.to_json(),
        "tool": None,
        "env": dict(ENV),
        "skipped": cachegrind.unavailable(),
        "variants": {},
        "runs": [],
        "wall_s": 0.0,
    }
    if record["skipped"] is None:
        record["tool"] = f"{cachegrind.version()} " + " ".join(cachegrind.wrapper("OUT")[1:-2])
        jobs = [(n, *plan.design_for(n)) for n in names]
        # The system calls' runs go beside the counted ones: both are counts (the client paces
        # itself on the server, the switches are the voluntary ones), which sharing the CPUs
        # with valgrind does not move, and it saves their ~0.7 s a variant of a quick run.
        stop = threading.Event()
        with ThreadPoolExecutor(1, thread_name_prefix="syscalls") as pool:
            calls = pool.submit(count_all_calls, names, plan, python, pinning, on_run, stop)
            try:
                totals = run_all(jobs, record, python=python, on_run=on_run, parallel=parallel)
            except BaseException:  # Ctrl-C: no further variant (its server is killed with the rest)
                stop.set()
                raise
            by_name = calls.result()
        for name, runs, estimates in jobs:
            by_kind = per_request(totals[name], runs, estimates)
            record["variants"][name] = {
                k: {**summarise(by_kind.get(k, [])), **by_name[name][k],
                    "error": run_errors(record["runs"], name) or by_name[name][k].get("error")}
                for k in plan.kinds_for(name)
            }  # fmt: skip
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    return record


def count_all_calls(
    names: list[str],
    plan: CostPlan,
    python: str | None,
    pinning: harness.Pinning | None,
    on_run: Callable[[str], None] | None,
    stop: threading.Event,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Name -> kind -> its system calls and context switches (:func:`count_calls`), one
    variant after another until ``stop`` is set."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with counters.hold_for_suite():
        for name in names:
            kinds = plan.kinds_for(name)
            if stop.is_set():
                out[name] = {k: {"error": "not counted: interrupted"} for k in kinds}
                continue
            out[name] = count_calls(name, kinds, plan.calls, python=python, pinning=pinning)
            if on_run:
                on_run(f"{name}: system calls")
    return out


def run_errors(runs: list[dict[str, Any]], name: str) -> str | None:
    errors = [r["error"] for r in runs if r["variant"] == name and r["error"]]
    return errors[0] if errors else None


def run_all(
    jobs: list[tuple[str, list[dict[str, int]], list[Estimate]]],
    record: dict[str, Any],
    *,
    python: str | None,
    on_run: Callable[[str], None] | None,
    parallel: int,
) -> dict[str, list[int | None]]:
    """Every job's counted runs, ``parallel`` fork servers at once, each on a CPU of its own
    and taking the next variant when done; variant -> each run's total (None: failed)."""
    cpus = harness.usable_cpus()
    slots: list[tuple[int, ...] | None] = [(c,) for c in cpus[: max(1, parallel)]] or [None]
    queue = list(jobs)
    lock = threading.Lock()
    totals: dict[str, list[int | None]] = {}

    def worker(cpu: tuple[int, ...] | None) -> None:
        with tempfile.TemporaryDirectory(prefix="cb-costs-") as tmp:
            try:
                zygote = Zygote(Path(tmp), python=python, cpus=cpu)
            except (ServerStartError, OSError, ValueError) as exc:
                fail_all(f"the fork server did not start under valgrind: {exc}")
                return
            try:
                while True:
                    with lock:
                        if not queue:
                            return
                        name, vectors, _ = queue.pop(0)
                    runs = counted_runs(zygote, name, vectors, on_run=on_run)
                    with lock:
                        record["runs"] += [r.to_json() for r in runs]
                        totals[name] = [r.instructions for r in runs]
            finally:
                zygote.close()

    def fail_all(reason: str) -> None:
        with lock:
            while queue:
                name, vectors, _ = queue.pop(0)
                runs = [CountedRun(name, dict(v), error=reason) for v in vectors]
                record["runs"] += [r.to_json() for r in runs]
                totals[name] = [None] * len(runs)

    pool = ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="cachegrind")
    pending: set[Future[None]] = set()
    try:
        pending = {pool.submit(worker, cpu) for cpu in slots}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
    except BaseException:  # Ctrl-C: the counted servers must not outlive us
        with lock:
            queue.clear()
        kill_live()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return totals
