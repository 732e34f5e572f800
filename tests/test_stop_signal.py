"""A stop signal that lands just before the main thread blocks is still acted on.

Python runs a signal's handler in the main thread, between bytecodes.  A
SIGTERM that arrives after the last check and before ``accept()``,
``epoll_wait()``, ``recv()`` or ``wait4()`` blocks is handled in C (a flag is
set) and interrupts nothing: the server exits only once that call returns.
Every model's main thread therefore waits at most ``tuning.STOP_CHECK`` in one
call.  tests/fakes/late_signal.py makes the race certain
(``_thread.interrupt_main`` while the main thread waits), for every Python
variant at once, each with one idle client connected (stream variants): the
main thread of blocking_loop waits in that client's ``recv``, a reactor's in
its poller with a client's idle deadline a minute away.

Before the bound, thread_pool hung in about 1 of 3 test runs beside a CPU hog.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import servers
from loadgen.client import Client
from loadgen.procs import killpg
from loadgen.suite.launch import _read_ready_line, suite_env

# Python's own stop handler: the C references exit in their C handler (no race), and
# gevent's hub takes the signals itself (libev's handler and its own wake-up).
NAMES = [
    v.name
    for v in servers.REGISTRY.values()
    if v.code not in ("test", "reference") and not v.name.startswith("gevent")
]
EXIT_DEADLINE = 10.0  # s: STOP_CHECK is 0.5; the rest is a loaded machine's slack


@dataclass
class Outcome:
    status: int | None  # None: still running at the deadline (killed)
    seconds: float  # from the trigger to the exit
    stderr: str


def launch(name: str, root: Path, trigger: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.fakes.late_signal", name]
    argv += ["--host", "127.0.0.1", "--port", "0", "--root", os.fspath(root)]
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=suite_env({"CB_LATE_SIGNAL_TRIGGER": os.fspath(trigger)}),
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Start every variant under the late signal at once; trigger all; time each exit."""
    base = tmp_path_factory.mktemp("late-signal")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    results: dict[str, Outcome] = {}
    try:
        for name in NAMES:
            if servers.REGISTRY[name].unavailable_reason:
                continue
            (base / name).mkdir()
            processes[name] = launch(
                name, base / name, base / f"{name}.go", base / f"{name}.stderr"
            )
        for name, process in processes.items():
            ready = _read_ready_line(process, 60.0, os.fspath(base / f"{name}.stderr"))
            if ready["transport"] == "tcp":
                idle = Client(str(ready["host"]), int(ready["port"]), timeout=10.0)
                assert idle.echo(b"hold me") == b"hold me"
                clients.append(idle)  # stays connected, silent, until the server has gone
        for name in processes:
            (base / f"{name}.go").touch()
        triggered = time.monotonic()
        deadline = triggered + EXIT_DEADLINE
        while len(results) < len(processes) and time.monotonic() < deadline:
            for name, process in processes.items():
                if name not in results and process.poll() is not None:
                    results[name] = Outcome(process.returncode, time.monotonic() - triggered, "")
            time.sleep(0.02)
        for name in processes:
            if name not in results:
                results[name] = Outcome(None, time.monotonic() - triggered, "")
            results[name].stderr = (base / f"{name}.stderr").read_text(errors="replace")
        yield results
    finally:
        for idle in clients:
            idle.close()
        for process in processes.values():
            killpg(process.pid, 9)
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.mark.parametrize("name", NAMES)
def test_a_late_stop_signal_is_acted_on(name: str, outcomes: dict[str, Outcome]) -> None:
    reason = servers.REGISTRY[name].unavailable_reason
    if reason:
        pytest.skip(reason)
    outcome = outcomes[name]
    assert outcome.status is not None, (
        f"{name} still running {EXIT_DEADLINE:.0f} s after a stop signal that came while it "
        f"waited; stderr: {outcome.stderr[-500:]}"
    )
    assert outcome.status == 0, f"exit status {outcome.status}, stderr: {outcome.stderr[-500:]}"


def test_the_launcher_needs_its_trigger() -> None:
    """The launcher refuses to run without its trigger (it would never send the signal)."""
    env = {k: v for k, v in suite_env().items() if k != "CB_LATE_SIGNAL_TRIGGER"}
    with tempfile.TemporaryDirectory() as root:
        done = subprocess.run(
            [sys.executable, "-m", "tests.fakes.late_signal", "blocking_loop", "--root", root],
            env=env,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert b"CB_LATE_SIGNAL_TRIGGER" in done.stderr
