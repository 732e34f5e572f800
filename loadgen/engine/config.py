"""What one load run does, and its command line: the contract between the suite and the engine.

:class:`LoadConfig` is parsed from ``python -m loadgen``'s arguments
(:func:`build_parser`, :meth:`LoadConfig.from_args`) and turned back into
them (:meth:`LoadConfig.to_argv`) by the suite, which runs the engine as a
subprocess (isolation, its own CPU).  Both directions live here, so
``--connections`` can be followed from a scenario to the worker by reading
one file; a test checks ``from_args(parse(to_argv(cfg))) == cfg``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, fields
from typing import NoReturn

from loadgen.client import (
    DATAGRAM_TIMEOUT,
    UDP_PREFIX,
    Address,
    format_address,
    is_loopback,
    parse_address,
    parse_udp_target,
)
from servers.protocol import MAX_DATAGRAM_PAYLOAD, WORK_HEADER

# c10k: idle, but the one ECHO every connection sends once they are all open is timed
# (latency_us is that round's; loadgen.ramp_s the time to open them all);
# work: every request is a WORK (--work KIND:AMOUNT) carrying --size bytes back
WORKLOADS = ("echo", "raw", "get", "put", "mixed", "churn", "idle", "c10k", "work")
WORK_KINDS = ("wait", "compute", "block", "offload")  # WorkKind 1..4, in order
MAX_AMOUNT = 0xFFFFFFFF  # WORK's amount is a uint32
PROG = "python -m loadgen"


class LoadError(Exception):
    """The run could not be made (unreachable target, no connection); one-line message."""


def parse_work(spec: str) -> tuple[int, int]:
    """``"KIND:AMOUNT"`` -> (WorkKind number, amount); ValueError with a one-line message.

    KIND is wait|compute|block|offload; AMOUNT is µs (compute: units, about
    1 µs each here), a whole number that fits WORK's uint32.
    """
    kind, sep, amount = spec.partition(":")
    if not sep or kind not in WORK_KINDS or not amount.isdigit():
        raise ValueError(
            f"work must be KIND:AMOUNT with KIND one of {'|'.join(WORK_KINDS)} and AMOUNT "
            f"a whole number of µs (compute: units), e.g. wait:1000; got {spec!r}"
        )
    if int(amount) > MAX_AMOUNT:
        raise ValueError(f"work amount must be <= {MAX_AMOUNT} (a uint32), got {spec!r}")
    return WORK_KINDS.index(kind) + 1, int(amount)


@dataclass
class LoadConfig:
    """What to run, against ``host``:``port`` (any host) or the Unix socket ``unix``."""

    host: str  # "" with unix
    port: int  # 0 with unix
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
    timeout: float = 2.0  # a reply later than this (+ WORK's own time) breaks the connection
    admit_timeout: float = 2.0  # wait at most this long for every connection's first reply
    counters: bool = True  # with server_pid: context switches and system calls per request
    start_at: float | None = None  # epoch seconds: traffic starts then (several load hosts)
    unix: str | None = None  # the path of a Unix domain socket to load instead of host:port
    work: str = "wait:1000"  # workload work: what every request asks (KIND:AMOUNT)
    # The first `neighbours` slots send WORK `neighbour_work` back to back (closed loop, one
    # in flight) beside the others ("the victims"), who run the workload; the result's
    # headline figures are the victims', the neighbours' are apart (like slow clients').
    neighbours: int = 0
    neighbour_work: str | None = None
    # a datagram server (--target udp:HOST:PORT, issue 17): N flows, each its own UDP socket
    # (loadgen.engine.datagram); a reply not back within loss_timeout is counted lost
    udp: bool = False
    loss_timeout: float = DATAGRAM_TIMEOUT

    def __post_init__(self) -> None:
        if self.workload == "slow":  # ECHO where some connections are slow
            self.workload = "echo"
            if not self.slow_clients:
                self.slow_clients = max(1, self.connections // 8)

    @property
    def mode(self) -> str:
        return "open" if self.rate else "closed"

    @property
    def address(self) -> Address:
        """What ``connect`` takes: ``(host, port)``, or the Unix socket's path."""
        return self.unix if self.unix is not None else (self.host, self.port)

    @property
    def target(self) -> str:
        """``HOST:PORT``, ``unix:PATH`` or ``udp:HOST:PORT``, as ``--target`` takes it."""
        text = format_address(self.address)
        return UDP_PREFIX + text if self.udp else text

    @property
    def remote(self) -> bool:
        """A TCP target on another machine (said plainly at start: load leaves this one)."""
        return self.unix is None and not is_loopback(self.host)

    @property
    def normal_connections(self) -> int:
        """The connections the headline figures cover: neither slow nor neighbours."""
        return self.connections - self.slow_clients - self.neighbours

    @property
    def first_normal(self) -> int:
        """The first normal slot: slow clients, then neighbours, come first."""
        return self.slow_clients + self.neighbours

    @property
    def work_timeout(self) -> float:
        """``timeout`` plus the longest WORK of the run, in seconds: the reply limit.

        The server's work is not a late reply: a WORK reply may come its own
        duration after the request, and a victim may wait out a neighbour's
        compute or block on a single-threaded model, which is what is being
        measured, not a failure.  A compute unit counts as 1 µs (about one here).
        """
        amounts = [parse_work(self.work)[1]] if self.workload == "work" else []
        if self.neighbours and self.neighbour_work is not None:
            amounts.append(parse_work(self.neighbour_work)[1])
        return self.timeout + max(amounts, default=0) / 1e6

    @property
    def ramp_limit(self) -> float:
        """Seconds allowed for opening every connection before the start: 12 s for c10k's
        10,000 (gevent took 4 s to accept them on a busy 2-core machine)."""
        return 2.0 + self.connections / 1000

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
            (self.admit_timeout > 0, "admit-timeout must be > 0"),
            (self.processes <= self.connections, "processes must be <= connections"),
            (self.start_at is None or self.start_at > 0, "start-at must be epoch seconds > 0"),
            (
                self.work == "wait:1000" or self.workload == "work",
                "--work is for --workload work (the neighbours' is --neighbour-work)",
            ),
        ]
        checks += self._neighbour_checks()
        if self.udp:
            checks += self._datagram_checks()
        if self.workload in ("churn", "idle", "c10k"):
            checks.append((self.rate is None, f"{self.workload} runs closed loop only (no --rate)"))
            checks.append((self.pipeline == 1, f"{self.workload} has no --pipeline"))
            checks.append((self.slow_clients == 0, f"{self.workload} has no slow clients"))
        if self.workload in ("get", "put", "mixed"):
            checks.append((self.size >= 1, f"{self.workload} needs --size >= 1"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.workload == "work":
            parse_work(self.work)
        if self.neighbour_work is not None:
            parse_work(self.neighbour_work)
        if self.cpus is not None:
            if not self.cpus:
                raise ValueError("cpus must name at least one CPU")
            if hasattr(os, "sched_getaffinity"):
                usable = os.sched_getaffinity(0)
                missing = [c for c in self.cpus if c not in usable]
                if missing:
                    raise ValueError(f"cpu(s) {missing} not available (usable: {sorted(usable)})")

    def _neighbour_checks(self) -> list[tuple[bool, str]]:
        if not self.neighbours and self.neighbour_work is None:
            return []
        return [
            (self.neighbours >= 0, "neighbours must be >= 0"),
            (self.neighbours < self.connections, "neighbours must be < connections"),
            (self.neighbour_work is not None, "--neighbours needs --neighbour-work KIND:AMOUNT"),
            (self.neighbours > 0, "--neighbour-work needs --neighbours N (N >= 1)"),
            (self.slow_clients == 0, "neighbours and slow clients do not combine"),
            (
                self.workload not in ("raw", "churn", "idle", "c10k"),
                f"{self.workload} has no neighbours (they send framed WORK beside requests)",
            ),
        ]

    def _datagram_checks(self) -> list[tuple[bool, str]]:
        """A UDP load: echo or work, one in flight per flow (closed) or a rate (open)."""
        most = MAX_DATAGRAM_PAYLOAD - (WORK_HEADER.size if self.workload == "work" else 0)
        return [
            (self.workload in ("echo", "work"), "over UDP the workload is echo or work"),
            (8 <= self.size <= most, f"over UDP --size must be 8..{most} (a sequence number)"),
            (self.unix is None, "udp: and unix: are two targets"),
            (is_loopback(self.host), "UDP load is sent to this machine only (loopback)"),
            (self.pipeline == 1, "over UDP each flow has one request in flight (no --pipeline)"),
            (self.processes == 1, "over UDP one process drives every flow (no --processes)"),
            (not self.slow_clients and not self.neighbours, "no slow clients or neighbours: UDP"),
            (self.loss_timeout > 0, "loss-timeout must be > 0"),
        ]

    # -- the command line, both ways ------------------------------------------

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoadConfig:
        """The config :func:`build_parser`'s namespace describes (ValueError if malformed)."""
        udp = parse_udp_target(args.target)
        address = udp or parse_address(args.target)
        host, port = ("", 0) if isinstance(address, str) else address
        return cls(
            udp=udp is not None,
            loss_timeout=args.loss_timeout,
            host=host,
            port=port,
            unix=address if isinstance(address, str) else None,
            workload=args.workload,
            size=args.size,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            rate=args.rate,
            pipeline=args.pipeline,
            processes=args.processes,
            slow_clients=args.slow_clients or 0,
            cpus=parse_cpus(args.cpus) if args.cpus else None,
            server_pid=args.server_pid,
            timeout=args.timeout,
            admit_timeout=args.admit_timeout,
            counters=args.counters,
            start_at=args.start_at,
            work=args.work,
            neighbours=args.neighbours,
            neighbour_work=args.neighbour_work,
        )

    def to_argv(self) -> list[str]:
        """The options that :meth:`from_args` turns back into this config.

        Only options that differ from the defaults are written, in the order
        of the fields; floats with ``repr`` so they survive the round trip.
        ``slow_byte_interval`` has no option: ValueError unless it is the default.
        """
        argv = ["--target", self.target]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("host", "port", "unix", "udp") or value == f.default:
                continue
            if f.name == "slow_byte_interval":
                raise ValueError("slow_byte_interval has no command-line option")
            if f.name == "counters":  # a flag: only its non-default form is written
                argv.append("--no-counters")
                continue
            if f.name == "cpus":
                text = ",".join(map(str, value))
            else:
                text = repr(value) if isinstance(value, float) else str(value)
            argv += [f"--{f.name.replace('_', '-')}", text]
        return argv


def parse_cpus(text: str) -> list[int]:
    """``"1"``, ``"0,1"``, ``"2-3"`` -> a list of CPU numbers; ValueError if malformed."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r} (want e.g. 1 or 0,1 or 0-3)")
        cpus.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    return cpus


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: how every bad argument ends."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the whole usage text
        fail(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """``python -m loadgen``'s options: every :class:`LoadConfig` field, plus ``--json``/``-q``."""
    p = _Parser(prog=PROG, description="Load one server of the suite and measure it.")
    p.add_argument(
        "--target",
        required=True,
        help="HOST:PORT of the server (any host; load leaves this machine only if you say so), "
        "unix:PATH for a Unix domain socket, or udp:HOST:PORT for a datagram server (loopback "
        "only: --connections flows, each its own socket)",
    )
    p.add_argument(
        "--workload",
        choices=WORKLOADS + ("slow",),
        default="echo",
        help="what each connection does (default echo); 'slow' = echo with --slow-clients; "
        "'work' = WORK requests (--work), each carrying --size bytes the reply returns",
    )
    p.add_argument(
        "--work",
        default="wait:1000",
        metavar="KIND:AMOUNT",
        help="with --workload work: KIND wait|compute|block|offload, AMOUNT in µs (compute: "
        "units of the server's kernel, about 1 µs each); default wait:1000",
    )
    p.add_argument("--size", type=int, default=64, help="payload / file bytes (default 64)")
    p.add_argument("--connections", "-c", type=int, default=64, help="connections (default 64)")
    p.add_argument("--duration", "-d", type=float, default=3.0, help="measured seconds (3)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, discarded (1)")
    p.add_argument("--rate", type=float, default=None, help="open loop: total requests/s")
    p.add_argument(
        "--pipeline", type=int, default=1, help="closed loop: requests in flight per conn"
    )
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--server-pid", type=int, default=None, help="measure this process tree")
    p.add_argument(
        "--slow-clients",
        type=int,
        default=None,
        help="this many connections send one byte every 5 ms (default 0; 'slow' workload: 1/8)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=0,
        metavar="N",
        help="the first N connections send --neighbour-work back to back (one in flight) "
        "beside the others, who run the workload; the headline figures are the others' "
        "(the victims'), the neighbours' are reported apart (default 0)",
    )
    p.add_argument(
        "--neighbour-work",
        default=None,
        metavar="KIND:AMOUNT",
        help="what the neighbours send, as --work, e.g. compute:20000 (about 20 ms of CPU)",
    )
    p.add_argument("--cpus", default=None, help="pin the workers, e.g. '1' or '0,1' or '2-3'")
    p.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        help="reply timeout in seconds (2); with WORK (--workload work or --neighbours) the "
        "longest work of the run is added: its own time is not a late reply",
    )
    p.add_argument(
        "--admit-timeout",
        type=float,
        default=2.0,
        help="wait at most this long for every connection's first reply before warm-up (2)",
    )
    p.add_argument(
        "--no-counters",
        dest="counters",
        action="store_false",
        help="with --server-pid: do not count context switches and system calls",
    )
    p.add_argument(
        "--start-at",
        type=float,
        default=None,
        metavar="EPOCH",
        help="start the traffic at this wall-clock instant (seconds since the epoch; after the "
        "ramp-up); the window is then START + admit-timeout + warm-up, the same on every host",
    )
    p.add_argument(
        "--loss-timeout",
        type=float,
        default=DATAGRAM_TIMEOUT,
        metavar="S",
        help=f"udp: a reply not back within S seconds is counted lost and the flow goes on "
        f"(default {DATAGRAM_TIMEOUT:g}); a WORK's own time is added",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write the result as JSON")
    p.add_argument(
        "--histograms",
        action="store_true",
        help="with --json: add the encoded HDR histograms and per-connection completions "
        "(the 'mergeable' key), so that several hosts' results can be merged without loss",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no live line, no table")
    return p
