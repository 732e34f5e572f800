"""The benchmarks' ECHO driver checks every byte: one wrong byte anywhere fails the round."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.suite.launch import RunningServer, start_server
from tests.benchmarks.echo_driver import EchoDriver, WrongReply
from tests.fakes import fake_env


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with start_server(request.param, tmp_path, env=fake_env()) as running:
        yield running


def driver(server: RunningServer, **kw: int) -> EchoDriver:
    settings = {"requests": 48, "connections": 3, "pipeline": 4, **kw}
    return EchoDriver(server.host, server.port, **settings)


@pytest.mark.parametrize("server", ["epoll_reactor"], indirect=True)
def test_counts_every_request_over_reused_connections(server: RunningServer) -> None:
    with driver(server) as d:
        assert d.batches == 4
        assert d.run() == 48 and d.run() == 48  # the same connections serve both runs
        socks = list(d.socks)
    assert all(s.fileno() == -1 for s in socks)  # closed on exit


@pytest.mark.parametrize("server", ["fake_flip_echo"], indirect=True)
def test_one_wrong_last_byte_is_caught(server: RunningServer) -> None:
    # Right header, right length: only the first reply's last payload byte is wrong.
    with driver(server, size=64) as d, pytest.raises(WrongReply, match="reply byte 68 of"):
        d.run()


@pytest.mark.parametrize("server", ["fake_flip_echo_deep"], indirect=True)
def test_one_wrong_byte_deep_in_a_large_reply_is_caught(server: RunningServer) -> None:
    kw = {"requests": 2, "connections": 1, "pipeline": 2, "size": 65_536}
    with driver(server, **kw) as d, pytest.raises(WrongReply, match="reply byte 40005 of"):
        d.run()


@pytest.mark.parametrize("server", ["fake_close_after_one"], indirect=True)
def test_a_closed_connection_is_an_error(server: RunningServer) -> None:
    with driver(server) as d, pytest.raises(ConnectionError, match="closed the connection"):
        d.run()


def test_requests_must_fill_whole_batches() -> None:
    with pytest.raises(ValueError, match="multiple"):
        EchoDriver("127.0.0.1", 9, requests=50, connections=3, pipeline=4)
