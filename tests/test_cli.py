"""``python -m servers``: the ready line, --list, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import servers
from loadgen.suite.launch import start_server, suite_env
from servers.protocol import DEFAULT_MAX_FRAME


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servers", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=suite_env(),
    )


def test_list_shows_every_variant() -> None:
    result = run_cli("--list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for variant in servers.REGISTRY.values():
        if variant.code != "test":
            assert any(
                line.split()[0] == variant.name and variant.summary in line for line in lines
            )
            if variant.limit:
                assert f"limit: {variant.limit}" in result.stdout
            if variant.workers:
                assert f"--workers: {variant.workers}" in result.stdout
            assert f"WORK offload: {variant.offload}" in result.stdout


def test_ready_line(tmp_path: Path) -> None:
    with start_server("thread_per_client", tmp_path) as server:
        ready = server.ready
        assert ready["server"] == "thread_per_client"
        assert ready["host"] == "127.0.0.1"
        assert isinstance(ready["port"], int) and ready["port"] > 0
        assert ready["pid"] == server.pid
        assert ready["port"] == server.port
        assert ready["protocol"] == "framed"
        assert ready["root"] == os.path.abspath(tmp_path)
        assert ready["max_frame"] == DEFAULT_MAX_FRAME


def test_unknown_name_is_one_line_no_traceback() -> None:
    result = run_cli("no_such_model")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no_such_model" in result.stderr


def test_missing_root_is_one_line_no_traceback(tmp_path: Path) -> None:
    result = run_cli("thread_per_client", "--root", str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing" in result.stderr


def test_importing_the_registry_imports_no_variant() -> None:
    code = (
        "import sys, servers; "
        "bad = [m for m in sys.modules if m in ('gevent', 'uvloop', 'asyncio') "
        "or (m.startswith('servers.') and m[8:] in servers.REGISTRY)]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=suite_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr
