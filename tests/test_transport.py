"""Unix domain sockets: every variant that says it can serves over ``--unix``, the path is gone
after SIGTERM, the load generator loads it; the command line's refusals; a non-loopback target
is said plainly; unix-echo's rows carry the TCP figure beside the Unix one.

One short server per variant (ECHO, PUT/GET, SIGTERM); every other test here is in-process or
starts one server at most.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from pathlib import Path

import pytest

import servers
from loadgen.client import Client, parse_address
from loadgen.engine import cli as loadgen_cli
from loadgen.engine.config import LoadError
from loadgen.engine.driver import run_load
from loadgen.report import summary as sm
from loadgen.suite.launch import ServerStartError, start_server
from servers import __main__ as servers_cli
from tests.conftest import variant_params
from tests.test_summary import data_for, run

UNIX_VARIANTS = variant_params(lambda v: v.unix is None)


@pytest.mark.parametrize("name", UNIX_VARIANTS)
def test_serves_over_a_unix_socket_and_removes_it(name: str, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with start_server(name, tmp_path, unix=path) as server:
        assert server.ready["unix"] == path and server.ready["port"] is None
        assert server.target == f"unix:{path}"
        with Client(path, timeout=10) as c:
            assert c.echo(b"over a unix socket") == b"over a unix socket"
            if not servers.get(name).is_reference:  # the native ceiling serves ECHO only
                c.put("u.bin", b"\x00\xff" * 2000)
                assert c.get("u.bin") == b"\x00\xff" * 2000
        assert server.terminate() == 0  # SIGTERM to the leader: its own clean-up runs
    assert not os.path.exists(path)


@pytest.fixture(scope="module")
def unix_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("unix-epoll")
    with start_server("epoll_reactor", root, unix=str(root / "s.sock")) as server:
        yield server


def test_the_load_generator_loads_a_unix_socket(unix_server) -> None:  # type: ignore[no-untyped-def]
    r = run_load(unix_server.target, connections=4, duration=0.3, warmup=0.1).to_dict()
    assert r["config"]["target"] == unix_server.target
    assert r["requests"] > 0 and r["errors_total"] == 0


def test_unix_targets_parse() -> None:
    assert parse_address("unix:/tmp/x.sock") == "/tmp/x.sock"
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("192.0.2.7:80") == ("192.0.2.7", 80)  # any host, not only loopback
    with pytest.raises(ValueError, match="path"):
        parse_address("unix:")


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path: Path, unix_server) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:  # bound, never listening: a killed server's
        dead.bind(str(stale))
    with start_server("epoll_reactor", tmp_path, unix=str(stale)) as server:
        with Client(str(stale), timeout=10) as c:
            assert c.echo(b"x") == b"x"
        assert "replaced" in server.stderr_text()
    with pytest.raises(ServerStartError, match="another server is listening"):
        start_server("epoll_reactor", tmp_path, unix=unix_server.unix)
    assert os.path.exists(unix_server.unix)  # the live one's socket file is left alone


def test_a_file_that_is_not_a_socket_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "notes.txt"
    plain.write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        servers_cli.main(["epoll_reactor", "--unix", str(plain), "--root", str(tmp_path)])
    assert exit_.value.code == 2
    assert "not a socket" in capsys.readouterr().err
    assert plain.read_text() == "mine"


def test_a_variant_that_cannot_is_refused_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cannot = dataclasses.replace(servers.get("epoll_reactor"), unix="it binds one port per worker")
    monkeypatch.setitem(servers.REGISTRY, "epoll_reactor", cannot)
    with pytest.raises(SystemExit) as exit_:
        servers_cli.main(["epoll_reactor", "--unix", str(tmp_path / "s.sock")])
    assert exit_.value.code == 2
    assert "it binds one port per worker" in capsys.readouterr().err
    assert not (tmp_path / "s.sock").exists()


def test_a_non_loopback_target_is_said_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_load(**kwargs: object) -> None:  # nothing is sent anywhere: loopback-only tests
        raise LoadError("not sent")

    monkeypatch.setattr(loadgen_cli, "run_load", no_load)
    for target, said in (("192.0.2.7:8000", True), ("127.0.0.1:8000", False)):
        with pytest.raises(SystemExit):
            loadgen_cli.main(["--target", target, "-q"])
        err = capsys.readouterr().err
        assert ("192.0.2.7:8000 is not this machine" in err) is said, err


def test_unix_echo_rows_show_the_tcp_figure_and_the_ratio() -> None:
    data = data_for({"epoll_reactor": [100.0, 100.0], "poll_reactor": [50.0, 52.0]})
    data["cases"].append(
        {
            "key": "unix-echo",
            "scenario": "unix-echo",
            "label": "unix-echo",
            "kind": "throughput",
            "x": 64,
            "variants": ["epoll_reactor", "poll_reactor"],
            "transport": "unix",
            "tcp_case": "echo-small",
        }
    )
    data["runs"] += [run("epoll_reactor", "unix-echo", i, 150.0) for i in (1, 2)]
    data["runs"] += [run("poll_reactor", "unix-echo", i, 51.0) for i in (1, 2)]
    _, unix = sm.summarize(data)
    rows = {r.variant: r for r in unix.rows}
    assert rows["epoll_reactor"].figure("tcp_throughput_rps") == 100.0
    assert any("1.50×" in f for f in rows["epoll_reactor"].flags())
    assert "TCP 100" in rows["epoll_reactor"].short_flags()
    assert any("TCP loopback (echo-small): 51 req/s" in f for f in rows["poll_reactor"].flags())


def test_threads_without_a_gil_are_flagged_parallel() -> None:
    data = data_for({"thread_per_client": [10.0, 11.0], "epoll_reactor": [20.0, 21.0]})
    for r in data["runs"]:
        r["python"] = {"version": "3.13.0", "implementation": "cpython", "gil_enabled": False}
    rows = {r.variant: r for r in sm.summarize(data)[0].rows}
    assert "no GIL: parallel threads" in rows["thread_per_client"].short_flags()
    assert "no GIL" not in rows["epoll_reactor"].short_flags()  # an event loop is one thread
    for r in data["runs"]:
        r["python"]["gil_enabled"] = None  # a build that always has a GIL
    rows = {r.variant: r for r in sm.summarize(data)[0].rows}
    assert "no GIL" not in rows["thread_per_client"].short_flags()


def test_sigterm_to_a_forked_child_leaves_the_socket(tmp_path: Path) -> None:
    """Only the process that bound the path removes it: a child serving a client does not."""
    path = str(tmp_path / "s.sock")
    with start_server("fork_per_client", tmp_path, unix=path) as server:
        with Client(path, timeout=10) as c:
            assert c.echo(b"x") == b"x"
            children = _children(server.pid)
            for pid in children:
                os.kill(pid, signal.SIGTERM)
        assert os.path.exists(path)
        with Client(path, timeout=10) as c:
            assert c.echo(b"still here") == b"still here"


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children()]
