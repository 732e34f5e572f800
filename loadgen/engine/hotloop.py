"""A worker's event loop: one ``select.epoll`` over its connections until the period ends.

Why it looks the way it does: on a 2-core machine the generator shares the
CPU with the server it measures, so every microsecond it spends per request
is taken from the server.  The hot path is what a prototype that reached
~180k requests/s did: one epoll loop per process, per-connection state in
lists indexed by file descriptor (:mod:`loadgen.engine.conns`), requests
encoded before the run (:mod:`loadgen.engine.plan`), replies checked by
comparing the received bytes with the exact expected reply, one
``perf_counter_ns`` per completion, and latencies appended to a plain list
that is fed to the histogram only after the run.  Two things measured on
top of that (see docs/RESULTS.md): ``os.read`` and ``os.write`` on the
descriptor cost less Python time than the socket methods, and sending a
batch's next requests together once its replies are checked spares the
server a wake-up per request.

Everything that is not the common case is handed to the
:class:`~loadgen.engine.worker.Worker`'s methods (the general path).  This
is a function over the worker, not a method, so that the loop can be read
alone; it binds every column it touches to a local once.
"""

from __future__ import annotations

import os
import resource
import time

from loadgen.engine.conns import CONNECTING, OPEN, RECV_SIZE
from loadgen.engine.worker import _EPOLLIN, _EPOLLOUT, ADMIT_CHECK_NS, Worker, error_kind

HOUSEKEEPING_NS = 100_000_000  # 0.1 s: timeouts, progress counters


def run(w: Worker) -> None:
    """Until the end of the measured period (or a stop message, or the hard deadline)."""
    w.started = True
    now = time.perf_counter_ns()
    if now < w.t0:
        time.sleep((w.t0 - now) / 1e9)
    now = time.perf_counter_ns()
    for fd in [fd for fd in w.live if w.state[fd] == OPEN]:
        w.start_traffic(fd, now)
    w.next_housekeeping = now
    w.wake_ns = now
    ctl_fd = w.ctl.fileno()
    w.grow(ctl_fd)  # every fd epoll returns indexes the lists
    poll = w.ep.poll
    socks, exps, times, slot_of = w.socks, w.exps, w.times, w.slot_of
    fastok, got, done, pos = w.fastok, w.got, w.done, w.pos
    fast, sent_at, rlen = w.fast, w.sent_at, w.rlen
    req_of, exp_of = w.req_of, w.exp_of
    read, write = os.read, os.write
    cycles = w.plan.cycles
    lat_append = w.lat.append
    outq = w.outq
    on_event, on_data = w.on_event, w.on_data
    perf = time.perf_counter_ns
    epollin = _EPOLLIN
    buf = bytearray(RECV_SIZE)
    mv = memoryview(buf)
    measuring = False
    completed = 0
    pending: list[int] = []  # fast fds whose next request waits for the end of the batch
    later = pending.append
    while True:
        now = perf()
        if now >= w.wake_ns:
            w.completed += completed
            completed = 0
            if not tick(w, now):
                break
            measuring = w.measuring
        timeout = (w.wake_ns - now) / 1e9
        events = poll(timeout if timeout > 0 else 0)
        for fd, ev in events:
            if ev == epollin and fast[fd]:
                # The hot path: one request in flight, its state in plain lists;
                # os.read/os.write: the cheapest calls into the socket from Python.
                try:
                    data = read(fd, rlen[fd])  # one byte more than the reply: extra shows
                except OSError as exc:
                    w.fast_failed(fd, exc)
                    continue
                if data == exp_of[fd]:  # exactly the whole, correct reply
                    t = perf()
                    completed += 1
                    if measuring:
                        lat_append(t - sent_at[fd])
                    done[slot_of[fd]] += 1  # before the period too: admission
                    later(fd)  # its next request goes out after the batch (below)
                elif not data:
                    w.break_conn(fd, "reset")
                else:
                    w.unfast(fd)
                    on_data(fd, data)
                continue
            s = socks[fd]
            if s is None:
                if fd == ctl_fd:
                    w.on_control()  # the period's start, or stop
                continue
            if fast[fd]:
                w.unfast(fd)
            if ev != epollin:
                on_event(fd, ev)
                continue
            try:
                n = s.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError as exc:
                w.break_conn(fd, error_kind(exc))
                continue
            if n == 0:
                w.break_conn(fd, "reset")
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
                    w.write(fd, req)
                    continue
                try:
                    sent = s.send(req)
                except OSError as exc:
                    if isinstance(exc, BlockingIOError):
                        sent = 0
                    else:
                        w.break_conn(fd, error_kind(exc))
                        continue
                if sent != len(req):
                    outq[fd] += req[sent:]
                    w.ep.modify(fd, _EPOLLIN | _EPOLLOUT)
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
                    w.fast_failed(fd, exc, req)
                    continue
                if sent != len(req):
                    w.fast_failed(fd, None, req[sent:])
            step = (perf() - t_a) // len(pending)
            if step:
                for fd in pending:
                    sent_at[fd] = t_a
                    t_a += step
            pending.clear()
        if w.stop_requested:
            w.completed += completed
            w.measure_end_seen = perf()
            w.ru1 = resource.getrusage(resource.RUSAGE_SELF)
            w.measuring = False
            break


def tick(w: Worker, now: int) -> bool:
    """Phase changes, timers, housekeeping.  False when the loop must end."""
    if w.measure_start_seen == 0:
        if now >= w.t_measure:
            w.begin_measuring(now)
        elif not w.admit_sent:
            w.check_admitted(now)
    if now >= w.t_end or now >= w.deadline:
        w.measure_end_seen = now
        w.ru1 = resource.getrusage(resource.RUSAGE_SELF)
        w.measuring = False
        return False
    w.run_timers(now)
    if now >= w.next_housekeeping:
        housekeeping(w, now)
        w.next_housekeeping = now + HOUSEKEEPING_NS
    wake = min(w.next_housekeeping, w.t_end, w.deadline)
    if not w.measuring:
        wake = min(wake, w.t_measure)
        if not w.admit_sent:
            wake = min(wake, now + ADMIT_CHECK_NS)
    if w.timers:
        wake = min(wake, w.timers[0][0])
    w.wake_ns = wake
    return True


def housekeeping(w: Worker, now: int) -> None:
    """Break connections whose oldest request (or connect) is older than the timeout.

    A connection whose slot was never served is left waiting: the server has
    not admitted it (a blocking loop's backlog, a full process table), which
    the result reports as ``fairness.not_admitted`` -- a limit of the model,
    not a reply that went missing.
    """
    limit = now - w.timeout_ns  # the reply timeout, WORK's own time included
    for fd in list(w.live):
        if w.socks[fd] is None:
            continue
        if w.state[fd] == CONNECTING:
            if w.opened_at[fd] < now - w.connect_timeout_ns:
                w.break_conn(fd, "timeout")
            continue
        if w.never_served(w.slot_of[fd]):
            continue
        if w.fast[fd]:
            if w.sent_at[fd] < limit:
                w.unfast(fd)
                w.break_conn(fd, "timeout")
            continue
        if w.is_slow[w.slot_of[fd]]:
            # a slow request's clock for the timeout starts at its last byte
            dripping = w.drip_pos[fd] < len(w.drip[fd])
            if w.times[fd] and not dripping and w.drip_last[fd] < limit:
                w.break_conn(fd, "timeout")
            continue
        # since the request left (a neighbour's is closed loop: its send time is in times)
        open_loop = w.open_loop and not w.is_neighbour[w.slot_of[fd]]
        q = w.actual[fd] if open_loop else w.times[fd]
        if q and q[0] < limit:
            w.break_conn(fd, "timeout")
    p = w.progress
    if p is not None:
        base = w.index * 4
        p[base] = w.completed
        p[base + 1] = w.victims_done() if w.measure_start_seen else 0  # before: admission
        p[base + 2] = sum(w.errors.values())
        p[base + 3] = len(w.live)
