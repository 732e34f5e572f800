"""A worker's per-connection state, in one place: columns indexed by slot or by descriptor.

Two tables.  *Slots* are the run's connection numbers (0 .. connections-1;
slots below ``slow_clients`` are the slow ones, slots below ``neighbours`` the
neighbours: the two do not combine); a slot keeps its counters across
reconnects.  *Descriptors* are the sockets open now; their columns
are lists indexed by the file descriptor, grown on demand, so the hot loop
finds a connection's state with one list index per column.

Why columns (one list per field) rather than one slotted record per
descriptor: a ``timeit`` micro-benchmark of the hot path's access pattern
(per completion: read ``fast``, ``rlen``, ``exp_of``, ``sent_at``,
``slot_of``; then ``req_of`` and a store to ``sent_at``; 64 connections;
CPython 3.11) gave 99.5 ns per completion for columns hoisted into locals
against 105-112 ns for ``conns[fd].field`` on a ``__slots__`` record.  The
loop in :mod:`loadgen.engine.hotloop` binds each column to a local once.
"""

from __future__ import annotations

import socket
from collections import deque

from loadgen.engine.config import LoadConfig
from loadgen.engine.plan import Plan

RECV_SIZE = 64 * 1024  # under glibc's 128 KiB mmap threshold (see procs.MALLOC_ENV)

# ``state`` column
CLOSED, CONNECTING, OPEN = 0, 1, 2


class ConnTable:
    """The columns.  :class:`~loadgen.engine.worker.Worker` is a table plus the loop."""

    def __init__(self, cfg: LoadConfig, plan: Plan) -> None:
        n = cfg.connections
        # -- per slot (fixed size) ------------------------------------------------
        self.done = [0] * n  # completions in the measured period
        self.pos = [0] * n  # position in the cycle / open-loop requests sent
        self.is_slow = [slot < cfg.slow_clients for slot in range(n)]
        # neighbours send their WORK beside the workload; their replies are counted apart,
        # on the general path (Worker.complete), never on the hot path's victims' lists
        self.is_neighbour = [slot < cfg.neighbours for slot in range(n)]
        # slots whose every request can take the hot path (see Worker.go_fast);
        # replies of RECV_SIZE or more take the general path: its reads stay under 128 KiB
        simple = (
            cfg.rate is None and cfg.pipeline == 1 and cfg.workload not in ("churn", "idle", "c10k")
        )
        self.fast_slot = [
            simple
            and not self.is_slow[slot]
            and not self.is_neighbour[slot]
            and len(plan.cycles[slot]) == 1
            and len(plan.cycles[slot][0][1]) < RECV_SIZE
            for slot in range(n)
        ]
        self.phase_ns = [0] * n  # open loop: this slot's offset in the schedule
        self.open_sent = [0] * n  # open loop: requests sent so far (the credit counter)
        self.idle_ok = [0] * n  # idle: 1 once the slot's first ECHO was answered
        # -- per file descriptor (grown by grow()) --------------------------------
        self.socks: list[socket.socket | None] = []
        self.slot_of: list[int] = []
        self.state: list[int] = []  # CLOSED, CONNECTING, OPEN
        self.opened_at: list[int] = []  # when the connect started (timeout, churn latency)
        self.gen: list[int] = []  # bumped when the fd is closed: its timers are stale
        # the general path: any number of requests in flight, replies in any pieces
        self.times: list[deque[int]] = []  # scheduled send times of requests in flight
        self.actual: list[deque[int]] = []  # actual send times (open loop)
        self.exps: list[deque[bytes]] = []  # expected replies of requests in flight
        self.got: list[int] = []  # bytes of the current reply received (and matched) so far
        self.outq: list[bytearray] = []  # bytes the socket would not take yet
        self.fastok: list[bool] = []  # a whole reply in one read may skip on_data
        self.sched_at: list[int] = []  # open loop: when the pending schedule timer fires
        # slow clients: the request being dripped, the next byte, when the last one went
        self.drip: list[bytes] = []
        self.drip_pos: list[int] = []
        self.drip_last: list[int] = []
        # the hot path: fast[fd] means "one request in flight, sent at sent_at[fd],
        # its reply must be exactly exp_of[fd]"; anything unusual moves it to the deques
        self.fast: list[bool] = []
        self.sent_at: list[int] = []
        self.req_of: list[bytes] = []
        self.exp_of: list[bytes] = []
        self.rlen: list[int] = []  # bytes to read = reply length + 1 (extra bytes show)

    def grow(self, fd: int) -> None:
        """Make every descriptor column long enough to index ``fd``."""
        extra = fd + 1 - len(self.socks)
        if extra <= 0:
            return
        extra = max(extra, 64)
        self.socks += [None] * extra
        self.slot_of += [-1] * extra
        self.state += [CLOSED] * extra
        self.opened_at += [0] * extra
        self.gen += [0] * extra
        self.times += [deque() for _ in range(extra)]
        self.actual += [deque() for _ in range(extra)]
        self.exps += [deque() for _ in range(extra)]
        self.got += [0] * extra
        self.outq += [bytearray() for _ in range(extra)]
        self.fastok += [False] * extra
        self.sched_at += [0] * extra
        self.drip += [b""] * extra
        self.drip_pos += [0] * extra
        self.drip_last += [0] * extra
        self.fast += [False] * extra
        self.sent_at += [0] * extra
        self.req_of += [b""] * extra
        self.exp_of += [b""] * extra
        self.rlen += [0] * extra

    def forget(self, fd: int) -> None:
        """The descriptor was closed: empty its row (its number will be reused)."""
        self.socks[fd] = None
        self.state[fd] = CLOSED
        self.fast[fd] = False
        self.gen[fd] += 1
        self.times[fd].clear()
        self.actual[fd].clear()
        self.exps[fd].clear()
        self.got[fd] = 0
        del self.outq[fd][:]
        self.drip[fd] = b""
