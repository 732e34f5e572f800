"""The scenarios ``run_all.py`` measures: each one a named question and the load that answers it.

A :class:`Scenario` is documentation as much as configuration: its
``question`` is printed by ``run_all.py --help`` and in every report, and
its :class:`Case` entries are the exact load-generator settings.  Most
scenarios have one case; ``connections`` has one per connection level and
``files`` one for GET and one for PUT.  Every case is measured on a freshly
started server, for every variant the scenario applies to.

Durations are not here: they belong to the profile (:data:`PROFILES`) or
``--duration``, so the same scenario can run short in CI and long on a quiet
machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from servers import Variant

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One load-generator setting: one table in the report, one point on a curve."""

    key: str  # unique in a run: the results key, e.g. "connections-256"
    scenario: str
    label: str  # for humans: "256 connections"
    workload: str  # python -m loadgen --workload
    size: int  # payload bytes (ECHO, file size); 0 for idle
    connections: int
    protocol: str = "framed"  # the server's --protocol
    pipeline: int = 1
    slow_clients: int = 0
    rate_fraction: float | None = None  # open loop: fraction of an echo-small capacity (below)
    # open loop: "own" = rate_fraction x this variant's own echo-small capacity (each variant
    # at the same relative load); "common" = rate_fraction x the slowest concurrent variant's
    # capacity, one rate for all (latency compared at the same absolute load).
    rate_basis: str | None = None
    kind: str = "throughput"  # "throughput" | "open" | "memory" | "c10k": which table applies
    x: int | None = None  # the value on a chart's x axis (connections scenario)
    min_warmup: float = 0.0  # seconds: ramping up many connections (1,000 forks) takes time
    max_repeat: int | None = None  # at most this many rounds (None: the profile's repeats)
    # the server may use this many CPUs (the generator gets the rest); None: --server-cpus.
    # A level above half the CPUs this run may use is not planned (plan.make_plan).
    server_cpus: int | None = None
    # "tcp" (loopback) | "unix": the server's --unix, a unix: target | "udp": the datagram
    # variants only (issue 17), a udp: target
    transport: str = "tcp"
    # a unix case: the case with the same load over TCP, shown beside; udp-echo: the case
    # whose rows of each variant's TCP sibling (Variant.tcp_sibling) are shown beside
    tcp_case: str | None = None
    work: str | None = None  # workload "work": what every request asks, KIND:AMOUNT (--work)
    # the first `neighbours` connections send `neighbour_work` (KIND:AMOUNT) back to back
    # beside the others ("the victims", who run the workload); the headline figures are the
    # victims', the neighbours' are apart (--neighbours, --neighbour-work)
    neighbours: int = 0
    neighbour_work: str | None = None
    # the server may use every CPU of the run and the generator shares them (cpu-bound: what
    # a model does with the whole machine); not a level of the cores scenario
    all_cpus: bool = False
    # a case measured in the same run whose figures each row shows beside its own
    # (head-of-line: echo-small's latency; the offload case: the block case's)
    baseline: str | None = None

    def describe(self) -> str:
        """The settings in one line, as ``python -m loadgen`` options."""
        parts = [f"--workload {self.workload}"]
        if self.work is not None:
            parts.append(f"--work {self.work}")
        if self.size:
            parts.append(f"--size {self.size}")
        parts.append(f"--connections {self.connections}")
        if self.pipeline != 1:
            parts.append(f"--pipeline {self.pipeline}")
        if self.slow_clients:
            parts.append(f"--slow-clients {self.slow_clients}")
        if self.neighbours:
            parts.append(f"--neighbours {self.neighbours} --neighbour-work {self.neighbour_work}")
        if self.rate_fraction is not None:
            whose = "the slowest concurrent variant's" if self.rate_basis == "common" else "own"
            basis = "udp-echo" if self.rate_basis == "udp" else "echo-small"
            parts.append(f"--rate <{self.rate_fraction:g} x {whose} {basis} req/s>")
        if self.protocol != "framed":
            parts.append(f"(server --protocol {self.protocol})")
        if self.server_cpus is not None:
            parts.append(
                f"(server on {self.server_cpus} CPU{'s' if self.server_cpus > 1 else ''}"
                ", the generator on the rest, one worker per CPU)"
            )
        if self.all_cpus:
            parts.append("(server on every CPU of the run, the generator shares them, one worker)")
        if self.transport == "unix":
            parts.append("--target unix:PATH (server --unix PATH)")
        if self.transport == "udp":
            parts.append("--target udp:HOST:PORT (the datagram variants; loss timeout 200 ms)")
        return " ".join(parts)


def _all(variant: Variant) -> str | None:
    return None


def _serves_files(variant: Variant) -> str | None:
    # The native reference implements ECHO only (it is a ceiling for the
    # protocol's cost, not a file server).
    if variant.is_reference:
        return f"{variant.name} serves ECHO only"
    return None


def _multicore(variant: Variant) -> str | None:
    if not variant.multicore:
        return "one server core is all it uses (multicore=False in servers/__init__.py)"
    return None


def _fast_over_unix(variant: Variant) -> str | None:
    # The lesson is the kernel's cost per request, which only shows where the
    # server's own cost is small: the event loops and the native reference.
    if variant.unix:
        return f"cannot serve a Unix socket: {variant.unix}"
    if variant.family not in ("event", "reference"):
        return "only the event loops and the reference compare transports (the fastest)"
    return None


def _datagrams(variant: Variant) -> str | None:
    # every case's variants are already those of its transport (plan.PlannedCase.of)
    return None


def _serves_work(variant: Variant) -> str | None:
    # native_epoll implements ECHO only (docs/PROTOCOL.md): a WORK request is an unknown
    # opcode to it, so every request of the case would be an error
    if variant.is_reference:
        return f"{variant.name} serves ECHO only: it answers WORK with ERROR unknown opcode 0x06"
    return None


def _hosts_a_work_neighbour(variant: Variant) -> str | None:
    if variant.is_reference:
        return (
            f"{variant.name} serves ECHO only: its neighbour's WORK requests would get "
            "ERROR unknown opcode 0x06, so there would be no neighbour to measure beside"
        )
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    question: str
    cases: tuple[Case, ...]
    applies: Callable[[Variant], str | None] = field(default=_all, compare=False)
    needs: tuple[str, ...] = ()  # scenarios whose results this one uses (run first)


def _one(name: str, **settings: object) -> tuple[Case, ...]:
    return (Case(key=name, scenario=name, label=name, **settings),)  # type: ignore[arg-type]


CONNECTION_LEVELS = (1, 16, 64, 256, 1000)
IDLE_CONNECTIONS = 1000
C10K_CONNECTIONS = 10_000
C10K_REPEAT = 2  # 10,000 connects a run: two runs give a spread at a bearable cost
# server CPUs of the cores scenario; the plan keeps those up to half the CPUs of the run
CORE_LEVELS = (1, 2, 4, 8, 16, 32, 64)
# WORK scenarios (issue 16)
BACKEND_WAIT_US = 1000  # backend-wait: every request waits 1 ms
BACKEND_WAIT_LEVELS = (16, 256, 1000)
CPU_BOUND_UNITS = 200  # cpu-bound: ~200 µs of pure Python a request
HOL_UNITS = 20_000  # head-of-line: the neighbour's 20 ms compute requests
HOL_VICTIMS = 16
BLOCK_US = 10_000  # blocking-call: the neighbour's 10 ms blocking call
BLOCK_CONNECTIONS = 16  # one of them the neighbour
# Two rounds of every WORK case: seven cases x 19 variants at three rounds would push the
# full profile past its 35 minutes on 2 cores; their differences are large (milliseconds
# of stall against microseconds), which two rounds already separate.
WORK_REPEAT = 2
WORK_SCENARIOS = ("backend-wait", "cpu-bound", "head-of-line", "blocking-call")
# UDP (issue 17): udp-flood's open-loop rates, multiples of each variant's udp-echo req/s
FLOOD_LEVELS = (1, 2, 4)
UDP_SCENARIOS = ("udp-echo", "udp-flood")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "echo-small",
            "throughput and latency for 64-byte ECHO at 64 connections (closed loop)",
            _one("echo-small", workload="echo", size=64, connections=64, x=64),
        ),
        Scenario(
            "echo-large",
            "64 KiB ECHO at 16 connections: what copying big payloads costs each model",
            _one("echo-large", workload="echo", size=64 * KIB, connections=16),
        ),
        Scenario(
            "connections",
            "64-byte ECHO at 1, 16, 64, 256 and 1,000 connections: how each model scales "
            "with clients (a level a variant cannot hold is reported as failing, not hidden; "
            "the 64 level is echo-small's measurement)",
            tuple(
                Case(
                    key=f"connections-{n}",
                    scenario="connections",
                    label=f"{n} connections",
                    workload="echo",
                    size=64,
                    connections=n,
                    x=n,
                    min_warmup={256: 0.75, 1000: 1.5}.get(n, 0.0),  # forks/threads ramp up first
                )
                for n in CONNECTION_LEVELS
                if n != 64  # identical to echo-small: measured once, used by both
            ),
            needs=("echo-small",),
        ),
        Scenario(
            "files",
            "GET and PUT of 1 MiB files at 16 connections: disk and large-transfer cost",
            (
                Case("files-get", "files", "GET 1 MiB", workload="get", size=MIB, connections=16),
                Case("files-put", "files", "PUT 1 MiB", workload="put", size=MIB, connections=16),
            ),
            applies=_serves_files,
        ),
        Scenario(
            "churn",
            "a new connection for every request (connect, one ECHO, close) at 16 concurrent "
            "clients: the cost of accepting (fork per client pays here)",
            _one("churn", workload="churn", size=64, connections=16),
        ),
        Scenario(
            "slow-client",
            "one client sending its requests a byte at a time beside 16 normal clients: "
            "who starves (fairness and p99 of the normal clients)",
            _one("slow-client", workload="echo", size=64, connections=16, slow_clients=1),
        ),
        Scenario(
            "idle-memory",
            f"memory with {IDLE_CONNECTIONS:,} idle connections open, per connection: "
            "threads vs greenlets vs coroutines vs processes "
            "((memory with N idle - memory before) / N, USS and PSS)",
            _one(
                "idle-memory",
                workload="idle",
                size=0,
                connections=IDLE_CONNECTIONS,
                kind="memory",
                min_warmup=1.5,
            ),
        ),
        Scenario(
            "open-loop",
            "latency at a fixed rate, measured from the scheduled send time (corrected for "
            "coordinated omission): open-loop at half the variant's own echo-small capacity "
            "in this run (the same relative load), open-loop-common at one rate for every "
            "concurrent variant, half the slowest one's capacity (the same absolute load: "
            "the latency ranking)",
            tuple(
                Case(
                    key=key,
                    scenario="open-loop",
                    label=label,
                    workload="echo",
                    size=64,
                    connections=64,
                    rate_fraction=0.5,
                    rate_basis=basis,
                    kind="open",
                )
                for key, label, basis in (
                    ("open-loop", "half its own capacity", "own"),
                    ("open-loop-common", "one common rate", "common"),
                )
            ),
            needs=("echo-small",),
        ),
        Scenario(
            "unix-echo",
            "64-byte ECHO at 64 connections over a Unix domain socket beside TCP loopback, for "
            "the fastest variants: what the kernel's TCP path costs per request (the TCP "
            "figure is echo-small's measurement)",
            _one(
                "unix-echo",
                workload="echo",
                size=64,
                connections=64,
                transport="unix",
                tcp_case="echo-small",
            ),
            applies=_fast_over_unix,
            needs=("echo-small",),
        ),
        Scenario(
            "raw-echo",
            "1 KiB unframed echo at 10 connections: the setting of uvloop's published "
            "vmbench figures, so this table can be set beside theirs",
            _one("raw-echo", workload="raw", size=KIB, connections=10, protocol="raw"),
        ),
        Scenario(
            "c10k",
            f"{C10K_CONNECTIONS:,} simultaneous connections: how long opening them all takes, "
            "the latency of the one 64-byte ECHO each then sends at once (p50, p99 of that "
            "round), and the memory per connection (USS and PSS, as idle-memory); a variant "
            "whose declared client limit is lower is reported failing with that limit, not run",
            _one(
                "c10k",
                workload="c10k",
                size=64,
                connections=C10K_CONNECTIONS,
                kind="c10k",
                max_repeat=C10K_REPEAT,
            ),
        ),
        Scenario(
            "cores",
            "echo-small's load with the server on 1, 2, 4 ... CPUs (up to half the machine's; "
            "the generator on the others): how a model that can use more than one core "
            "(processes; threads on a free-threaded build) scales with them",
            tuple(
                Case(
                    key=f"cores-{n}",
                    scenario="cores",
                    label=f"{n} server CPU{'s' if n > 1 else ''}",
                    workload="echo",
                    size=64,
                    connections=64,
                    x=n,
                    server_cpus=n,
                )
                for n in CORE_LEVELS
            ),
            applies=_multicore,
        ),
        Scenario(
            "backend-wait",
            f"every request waits {BACKEND_WAIT_US / 1000:g} ms the model's own way (a call to "
            "a backend: a database, another service) at 16, 256 and 1,000 connections: req/s "
            "beside the ideal (connections ÷ 1 ms, capped at the generator's ceiling: the most "
            "req/s any variant reached in echo-small in this run; unbounded without it), the "
            "share of the ideal reached, and p99. Which models overlap the waits and where "
            "each one stops (thread_pool at workers ÷ 1 ms, blocking_loop at one client, "
            f"select_reactor beyond FD_SETSIZE); at most {WORK_REPEAT} rounds",
            tuple(
                Case(
                    key=f"backend-wait-{n}",
                    scenario="backend-wait",
                    label=f"backend-wait, {n:,} connections",
                    workload="work",
                    work=f"wait:{BACKEND_WAIT_US}",
                    size=64,
                    connections=n,
                    kind="wait",
                    x=n,
                    # no min_warmup (the connection levels' 0.75 and 1.5 s): the engine's
                    # warm-up starts once every connection has had a reply (admitted), and
                    # a 1 ms wait is in its steady state at once; it saves ~1 min of full
                    max_repeat=WORK_REPEAT,
                )
                for n in BACKEND_WAIT_LEVELS
            ),
            applies=_serves_work,
        ),
        Scenario(
            "cpu-bound",
            f"every request computes {CPU_BOUND_UNITS} units (about {CPU_BOUND_UNITS} µs of pure "
            "Python holding the GIL) at 16 connections, the server allowed every CPU of the "
            "machine and the generator sharing them (at a few thousand req/s the generator "
            "costs little: its CPU is a column): req/s and the server's cores used. Processes "
            "use every core; threads one (the GIL; all of them on a free-threaded build); "
            f"event loops and greenlets one; at most {WORK_REPEAT} rounds",
            _one(
                "cpu-bound",
                workload="work",
                work=f"compute:{CPU_BOUND_UNITS}",
                size=64,
                connections=16,
                kind="cpu",
                all_cpus=True,
                max_repeat=WORK_REPEAT,
            ),
            applies=_serves_work,
        ),
        Scenario(
            "head-of-line",
            f"one client sends compute requests of {HOL_UNITS:,} units (about "
            f"{HOL_UNITS // 1000} ms at 1 µs a unit; the report states what a unit took) "
            f"back to back beside {HOL_VICTIMS} clients sending 64-byte ECHO: the ECHO "
            "clients' (the victims') p99, p50 and req/s beside the same variant's echo-small "
            "figures, and the neighbour's own req/s. Event loops and greenlets make the "
            "victims wait out every one; threads share the GIL by its switch interval "
            "(sys.getswitchinterval(), the convoy effect); processes isolate them; "
            f"at most {WORK_REPEAT} rounds",
            _one(
                "head-of-line",
                workload="echo",
                size=64,
                connections=HOL_VICTIMS + 1,
                neighbours=1,
                neighbour_work=f"compute:{HOL_UNITS}",
                kind="neighbour",
                baseline="echo-small",
                max_repeat=WORK_REPEAT,
            ),
            applies=_hosts_a_work_neighbour,
            needs=("echo-small",),
        ),
        Scenario(
            "blocking-call",
            f"one client in {BLOCK_CONNECTIONS} makes the handler call a library that blocks "
            f"{BLOCK_US // 1000} ms (block: the real time.sleep), back to back, while the "
            "others send 64-byte ECHO; then the same call made the way the model's framework "
            "recommends (offload: to_thread, run_in_executor, gevent's threadpool; served as "
            "block where the model has no such idiom or needs none): the victims' p99 and "
            "req/s and the neighbour's req/s, the offload case beside the block case. The "
            "single-threaded models stall, threads and processes do not, offload repairs "
            f"asyncio, trio and gevent at the cost shown; at most {WORK_REPEAT} rounds",
            tuple(
                Case(
                    key=key,
                    scenario="blocking-call",
                    label=label,
                    workload="echo",
                    size=64,
                    connections=BLOCK_CONNECTIONS,
                    neighbours=1,
                    neighbour_work=f"{kind}:{BLOCK_US}",
                    kind="neighbour",
                    baseline=baseline,
                    max_repeat=WORK_REPEAT,
                )
                for key, label, kind, baseline in (
                    ("blocking-call", "blocking-call (block)", "block", None),
                    (
                        "blocking-call-offload",
                        "blocking-call (offload)",
                        "offload",
                        "blocking-call",
                    ),
                )
            ),
            applies=_hosts_a_work_neighbour,
        ),
        Scenario(
            "udp-echo",
            "64-byte ECHO over UDP at 64 flows (each its own socket, one request in flight, a "
            "reply not back in 200 ms counted lost): req/s, p99, lost, and the server's CPU µs "
            "and system calls per request beside its TCP sibling's in echo-small (the notes' "
            "'UDP costs less', checked: no accept, no connection, no stream to frame)",
            _one(
                "udp-echo",
                workload="echo",
                size=64,
                connections=64,
                kind="udp",
                transport="udp",
                tcp_case="echo-small",  # its TCP siblings' figures, set beside
            ),
            applies=_datagrams,
            needs=("echo-small",),
        ),
        Scenario(
            "udp-flood",
            "open-loop 64-byte ECHO over UDP at 1x, 2x and 4x each variant's own udp-echo "
            "req/s: the loss curve. UDP drops where TCP pushes back: lost %, the kernel's own "
            "drops (/proc/net/snmp) and the answered requests' p99",
            tuple(
                Case(
                    key=f"udp-flood-{n}x",
                    scenario="udp-flood",
                    label=f"udp-flood at {n}x its udp-echo req/s",
                    workload="echo",
                    size=64,
                    connections=64,
                    rate_fraction=float(n),
                    rate_basis="udp",
                    kind="flood",
                    transport="udp",
                    x=n,
                )
                for n in FLOOD_LEVELS
            ),
            applies=_datagrams,
            needs=("udp-echo",),
        ),
    )
}


@dataclass(frozen=True)
class Trim:
    """A profile's short version of a scenario: at most ``repeat`` rounds of ``duration``
    measured seconds after ``warmup`` (None: the profile's); ``--repeat``, ``--duration``
    and ``--warmup``, when given, win."""

    repeat: int
    duration: float
    warmup: float | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    scenarios: tuple[str, ...]
    repeat: int
    duration: float  # measured seconds per run
    warmup: float  # discarded seconds per run
    rest: float  # pause between runs, so one run's aftermath does not tax the next
    until_stable: bool  # add rounds until every headline CI is within ±5% (or a cap)
    time_cap_s: float  # extra rounds (drift reruns, until-stable) stop before this wall time
    # the throughput cases whose context switches and system calls are counted (one short
    # perf-counted run per variant each); None: all of them but the connection levels
    counted: tuple[str, ...] | None = None
    # scenario (or one case's key) -> its short version here
    trims: dict[str, Trim] = field(default_factory=dict)
    # the cost table's plan (loadgen.suite.costs.PLANS): instructions per request under
    # cachegrind, measured after every timed round; None: no cost table
    costs: str | None = None


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "quick",
            "every variant: echo-small, 3 short repeats, and head-of-line short (2 rounds of "
            "0.3 s: the WORK scenario whose four kinds of model differ most); under 4 minutes "
            "on 2 cores",
            ("echo-small", "head-of-line"),
            repeat=3,
            duration=0.6,
            warmup=0.2,
            rest=0.05,  # as full's: 0.1 cost ~9 s of the 4 minutes with head-of-line in
            until_stable=False,
            time_cap_s=200.0,  # the quick profile promises under 4 minutes, all told
            counted=("echo-small",),  # 20 variants: one counted case keeps it under 4
            # echo-small, echo-large and one round of head-of-line measured 264 s from a
            # fresh clone on a 2-core VM with 10-15% steal: over 4 minutes.  echo-large
            # (~60 s) went to full only, so that head-of-line gets the 2 rounds a spread
            # needs (one round of 0.3 s for 19 variants is ~20 s)
            trims={"head-of-line": Trim(repeat=2, duration=0.3)},
            costs="quick",
        ),
        Profile(
            "full",
            "every variant, every scenario, 3 repeats and up to 3 more until stable, the "
            "WORK scenarios and udp-flood 2 of 0.1 s warm-up + 0.3 s, idle-memory 2, and the "
            "cost table with GET and WORK (under 35 minutes on 2 cores)",
            tuple(SCENARIOS),
            repeat=3,
            duration=0.5,
            warmup=0.25,
            rest=0.05,
            until_stable=True,
            # and the full one under 35: its planned rounds took ~34 min on a busy 2-core
            # machine (~29 on a quiet one), so extra rounds get little room; the counted
            # runs and the report come after the cap
            time_cap_s=30 * 60.0,
            # the cases whose per-request costs differ most in kind: small and large
            # payloads, a connection per request, unframed echo (each is a perf run
            # per variant; all eight would cost the full profile ~1.5 minutes more)
            # (raw-echo's went when the cost table came: its one-at-a-time and pipelined ECHO
            # counts say what raw-echo's would, and the ~2 minutes of the table needed room)
            counted=("echo-small", "echo-large", "churn", "udp-echo"),
            # the WORK scenarios' 7 cases x 19 variants x 2 rounds at 0.25 + 0.5 s took 7.3
            # min of a 36-min run on a busy machine; after the admission a 0.1 s warm-up
            # reaches their steady state, and 0.3 s holds hundreds of victims' replies.
            # idle-memory: 2 rounds (188 s of 3 took 3.1 min of a 32.9-min run at ea43696): a
            # count of bytes per connection, not a rate, its repeats agree within a few %.
            # udp-flood's 3 levels x 7 datagram variants would add ~1.4 min at full's settings;
            # 2 rounds of 0.3 s keep the full profile near its 35 minutes (its losses differ
            # by tens of %); named with --scenarios it runs untrimmed
            trims={
                **{s: Trim(repeat=WORK_REPEAT, duration=0.3, warmup=0.1) for s in WORK_SCENARIOS},
                "idle-memory": Trim(repeat=2, duration=0.5),
                "udp-flood": Trim(repeat=2, duration=0.3, warmup=0.1),
                # 1,000 connections: 251 s of 3 rounds (ramping 1,000 connections per run);
                # 2 rounds, like c10k, make room for the datagram scenarios
                "connections-1000": Trim(repeat=2, duration=0.5),
            },
            costs="full",
        ),
    )
}


def resolve(names: list[str]) -> list[Scenario]:
    """The scenarios to run, in a valid order: each one after those it needs.

    A scenario named in ``needs`` is added when missing (open-loop cannot
    know a variant's capacity without echo-small).  Raises KeyError on an
    unknown name.
    """
    wanted: list[str] = []
    for name in names:
        if name not in SCENARIOS:
            raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        for dep in SCENARIOS[name].needs:
            if dep not in wanted:
                wanted.append(dep)
        if name not in wanted:
            wanted.append(name)
    order = list(SCENARIOS)
    return [SCENARIOS[n] for n in sorted(wanted, key=order.index)]


def help_text() -> str:
    """Every scenario with its question and settings, for ``--help``."""
    lines = []
    for s in SCENARIOS.values():
        lines.append(f"  {s.name}: {s.question}")
        for case in s.cases:
            lines.append(f"      {case.key}: {case.describe()}")
    return "\n".join(lines)
