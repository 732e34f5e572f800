"""One measurement at a time, leaving nothing behind: verify a variant, then time it.

``run_all.py`` (and the CI benchmarks) use two functions:

* :func:`verify` starts a variant and runs a short conformance smoke with
  :class:`~loadgen.client.Client`: ECHO returns the same bytes, PUT then GET
  returns the file, LIST shows it, an invalid name is an ERROR (and the
  connection still works after it).  A variant that fails is reported as
  failed and never timed: a fast wrong answer is not a result.
* :func:`measure` starts the server fresh (``python -m servers``, its own
  process group, pinned to the server CPU), runs ``python -m loadgen`` as a
  subprocess in *its* own process group pinned to the other CPU with
  ``--server-pid``, then stops the server and checks its group is gone.

Every process started here is in :data:`LIVE_GROUPS` until it is stopped,
so :func:`kill_all` (called on Ctrl-C) can reach it whatever line was
running.  Every process gets :func:`loadgen.suite.launch.suite_env`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

import servers
from loadgen.client import Client, DatagramClient, ServerError
from loadgen.engine.config import LoadConfig
from loadgen.engine.disturbance import disturbed
from loadgen.engine.result import LoadResult
from loadgen.procs import killpg, process_tree, tree_memory
from loadgen.suite.launch import RunningServer, ServerStartError, start_server, suite_env
from loadgen.suite.scenarios import Case
from servers.protocol import HEADER, Op, Status

LIVE_GROUPS: set[int] = set()  # process-group ids started here and not yet stopped

VERIFY_TIMEOUT = 10.0  # seconds per client operation in the smoke test
LOADGEN_GRACE = 20.0  # seconds past warm-up + duration before a loadgen is declared hung
UNIX_SOCKET = "s.sock"  # a unix-transport case's socket, in the run's temporary directory
C10K_ADMIT_S = 10.0  # c10k: the longest wait for every connection's one ECHO (then: failed)
MEMORY_KINDS = ("memory", "c10k")  # cases whose runs measure memory per connection
# c10k's wall time per connection: connect, the ECHO round, closing (estimated; see the plan)
C10K_S_PER_CONNECTION = 0.0003


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order ([] where affinity is unknown)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


class BackendError(RuntimeError):
    """A backend that cannot run the suite at all (e.g. an unreachable cluster): one line."""


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the server and the load generator may use (None: no pinning)."""

    server: tuple[int, ...]
    loadgen: tuple[int, ...]

    @classmethod
    def choose(cls, enabled: bool = True, server_cpus: int = 1) -> Pinning | None:
        """The server on the first ``server_cpus`` CPUs we may use, the loadgen on the rest;
        None with < 2 CPUs or unpinned.  ValueError when no CPU would be left for the loadgen."""
        if server_cpus < 1:
            raise ValueError("--server-cpus must be >= 1")
        cpus = usable_cpus()
        if not enabled or len(cpus) < 2:
            return None
        if server_cpus >= len(cpus):
            raise ValueError(
                f"--server-cpus {server_cpus} leaves the load generator no CPU: this run may "
                f"use {len(cpus)} CPUs ({', '.join(map(str, cpus))}); at most {len(cpus) - 1}"
            )
        return cls(server=tuple(cpus[:server_cpus]), loadgen=tuple(cpus[server_cpus:]))

    @classmethod
    def shared(cls) -> Pinning:
        """Every CPU this run may use for the server, and the same CPUs for the generator
        (cpu-bound: the server gets the whole machine; the generator, cheap there, shares it)."""
        cpus = tuple(usable_cpus())
        return cls(server=cpus, loadgen=cpus)


@dataclass
class VerifyResult:
    variant: str
    ok: bool
    reason: str | None
    seconds: float


@dataclass
class RunOutcome:
    """One measurement: the loadgen's result dict plus what the harness saw."""

    variant: str
    case: str
    scenario: str
    round: int
    status: str  # "ok" | "failed" | "interrupted"
    error: str | None = None
    result: LoadResult | None = None  # the loadgen's result (to_json: its JSON, schema 1)
    rate: float | None = None  # open loop: requests/s asked for
    baseline_pss_bytes: int | None = None  # memory kind: server PSS before any client
    memory_per_connection_bytes: float | None = None
    leftover: bool = False  # the server's group outlived stop()
    started_at: float = field(default_factory=time.time)
    wall_s: float = 0.0
    discarded: str | None = None  # why this run does not count (its round was redone)
    # a timed run: why other work disturbed it beyond the limits (steal, other processes'
    # CPU: loadgen.engine.disturbance.disturbed), None if it did not or was not measured
    disturbed: str | None = None
    rerun_of: int | None = None  # the round this one redoes
    # "timed": its figures are the report's; "count": a short run with the cost
    # counters on, whose context switches and system calls per request the
    # rows show (perf's own cost would distort a timed run's figures)
    purpose: str = "timed"
    # --cluster: each host's part (loadgen.cluster.merge.host_records); absent locally
    hosts: list[dict[str, Any]] | None = None
    # the interpreter that ran the server (its ready line's python: version,
    # implementation, gil_enabled, executable); None if it never started
    python: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["hosts"] is None:
            del data["hosts"]  # a local run's JSON is as before
        return data


# -- process-group bookkeeping --------------------------------------------


def kill_all() -> None:
    """SIGKILL every group still listed, and every child left (Ctrl-C path); idempotent.

    A Ctrl-C can land between a ``Popen`` returning and its group being listed;
    the servers and load generators are still this process's children (a new
    session does not change the parent), so they are found and reaped anyway.
    """
    for pgid in list(LIVE_GROUPS):
        killpg(pgid, signal.SIGKILL)
        LIVE_GROUPS.discard(pgid)
    children = psutil.Process().children(recursive=True)
    for child in children:
        killpg(child.pid, signal.SIGKILL)  # a group leader takes its workers with it
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=5)


def _start_tracked(name: str, root: str, **kwargs: Any) -> RunningServer:
    server = start_server(name, root, **kwargs)
    LIVE_GROUPS.add(server.pid)
    return server


def _stop_tracked(server: RunningServer) -> bool:
    """Stop the server's group; True if something of it is still alive afterwards."""
    try:
        server.stop()
    finally:
        LIVE_GROUPS.discard(server.pid)
    if server.group_alive():
        killpg(server.pid, signal.SIGKILL)
        return True
    return False


# -- verify -----------------------------------------------------------------


def verify(
    name: str,
    *,
    reference: bool = False,
    cpus: tuple[int, ...] | None = None,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> VerifyResult:
    """Start ``name`` (under ``python``, default this interpreter) and check it answers
    correctly; never raises for a bad server."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"cb-verify-{name}-") as root:
        try:
            server = _start_tracked(name, root, cpus=cpus, env=env, python=python)
        except (ServerStartError, OSError, ValueError) as exc:
            return VerifyResult(name, False, f"did not start: {exc}", time.perf_counter() - t0)
        try:
            reason = _smoke(server, reference=reference)
            if reason is None and server.process.poll() is not None:
                reason = f"server exited with status {server.process.returncode}"
        finally:
            if _stop_tracked(server):
                reason = reason or "processes left behind after stop"
    return VerifyResult(name, reason is None, reason, time.perf_counter() - t0)


def _smoke(server: RunningServer, *, reference: bool) -> str | None:
    """The conformance smoke; returns what went wrong, or None."""
    payload = bytes(range(256)) * 4 + b"end"
    if server.transport == "udp":
        return _datagram_smoke(server, payload, reference=reference)
    try:
        with Client.to(server.address, timeout=VERIFY_TIMEOUT) as c:
            got = c.echo(payload)
            if got != payload:
                return f"ECHO returned wrong bytes ({len(got)} bytes for {len(payload)} sent)"
            if c.echo(b"") != b"":
                return "ECHO of an empty payload did not return an empty payload"
            if reference:  # the native ceiling serves ECHO only
                return None
            data = os.urandom(3000)
            c.put("verify.bin", data)
            if c.get("verify.bin") != data:
                return "GET did not return what PUT stored"
            if "verify.bin" not in c.list():
                return "LIST does not show the file PUT stored"
            try:
                c.get("../escape")
            except ServerError:
                pass
            else:
                return "GET of an invalid name ('../escape') did not answer ERROR"
            if c.echo(b"still there") != b"still there":
                return "ECHO after an ERROR returned wrong bytes"
    except ServerError as exc:
        return f"unexpected ERROR from the server: {exc}"
    except (OSError, ConnectionError) as exc:
        return f"connection failed: {exc.__class__.__name__}: {exc}"
    except Exception as exc:  # a malformed reply is the variant's failure, not ours
        return f"bad reply: {exc.__class__.__name__}: {exc}"
    return None


def _datagram_smoke(server: RunningServer, payload: bytes, *, reference: bool) -> str | None:
    """A datagram variant's smoke: ECHO both ways, a malformed datagram answered ERROR and
    the next one served, LIST answered ``ERROR use TCP`` (docs/PROTOCOL.md, "Datagrams")."""
    try:
        with DatagramClient(server.host, server.port, timeout=VERIFY_TIMEOUT) as c:
            got = c.echo(payload)
            if got != payload:
                return f"ECHO returned wrong bytes ({len(got)} bytes for {len(payload)} sent)"
            if c.echo(b"") != b"":
                return "ECHO of an empty payload did not return an empty payload"
            bad = c.exchange(HEADER.pack(Op.ECHO, 10) + b"short")  # says 10, carries 5
            if bad[:1] != bytes([Status.ERROR]):
                return "a datagram whose length field disagrees with its size was not an ERROR"
            if c.echo(b"still there") != b"still there":
                return "ECHO after an ERROR returned wrong bytes"
            if reference:  # the native ceiling serves ECHO only
                return None
            try:
                c.list()
            except ServerError:
                pass
            else:
                return "LIST over UDP did not answer ERROR (use TCP)"
    except ServerError as exc:
        return f"unexpected ERROR from the server: {exc}"
    except TimeoutError:
        return f"no reply datagram within {VERIFY_TIMEOUT:g} s"
    except (OSError, ConnectionError) as exc:
        return f"datagram failed: {exc.__class__.__name__}: {exc}"
    except Exception as exc:  # a malformed reply is the variant's failure, not ours
        return f"bad reply: {exc.__class__.__name__}: {exc}"
    return None


# -- measure ----------------------------------------------------------------


def load_config(
    server: RunningServer,
    case: Case,
    *,
    duration: float,
    warmup: float,
    rate: float | None = None,
    cpus: tuple[int, ...] | None = None,
    counters: bool = False,
) -> LoadConfig:
    """The engine's settings for one case against ``server`` (its tree measured).

    ``counters``: count context switches and system calls (perf) over the
    window.  Off for a timed run: perf's cost would be in the figures.
    """
    variant = servers.REGISTRY.get(server.name)
    work: dict[str, Any] = {}  # only the WORK cases name these (the engine's defaults otherwise)
    if case.work is not None:
        work["work"] = case.work
    if case.neighbours:
        work.update(neighbours=case.neighbours, neighbour_work=case.neighbour_work)
    return LoadConfig(
        host=server.host,
        port=server.port,
        unix=server.unix,
        udp=getattr(server, "transport", "tcp") == "udp",
        workload=case.workload,
        size=case.size or LoadConfig.size,  # 0 (idle): the engine's default ECHO
        connections=case.connections,
        duration=duration,
        warmup=warmup,
        rate=float(round(rate)) if rate is not None else None,  # whole requests/s
        pipeline=case.pipeline,
        slow_clients=case.slow_clients,
        cpus=list(cpus) if cpus else None,
        # a level of server CPUs: one generator worker per CPU it was given
        processes=min(len(cpus), case.connections) if cpus and case.server_cpus else 1,
        server_pid=server.pid,
        # a datagram variant's max_clients caps requests in progress, not flows: a flow told
        # busy tries again at once, so its cap is no reason to give up admitting early
        admit_timeout=admit_timeout(
            case, variant.max_clients if variant and variant.transport == "tcp" else None
        ),
        counters=counters,
        **work,
    )


def admit_timeout(case: Case, max_clients: int | None = None) -> float:
    """Seconds the engine waits for every connection's first reply before the window.

    A fork- or thread-per-client server needs time to start 1,000 workers
    (2 s plus 4 ms a connection); a connection still unserved after this is
    "not admitted" (a real limit).  A variant whose own cap (``max_clients``:
    ``blocking_loop``'s one client, ``socketserver_forking``'s children) is
    below the level can never admit them all: waiting long would only
    lengthen its run, so it gets half a second.  ``c10k``'s wait is the one
    ECHO round of every connection, bounded at :data:`C10K_ADMIT_S`.
    """
    if case.kind == "c10k":
        return C10K_ADMIT_S
    if max_clients is not None and max_clients < case.connections:
        return 0.5
    return 2.0 + case.connections / 250


def loadgen_argv(cfg: LoadConfig, json_path: str) -> list[str]:
    """The ``python -m loadgen`` command line that runs ``cfg`` and writes its JSON."""
    return [sys.executable, "-m", "loadgen", *cfg.to_argv(), "--json", json_path, "--quiet"]


def expected_seconds(case: Case, duration: float, warmup: float) -> float:
    """Rough wall time of one measurement, for progress bars and the plan."""
    warmup = max(warmup, case.min_warmup)
    ramp = case.connections / 1000  # batches of connects, forks in fork-per-client
    if case.kind == "c10k":  # connects, the ECHO round, closing them (measured, 2 cores)
        ramp = case.connections * C10K_S_PER_CONNECTION
    return warmup + duration + ramp + 0.4  # + start, stop and interpreter start-up (measured)


# What one WORK compute unit costs (servers.service.compute), timed once per run that sends
# WORK, in the servers' interpreter on the server's CPUs: the report states it, since a unit
# is "about 1 µs" only on the machine the kernel was sized on.
WORK_UNIT_UNITS = 20_000  # ~20 ms a timing: far above the timer's resolution
WORK_UNIT_REPEATS = 5
_WORK_UNIT_CODE = """
import json, sys, time
from servers import service
units, repeats = int(sys.argv[1]), int(sys.argv[2])
service.compute(units // 10)  # the first call pays for nothing we want to time
per_unit = []
for _ in range(repeats):
    t0 = time.perf_counter()
    service.compute(units)
    per_unit.append((time.perf_counter() - t0) * 1e6 / units)
print(json.dumps(per_unit))
"""


def work_unit(python: str | None = None, cpus: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Time ``servers.service.compute`` in ``python`` (default: this interpreter), pinned
    to ``cpus``: ``work_unit_us`` (the median µs per unit over the repeats), ``min_us``,
    ``units``, ``repeats``, ``python``, ``cpus``; or ``error`` (one line) if it could not."""
    exe = python or sys.executable
    record: dict[str, Any] = {
        "work_unit_us": None,
        "units": WORK_UNIT_UNITS,
        "repeats": WORK_UNIT_REPEATS,
        "python": exe,
        "cpus": list(cpus) if cpus else None,
    }

    def pin() -> None:
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(cpus))

    argv = [exe, "-c", _WORK_UNIT_CODE, str(WORK_UNIT_UNITS), str(WORK_UNIT_REPEATS)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=suite_env(), preexec_fn=pin,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ValueError(f"exit status {done.returncode}: {tail}")
        per_unit = sorted(float(x) for x in json.loads(done.stdout))
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:  # JSONDecodeError too
        record["error"] = f"could not time servers.service.compute: {exc}"
        return record
    record["work_unit_us"] = per_unit[len(per_unit) // 2]
    record["min_us"] = per_unit[0]
    return record


def run_loadgen(
    argv: list[str],
    *,
    cpus: tuple[int, ...] | None,
    timeout: float,
    on_tick: Callable[[float], None] | None = None,
) -> tuple[int | None, str]:
    """Run the load generator in its own group; return (exit status or None if hung, stderr)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=suite_env(),
            start_new_session=True,
        )
        LIVE_GROUPS.add(proc.pid)
        try:
            if cpus and hasattr(os, "sched_setaffinity"):
                try:  # also passed as --cpus; this covers the interpreter start-up
                    os.sched_setaffinity(proc.pid, set(cpus))
                except OSError:
                    pass
            t0 = time.monotonic()
            status: int | None = None
            while (status := proc.poll()) is None:
                elapsed = time.monotonic() - t0
                if elapsed > timeout:
                    break
                if on_tick:
                    on_tick(elapsed)
                try:
                    proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            killpg(proc.pid, signal.SIGKILL)  # hung, interrupted, or stray workers
            proc.wait()
            LIVE_GROUPS.discard(proc.pid)
        err.seek(0)
        return status, err.read().decode(errors="replace")


def tree_pss(pid: int) -> int:
    """Sum of PSS (bytes) over the process and its descendants; 0 where unreadable."""
    return tree_memory(process_tree(pid)).pss


def measure(
    name: str,
    case: Case,
    *,
    round_no: int = 1,
    duration: float,
    warmup: float,
    rate: float | None = None,
    pinning: Pinning | None = None,
    env: dict[str, str] | None = None,
    on_tick: Callable[[float], None] | None = None,
    counters: bool = False,
    python: str | None = None,
) -> RunOutcome:
    """Start ``name`` fresh, run the load, stop it; never raises for a failing variant.

    ``counters``: a counted run (``purpose`` "count"), not a timed one.
    ``python``: the interpreter that runs the server (default: this one).
    A case whose ``transport`` is "unix" starts the server on a Unix socket
    in the run's temporary directory and loads it there.
    KeyboardInterrupt propagates after the server and loadgen are stopped.
    """
    out = RunOutcome(name, case.key, case.scenario, round_no, "failed", rate=rate)
    out.purpose = "count" if counters else "timed"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"cb-{name}-") as root:
        try:
            server = _start_tracked(
                name,
                root,
                protocol=case.protocol,
                unix=os.path.join(root, UNIX_SOCKET) if case.transport == "unix" else None,
                cpus=pinning.server if pinning else None,
                env=env,
                python=python,
            )
        except (ServerStartError, OSError, ValueError) as exc:
            out.error = f"server did not start: {exc}"
            out.wall_s = time.perf_counter() - t0
            return out
        out.python = server.python
        try:
            _measure_with(server, case, out, duration, warmup, rate, pinning, on_tick)
        except KeyboardInterrupt:
            out.status = "interrupted"
            out.error = "interrupted"
            raise
        finally:
            if _stop_tracked(server):
                out.leftover = True
                out.status = "failed" if out.status == "ok" else out.status
                out.error = out.error or "the server left processes behind after stop"
            out.wall_s = time.perf_counter() - t0
    return out


def run_load(
    server: RunningServer,
    case: Case,
    *,
    duration: float,
    warmup: float,
    rate: float | None = None,
    pinning: Pinning | None = None,
    on_tick: Callable[[float], None] | None = None,
    counters: bool = False,
) -> tuple[LoadResult | None, str | None]:
    """Run ``python -m loadgen`` once against a running server.

    Returns (the loadgen's result or None, why the loadgen failed or None).
    Whether the *server* failed is :func:`run_failure`'s business.
    """
    fd, json_path = tempfile.mkstemp(prefix="cb-loadgen-", suffix=".json")
    os.close(fd)
    cpus = pinning.loadgen if pinning else None
    try:
        cfg = load_config(
            server, case, duration=duration, warmup=max(warmup, case.min_warmup), rate=rate,
            cpus=cpus, counters=counters,
        )  # fmt: skip
        argv = loadgen_argv(cfg, json_path)
        admit = cfg.admit_timeout
        timeout = expected_seconds(case, duration, warmup) + admit + LOADGEN_GRACE
        status, stderr = run_loadgen(argv, cpus=cpus, timeout=timeout, on_tick=on_tick)
        text = Path(json_path).read_text() if os.path.getsize(json_path) else ""
    finally:
        os.unlink(json_path)
    result = None
    if text:
        try:
            result = LoadResult.from_dict(json.loads(text))
        except (json.JSONDecodeError, ValueError) as exc:
            return None, f"loadgen wrote unreadable JSON: {exc}"
    if status is None:
        return result, f"loadgen did not finish within {timeout:.0f} s (killed)"
    if result is None:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {status}"]
        return None, f"loadgen failed: {last[0]}"
    return result, None


def _measure_with(
    server: RunningServer,
    case: Case,
    out: RunOutcome,
    duration: float,
    warmup: float,
    rate: float | None,
    pinning: Pinning | None,
    on_tick: Callable[[float], None] | None,
) -> None:
    if case.kind in MEMORY_KINDS:
        out.baseline_pss_bytes = tree_pss(server.pid)
    out.result, out.error = run_load(
        server, case, duration=duration, warmup=warmup, rate=rate, pinning=pinning,
        on_tick=on_tick, counters=out.purpose == "count",
    )  # fmt: skip
    died = server.process.poll()
    if out.error is None and died is not None:
        tail = server.stderr_text().strip().splitlines()[-1:] or ["(no message)"]
        out.error = f"server exited with status {died} during the run: {tail[0]}"
    elif out.error is None and out.result is not None:
        out.error = run_failure(out.result, case)
    if out.result is not None and case.kind in MEMORY_KINDS:
        pss = out.result.server.memory_pss_bytes if out.result.server else None
        held = _idle_served(out.result, case)
        if pss and out.baseline_pss_bytes and held:
            out.memory_per_connection_bytes = (pss - out.baseline_pss_bytes) / held
    out.status = "ok" if out.error is None else "failed"
    if out.purpose == "timed" and out.result is not None and out.result.disturbance is not None:
        out.disturbed = disturbed(asdict(out.result.disturbance))


def run_failure(result: LoadResult, case: Case) -> str | None:
    """Why a completed loadgen result means the variant failed at this level, or None.

    Errors of any kind, connections not admitted (never served before the
    measured window, within the ramp timeout: the server's limit), starved
    connections (a closed-loop connection that completed nothing *during* the
    window: the variant could not hold that many clients), or an interrupted run.
    """
    if result.partial:
        return "the load generator's run was interrupted"
    total = result.errors_total
    if total:
        kinds = ", ".join(f"{k} {v}" for k, v in result.errors.items() if v)
        return f"{total} errors ({kinds})"
    if case.kind == "flood":
        # beyond capacity a flow may lose every request of the window, or its first one --
        # or every reply may come after the loss timeout (a deep receive buffer ahead of a
        # slow server): that is the loss the table measures (lost %), not a failure
        return None
    if case.kind in MEMORY_KINDS:
        held = _idle_served(result, case)
        if held < case.connections:
            return f"only {held} of {case.connections} idle connections were accepted and served"
        return None
    conns = result.fairness.connections or case.connections
    # getattr: the engine reports not_admitted from issue 9's ramp rule on.
    not_admitted = getattr(result.fairness, "not_admitted", 0) or 0
    if not_admitted:
        return (
            f"{not_admitted} of {conns} connections not admitted within the ramp timeout: "
            "the server did not serve them (a real limit)"
        )
    starved = result.fairness.starved
    if starved:
        return f"{starved} of {conns} connections starved (completed no request)"
    if not result.requests:
        return "no request completed"
    return None


def cpu_busy(cpus: tuple[int, ...] | None, seconds: float) -> float:
    """Share (0..1) of ``cpus`` (None: every CPU) busy over the next ``seconds``.

    Called between runs, when nothing of ours is running: whatever is busy is
    someone else, and would be measured as part of the next run.
    """
    per_cpu = psutil.cpu_percent(interval=seconds, percpu=True)
    chosen = [per_cpu[c] for c in cpus if c < len(per_cpu)] if cpus else per_cpu
    return sum(chosen) / (100.0 * len(chosen)) if chosen else 0.0


def _idle_served(result: LoadResult, case: Case) -> int:
    """Idle connections that answered their one ECHO (all of them if not reported)."""
    return result.idle.served if result.idle is not None else case.connections
