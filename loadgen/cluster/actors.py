"""The Ray actors: a server host and a load host, each a plain class made remote.

:class:`ServerHost` runs on the node with the ``cb_server`` resource: it
starts a variant exactly as the local harness does
(:func:`loadgen.suite.launch.start_server`: own process group, pinned, the
ready line), verifies it (:func:`loadgen.suite.harness.verify`), watches its
whole process tree over the agreed window
(:class:`~loadgen.engine.monitor.ServerMonitor`) and stops it, checking
that its group is gone.  :class:`LoadHost` runs on each ``cb_loadgen`` node:
``python -m loadgen --start-at ... --histograms`` as a pinned subprocess in
its own process group, and measures the CPU Ray's own processes use there
during the window.  Every process an actor starts dies with it
(``PR_SET_PDEATHSIG``): an actor killed by Ray runs none of our cleanup.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from loadgen.procs import die_with_parent, killpg, process_tree
from loadgen.suite.launch import RunningServer, ServerStartError, start_server, suite_env

SERVER_RESOURCE = "cb_server"
LOAD_RESOURCE = "cb_loadgen"


def _host_facts(cpus: tuple[int, ...] | None) -> dict[str, Any]:
    import ray

    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "node_ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "cpu_count": len(usable) or os.cpu_count(),
        "pinned": list(cpus) if cpus else None,
    }


def _first_cpus(count: int | None) -> tuple[int, ...] | None:
    """This host's first ``count`` usable CPUs (all of them: None); None where unknown.

    A real server host pins the server to ``--server-cpus`` of its CPUs (1 by
    default, as a local run does, so single-core figures stay comparable); a
    real load host is there for the load and gives the engine every CPU.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    return tuple(usable[:count] if count else usable)


def _sleep_until(epoch: float) -> None:
    left = epoch - time.time()
    if left > 0:
        time.sleep(left)


class ServerHost:
    """One variant at a time on the server host; its figures over the agreed window."""

    def __init__(self, bind_host: str, cpus: tuple[int, ...] | None, count: int = 1) -> None:
        """``cpus``: the simulated cluster's split; None: the first ``count`` of this host's."""
        self.bind_host = bind_host
        self.cpus = cpus or _first_cpus(count)
        self.server: RunningServer | None = None
        self.root: tempfile.TemporaryDirectory[str] | None = None

    def facts(self) -> dict[str, Any]:
        return _host_facts(self.cpus)

    def now(self) -> float:
        return time.time()

    def verify(self, name: str, reference: bool, python: str | None = None) -> dict[str, Any]:
        from dataclasses import asdict

        from loadgen.suite import harness

        return asdict(harness.verify(name, reference=reference, cpus=self.cpus, python=python))

    def start(self, name: str, protocol: str, python: str | None = None) -> dict[str, Any]:
        """Start ``name`` fresh (under ``python``, a path on this host; None: Ray's own
        interpreter); its address, pid and interpreter, or ``{"error": why}``."""
        self.stop()
        self.root = tempfile.TemporaryDirectory(prefix=f"cb-cluster-{name}-")
        try:
            self.server = start_server(
                name, self.root.name, protocol=protocol, host=self.bind_host, cpus=self.cpus,
                die_with_parent=True, python=python,
            )  # fmt: skip
        except (ServerStartError, OSError, ValueError) as exc:
            self.root.cleanup()
            self.root = None
            return {"error": f"server did not start: {exc}"}
        return {
            "host": self.server.host,
            "port": self.server.port,
            "pid": self.server.pid,
            "python": self.server.python,
        }

    def watch(self, t_start: float, t_end: float) -> dict[str, Any] | None:
        """The server tree's figures over [t_start, t_end] (epoch seconds); None if gone.

        Per-request figures are left to the merge (the requests are counted elsewhere);
        the cost counters (perf) are not run across hosts.
        """
        from loadgen.engine.monitor import ServerMonitor

        if self.server is None:
            return None
        try:
            monitor = ServerMonitor(self.server.pid)
        except ValueError:
            return None
        _sleep_until(t_start)
        monitor.start()
        _sleep_until(t_end)
        figures = monitor.stop(0)
        keys = ("context_switches", "context_switches_per_request", "syscalls")
        keys += ("syscalls_per_request", "syscalls_by_name")
        return {
            **figures,
            **dict.fromkeys(keys),
            "syscalls_unavailable": "not counted across hosts",
        }

    def stop(self) -> dict[str, Any]:
        """Stop the server; whether it had died, and whether its group outlived the stop."""
        out: dict[str, Any] = {"died": None, "leftover": False, "stderr_tail": ""}
        server, self.server = self.server, None
        if server is not None:
            out["died"] = server.process.poll()
            if out["died"] is not None:
                tail = server.stderr_text().strip().splitlines()[-1:]
                out["stderr_tail"] = tail[0] if tail else "(no message)"
            server.stop()
            if server.group_alive():
                killpg(server.pid, signal.SIGKILL)
                out["leftover"] = True
        if self.root is not None:
            self.root.cleanup()
            self.root = None
        return out


class LoadHost:
    """Runs the engine against the server host, and measures Ray's own CPU meanwhile."""

    def __init__(self, cpus: tuple[int, ...] | None) -> None:
        """``cpus``: the simulated cluster's split; None: every CPU of this host."""
        self.cpus = cpus or _first_cpus(None)

    def facts(self) -> dict[str, Any]:
        return _host_facts(self.cpus)

    def now(self) -> float:
        return time.time()

    def run(
        self, options: list[str], window: tuple[float, float], timeout: float
    ) -> dict[str, Any]:
        """``python -m loadgen OPTIONS --json F --histograms``; its result and mergeable data.

        ``window``: the measured period (epoch seconds) over which Ray's CPU is measured.
        Returns ``{"result", "mergeable", "error", "ray_cpu_s"}``.
        """
        fd, path = tempfile.mkstemp(prefix="cb-cluster-loadgen-", suffix=".json")
        os.close(fd)
        argv = [sys.executable, "-m", "loadgen", *options, "--json", path, "--histograms", "-q"]
        ray_cpu: dict[str, float | None] = {"s": None}
        try:
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                    env=suite_env(), start_new_session=True, preexec_fn=die_with_parent,
                )  # fmt: skip
                if self.cpus:
                    try:  # the engine pins its workers (--cpus); this covers its start-up
                        os.sched_setaffinity(proc.pid, set(self.cpus))
                    except OSError:
                        pass
                sampler = threading.Thread(
                    target=_ray_cpu, args=(window, proc.pid, ray_cpu), daemon=True
                )
                sampler.start()
                status = _wait(proc, timeout)
                sampler.join(timeout=max(0.0, window[1] - time.time()) + 1.0)
                err.seek(0)
                stderr = err.read().decode(errors="replace").strip()
            text = Path(path).read_text()
        finally:
            os.unlink(path)
        out: dict[str, Any] = {"result": None, "mergeable": None, "error": None}
        out["ray_cpu_s"] = ray_cpu["s"]
        if text:
            data = json.loads(text)
            out["mergeable"] = data.pop("mergeable", None)
            out["result"] = data
        if status is None:
            out["error"] = f"loadgen did not finish within {timeout:.0f} s (killed)"
        elif not text:
            last = stderr.splitlines()[-1:] or [f"exit status {status}"]
            out["error"] = f"loadgen failed: {last[0]}"
        return out


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Wait for the engine (bounded); its status, or None if it hung.  Its group is killed."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        killpg(proc.pid, signal.SIGKILL)  # hung, or stray workers
        proc.wait()


def _ray_cpu(window: tuple[float, float], engine_pid: int, out: dict[str, float | None]) -> None:
    """CPU seconds of this node's Ray processes over ``window`` (the engine's tree excluded).

    This node's Ray processes: our raylet (this actor's parent) and its
    descendants -- the workers, this actor included; the engine is ours, not Ray's.
    """
    me = psutil.Process()
    try:
        raylet = me.parent()
    except psutil.Error:
        return
    if raylet is None or "raylet" not in raylet.name():
        return
    _sleep_until(window[0])
    before = _cpu_by_pid(raylet, engine_pid)
    _sleep_until(window[1])
    after = _cpu_by_pid(raylet, engine_pid)
    out["s"] = round(sum(t - before.get(pid, 0.0) for pid, t in after.items()), 4)


def _cpu_by_pid(raylet: psutil.Process, engine_pid: int) -> dict[int, float]:
    engine = {p.pid for p in process_tree(engine_pid)}
    cpu: dict[int, float] = {}
    try:
        procs = [raylet, *raylet.children(recursive=True)]
    except psutil.Error:
        return cpu
    for p in procs:
        if p.pid in engine:
            continue
        try:
            t = p.cpu_times()
            cpu[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return cpu
