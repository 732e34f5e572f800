"""The load engine: worker processes, each one non-blocking ``select.epoll`` loop.

Why it looks the way it does: on a 2-core machine the generator shares the
CPU with the server it measures, so every microsecond it spends per request
is taken from the server.  The hot path is what a prototype that reached
~180k requests/s did: one epoll loop per process, per-connection state in
lists indexed by file descriptor, requests encoded before the run, replies
checked by comparing the received bytes with the exact expected reply (every
reply of every workload is known in advance: status OK, the length, and for
ECHO/GET the bytes), one ``perf_counter_ns`` per completion, and latencies
appended to a plain list that is fed to the histogram only after the run.
Two things measured on top of that (see docs/RESULTS.md): ``os.read`` and
``os.write`` on the descriptor cost less Python time than the socket
methods, and sending a batch's next requests together once its replies are
checked spares the server a wake-up per request.

A run, as seen by the parent (:func:`run_load`):

1. check the target answers a TCP connect (one-line error if not); prepare
   GET files with a blocking client;
2. fork ``processes`` workers; each opens its share of the connections in
   batches (listen backlogs are small) and says "ready";
3. send every worker the same start instant ``T0``; warm-up until
   ``T0 + warmup`` (results discarded), then the measured period until
   ``T0 + warmup + duration``; the server monitor brackets the measured
   period;
4. each worker sends its counts, then its histogram (encoded) and CPU times;
   the parent merges them into the result dict (docs/RESULTS.md).

Closed loop (default): each connection keeps ``pipeline`` requests in flight;
latency is service time.  Open loop (``rate``): each connection has a fixed
schedule (interval ``connections / rate``, its own phase) and a credit
counter: whenever the loop wakes, it sends every request whose scheduled
time has passed, so a stall is followed by a burst, as real independent
clients would do.  Latency is measured from the *scheduled* send time (as
wrk2 does, so a stalled server shows in the percentiles) and from the actual
send time ("uncorrected") too.

Every loop is bounded in time: a worker stops at its hard deadline whatever
the server does, and the parent kills and reaps what does not stop.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import heapq
import os
import platform
import random
import resource
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from loadgen.engine import stats
from loadgen.suite.launch import MALLOC_ENV
from servers.protocol import Op, encode_frame, encode_put_payload

SCHEMA = 1
WORKLOADS = ("echo", "raw", "get", "put", "mixed", "churn", "idle")
ERROR_KINDS = ("refused", "reset", "timeout", "protocol", "wrong_reply")
RECV_SIZE = 64 * 1024  # under glibc's 128 KiB mmap threshold (see launch.MALLOC_ENV)
RAMP_BATCH = 128  # connections opened at once; the server's listen backlog is small
HOUSEKEEPING_S = 0.1  # timeouts, progress counters
RECONNECT_DELAY_S = 0.01  # so a refusing server does not make us spin
GET_FILES = 4  # distinct files read by the get/mixed workloads
# mixed: per 20 requests, 16 ECHO, 3 GET, 1 PUT (80% / 15% / 5%)
MIXED_CYCLE = ("echo",) * 16 + ("get",) * 3 + ("put",)
BATCH_SENDS = True  # hot path: send the next requests after the whole epoll batch
RELEASE_TIMEOUT = 5.0  # s a worker holds its connections after "done", waiting for "release"
SATURATED_CORE = 0.9  # a worker above this fraction of a core may be the bottleneck
RATE_SHORTFALL = 0.97  # open loop: achieved below this fraction of the asked rate

OK_EMPTY = encode_frame(0)  # PUT's reply
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLL_BAD = select.EPOLLERR | select.EPOLLHUP


class LoadError(Exception):
    """The run could not be made (unreachable target, no connection); one-line message."""


@dataclass
class LoadConfig:
    """What to run.  ``host``/``port`` must be loopback (checked by the CLI)."""

    host: str
    port: int
    workload: str = "echo"
    size: int = 64
    connections: int = 64
    duration: float = 3.0
    warmup: float = 1.0
    rate: float | None = None  # requests/s in total: open loop; None: closed loop
    pipeline: int = 1
    processes: int = 1
    slow_clients: int = 0
    slow_byte_interval: float = 0.005  # seconds between the bytes of a slow client
    cpus: list[int] | None = None
    server_pid: int | None = None
    timeout: float = 2.0  # a reply later than this breaks the connection ("timeout")

    def __post_init__(self) -> None:
        if self.workload == "slow":  # ECHO where some connections are slow
            self.workload = "echo"
            if not self.slow_clients:
                self.slow_clients = max(1, self.connections // 8)

    @property
    def mode(self) -> str:
        return "open" if self.rate else "closed"

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def normal_connections(self) -> int:
        return self.connections - self.slow_clients

    @property
    def ramp_limit(self) -> float:
        """Seconds allowed for opening every connection before the start."""
        return 2.0 + self.connections / 5000

    def validate(self) -> None:
        """Raise ValueError with a one-line message if the options do not make sense."""
        checks = [
            (self.workload in WORKLOADS, f"workload must be one of {', '.join(WORKLOADS)}"),
            (0 <= self.size <= 16 * 1024 * 1024, "size must be 0..16777216 bytes"),
            (self.connections >= 1, "connections must be >= 1"),
            (self.duration > 0, "duration must be > 0"),
            (self.warmup >= 0, "warmup must be >= 0"),
            (self.rate is None or self.rate > 0, "rate must be > 0"),
            (1 <= self.pipeline <= 1024, "pipeline must be 1..1024"),
            (1 <= self.processes <= 256, "processes must be 1..256"),
            (0 <= self.slow_clients < self.connections, "slow-clients must be < connections"),
            (self.timeout > 0, "timeout must be > 0"),
            (self.processes <= self.connections, "processes must be <= connections"),
        ]
        if self.workload in ("churn", "idle"):
            checks.append((self.rate is None, f"{self.workload} runs closed loop only (no --rate)"))
            checks.append((self.pipeline == 1, f"{self.workload} has no --pipeline"))
            checks.append((self.slow_clients == 0, f"{self.workload} has no slow clients"))
        if self.workload in ("get", "put", "mixed"):
            checks.append((self.size >= 1, f"{self.workload} needs --size >= 1"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.cpus is not None:
            if not self.cpus:
                raise ValueError("cpus must name at least one CPU")
            if hasattr(os, "sched_getaffinity"):
                usable = os.sched_getaffinity(0)
                missing = [c for c in self.cpus if c not in usable]
                if missing:
                    raise ValueError(f"cpu(s) {missing} not available (usable: {sorted(usable)})")


# -- what each connection sends and expects ----------------------------------


@dataclass
class Plan:
    """Per connection slot: the cycle of (request bytes, exact expected reply bytes)."""

    cycles: list[list[tuple[bytes, bytes]]]
    get_files: dict[str, bytes] = field(default_factory=dict)


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def build_plan(cfg: LoadConfig, token: str) -> Plan:
    """Pre-encode every request and its expected reply, before any connection opens."""
    echo_payload = _payload(cfg.size, 1)
    echo = (encode_frame(Op.ECHO, echo_payload), encode_frame(0, echo_payload))
    raw = (echo_payload, echo_payload)
    get_files: dict[str, bytes] = {}
    if cfg.workload in ("get", "mixed"):
        for i in range(GET_FILES):
            get_files[f"loadgen-{token}-get-{i}.bin"] = _payload(cfg.size, 100 + i)
    get_names = list(get_files)

    def get(slot: int) -> tuple[bytes, bytes]:
        name = get_names[slot % GET_FILES]
        return encode_frame(Op.GET, name.encode()), encode_frame(0, get_files[name])

    put_data = _payload(cfg.size, 2) if cfg.workload in ("put", "mixed") else b""

    def put(slot: int) -> tuple[bytes, bytes]:
        name = f"loadgen-{token}-put-{slot}.bin"  # unique per connection
        return encode_frame(Op.PUT, encode_put_payload(name, put_data)), OK_EMPTY

    cycles: list[list[tuple[bytes, bytes]]] = []
    for slot in range(cfg.connections):
        w = cfg.workload
        if w == "raw":
            cycle = [raw]
        elif w == "get":
            cycle = [get(slot)]
        elif w == "put":
            cycle = [put(slot)]
        elif w == "mixed" and slot >= cfg.slow_clients:
            kinds = {"echo": echo, "get": get(slot), "put": put(slot)}
            start = slot % len(MIXED_CYCLE)  # so the connections do not move in lockstep
            order = MIXED_CYCLE[start:] + MIXED_CYCLE[:start]
            cycle = [kinds[k] for k in order]
        else:  # echo, churn, idle; slow clients of mixed send ECHO
            cycle = [echo]
        cycles.append(cycle)
    return Plan(cycles, get_files)


def prepare_files(cfg: LoadConfig, plan: Plan) -> None:
    """PUT the files the get/mixed workloads read, and check one comes back."""
    if not plan.get_files:
        return
    from loadgen.client import Client, ServerError

    try:
        with Client(cfg.host, cfg.port, timeout=5.0) as client:
            for name, data in plan.get_files.items():
                client.put(name, data)
            name, data = next(iter(plan.get_files.items()))
            if client.get(name) != data:
                raise LoadError(f"{cfg.target} returned other bytes than were PUT for {name}")
    except (OSError, ServerError) as exc:
        raise LoadError(f"could not prepare the GET files on {cfg.target}: {exc}") from None


# -- one worker process --------------------------------------------------------


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


def _error_kind(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in (errno.ETIMEDOUT,):
        return "timeout"
    return "reset"


class Worker:
    """One process's share of the connections and its epoll loop."""

    def __init__(
        self,
        cfg: LoadConfig,
        index: int,
        slots: list[int],
        plan: Plan,
        ctl: Connection,
        progress: Any,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.slots = slots
        self.plan = plan
        self.ctl = ctl
        self.progress = progress  # shared array: 4 counters per worker
        self.workload = cfg.workload
        self.framed = cfg.workload != "raw"
        self.open_loop = cfg.rate is not None
        self.churn = cfg.workload == "churn"
        self.idle = cfg.workload == "idle"
        self.timeout_ns = int(cfg.timeout * 1e9)
        self.slow_gap_ns = int(cfg.slow_byte_interval * 1e9)
        n = cfg.connections
        # per slot (global connection number)
        self.done = [0] * n  # completions in the measured period
        self.pos = [0] * n  # position in the cycle / open-loop requests sent
        self.is_slow = [slot < cfg.slow_clients for slot in range(n)]
        # slots whose every request can take the hot path (see go_fast)
        simple = cfg.rate is None and cfg.pipeline == 1 and cfg.workload not in ("churn", "idle")
        # (replies of RECV_SIZE or more take the general path: its reads stay under 128 KiB)
        self.fast_slot = [
            simple
            and not self.is_slow[slot]
            and len(plan.cycles[slot]) == 1
            and len(plan.cycles[slot][0][1]) < RECV_SIZE
            for slot in range(n)
        ]
        self.interval_ns = 0
        self.phase_ns = [0] * n
        if self.open_loop:
            assert cfg.rate is not None
            self.interval_ns = max(1, int(cfg.normal_connections / cfg.rate * 1e9))
            for k, slot in enumerate(range(cfg.slow_clients, n)):
                self.phase_ns[slot] = self.interval_ns * k // max(1, cfg.normal_connections)
        # per file descriptor, grown on demand
        self.socks: list[socket.socket | None] = []
        self.slot_of: list[int] = []
        self.state: list[int] = []  # 0 closed, 1 connecting, 2 open
        self.times: list[deque[int]] = []  # scheduled send times of requests in flight
        self.actual: list[deque[int]] = []  # actual send times (open loop)
        self.exps: list[deque[bytes]] = []  # expected replies of requests in flight
        self.got: list[int] = []  # bytes of the current reply received (and matched) so far
        self.outq: list[bytearray] = []  # bytes the socket would not take yet
        self.gen: list[int] = []  # bumped when the fd is closed: stale timers
        self.fastok: list[bool] = []
        self.opened_at: list[int] = []
        self.drip: list[bytes] = []
        self.drip_pos: list[int] = []
        self.sched_at: list[int] = []  # open loop: when the pending schedule timer fires
        self.fast: list[bool] = []  # see go_fast()
        self.drip_last: list[int] = []  # slow clients: when the last byte went
        self.sent_at: list[int] = []
        self.req_of: list[bytes] = []
        self.exp_of: list[bytes] = []
        self.rlen: list[int] = []  # fast path: bytes to read = reply length + 1
        self.live: set[int] = set()
        self.open_sent = [0] * n  # open loop: requests sent so far per slot (credit counter)
        self.stop_requested = False
        # counters
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.reconnects = 0
        self.completed = 0  # all completions, any phase (progress line)
        self.idle_served = 0
        self.idle_ok = [0] * n  # idle: 1 once the slot's first ECHO was answered
        self.lat: list[int] = []
        self.lat_unc: list[int] = []
        self.slow_lat: list[int] = []
        self.slow_done = 0
        # time
        self.timers: list[tuple[int, int, int, int]] = []  # (when ns, kind, fd/slot, gen)
        self.started = False
        self.finishing = False
        self.measuring = False
        self.t0 = 0
        self.t_measure = 0
        self.t_end = 0
        self.deadline = 0
        self.measure_start_seen = 0
        self.measure_end_seen = 0
        self.next_housekeeping = 0
        self.wake_ns = 0
        self.ru0: resource.struct_rusage | None = None
        self.ru1: resource.struct_rusage | None = None
        self.ep = select.epoll()

    # -- process entry ------------------------------------------------------

    def main(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
        malloc = _apply_malloc_env()
        cpu = None
        if self.cfg.cpus and hasattr(os, "sched_setaffinity"):
            cpus = self.cfg.cpus
            mine = {cpus[self.index % len(cpus)]} if len(cpus) >= self.cfg.processes else set(cpus)
            os.sched_setaffinity(0, mine)
            cpu = sorted(mine)
        gc.disable()  # the loop makes no cycles; a collection would be a latency spike
        ramp_deadline = time.perf_counter_ns() + int(self.cfg.ramp_limit * 1e9)
        self.ep.register(self.ctl.fileno(), _EPOLLIN)
        self.ramp(ramp_deadline)
        self.ctl.send(("ready", len(self.live), dict(self.errors)))
        # wait (bounded) for the common start instant
        if not self.ctl.poll(self.cfg.ramp_limit + 2.0):
            return
        msg = self.ctl.recv()
        if msg[0] != "start":
            return
        self.t0 = msg[1]
        self.t_measure = self.t0 + int(self.cfg.warmup * 1e9)
        self.t_end = self.t_measure + int(self.cfg.duration * 1e9)
        self.deadline = self.t_end + int(1.5e9)
        self.loop()
        self.ctl.send(("done", sum(self.done), self.measuring_elapsed_ns()))
        # Hold the connections until the parent has read the server's figures:
        # a forking server's children exit with their clients, and would leave
        # the tree before its memory is measured (bounded: the parent may be gone).
        try:
            if self.ctl.poll(RELEASE_TIMEOUT):
                self.ctl.recv()
        except (EOFError, OSError):
            pass
        self.close_all()
        self.ctl.send(("result", self.result(malloc, cpu)))

    # -- connections ----------------------------------------------------------

    def _grow(self, fd: int) -> None:
        extra = fd + 1 - len(self.socks)
        if extra <= 0:
            return
        extra = max(extra, 64)
        self.socks += [None] * extra
        self.slot_of += [-1] * extra
        self.state += [0] * extra
        self.times += [deque() for _ in range(extra)]
        self.actual += [deque() for _ in range(extra)]
        self.exps += [deque() for _ in range(extra)]
        self.got += [0] * extra
        self.outq += [bytearray() for _ in range(extra)]
        self.gen += [0] * extra
        self.fastok += [False] * extra
        self.opened_at += [0] * extra
        self.drip += [b""] * extra
        self.drip_pos += [0] * extra
        self.sched_at += [0] * extra
        self.drip_last += [0] * extra
        self.fast += [False] * extra
        self.sent_at += [0] * extra
        self.req_of += [b""] * extra
        self.exp_of += [b""] * extra
        self.rlen += [0] * extra

    def open_conn(self, slot: int) -> None:
        """Start a non-blocking connect for ``slot``; completion arrives as EPOLLOUT."""
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET)
        except OSError:
            self.errors["refused"] += 1  # out of descriptors: no connection for this slot now
            self.push_timer(time.perf_counter_ns() + int(RECONNECT_DELAY_S * 1e9), 2, slot, -1)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = sock.fileno()
        self._grow(fd)
        self.socks[fd] = sock
        self.slot_of[fd] = slot
        self.state[fd] = 1
        self.opened_at[fd] = time.perf_counter_ns()
        self.fastok[fd] = not (self.open_loop or self.churn or self.idle or self.is_slow[slot])
        self.live.add(fd)
        err = sock.connect_ex((self.cfg.host, self.cfg.port))
        if err not in (0, errno.EINPROGRESS):
            self.break_conn(fd, "refused" if err == errno.ECONNREFUSED else "reset")
            return
        self.ep.register(fd, _EPOLLOUT)

    def on_connected(self, fd: int) -> None:
        sock = self.socks[fd]
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.break_conn(fd, "refused" if err == errno.ECONNREFUSED else "timeout"
                            if err == errno.ETIMEDOUT else "reset")
            return
        self.state[fd] = 2
        self.ep.modify(fd, _EPOLLIN)
        if self.started:
            self.start_traffic(fd, time.perf_counter_ns())

    def break_conn(self, fd: int, kind: str | None) -> None:
        """Close ``fd``; count ``kind`` (None: a normal close); reopen its slot."""
        sock = self.socks[fd]
        slot = self.slot_of[fd]
        if kind is not None:
            self.errors[kind] += 1
        self.close_fd(fd)
        if sock is not None and not self.finishing:
            if kind is not None:
                self.reconnects += 1
                self.push_timer(time.perf_counter_ns() + int(RECONNECT_DELAY_S * 1e9), 2, slot, -1)
            else:
                self.open_conn(slot)

    def close_fd(self, fd: int) -> None:
        sock = self.socks[fd]
        if sock is None:
            return
        if self.state[fd]:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass
        sock.close()
        self.socks[fd] = None
        self.state[fd] = 0
        self.fast[fd] = False
        self.gen[fd] += 1
        self.times[fd].clear()
        self.actual[fd].clear()
        self.exps[fd].clear()
        self.got[fd] = 0
        del self.outq[fd][:]
        self.drip[fd] = b""
        self.live.discard(fd)

    def close_all(self) -> None:
        self.finishing = True
        for fd in list(self.live):
            self.close_fd(fd)
        self.ep.close()

    def ramp(self, deadline: int) -> None:
        """Open this worker's connections, RAMP_BATCH at a time, before the start."""
        slots = self.slots
        for i in range(0, len(slots), RAMP_BATCH):
            for slot in slots[i : i + RAMP_BATCH]:
                self.open_conn(slot)
            while any(self.state[fd] == 1 for fd in self.live):
                left = (deadline - time.perf_counter_ns()) / 1e9
                if left <= 0:
                    break
                for fd, ev in self.ep.poll(min(left, 0.1)):
                    if fd == self.ctl.fileno():
                        return  # stop (or the parent died) during the ramp
                    if self.state[fd] == 1:
                        self.on_connected(fd)
                    elif ev & _EPOLL_BAD:
                        self.break_conn(fd, "reset")
            if time.perf_counter_ns() >= deadline:
                break
        # what did not connect in time counts as a timeout and is not retried
        for fd in [fd for fd in self.live if self.state[fd] == 1]:
            self.errors["timeout"] += 1
            self.close_fd(fd)

    # -- traffic ---------------------------------------------------------------

    def start_traffic(self, fd: int, now: int) -> None:
        """A connection is open and the run has started: begin its requests."""
        slot = self.slot_of[fd]
        if self.is_slow[slot]:
            self.start_drip(fd, now)
        elif self.open_loop:
            self.sched_at[fd] = 0
            self.on_schedule(fd, now)
        elif self.churn:
            self.send_next(fd, self.opened_at[fd])
        elif not self.go_fast(fd, now):
            for _ in range(1 if self.idle else self.cfg.pipeline):
                self.send_next(fd, now)

    def next_request(self, slot: int) -> tuple[bytes, bytes]:
        cycle = self.plan.cycles[slot]
        i = self.pos[slot]
        self.pos[slot] = i + 1 if i + 1 < len(cycle) else 0
        return cycle[i]

    def send_next(self, fd: int, when: int) -> None:
        req, exp = self.next_request(self.slot_of[fd])
        self.exps[fd].append(exp)
        self.times[fd].append(when)
        self.write(fd, req)

    def write(self, fd: int, data: bytes) -> None:
        out = self.outq[fd]
        if out:
            out += data
            return
        sock = self.socks[fd]
        assert sock is not None
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.break_conn(fd, _error_kind(exc))
            return
        if sent < len(data):
            out += data[sent:]
            self.ep.modify(fd, _EPOLLIN | _EPOLLOUT)

    def flush(self, fd: int) -> None:
        out = self.outq[fd]
        sock = self.socks[fd]
        assert sock is not None
        try:
            sent = sock.send(out)
        except BlockingIOError:
            return
        except OSError as exc:
            self.break_conn(fd, _error_kind(exc))
            return
        del out[:sent]
        if not out:
            self.ep.modify(fd, _EPOLLIN)

    def start_drip(self, fd: int, now: int) -> None:
        req, exp = self.next_request(self.slot_of[fd])
        self.exps[fd].append(exp)
        self.times[fd].append(now)
        self.drip[fd] = req
        self.drip_pos[fd] = 0
        self.push_timer(now, 1, fd, self.gen[fd])

    def on_drip(self, fd: int, now: int) -> None:
        """A slow client sends the next byte of its request."""
        req = self.drip[fd]
        i = self.drip_pos[fd]
        if i >= len(req):
            return
        self.drip_pos[fd] = i + 1
        self.drip_last[fd] = now
        self.write(fd, req[i : i + 1])
        if i + 1 < len(req) and self.socks[fd] is not None:
            self.push_timer(now + self.slow_gap_ns, 1, fd, self.gen[fd])

    def on_schedule(self, fd: int, now: int) -> None:
        """Open loop: send the requests whose scheduled time has come (credit counter).

        The credit is ``due - sent``: requests the schedule owes.  At most
        ``pipeline`` are in flight on a connection (one by default, as in
        wrk2), so a request owed while the connection waits for a reply is
        sent the moment the reply arrives, late: its latency counts from its
        *scheduled* time, its "uncorrected" latency from the actual send.
        """
        slot = self.slot_of[fd]
        start = self.t0 + self.phase_ns[slot]
        interval = self.interval_ns
        due = (now - start) // interval + 1 if now >= start else 0
        sent = self.open_sent[slot]
        times, actual, exps = self.times[fd], self.actual[fd], self.exps[fd]
        room = self.cfg.pipeline - len(exps)
        batch = []
        while sent < due and room > 0:
            req, exp = self.next_request(slot)
            times.append(start + sent * interval)
            actual.append(now)
            exps.append(exp)
            batch.append(req)
            sent += 1
            room -= 1
        self.open_sent[slot] = sent
        if batch:
            self.write(fd, b"".join(batch))
        if self.socks[fd] is None:
            return
        if room > 0:  # wake at the next scheduled time; else the next reply calls us
            when = start + sent * interval
            if self.sched_at[fd] != when:
                self.sched_at[fd] = when
                self.push_timer(when, 0, fd, self.gen[fd])
        else:
            self.sched_at[fd] = 0  # any pending timer is stale

    def push_timer(self, when: int, kind: int, ref: int, gen: int) -> None:
        heapq.heappush(self.timers, (when, kind, ref, gen))
        if when < self.wake_ns:
            self.wake_ns = when

    def run_timers(self, now: int) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            when, kind, ref, gen = heapq.heappop(timers)
            if kind == 2:  # reconnect a slot
                if not self.finishing:
                    self.open_conn(ref)
                continue
            if gen != self.gen[ref] or self.socks[ref] is None:
                continue  # the connection closed since
            if kind == 0:
                if when == self.sched_at[ref]:  # else superseded
                    self.sched_at[ref] = 0
                    self.on_schedule(ref, now)
            else:
                self.on_drip(ref, now)

    # -- replies ---------------------------------------------------------------

    def on_data(self, fd: int, data: bytes | memoryview) -> None:
        """The general path: replies split or joined in any way; check every byte.

        Each chunk is compared with the matching part of the expected reply as
        it arrives (``got[fd]`` bytes of the current reply already matched), so
        a large reply costs linear time and nothing is buffered.
        """
        exps = self.exps[fd]
        got = self.got[fd]
        i, n = 0, len(data)
        while i < n:
            if not exps:
                self.break_conn(fd, "protocol")  # bytes nobody asked for
                return
            exp = exps[0]
            take = min(len(exp) - got, n - i)
            if not exp.startswith(data[i : i + take], got):
                self.break_conn(fd, self.classify(data[i] if got == 0 else 0))
                return
            got += take
            i += take
            if got == len(exp):
                got = 0
                self.got[fd] = 0
                self.complete(fd, time.perf_counter_ns())
                if self.socks[fd] is None:
                    return  # churn closed it
        self.got[fd] = got

    def classify(self, first_byte: int) -> str:
        """A reply that differs: a malformed frame is "protocol", a wrong one "wrong_reply".

        ``first_byte`` is the reply's status byte (0 if it was already matched).
        """
        if self.framed and first_byte not in (0, 1):
            return "protocol"
        return "wrong_reply"

    def complete(self, fd: int, now: int) -> None:
        """One correct reply: account for it and send what comes next."""
        self.exps[fd].popleft()
        sent_at = self.times[fd].popleft()
        slot = self.slot_of[fd]
        self.completed += 1
        if self.is_slow[slot]:
            if self.measuring:
                self.slow_lat.append(now - sent_at)
                self.slow_done += 1
            self.start_drip(fd, now)
            return
        if self.measuring:
            self.lat.append(now - sent_at)
            self.done[slot] += 1
            if self.open_loop:
                self.lat_unc.append(now - self.actual[fd].popleft())
        elif self.open_loop:
            self.actual[fd].popleft()
        if self.open_loop:
            self.on_schedule(fd, now)
        elif self.churn:
            self.break_conn(fd, None)  # close and open a new connection
        elif self.idle:
            self.idle_served += 1
            self.idle_ok[slot] = 1
        elif not self.go_fast(fd, now):
            self.send_next(fd, now)

    def on_event(self, fd: int, ev: int) -> None:
        """Anything but plain readable data: connect done, output room, error."""
        st = self.state[fd]
        if st == 1:
            self.on_connected(fd)
            return
        if ev & _EPOLLOUT and self.outq[fd]:
            self.flush(fd)
            if self.socks[fd] is None:
                return
        if ev & (_EPOLLIN | _EPOLL_BAD):
            sock = self.socks[fd]
            assert sock is not None
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.break_conn(fd, _error_kind(exc))
                return
            if not data:
                self.break_conn(fd, "reset")
                return
            self.on_data(fd, data)

    # -- the loop --------------------------------------------------------------

    def loop(self) -> None:
        """Until the end of the measured period (or a stop message, or the hard deadline)."""
        self.started = True
        now = time.perf_counter_ns()
        if now < self.t0:
            time.sleep((self.t0 - now) / 1e9)
        now = time.perf_counter_ns()
        for fd in [fd for fd in self.live if self.state[fd] == 2]:
            self.start_traffic(fd, now)
        self.next_housekeeping = now
        self.wake_ns = now
        ctl_fd = self.ctl.fileno()
        self._grow(ctl_fd)  # every fd epoll returns indexes the lists
        poll = self.ep.poll
        socks, exps, times, slot_of = self.socks, self.exps, self.times, self.slot_of
        fastok, got, done, pos = self.fastok, self.got, self.done, self.pos
        fast, sent_at, rlen = self.fast, self.sent_at, self.rlen
        req_of, exp_of = self.req_of, self.exp_of
        read, write = os.read, os.write
        cycles = self.plan.cycles
        lat_append = self.lat.append
        outq = self.outq
        on_event, on_data = self.on_event, self.on_data
        perf = time.perf_counter_ns
        epollin = _EPOLLIN
        buf = bytearray(RECV_SIZE)
        mv = memoryview(buf)
        measuring = False
        completed = 0
        batch_sends = BATCH_SENDS
        pending: list[int] = []  # fast fds whose next request waits for the end of the batch
        later = pending.append
        while True:
            now = perf()
            if now >= self.wake_ns:
                self.completed += completed
                completed = 0
                if not self.tick(now):
                    break
                measuring = self.measuring
            timeout = (self.wake_ns - now) / 1e9
            events = poll(timeout if timeout > 0 else 0)
            for fd, ev in events:
                if ev == epollin and fast[fd]:
                    # The hot path: one request in flight, its state in plain lists;
                    # os.read/os.write: the cheapest calls into the socket from Python.
                    try:
                        data = read(fd, rlen[fd])  # one byte more than the reply: extra shows
                    except OSError as exc:
                        self.fast_failed(fd, exc)
                        continue
                    if data == exp_of[fd]:  # exactly the whole, correct reply
                        t = perf()
                        completed += 1
                        if measuring:
                            lat_append(t - sent_at[fd])
                            done[slot_of[fd]] += 1
                        if batch_sends:
                            later(fd)
                            continue
                        sent_at[fd] = t
                        req = req_of[fd]
                        try:
                            sent = write(fd, req)
                        except OSError as exc:
                            self.fast_failed(fd, exc, req)
                            continue
                        if sent != len(req):
                            self.fast_failed(fd, None, req[sent:])
                    elif not data:
                        self.break_conn(fd, "reset")
                    else:
                        self.unfast(fd)
                        on_data(fd, data)
                    continue
                s = socks[fd]
                if s is None:
                    if fd == ctl_fd:
                        self.finishing = True
                        self.stop_requested = True
                    continue
                if fast[fd]:
                    self.unfast(fd)
                if ev != epollin:
                    on_event(fd, ev)
                    continue
                try:
                    n = s.recv_into(buf)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self.break_conn(fd, _error_kind(exc))
                    continue
                if n == 0:
                    self.break_conn(fd, "reset")
                    continue
                ex = exps[fd]
                if fastok[fd] and ex and not got[fd] and n == len(ex[0]) and buf.startswith(ex[0]):
                    # one whole, correct reply; pipelined or cycling requests
                    t = perf()
                    ex.popleft()
                    tq = times[fd]
                    started = tq.popleft()
                    slot = slot_of[fd]
                    completed += 1
                    if measuring:
                        lat_append(t - started)
                        done[slot] += 1
                    cycle = cycles[slot]
                    i = pos[slot]
                    pos[slot] = i + 1 if i + 1 < len(cycle) else 0
                    req, exp = cycle[i]
                    ex.append(exp)
                    tq.append(t)
                    if outq[fd]:
                        self.write(fd, req)
                        continue
                    try:
                        sent = s.send(req)
                    except OSError as exc:
                        if isinstance(exc, BlockingIOError):
                            sent = 0
                        else:
                            self.break_conn(fd, _error_kind(exc))
                            continue
                    if sent != len(req):
                        outq[fd] += req[sent:]
                        self.ep.modify(fd, _EPOLLIN | _EPOLLOUT)
                else:
                    on_data(fd, mv[:n])
            if pending:
                # The next requests of this batch's replies go out together:
                # the server, woken by the first, finds the others waiting
                # instead of going back to sleep between them.  Their send
                # times are interpolated between two clock reads around the
                # writes (a clock read costs ~0.2 us on a VM, a tenth of the
                # generator's Python time per request); the error is a
                # fraction of one write.
                t_a = perf()
                for fd in pending:
                    req = req_of[fd]
                    sent_at[fd] = t_a
                    try:
                        sent = write(fd, req)
                    except OSError as exc:
                        self.fast_failed(fd, exc, req)
                        continue
                    if sent != len(req):
                        self.fast_failed(fd, None, req[sent:])
                step = (perf() - t_a) // len(pending)
                if step:
                    for fd in pending:
                        sent_at[fd] = t_a
                        t_a += step
                pending.clear()
            if self.stop_requested:
                self.completed += completed
                self.measure_end_seen = perf()
                self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
                self.measuring = False
                break

    # -- the hot path's state: fast[fd] means "one request in flight, sent at
    # sent_at[fd], expecting exp_of[fd]"; anything unusual moves it to the deques.

    def go_fast(self, fd: int, now: int) -> bool:
        """Send the next request the fast way if this connection allows it."""
        slot = self.slot_of[fd]
        if not self.fast_slot[slot] or self.exps[fd] or self.outq[fd] or self.got[fd]:
            return False
        req, exp = self.plan.cycles[slot][0]
        sock = self.socks[fd]
        assert sock is not None
        self.req_of[fd] = req
        self.exp_of[fd] = exp
        self.rlen[fd] = len(exp) + 1
        self.sent_at[fd] = now
        self.fast[fd] = True
        try:
            sent = sock.send(req)
        except OSError as exc:
            self.fast_failed(fd, exc, req)
            return True
        if sent != len(req):
            self.fast_failed(fd, None, req[sent:])
        return True

    def unfast(self, fd: int) -> None:
        """Move the request in flight from the fast lists to the general deques."""
        if self.fast[fd]:
            self.fast[fd] = False
            self.times[fd].append(self.sent_at[fd])
            self.exps[fd].append(self.exp_of[fd])

    def fast_failed(self, fd: int, exc: OSError | None, unsent: bytes = b"") -> None:
        """A fast-path recv/send did not go as usual: hand over to the general path."""
        if isinstance(exc, BlockingIOError) and not unsent:
            return  # spurious wake-up: nothing to read yet
        self.unfast(fd)
        if exc is not None and not isinstance(exc, BlockingIOError):
            self.break_conn(fd, _error_kind(exc))
            return
        self.outq[fd] += unsent  # the socket took part of it (or none): wait for room
        self.ep.modify(fd, _EPOLLIN | _EPOLLOUT)

    def tick(self, now: int) -> bool:
        """Phase changes, timers, housekeeping.  False when the loop must end."""
        if self.measuring is False and self.measure_start_seen == 0 and now >= self.t_measure:
            self.measuring = True
            self.measure_start_seen = now
            self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        if now >= self.t_end or now >= self.deadline:
            self.measure_end_seen = now
            self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
            self.measuring = False
            return False
        self.run_timers(now)
        if now >= self.next_housekeeping:
            self.housekeeping(now)
            self.next_housekeeping = now + int(HOUSEKEEPING_S * 1e9)
        wake = min(self.next_housekeeping, self.t_end)
        if not self.measuring:
            wake = min(wake, self.t_measure)
        if self.timers:
            wake = min(wake, self.timers[0][0])
        self.wake_ns = wake
        return True

    def housekeeping(self, now: int) -> None:
        """Break connections whose oldest request (or connect) is older than the timeout."""
        limit = now - self.timeout_ns
        for fd in list(self.live):
            if self.socks[fd] is None:
                continue
            if self.state[fd] == 1:
                if self.opened_at[fd] < limit:
                    self.break_conn(fd, "timeout")
                continue
            if self.fast[fd]:
                if self.sent_at[fd] < limit:
                    self.unfast(fd)
                    self.break_conn(fd, "timeout")
                continue
            if self.is_slow[self.slot_of[fd]]:
                # a slow request's clock for the timeout starts at its last byte
                dripping = self.drip_pos[fd] < len(self.drip[fd])
                if self.times[fd] and not dripping and self.drip_last[fd] < limit:
                    self.break_conn(fd, "timeout")
                continue
            q = self.actual[fd] if self.open_loop else self.times[fd]  # since the request left
            if q and q[0] < limit:
                self.break_conn(fd, "timeout")
        p = self.progress
        if p is not None:
            base = self.index * 4
            p[base] = self.completed
            p[base + 1] = sum(self.done)
            p[base + 2] = sum(self.errors.values())
            p[base + 3] = len(self.live)

    def measuring_elapsed_ns(self) -> int:
        if not self.measure_start_seen:
            return 0
        return max(0, self.measure_end_seen - self.measure_start_seen)

    # -- the worker's result ---------------------------------------------------

    def result(self, malloc: str, cpu: list[int] | None) -> dict[str, Any]:
        hist = stats.new_histogram()
        clamped = stats.record_ns(hist, self.lat)
        unc = None
        if self.open_loop:
            h2 = stats.new_histogram()
            clamped += stats.record_ns(h2, self.lat_unc)
            unc = stats.encode(h2)
        slow = None
        if self.cfg.slow_clients:
            h3 = stats.new_histogram()
            clamped += stats.record_ns(h3, self.slow_lat)
            slow = stats.encode(h3)
        elapsed = self.measuring_elapsed_ns() / 1e9
        user = system = 0.0
        if self.ru0 is not None and self.ru1 is not None:
            user = self.ru1.ru_utime - self.ru0.ru_utime
            system = self.ru1.ru_stime - self.ru0.ru_stime
        return {
            "index": self.index,
            "slots": self.slots,
            # idle: fairness is over "was this connection served at all"
            "done": [(self.idle_ok if self.idle else self.done)[s] for s in self.slots],
            "requests": sum(self.done),
            "elapsed_s": elapsed,
            "hist": stats.encode(hist),
            "hist_unc": unc,
            "hist_slow": slow,
            "slow_requests": self.slow_done,
            "out_of_range": clamped,
            "errors": dict(self.errors),
            "reconnects": self.reconnects,
            "idle_served": self.idle_served,
            "cpu_user_s": user,
            "cpu_system_s": system,
            "cpu_util": (user + system) / elapsed if elapsed > 0 else 0.0,
            "cpu": cpu,
            "malloc": malloc,
            "stopped": self.stop_requested,
        }


def _worker_entry(
    cfg: LoadConfig,
    index: int,
    slots: list[int],
    plan: Plan,
    ctl: Connection,
    progress: Any,
    close: list[Connection],
) -> None:
    # Every pipe end but ours: we see EOF if the parent dies, and it sees ours if we do.
    for other in close:
        if other is not ctl:
            other.close()
    worker = Worker(cfg, index, slots, plan, ctl, progress)
    try:
        worker.main()
    except BaseException as exc:  # report, do not print a traceback into the user's table
        try:
            ctl.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        raise SystemExit(1) from None


# -- the parent ------------------------------------------------------------------


@dataclass
class Progress:
    """What the live line shows; passed to the ``progress`` callback about 4 times a second."""

    phase: str  # "ramp-up", "warm-up", "measuring", "collecting"
    elapsed_s: float  # in this phase
    phase_s: float  # its length (0 if unknown)
    completed: int  # every correct reply so far (any phase)
    measured: int  # correct replies in the measured period so far
    errors: int
    connections: int  # open now
    rate_rps: float  # measured / seconds measured so far


def _check_reachable(cfg: LoadConfig) -> None:
    try:
        with socket.create_connection((cfg.host, cfg.port), timeout=1.0):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LoadError(f"cannot connect to {cfg.target}: {reason}") from None


def _raise_nofile(needed: int) -> None:
    """Raise the soft descriptor limit (the workers inherit it), or fail in one line."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise LoadError(
            f"{needed} file descriptors needed per worker, the hard limit is {hard}: "
            "use more --processes or raise the limit (ulimit -Hn)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _tree_uss(pid: int) -> int | None:
    """Sum of USS (memory private to the process) over the server's tree now.

    USS, not PSS, for the idle workload's per-connection figure: PSS also
    moves when *other* processes map or unmap the same libraries, which on a
    busy machine swamps a difference of a few KiB per connection.
    """
    import psutil

    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for proc in tree:
        try:
            total += proc.memory_full_info().uss
        except psutil.Error:
            continue
    return total


def run_load(
    target: str | None = None,
    *,
    config: LoadConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run one load and return the result dict (docs/RESULTS.md).

    Either ``config`` or ``target="HOST:PORT"`` plus :class:`LoadConfig`
    field names as keywords (``workload``, ``size``, ``connections``,
    ``duration``, ``warmup``, ``rate``, ``pipeline``, ``processes``,
    ``slow_clients``, ``cpus``, ``server_pid``, ``timeout``).  Raises
    ValueError for bad options, :class:`LoadError` when the target cannot be
    loaded.  On KeyboardInterrupt the workers are stopped and reaped and the
    result is returned with ``partial: true``.
    """
    if config is None:
        if target is None:
            raise ValueError("give target or config")
        from loadgen.client import parse_target

        host, port = parse_target(target, loopback_only=True)
        config = LoadConfig(host=host, port=port, **options)
    cfg = config
    cfg.validate()
    return _Run(cfg, progress).run()


class _Run:
    def __init__(self, cfg: LoadConfig, progress: Callable[[Progress], None] | None) -> None:
        self.cfg = cfg
        self.progress_cb = progress
        self.procs: list[Any] = []
        self.ctls: list[Connection] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.partial = False
        self.monitor: Any = None
        self.monitor_started = False
        self.server: dict[str, Any] | None = None
        self.t_launch = time.perf_counter()
        self.worker_errors: list[str] = []

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        _raise_nofile(cfg.connections // cfg.processes + 1 + 64)
        _check_reachable(cfg)
        token = f"{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        plan = build_plan(cfg, token)
        prepare_files(cfg, plan)
        idle_probe = cfg.server_pid is not None and cfg.workload == "idle"
        self.uss_before = _tree_uss(cfg.server_pid) if idle_probe else None  # type: ignore[arg-type]
        self.uss_after: int | None = None
        if cfg.server_pid is not None:
            from loadgen.engine.monitor import ServerMonitor

            try:
                self.monitor = ServerMonitor(cfg.server_pid)
            except ValueError as exc:
                raise LoadError(str(exc)) from None
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.shared = ctx.Array("q", cfg.processes * 4, lock=False)
        pipes = [ctx.Pipe() for _ in range(cfg.processes)]
        all_ends = [end for pair in pipes for end in pair]
        try:
            for i, (mine, theirs) in enumerate(pipes):
                slots = list(range(i, cfg.connections, cfg.processes))
                proc = ctx.Process(
                    target=_worker_entry,
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
            self.collect("result", time.monotonic() + 2.0)
        finally:
            self.reap()
        if self.monitor is not None and self.monitor_started and self.server is None:
            self.server = self.monitor.stop(self.requests_done())
        return self.aggregate()

    # -- steps ----------------------------------------------------------------

    def drive(self) -> None:
        cfg = self.cfg
        ready = self.collect("ready", time.monotonic() + cfg.ramp_limit + 2.0, phase="ramp-up")
        if len(ready) < len(self.procs):
            raise LoadError(self.worker_failure("the workers did not finish opening connections"))
        if sum(m[1] for m in ready.values()) == 0:
            errors: dict[str, int] = {}
            for m in ready.values():
                for k, v in m[2].items():
                    errors[k] = errors.get(k, 0) + v
            what = ", ".join(f"{k} {v}" for k, v in errors.items() if v) or "none connected"
            raise LoadError(f"no connection to {cfg.target} could be opened ({what})")
        t0 = time.perf_counter_ns() + 20_000_000
        for ctl in self.ctls:
            ctl.send(("start", t0))
        t_measure = t0 / 1e9 + cfg.warmup
        t_end = t_measure + cfg.duration
        self.t_measure = t_measure
        self.wait_until(t_measure, "warm-up", cfg.warmup)
        if self.monitor is not None:
            self.monitor.start()
            self.monitor_started = True
        self.wait_until(t_end, "measuring", cfg.duration)
        done = self.collect("done", time.monotonic() + 2.5, phase="collecting")
        if self.uss_before is not None:
            self.uss_after = _tree_uss(cfg.server_pid)  # type: ignore[arg-type]
        if self.monitor is not None:
            self.server = self.monitor.stop(sum(m[1] for m in done.values()))
        for ctl in self.ctls:  # the workers may close their connections now
            try:
                ctl.send(("release",))
            except OSError:
                pass
        # workers record their latencies into histograms now: allow for long runs
        self.collect("result", time.monotonic() + 5.0 + cfg.duration, phase="collecting")

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
            self.messages.setdefault(index, {})["eof"] = True
            return
        if msg[0] == "error":
            self.worker_errors.append(msg[1])
        self.messages.setdefault(index, {})[msg[0]] = msg

    def collect(self, kind: str, deadline: float, phase: str = "collecting") -> dict[int, Any]:
        """Wait (bounded) until every worker sent a message of ``kind``."""
        while True:
            have = {i: m[kind] for i, m in self.messages.items() if kind in m}
            pending = [
                c for i, c in enumerate(self.ctls)
                if i not in have and "eof" not in self.messages.get(i, {})
                and "error" not in self.messages.get(i, {})
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
                ctl.send(("stop",))
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
        return sum(m["done"][1] for m in self.messages.values() if "done" in m)

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

    # -- the result ------------------------------------------------------------------

    def aggregate(self) -> dict[str, Any]:
        cfg = self.cfg
        results = [m["result"][1] for _, m in sorted(self.messages.items()) if "result" in m]
        if not results:
            raise LoadError(self.worker_failure("no worker returned a result"))
        if len(results) < len(self.procs):
            self.partial = True
        if any(r["stopped"] for r in results):
            self.partial = True
        requests = sum(r["requests"] for r in results)
        elapsed = max(r["elapsed_s"] for r in results)
        hist = stats.merge(r["hist"] for r in results)
        unc = stats.merge(r["hist_unc"] for r in results) if cfg.rate is not None else None
        per_slot = [0] * cfg.connections
        for r in results:
            for slot, n in zip(r["slots"], r["done"], strict=True):
                per_slot[slot] = n
        normal = per_slot[cfg.slow_clients :]
        errors = dict.fromkeys(ERROR_KINDS, 0)
        for r in results:
            for k, v in r["errors"].items():
                errors[k] += v
        throughput = requests / elapsed if elapsed > 0 else 0.0
        workers = [
            {
                "cpu_util": r["cpu_util"],
                "cpu_user_s": r["cpu_user_s"],
                "cpu_system_s": r["cpu_system_s"],
                "requests": r["requests"],
                "cpu": r["cpu"],
            }
            for r in results
        ]
        cpu_total = sum(w["cpu_user_s"] + w["cpu_system_s"] for w in workers)
        reasons = [
            f"worker {r['index']} used {r['cpu_util']:.2f} of a core"
            for r in results
            if r["cpu_util"] > SATURATED_CORE
        ]
        ratio = None
        if cfg.rate is not None:
            ratio = throughput / cfg.rate
            if ratio < RATE_SHORTFALL:
                reasons.append(
                    f"achieved {throughput:.0f} req/s, {ratio:.1%} of the {cfg.rate:g} asked"
                )
        slow = None
        if cfg.slow_clients:
            slow = {
                "connections": cfg.slow_clients,
                "requests": sum(r["slow_requests"] for r in results),
                "latency_us": stats.summary(stats.merge(r["hist_slow"] for r in results)),
                "byte_interval_s": cfg.slow_byte_interval,
            }
        idle = None
        if cfg.workload == "idle":
            served = sum(r["idle_served"] for r in results)
            before, after = self.uss_before, self.uss_after
            per_conn = None
            if before is not None and after is not None and served:
                per_conn = (after - before) / served
            idle = {
                "connections": cfg.connections,
                "served": served,
                "server_uss_before_bytes": before,
                "server_uss_after_bytes": after,
                "memory_per_connection_bytes": per_conn,
            }
        malloc_how = sorted({r["malloc"] for r in results})
        return {
            "schema": SCHEMA,
            "config": {
                "target": cfg.target,
                "workload": cfg.workload,
                "size": cfg.size,
                "connections": cfg.connections,
                "duration_s": cfg.duration,
                "warmup_s": cfg.warmup,
                "rate": cfg.rate,
                "pipeline": cfg.pipeline,
                "processes": cfg.processes,
                "mode": cfg.mode,
                "slow_clients": cfg.slow_clients,
                "cpus": cfg.cpus,
                "timeout_s": cfg.timeout,
            },
            "throughput_rps": throughput,
            "requests": requests,
            "duration_s": elapsed,
            "latency_kind": "response_time" if cfg.rate is not None else "service_time",
            "latency_us": stats.summary(hist),
            "latency_us_uncorrected": stats.summary(unc) if unc is not None else None,
            "latency_out_of_range": sum(r["out_of_range"] for r in results),
            "errors": errors,
            "errors_total": sum(errors.values()),
            "reconnects": sum(r["reconnects"] for r in results),
            "fairness": stats.fairness(normal),
            "loadgen": {
                "workers": workers,
                "cpu_util_max": max(w["cpu_util"] for w in workers),
                "cpu_us_per_request": cpu_total * 1e6 / requests if requests else None,
                "saturated": bool(reasons),
                "saturation_reasons": reasons,
                "achieved_rate_ratio": ratio,
            },
            "server": self.server,
            "slow_clients": slow,
            "idle": idle,
            "environment": {
                "malloc": dict(MALLOC_ENV),
                "malloc_applied": "+".join(malloc_how),
                "malloc_env_at_start": all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()),
                "python": platform.python_version(),
                "engine": "epoll",
            },
            "partial": self.partial,
        }
