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


def test_work_answers_its_text_after_the_work(tmp_path: Path) -> None:
    # the issue's own example: `work wait 500 hi` answers hi after about half a second
    with start_server("epoll_reactor", tmp_path) as server:
        script = "\n".join(
            [
                "work wait 500 hi",
                "work compute 2000 two words",
                "work block 0.5",
                "work sleep 5",
                "work wait soon",
                "work wait",
                "work offload 11000",  # 11 s: over the server's --max-work (10 s)
                "echo still here",
                "quit",
            ]
        )
        result = run_shell(server.target, script + "\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith("hi"))
    took = lines[i + 1].split("answered in ")[1]  # the reply, then its time
    assert float(took.removesuffix(" ms")) >= 490  # half a second, never much less
    assert "two words" in result.stdout
    assert result.stdout.count("answered in") == 3  # block 0.5 ms: no text, still timed
    assert "WORK kind must be one of wait|compute|block|offload, got 'sleep'" in result.stdout
    assert "AMOUNT must be a number of milliseconds, got 'soon'" in result.stdout
    assert "usage: work" in result.stdout
    assert "server error:" in result.stdout and "over the maximum" in result.stdout
    assert "still here" in result.stdout  # an ERROR leaves the connection usable


def test_help_says_the_shells_work_amount_is_milliseconds(tmp_path: Path) -> None:
    with start_server("epoll_reactor", tmp_path) as server:
        result = run_shell(server.target, "help work\nquit\n", tmp_path)
    assert "milliseconds" in result.stdout and "compute" in result.stdout
