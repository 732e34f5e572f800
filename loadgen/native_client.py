"""The generator's own ceiling: a minimal C epoll ECHO client, built on demand.

How fast is our Python load generator, as a client?  Against the same
server, on the same CPU, with the same settings, the C client of
``native_client.c`` does what the engine's closed-loop ECHO mode does (N
connections, ``pipeline`` requests in flight on each, every reply checked
byte for byte, a batch's next requests sent together) at almost no user-space
cost.  The engine's requests/s as a fraction of the C client's says how much
of a measured figure is the generator's own limit: see
:func:`calibrate_ceiling`.

Built like ``native_epoll``: with the system C compiler, into the same cache
root (``$XDG_CACHE_HOME/concurrency-bench/<hash of source and flags>/``),
once per version of the source.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from pathlib import Path
from typing import Any

from loadgen.client import is_loopback, parse_target
from servers.native_build import BuildError, build_cached, find_c_compiler

SOURCE = Path(__file__).with_name("native_client.c")
GRACE_S = 5.0  # beyond the client's own bound (its alarm() fires 2 s past it)


class NativeClientError(RuntimeError):
    """The C client could not be built or did not run to the end; one-line message."""


def unavailable_reason() -> str | None:
    """Why the C client cannot run here, or None."""
    if not hasattr(os, "sched_setaffinity") or not hasattr(select, "epoll"):
        return "needs Linux (epoll)"
    if find_c_compiler() is None:
        return "no C compiler (cc) found"
    return None


def build() -> Path:
    """The binary for this version of the source, compiled first if needed."""
    try:
        return Path(build_cached(SOURCE, "native_client"))
    except BuildError as exc:
        raise NativeClientError(str(exc)) from None


def run(
    host: str,
    port: int,
    connections: int = 64,
    pipeline: int = 1,
    size: int = 64,
    warmup: float = 1.0,
    duration: float = 3.0,
    cpu: int | None = None,
) -> dict[str, Any]:
    """One closed-loop ECHO run of the C client; its JSON result as a dict.

    Keys: requests, elapsed_s, throughput, errors, error_kinds, connections,
    pipeline, size, cpu_user_s, cpu_system_s (the last two over the measured
    window only), plus ``cpu`` (the CPU it was pinned to, or None).  The
    client runs in its own process group, pinned to ``cpu`` before it
    starts, and is killed and reaped on any failure or timeout.
    """
    if not is_loopback(host):
        raise ValueError(f"{host} is not a loopback address; load is only sent to this machine")
    binary = build()
    argv = [str(binary), "--host", host, "--port", str(port), "--connections", str(connections)]
    argv += ["--pipeline", str(pipeline), "--size", str(size)]
    argv += ["--warmup", repr(float(warmup)), "--duration", repr(float(duration))]
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    # The client bounds itself (connect deadline, then warm-up + duration); this is the backstop.
    bound = 2.0 + connections / 1000 + warmup + duration + GRACE_S
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # own process group: killpg reaches it, Ctrl-C does not
        preexec_fn=pin,  # pinned before exec: not one instruction runs elsewhere
    )
    try:
        out, err = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        raise NativeClientError(f"native_client: still running after {bound:.1f} s") from None
    finally:
        if proc.poll() is None:  # a timeout, an exception, Ctrl-C: kill the group, reap
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
    if proc.returncode != 0:
        lines = err.strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise NativeClientError(f"native_client: {why}")
    result: dict[str, Any] = json.loads(out)
    result["cpu"] = cpu
    return result


def calibrate_ceiling(
    target: str,
    *,
    connections: int = 64,
    pipeline: int = 1,
    size: int = 64,
    warmup: float = 1.0,
    duration: float = 3.0,
    cpu: int | None = 1,
    rounds: int = 2,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """The Python engine's requests/s as a fraction of the C client's, same server, same CPU.

    Method: against one already running server (``target``, normally
    ``native_epoll`` pinned to another CPU), ``rounds`` pairs of runs, each
    pair one C client run and one engine run (one worker process) with the
    same connections, pipeline, size, warm-up, duration and CPU.  The order
    alternates A-B, B-A, ... so that a machine slowing down steadily during
    the calibration is charged to both sides equally.  ``fraction`` is the
    mean of the engine's throughputs over the mean of the C client's; the
    per-round paired fractions are returned too, so their spread shows how
    far one number can be trusted.  A run with errors makes its round's
    figures meaningless: the error counts are returned, never hidden.
    """
    from loadgen.engine import run_load  # heavy import; keep this module light for the C part

    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    host, port = parse_target(target, loopback_only=True)

    def native() -> tuple[float, int]:
        r = run(host, port, connections, pipeline, size, warmup, duration, cpu)
        return r["throughput"], r["errors"]

    def python() -> tuple[float, int]:
        r = run_load(
            target,
            workload="echo",
            size=size,
            connections=connections,
            duration=duration,
            warmup=warmup,
            pipeline=pipeline,
            processes=1,
            cpus=None if cpu is None else [cpu],
            server_pid=server_pid,
        )
        return r.throughput_rps, r.errors_total

    per_round = []
    for i in range(rounds):
        order = ("native", "python") if i % 2 == 0 else ("python", "native")
        got = {name: (native if name == "native" else python)() for name in order}
        (n_rps, n_err), (p_rps, p_err) = got["native"], got["python"]
        per_round.append(
            {
                "order": list(order),
                "native_rps": n_rps,
                "python_rps": p_rps,
                "fraction": p_rps / n_rps if n_rps else None,
                "native_errors": n_err,
                "python_errors": p_err,
            }
        )
    native_mean = sum(r["native_rps"] for r in per_round) / rounds
    python_mean = sum(r["python_rps"] for r in per_round) / rounds
    return {
        "native_rps": native_mean,
        "python_rps": python_mean,
        "fraction": python_mean / native_mean if native_mean else None,
        "rounds": per_round,
        "errors": {
            "native": sum(r["native_errors"] for r in per_round),
            "python": sum(r["python_errors"] for r in per_round),
        },
        "settings": {
            "target": target,
            "connections": connections,
            "pipeline": pipeline,
            "size": size,
            "warmup_s": warmup,
            "duration_s": duration,
            "cpu": cpu,
        },
    }
