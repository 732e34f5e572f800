"""The interactive shell, driven through its stdin as a person would type."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from loadgen.suite.launch import start_server, suite_env


def run_shell(target: str, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen.shell", target],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=suite_env({"COLUMNS": "200"}),
    )


def test_session_put_list_get_echo_error_quit(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_bytes(b"lecture notes\n")
    with start_server("thread_per_client", served) as server:
        script = "\n".join(
            [
                "put notes.txt",
                "list",
                "get notes.txt copy.txt",
                "echo hello there",
                "get ../../etc/passwd",
                "get missing.txt",
                "frobnicate",
                "quit",
            ]
        )
        result = run_shell(server.target, script + "\n", work)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (served / "notes.txt").read_bytes() == b"lecture notes\n"
    assert (work / "copy.txt").read_bytes() == b"lecture notes\n"
    out = result.stdout
    assert "notes.txt" in out
    assert "hello there" in out
    assert out.count("server error:") == 2
    assert "no such file" in out
    assert "unknown command: frobnicate" in out


def test_refused_connection_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_shell(f"127.0.0.1:{port}", "", tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0].lower()
