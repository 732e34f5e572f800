"""One worker's connections: open them, send, check every reply, keep time.

A :class:`Worker` lives in one forked process (:mod:`loadgen.engine.process`)
and owns its share of the connections (slot *i* goes to worker *i* mod N).
Its state is the columns of :class:`~loadgen.engine.conns.ConnTable`; its
loop is :func:`loadgen.engine.hotloop.run`, which handles the common case
(one request in flight, the whole reply in one read) itself and calls the
methods here for everything else: connects, partial writes, replies split
or joined in any way, pipelining, slow clients, neighbours, the open-loop
schedule, timers and timeouts.

Neighbours (``--neighbours N``): the first N slots send their WORK back to
back, one in flight, closed loop whatever the mode; their replies take the
general path and are recorded apart (``neighbour_lat``), as slow clients'
are, so the headline figures are the other slots' ("the victims'").

Closed loop (default): each connection keeps ``pipeline`` requests in flight;
latency is service time.  Open loop (``rate``): each connection has a fixed
schedule (interval ``connections / rate``, its own phase) and a credit
counter: whenever the loop wakes, it sends every request whose scheduled
time has passed, so a stall is followed by a burst, as real independent
clients would do.  Latency is measured from the *scheduled* send time (as
wrk2 does, so a stalled server shows in the percentiles) and from the actual
send time ("uncorrected") too.

Every loop is bounded in time: a worker stops at its hard deadline whatever
the server does.
"""

from __future__ import annotations

import errno
import heapq
import resource
import select
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from loadgen.engine.config import LoadConfig
from loadgen.engine.conns import CONNECTING, OPEN, RECV_SIZE, ConnTable
from loadgen.engine.messages import Admitted, Window
from loadgen.engine.plan import Plan
from servers.protocol import BUSY_REPLY

ERROR_KINDS = ("refused", "reset", "timeout", "protocol", "wrong_reply", "busy")
RAMP_BATCH = 128  # connections opened at once; the server's listen backlog is small
RECONNECT_DELAY_NS = 10_000_000  # 10 ms: so a refusing server does not make us spin
ADMIT_CHECK_NS = 10_000_000  # 10 ms: how often a worker checks its connections' first replies
NEVER = 1 << 62  # a perf_counter_ns() instant no run reaches: the period before Window sets it
# timer kinds: (when ns, kind, fd or slot, the fd's generation)
T_SCHEDULE, T_DRIP, T_RECONNECT = 0, 1, 2

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLL_BAD = select.EPOLLERR | select.EPOLLHUP


def error_kind(exc: OSError) -> str:
    """The ``errors`` key an OSError on a connection counts as."""
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in (errno.ETIMEDOUT,):
        return "timeout"
    return "reset"


def _resolve(cfg: LoadConfig) -> tuple[socket.AddressFamily, Any]:
    """The socket family and address every connect uses: a host name is looked up once,
    here, not on every connect (churn would pay a blocking lookup per request)."""
    if cfg.unix is not None:
        return socket.AF_UNIX, cfg.unix
    family, _, _, _, address = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)[0]
    return family, address


class Worker(ConnTable):
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
        super().__init__(cfg, plan)
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
        self.idle = cfg.workload in ("idle", "c10k")  # one ECHO per connection, then quiet
        self.first_round = cfg.workload == "c10k"  # ... whose latency is recorded
        self.family, self.address = _resolve(cfg)
        self.connect_timeout_ns = int(cfg.timeout * 1e9)
        self.timeout_ns = int(cfg.work_timeout * 1e9)  # a WORK's own time is not lateness
        self.slow_gap_ns = int(cfg.slow_byte_interval * 1e9)
        self.interval_ns = 0
        if self.open_loop:
            assert cfg.rate is not None
            self.interval_ns = max(1, int(cfg.normal_connections / cfg.rate * 1e9))
            n = cfg.connections
            for k, slot in enumerate(range(cfg.first_normal, n)):
                self.phase_ns[slot] = self.interval_ns * k // max(1, cfg.normal_connections)
        self.live: set[int] = set()  # descriptors open or connecting
        self.stop_requested = False
        # counters
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.reconnects = 0
        self.completed = 0  # all completions, any phase (progress line)
        self.idle_served = 0
        self.lat: list[int] = []
        self.lat_unc: list[int] = []
        self.slow_lat: list[int] = []
        self.slow_done = 0
        self.neighbour_lat: list[int] = []
        self.neighbour_done = 0  # the neighbours' completions in the measured period
        # time
        self.timers: list[tuple[int, int, int, int]] = []  # (when ns, kind, fd/slot, gen)
        self.started = False
        self.finishing = False
        self.measuring = False
        self.t0 = 0
        self.t_measure = NEVER  # set by the parent's Window once every worker is admitted
        self.t_end = NEVER
        # admission: the slots (neighbours too) that must complete a first request before
        # the period: the window starts once the neighbours' work is flowing as well
        self.must_admit = [slot for slot in slots if not self.is_slow[slot]]
        self.admit_sent = False
        self.admitted = [0] * cfg.connections  # per slot, fixed when the period starts
        self.deadline = 0
        self.measure_start_seen = 0
        self.measure_end_seen = 0
        self.next_housekeeping = 0
        self.wake_ns = 0
        self.ru0: resource.struct_rusage | None = None
        self.ru1: resource.struct_rusage | None = None
        self.ep = select.epoll()

    # -- connections ----------------------------------------------------------

    def open_conn(self, slot: int) -> None:
        """Start a non-blocking connect for ``slot``; completion arrives as EPOLLOUT."""
        try:
            sock = socket.socket(self.family)
        except OSError:
            self.errors["refused"] += 1  # out of descriptors: no connection for this slot now
            self.reconnect_later(slot)
            return
        sock.setblocking(False)
        if self.family != socket.AF_UNIX:  # a Unix socket has no Nagle to turn off
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = sock.fileno()
        self.grow(fd)
        self.socks[fd] = sock
        self.slot_of[fd] = slot
        self.state[fd] = CONNECTING
        self.opened_at[fd] = time.perf_counter_ns()
        apart = self.is_slow[slot] or self.is_neighbour[slot]  # recorded in complete()
        self.fastok[fd] = not (self.open_loop or self.churn or self.idle or apart)
        self.live.add(fd)
        err = sock.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS):
            # A Unix socket's connect completes at once, or fails with EAGAIN when the
            # server's backlog is full (TCP would wait in EINPROGRESS): refused, retried.
            refused = err in (errno.ECONNREFUSED, errno.EAGAIN)
            self.break_conn(fd, "refused" if refused else "reset")
            return
        self.ep.register(fd, _EPOLLOUT)

    def on_connected(self, fd: int) -> None:
        sock = self.socks[fd]
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.break_conn(fd, error_kind(OSError(err, "connect")))
            return
        self.state[fd] = OPEN
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
                self.reconnect_later(slot)
            else:
                self.open_conn(slot)

    def reconnect_later(self, slot: int) -> None:
        """Reopen ``slot`` after a pause: a refusing server must not make us spin."""
        self.push_timer(time.perf_counter_ns() + RECONNECT_DELAY_NS, T_RECONNECT, slot, -1)

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
        self.forget(fd)
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
            while any(self.state[fd] == CONNECTING for fd in self.live):
                left = (deadline - time.perf_counter_ns()) / 1e9
                if left <= 0:
                    break
                for fd, ev in self.ep.poll(min(left, 0.1)):
                    if fd == self.ctl.fileno():
                        return  # stop (or the parent died) during the ramp
                    if self.state[fd] == CONNECTING:
                        self.on_connected(fd)
                    elif ev & _EPOLL_BAD:
                        self.break_conn(fd, "reset")
            if time.perf_counter_ns() >= deadline:
                break
        # what did not connect in time counts as a timeout and is not retried
        for fd in [fd for fd in self.live if self.state[fd] == CONNECTING]:
            self.errors["timeout"] += 1
            self.close_fd(fd)

    # -- traffic ---------------------------------------------------------------

    def start_traffic(self, fd: int, now: int) -> None:
        """A connection is open and the run has started: begin its requests."""
        slot = self.slot_of[fd]
        if self.is_slow[slot]:
            self.start_drip(fd, now)
        elif self.is_neighbour[slot]:
            self.send_next(fd, now)  # one in flight, the next when it is answered
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
            self.break_conn(fd, error_kind(exc))
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
            self.break_conn(fd, error_kind(exc))
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
        self.push_timer(now, T_DRIP, fd, self.gen[fd])

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
            self.push_timer(now + self.slow_gap_ns, T_DRIP, fd, self.gen[fd])

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
                self.push_timer(when, T_SCHEDULE, fd, self.gen[fd])
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
            if kind == T_RECONNECT:
                if not self.finishing:
                    self.open_conn(ref)
                continue
            if gen != self.gen[ref] or self.socks[ref] is None:
                continue  # the connection closed since
            if kind == T_SCHEDULE:
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
                self.break_conn(fd, self.classify(data, i, got))
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

    def classify(self, data: bytes | memoryview, i: int, got: int) -> str:
        """A reply that differs from the expected one, starting at ``data[i]``.

        The server's ``ERROR server busy`` (its client limit turned this
        connection away) is "busy"; a malformed frame is "protocol"; any other
        wrong reply is "wrong_reply".  ``got``: bytes of the reply already matched.
        """
        if self.framed and got == 0:
            if data[i : i + len(BUSY_REPLY)] == BUSY_REPLY:
                return "busy"
            if data[i] not in (0, 1):
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
        if self.is_neighbour[slot]:
            if self.measuring:
                self.neighbour_lat.append(now - sent_at)
                self.neighbour_done += 1
            self.done[slot] += 1  # admission; the result keeps neighbours' slots apart
            self.send_next(fd, now)
            return
        if self.measuring:
            self.lat.append(now - sent_at)
            if self.open_loop:
                self.lat_unc.append(now - self.actual[fd].popleft())
        elif self.open_loop:
            self.actual[fd].popleft()
        self.done[slot] += 1  # before the period: admission (begin_measuring resets it)
        if self.open_loop:
            self.on_schedule(fd, now)
        elif self.churn:
            self.break_conn(fd, None)  # close and open a new connection
        elif self.idle:
            self.idle_served += 1
            self.idle_ok[slot] = 1
            if self.first_round and not self.measuring:
                self.lat.append(now - sent_at)  # c10k: the round of one ECHO each
        elif not self.go_fast(fd, now):
            self.send_next(fd, now)

    def on_event(self, fd: int, ev: int) -> None:
        """Anything but plain readable data: connect done, output room, error."""
        if self.state[fd] == CONNECTING:
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
                self.break_conn(fd, error_kind(exc))
                return
            if not data:
                self.break_conn(fd, "reset")
                return
            self.on_data(fd, data)

    # -- the hot path's bookkeeping (columns: see conns.ConnTable) -------------

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
            self.break_conn(fd, error_kind(exc))
            return
        self.outq[fd] += unsent  # the socket took part of it (or none): wait for room
        self.ep.modify(fd, _EPOLLIN | _EPOLLOUT)

    # -- admission and the measured period ---------------------------------------

    def is_admitted(self, slot: int) -> bool:
        """The slot completed a request (open loop: or has not asked anything yet)."""
        if self.done[slot] > 0:
            return True
        return self.open_loop and not self.is_neighbour[slot] and self.open_sent[slot] == 0

    def victims_done(self) -> int:
        """Completions of the headline's slots in the period: not the neighbours'."""
        return sum(self.done) - self.neighbour_done

    def never_served(self, slot: int) -> bool:
        """No reply ever came on this slot: before the period, or since it started."""
        return not (self.done[slot] or self.admitted[slot])

    def check_admitted(self, now: int) -> None:
        """Tell the parent, once, that every normal connection completed a first request."""
        if all(self.is_admitted(slot) for slot in self.must_admit):
            self.admit_sent = True
            self.ctl.send(Admitted(now))

    def begin_measuring(self, now: int) -> None:
        """The period starts: fix which slots were admitted, count from zero from now on."""
        for slot in self.must_admit:
            self.admitted[slot] = int(self.is_admitted(slot))
        self.done[:] = [0] * len(self.done)  # in place: the hot loop holds this list
        self.measuring = True
        self.measure_start_seen = now
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)

    def on_control(self) -> None:
        """The parent wrote: the measured period's start (Window), or stop (Stop, EOF)."""
        try:
            msg = self.ctl.recv()
        except (EOFError, OSError):
            msg = None
        if isinstance(msg, Window) and not self.measure_start_seen:
            self.t_measure = msg.t_measure_ns
            self.t_end = self.t_measure + int(self.cfg.duration * 1e9)
            self.deadline = self.t_end + int(1.5e9)
            self.wake_ns = 0  # let tick() take the new instants into account
            return
        self.finishing = True
        self.stop_requested = True

    def measuring_elapsed_ns(self) -> int:
        if not self.measure_start_seen:
            return 0
        return max(0, self.measure_end_seen - self.measure_start_seen)
