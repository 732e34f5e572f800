"""The load over UDP (issue 17): ``python -m loadgen --target udp:HOST:PORT``.

N flows (``--connections``), each its own UDP socket connected to the server
(so the kernel gives it only the server's datagrams), all driven by one
``select.epoll`` loop in this process.  Every request datagram carries, in
the first 8 bytes of its payload, its flow's sequence number; the reply
must be the OK frame carrying exactly the payload sent (a wrong byte is an
error, never a success), and the number says which request it answers:

* **answered** -- the reply to a request still waiting, within
  ``--loss-timeout`` (default 200 ms; a WORK's own time added): its latency
  is recorded;
* **lost** -- no reply within the timeout: counted, and the flow goes on
  (closed loop: its next request is sent at once);
* **late** -- a reply to a request already counted lost;
* **duplicated** -- a second reply to a request already answered (counted
  when it arrives in the measured period);
* **busy** -- ``ERROR server busy``: the server's own limit said no (not an
  error: a protected server under a flood; counted apart).

Closed loop (the default): each flow has one request in flight.  Open loop
(``--rate R``): request *k* is due at ``T + k / R`` on flow ``k mod N``,
whatever is in flight, and its latency counts from that scheduled instant
(the uncorrected figure, from the actual send, is kept beside it).  The
generator sends what it can; ``loadgen.achieved_rate_ratio`` says how much
of the rate it reached (at 4x a fast server's capacity it cannot: said, not
hidden).

Phases as the TCP engine's: traffic starts; once every flow has had one
reply (or ``--admit-timeout``), ``--warmup`` seconds are discarded; a request
belongs to the measured period when it was *sent* (closed) or *scheduled*
(open) within its ``--duration``; after it, no request is sent and the loop
waits out the loss timeout so that every request of the period has an
outcome.  The server's CPU, memory and cost counters bracket the period
(:class:`~loadgen.engine.monitor.ServerMonitor`,
:class:`~loadgen.engine.counters.CostCounters`), and so do the kernel's own UDP
counters (``/proc/net/snmp``: ``InErrors``, ``RcvbufErrors``,
``SndbufErrors``; machine-wide, so the generator's sockets are in them too).
The result is the TCP engine's :class:`~loadgen.engine.result.LoadResult`
with a ``datagram`` object (docs/RESULTS.md).  Every loop is bounded: the
run ends at its deadline whatever the server does.
"""

from __future__ import annotations

import heapq
import os
import resource
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadgen.engine import stats
from loadgen.engine.config import LoadConfig, LoadError, parse_work
from loadgen.engine.messages import WorkerResult
from loadgen.engine.process import _apply_malloc_env
from loadgen.engine.result import (
    COUNTERS_OFF,
    RATE_SHORTFALL,
    DatagramFigures,
    LoadResult,
    RunFacts,
    aggregate,
)
from loadgen.engine.worker import ERROR_KINDS
from servers.protocol import HEADER, Op, Status, encode_frame, encode_work_payload

SEQ = struct.Struct("!Q")  # the first 8 bytes of every request's data: the flow's number
BUSY = b"server busy"
SNMP = "/proc/net/snmp"
KERNEL_KEYS = ("InErrors", "RcvbufErrors", "SndbufErrors")
RECV_SIZE = 65_536
SEND_BURST = 256  # open loop: at most this many sends before the loop reads replies again
PROBE_TIMEOUT = 1.0  # s: the first ECHO must come back by then, or the target is not served


def kernel_udp_counters() -> dict[str, int] | None:
    """The kernel's UDP counters now (``/proc/net/snmp``'s ``Udp:`` lines); None if unreadable."""
    try:
        with open(SNMP) as f:
            lines = [line.split() for line in f if line.startswith("Udp:")]
    except OSError:
        return None
    if len(lines) < 2:
        return None
    names, values = lines[0][1:], lines[1][1:]
    return {k: int(v) for k, v in zip(names, values, strict=False) if k in KERNEL_KEYS}


@dataclass
class Flow:
    """One UDP socket and its requests: the sequence numbers out, lost and answered."""

    sock: socket.socket
    index: int  # in DatagramLoad.flows
    next_seq: int = 0
    # seq -> (due ns: scheduled or sent, sent ns, in the measured period)
    waiting: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    lost: dict[int, bool] = field(default_factory=dict)  # seq -> in the measured period
    answered_before: bool = False  # admitted: a reply before the period
    done: int = 0  # answered in the measured period


class DatagramLoad:
    """One run: the flows, the loop, the counts."""

    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.address = (cfg.host, cfg.port)
        self.timeout_ns = int((cfg.loss_timeout + _work_seconds(cfg)) * 1e9)
        self.data = bytearray(cfg.size)  # the request's data; its first 8 bytes the number
        self.template = _request_template(cfg)
        self.offset = len(self.template) - cfg.size  # where the data starts in a request
        self.expected_head = HEADER.pack(Status.OK, cfg.size)
        self.flows: list[Flow] = []
        self.by_fd: dict[int, Flow] = {}
        self.ep = select.epoll()
        self.deadlines: list[tuple[int, int, int]] = []  # (deadline ns, flow index, seq)
        self.lat: list[int] = []
        self.lat_unc: list[int] = []
        self.errors = dict.fromkeys(ERROR_KINDS, 0)  # busy is not one here: counts["busy"]
        self.counts = dict.fromkeys(("sent", "answered", "lost", "late", "duplicated", "busy"), 0)
        self.t_measure = 1 << 62  # perf_counter_ns(): the period, once admitted + warm-up
        self.t_end = 1 << 62
        self.sent_total = 0

    # -- set-up -------------------------------------------------------------

    def open_flows(self) -> None:
        family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        for index in range(self.cfg.connections):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.connect(self.address)
            sock.setblocking(False)
            flow = Flow(sock, index)
            self.flows.append(flow)
            self.by_fd[sock.fileno()] = flow
            self.ep.register(sock.fileno(), select.EPOLLIN)

    def probe(self) -> None:
        """One ECHO on a socket of its own: LoadError in one line if nothing answers."""
        family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            sock.connect(self.address)
            try:
                sock.send(encode_frame(Op.ECHO, b"probe"))
                sock.recv(RECV_SIZE)
            except ConnectionRefusedError:
                raise LoadError(f"nothing listens on {self.cfg.target}") from None
            except TimeoutError:
                raise LoadError(f"no reply from {self.cfg.target} within 1 s") from None

    def close(self) -> None:
        for flow in self.flows:
            flow.sock.close()
        self.ep.close()

    # -- sending ------------------------------------------------------------

    def send(self, flow: Flow, due_ns: int) -> None:
        seq = flow.next_seq
        flow.next_seq += 1
        SEQ.pack_into(self.template, self.offset, seq)
        now = time.perf_counter_ns()
        try:
            flow.sock.send(self.template)
        except BlockingIOError:
            pass  # the send buffer is full: the request is lost before it left (it counts)
        except ConnectionRefusedError:
            self.errors["refused"] += 1  # an ICMP error for an earlier datagram
        except OSError:
            self.errors["protocol"] += 1
        in_period = self.t_measure <= due_ns < self.t_end
        flow.waiting[seq] = (due_ns, now, in_period)
        heapq.heappush(self.deadlines, (now + self.timeout_ns, flow.index, seq))
        self.sent_total += 1
        if in_period:
            self.counts["sent"] += 1

    # -- receiving ----------------------------------------------------------

    def read(self, flow: Flow, closed_loop: bool) -> None:
        """Every reply queued on this flow's socket."""
        while True:
            try:
                reply = flow.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                self.errors["refused"] += 1
                return
            now = time.perf_counter_ns()
            answered = self.on_reply(flow, reply, now)
            if answered and closed_loop and now < self.t_end:
                self.send(flow, time.perf_counter_ns())

    def on_reply(self, flow: Flow, reply: bytes, now: int) -> bool:
        """Check one reply and count it; True when it settled a waiting request."""
        seq = self.sequence(reply)
        if seq is None:
            if reply[HEADER.size :] == BUSY and reply[:1] == bytes([Status.ERROR]):
                return self.on_busy(flow)
            self.errors["wrong_reply"] += 1
            return False
        request = flow.waiting.pop(seq, None)
        if request is None:
            in_period = flow.lost.pop(seq, None)
            if in_period is not None:
                if in_period:
                    self.counts["late"] += 1
            elif seq < flow.next_seq:
                if self.t_measure <= now < self.t_end:  # (a duplicate arriving in the period)
                    self.counts["duplicated"] += 1
            else:
                self.errors["wrong_reply"] += 1  # a number never sent
            return False
        due, sent, in_period = request
        if not flow.answered_before and now < self.t_measure:
            flow.answered_before = True
        if in_period:
            flow.done += 1
            self.counts["answered"] += 1
            self.lat.append(now - due)
            self.lat_unc.append(now - sent)
        return True

    def on_busy(self, flow: Flow) -> bool:
        """``ERROR server busy`` carries no number: it settles the flow's oldest request."""
        if not flow.waiting:
            self.errors["wrong_reply"] += 1
            return False
        seq = min(flow.waiting)
        _, _, in_period = flow.waiting.pop(seq)
        if in_period:
            self.counts["busy"] += 1
        return True

    def sequence(self, reply: bytes) -> int | None:
        """The number of a correct reply: the OK header, then exactly the data sent."""
        head, offset = self.expected_head, len(self.expected_head)
        if len(reply) != offset + self.cfg.size or reply[:offset] != head:
            return None
        seq = SEQ.unpack_from(reply, offset)[0]
        if reply[offset + SEQ.size :] != self.data[SEQ.size :]:
            return None
        return seq

    # -- timeouts -----------------------------------------------------------

    def expire(self, now: int, closed_loop: bool) -> None:
        """Requests past their deadline are lost; a closed-loop flow sends its next."""
        while self.deadlines and self.deadlines[0][0] <= now:
            _, index, seq = heapq.heappop(self.deadlines)
            flow = self.flows[index]
            request = flow.waiting.pop(seq, None)
            if request is None:
                continue  # answered in time
            in_period = request[2]
            flow.lost[seq] = in_period
            if in_period:
                self.counts["lost"] += 1
            if closed_loop and now < self.t_end:
                self.send(flow, now)

    # -- the loop -----------------------------------------------------------

    def loop_until(
        self,
        stop_at: int,
        schedule: Callable[[int], None] | None,
        until: Callable[[], bool] = lambda: False,
    ) -> None:
        """Read replies and expire deadlines until ``stop_at`` (perf_counter_ns) or ``until()``."""
        closed_loop = schedule is None
        poll = self.ep.poll
        by_fd = self.by_fd
        while True:
            now = time.perf_counter_ns()
            self.expire(now, closed_loop)  # before leaving too: the drain's last deadlines
            if now >= stop_at or until():
                return
            if schedule is not None:
                schedule(now)
            wake = min(stop_at, self.deadlines[0][0] if self.deadlines else stop_at)
            if schedule is not None:
                wake = min(wake, self.next_due)
            for fd, _ in poll(max(0.0, (wake - now) / 1e9)):
                self.read(by_fd[fd], closed_loop)
            self.expire(time.perf_counter_ns(), closed_loop)

    def open_schedule(self, t0: int, rate: float) -> Callable[[int], None]:
        """Request k is due at t0 + k / rate on flow k mod N (at most SEND_BURST a call)."""
        interval = 1e9 / rate
        flows = self.flows
        n = len(flows)
        self.k = 0
        self.next_due = t0

        def schedule(now: int) -> None:
            for _ in range(SEND_BURST):
                if self.next_due > now or self.next_due >= self.t_end:
                    return
                self.send(flows[self.k % n], self.next_due)
                self.k += 1
                self.next_due = t0 + int(self.k * interval)

        return schedule


def _work_seconds(cfg: LoadConfig) -> float:
    return parse_work(cfg.work)[1] / 1e6 if cfg.workload == "work" else 0.0


def _request_template(cfg: LoadConfig) -> bytearray:
    """The request datagram; its data's first 8 bytes are overwritten per send."""
    data = bytes(cfg.size)
    if cfg.workload == "work":
        kind, amount = parse_work(cfg.work)
        return bytearray(encode_frame(Op.WORK, encode_work_payload(kind, amount, data)))
    return bytearray(encode_frame(Op.ECHO, data))


def run_datagram_load(cfg: LoadConfig, progress: Any = None) -> LoadResult:
    """Run one UDP load (``cfg.udp``) and return its result; LoadError if nothing answers."""
    cfg.validate()
    run = DatagramLoad(cfg)
    run.probe()
    malloc = _apply_malloc_env()
    cpu = _pin(cfg)
    monitor = counters = None
    if cfg.server_pid is not None:
        from loadgen.engine.monitor import ServerMonitor

        try:
            monitor = ServerMonitor(cfg.server_pid)
        except ValueError as exc:
            raise LoadError(str(exc)) from None
        if cfg.counters:
            from loadgen.engine.counters import CostCounters

            counters = CostCounters(cfg.server_pid)
    run.open_flows()
    partial = False
    server: dict[str, Any] | None = None
    costs: dict[str, Any] | None = None
    kernel0 = kernel1 = None
    ru0 = ru1 = None
    admit_s: float | None = None
    t_measured = t_ended = 0
    try:
        if counters is not None:
            counters.attach()
        t0 = time.perf_counter_ns()
        schedule = run.open_schedule(t0, cfg.rate) if cfg.rate else None
        if schedule is None:
            for flow in run.flows:
                run.send(flow, t0)
        admit_end = t0 + int(cfg.admit_timeout * 1e9)
        run.loop_until(admit_end, schedule, lambda: all(f.answered_before for f in run.flows))
        if all(f.answered_before for f in run.flows):
            admit_s = (time.perf_counter_ns() - t0) / 1e9
        run.t_measure = time.perf_counter_ns() + int(cfg.warmup * 1e9)
        run.t_end = run.t_measure + int(cfg.duration * 1e9)
        run.loop_until(run.t_measure, schedule)
        if counters is not None:
            counters.start()
        if monitor is not None:
            monitor.start()
        kernel0 = kernel_udp_counters()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t_measured = time.perf_counter_ns()
        run.loop_until(run.t_end, schedule)
        t_ended = time.perf_counter_ns()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        requests = run.counts["answered"]
        if counters is not None:
            counters.pause()
        if monitor is not None:
            server = monitor.stop(requests)
        # every request of the period gets its outcome: wait out the loss timeout, send nothing
        waiting = lambda: any(f.waiting for f in run.flows)  # noqa: E731
        run.loop_until(time.perf_counter_ns() + run.timeout_ns, schedule, lambda: not waiting())
        kernel1 = kernel_udp_counters()
        if counters is not None:
            costs = _stop_counters(counters, requests)
    except KeyboardInterrupt:
        partial = True
    finally:
        if counters is not None and costs is None:
            counters.close()
        run.close()
    if ru0 is None or ru1 is None:
        ru0 = ru1 = resource.getrusage(resource.RUSAGE_SELF)
        t_ended = t_measured
    elapsed = (t_ended - t_measured) / 1e9
    if server is not None:
        reason = COUNTERS_OFF if not cfg.counters else "not measured"
        server = {**server, **(costs or _no_costs(reason))}
    worker = _worker_result(run, elapsed, ru0, ru1, malloc, cpu, partial)
    facts = RunFacts(server, None, None, partial, admit_s, 0.0)
    if monitor is not None and monitor.window is not None:
        facts.window = monitor.window
        facts.server_cpus = monitor.cpus
        facts.generator_cpus = cpu or _affinity()
    result = aggregate(cfg, [worker], facts)
    result.datagram = _figures(run, kernel0, kernel1, elapsed)
    if cfg.rate:
        _sent_rate(result, run.counts["sent"] / elapsed if elapsed > 0 else 0.0, cfg.rate)
    return result


def _sent_rate(result: LoadResult, sent_rps: float, rate: float) -> None:
    """Open loop over UDP: the rate reached is the rate *sent*.  The TCP engine's measure,
    answers ÷ rate, would call every loss a generator that fell short."""
    lg = result.loadgen
    lg.achieved_rate_ratio = sent_rps / rate
    lg.saturation_reasons = [r for r in lg.saturation_reasons if not r.startswith("achieved")]
    if lg.achieved_rate_ratio < RATE_SHORTFALL:
        lg.saturation_reasons.append(
            f"sent {sent_rps:.0f} req/s, {lg.achieved_rate_ratio:.1%} of the {rate:g} asked"
        )
    lg.saturated = bool(lg.saturation_reasons)


def _figures(
    run: DatagramLoad,
    before: dict[str, int] | None,
    after: dict[str, int] | None,
    elapsed: float,
) -> DatagramFigures:
    c = run.counts
    settled = c["answered"] + c["lost"] + c["busy"]
    kernel = {k: after[k] - before[k] for k in after if k in before} if before and after else None
    return DatagramFigures(
        flows=run.cfg.connections,
        sent=c["sent"],
        sent_rps=c["sent"] / elapsed if elapsed > 0 else 0.0,
        answered=c["answered"],
        lost=c["lost"],
        late=c["late"],
        duplicated=c["duplicated"],
        busy=c["busy"],
        lost_fraction=c["lost"] / settled if settled else None,
        loss_timeout_s=run.timeout_ns / 1e9,
        kernel=kernel,
        kernel_drops=kernel.get("InErrors") if kernel else None,
    )


def _worker_result(
    run: DatagramLoad,
    elapsed: float,
    ru0: resource.struct_rusage,
    ru1: resource.struct_rusage,
    malloc: str,
    cpu: list[int] | None,
    stopped: bool,
) -> WorkerResult:
    hist = stats.new_histogram()
    clamped = stats.record_ns(hist, run.lat)
    unc = None
    if run.cfg.rate is not None:
        h2 = stats.new_histogram()
        clamped += stats.record_ns(h2, run.lat_unc)
        unc = stats.encode(h2)
    user = ru1.ru_utime - ru0.ru_utime
    system = ru1.ru_stime - ru0.ru_stime
    n = len(run.flows)
    return WorkerResult(
        index=0,
        slots=list(range(n)),
        done=[f.done for f in run.flows],
        admitted=[int(f.answered_before or f.done > 0) for f in run.flows],
        requests=run.counts["answered"],
        elapsed_s=elapsed,
        hist=stats.encode(hist),
        hist_unc=unc,
        hist_slow=None,
        slow_requests=0,
        out_of_range=clamped,
        errors=dict(run.errors),
        reconnects=0,
        idle_served=0,
        cpu_user_s=user,
        cpu_system_s=system,
        cpu_util=(user + system) / elapsed if elapsed > 0 else 0.0,
        cpu=cpu,
        malloc=malloc,
        stopped=stopped,
    )


def _pin(cfg: LoadConfig) -> list[int] | None:
    if not cfg.cpus or not hasattr(os, "sched_setaffinity"):
        return None
    os.sched_setaffinity(0, set(cfg.cpus))
    return sorted(cfg.cpus)


def _affinity() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _stop_counters(counters: Any, requests: int) -> dict[str, Any]:
    try:
        return counters.stop(requests)
    except (RuntimeError, OSError, AssertionError) as exc:
        return _no_costs(f"counting failed: {exc}")
    finally:
        counters.close()


def _no_costs(reason: str) -> dict[str, Any]:
    keys = ("context_switches", "context_switches_per_request", "syscalls")
    keys += ("syscalls_per_request", "syscalls_by_name")
    return {**dict.fromkeys(keys), "syscalls_unavailable": reason}
