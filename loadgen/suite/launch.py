"""Start a server variant as a user would, and stop it leaving nothing behind.

Tests, benchmarks and ``run_all.py`` all start servers through
:func:`start_server`: ``python -m servers NAME --port 0 ...`` (or ``--unix
PATH``) in a new session (so in its own process group), the port read from
its JSON ready line, no sleeping.  ``python=EXE`` runs the server under
another interpreter, with this project importable there (``PYTHONPATH``).
:meth:`RunningServer.stop` sends SIGTERM to the whole group, waits, then
SIGKILLs whatever is left and reaps the leader -- on success, failure or
Ctrl-C (use it as a context manager).

Every process the suite starts gets :data:`loadgen.procs.MALLOC_ENV`, so
glibc's malloc is in the same state for every variant (see docs/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from loadgen import procs
from loadgen.client import UDP_PREFIX, Address, format_address
from loadgen.procs import MALLOC_ENV, group_alive, killpg, wait_group_gone

READY_TIMEOUT = 30.0  # seconds; importing gevent or building native_epoll takes a while
STOP_TIMEOUT = 5.0
PROBE_TIMEOUT = 60.0  # --python's probe: importing the registry, finding a C compiler


class ServerStartError(RuntimeError):
    """The server exited or stayed silent instead of printing its ready line."""


def suite_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for any process the suite starts."""
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    # Make `python -m servers` importable from any working directory.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if extra:
        env.update(extra)
    return env


def probe_python(python: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Ask another interpreter ``python -m servers --probe``: its version, implementation,
    GIL state and why each variant cannot run there.  ValueError (one line) if it cannot
    run the servers package at all."""
    argv = [python, "-m", "servers", "--probe"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=suite_env(), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"--python {python}: cannot run it: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ValueError(f"--python {python}: python -m servers --probe failed: {tail}")
    try:
        probed = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise ValueError(f"--python {python}: --probe printed no JSON") from None
    return probed


@dataclass
class RunningServer:
    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    pid: int
    root: str
    ready: dict[str, object]
    stderr_path: str
    cpus: frozenset[int] | None = None
    unix: str | None = None  # the Unix socket's path (host "" and port 0), or None: TCP
    _stopped: bool = field(default=False, repr=False)

    @property
    def address(self) -> Address:
        """``(host, port)``, or the Unix socket's path."""
        return self.unix if self.unix is not None else (self.host, self.port)

    @property
    def transport(self) -> str:
        """``tcp`` (a stream: TCP or a Unix socket) or ``udp``: the ready line's ``transport``."""
        return str(self.ready.get("transport") or "tcp")

    @property
    def target(self) -> str:
        """``HOST:PORT``, ``unix:PATH`` or ``udp:HOST:PORT``: what ``python -m loadgen
        --target`` takes."""
        text = format_address(self.address)
        return f"{UDP_PREFIX}{text}" if self.transport == "udp" else text

    @property
    def python(self) -> dict[str, object] | None:
        """The interpreter running the server (its ready line's ``python``)."""
        info = self.ready.get("python")
        return info if isinstance(info, dict) else None

    def stderr_text(self) -> str:
        return Path(self.stderr_path).read_text(errors="replace")

    def group_alive(self) -> bool:
        """True while any process of the server's group exists (zombies included)."""
        return group_alive(self.pid)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the leader only; return its exit status, or None if it did not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the whole process group and reap the leader.  Safe to call twice."""
        if not self._stopped:
            self._stopped = True
            killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            killpg(self.pid, signal.SIGKILL)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                pass
            wait_group_gone(self.pid, timeout)
            try:
                os.unlink(self.stderr_path)
            except OSError:
                pass
        return self.process.returncode

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    name: str,
    root: str | os.PathLike[str],
    *,
    protocol: str = "framed",
    max_frame: int | None = None,
    host: str = "127.0.0.1",
    unix: str | None = None,
    cpus: Iterable[int] | None = None,
    extra_args: Iterable[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    die_with_parent: bool = False,
    python: str | None = None,
) -> RunningServer:
    """Start ``python -m servers NAME`` in its own process group; wait for its ready line.

    ``unix``: listen on a Unix socket at this path instead of TCP on ``host``.
    ``python``: the interpreter to run it (default: this one).
    ``die_with_parent``: the kernel SIGKILLs the server's leader if its parent
    dies (a cluster's actor killed by Ray runs none of our cleanup).
    """
    argv = [python or sys.executable, "-m", "servers", name]
    if unix is not None:
        argv += ["--unix", unix]
    else:
        argv += ["--host", host, "--port", "0"]
    argv += ["--root", os.fspath(root), "--protocol", protocol]
    if max_frame is not None:
        argv += ["--max-frame", str(max_frame)]
    argv += list(extra_args)
    fd, stderr_path = tempfile.mkstemp(prefix=f"cb-{name}-", suffix=".stderr")
    with os.fdopen(fd, "wb") as stderr:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=suite_env(env),
            start_new_session=True,  # own session, own process group: killpg reaches all
            preexec_fn=procs.die_with_parent if die_with_parent else None,
        )
    cpu_set = frozenset(cpus) if cpus is not None else None
    try:
        if cpu_set is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(process.pid, cpu_set)  # children and threads inherit it
        ready = _read_ready_line(process, ready_timeout, stderr_path)
    except BaseException:
        killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return RunningServer(
        name=name,
        process=process,
        host=str(ready["host"] or ""),
        port=int(ready["port"] or 0),  # type: ignore[call-overload]
        unix=unix,
        pid=process.pid,
        root=os.fspath(root),
        ready=ready,
        stderr_path=stderr_path,
        cpus=cpu_set,
    )


def _read_ready_line(
    process: subprocess.Popen[bytes], timeout: float, stderr_path: str
) -> dict[str, object]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServerStartError(f"no ready line within {timeout:.0f} s")
        readable, _, _ = select.select([process.stdout], [], [], left)
        if readable:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                err = Path(stderr_path).read_text(errors="replace").strip()
                raise ServerStartError(
                    f"server exited with status {process.wait()} before it was ready: "
                    + (err.splitlines()[-1] if err else "(no message)")
                )
            line += chunk
    return json.loads(line.decode())
