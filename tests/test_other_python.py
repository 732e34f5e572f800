"""``run_all.py --python EXE``: the servers run under another installed CPython.

The test picks the first of a few known interpreters that exists and is not this one, and
skips with the reason when there is none.  The plain models need nothing outside the
standard library: no server imports psutil (the suite's monitoring stays on this side).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import servers
from loadgen.client import Client
from loadgen.suite.launch import probe_python, start_server, suite_env
from loadgen.suite.plan import make_plan

CANDIDATES = (
    "/root/.pyenv/versions/3.12.1/bin/python",
    "/root/.pyenv/versions/3.13.0/bin/python",
    "/root/.pyenv/versions/3.10.13/bin/python",
    "/usr/bin/python3.11",
)


def other_python() -> str | None:
    mine = os.path.realpath(sys.executable)
    for exe in CANDIDATES:
        if os.path.exists(exe) and os.path.realpath(exe) != mine:
            return exe
    return None


OTHER = other_python()
needs_other = pytest.mark.skipif(
    OTHER is None, reason=f"no second CPython installed (looked for {', '.join(CANDIDATES)})"
)


@needs_other
def test_a_server_runs_under_another_python_and_says_which(tmp_path: Path) -> None:
    assert OTHER is not None
    probed = probe_python(OTHER)
    with start_server("thread_per_client", tmp_path, python=OTHER) as server:
        info = server.python
        assert info is not None and info == probed["python"]
        assert info["executable"] == OTHER and info["version"] != servers.interpreter()["version"]
        assert "gil_enabled" in info
        with Client(server.host, server.port, timeout=10) as c:
            assert c.echo(b"from another python") == b"from another python"


@needs_other
def test_the_plan_skips_what_the_other_python_cannot_run() -> None:
    assert OTHER is not None
    args = argparse.Namespace(
        profile="quick", servers=None, scenarios="echo-small", repeat=1, duration=None,
        warmup=None, seed=1, no_pin=True, python=OTHER,
    )  # fmt: skip
    plan = make_plan(args)
    unavailable = probe_python(OTHER)["unavailable"]
    assert plan.python == OTHER and plan.server_python is not None
    for name, reason in unavailable.items():
        if servers.get(name).transport == "udp":  # echo-small plans the stream variants only
            assert name not in plan.variants and name not in plan.skipped
        elif reason:
            assert name in plan.skipped and reason in plan.skipped[name]
            assert name not in plan.variants


def test_a_missing_interpreter_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="--python /nonexistent/python"):
        probe_python("/nonexistent/python")


def test_no_server_imports_psutil() -> None:
    plain = [v.module_name for v in servers.REGISTRY.values() if v.code != "test" and v.available]
    code = (
        "import sys, importlib\n"
        f"for m in {plain!r}: importlib.import_module(m)\n"
        "import servers.__main__\n"
        "print('psutil' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=suite_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
