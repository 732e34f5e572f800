"""What the registry-wide suites do not check of asyncio_sockets and trio_streams.

* Out of descriptors, the excess clients are *answered* ``ERROR server
  busy`` (the spare-descriptor listeners), and nothing is logged: trio's
  ``serve_listeners`` left to itself logs a traceback every 100 ms and
  leaves them waiting; ``test_reliability`` only checks that the server
  does not spin and recovers.
* trio_streams stops on SIGTERM or SIGINT with clients in every state --
  idle, half a request sent, blocked sending to a client that never reads,
  lingering after QUIT -- by cancelling its nursery: exit 0, within a
  second or two, every client closed, no traceback on stderr
  (``test_conformance`` stops it with one idle client and SIGTERM only).
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from loadgen.suite.launch import start_server
from servers.protocol import BUSY_REPLY, Op, encode_frame
from tests.conftest import variant_params
from tests.test_reliability import connect, echo_ok, flood_until_stuck, served_soon, wait_closed

LOW_NOFILE = 64  # the server's descriptor limit
FLOOD = 100  # clients connected while it is out of descriptors
STOP_WITHIN = 3.0  # s from the signal to the exit


@pytest.mark.parametrize(
    "name", variant_params(lambda v: v.name in ("asyncio_sockets", "trio_streams"))
)
def test_out_of_descriptors_excess_clients_hear_busy(name: str, tmp_path: Path) -> None:
    with start_server(name, tmp_path) as server:
        psutil.Process(server.pid).rlimit(psutil.RLIMIT_NOFILE, (LOW_NOFILE, LOW_NOFILE))
        flood = []
        try:
            for _ in range(FLOOD):
                try:
                    flood.append(connect(server, timeout=1.0))
                except OSError:
                    pass
            busy = 0
            for sock in flood[LOW_NOFILE:]:  # well past the limit: never given a descriptor
                received, _ = wait_closed(sock, 2.0)
                busy += received == BUSY_REPLY
        finally:
            for sock in flood:
                sock.close()
        assert busy == len(flood[LOW_NOFILE:]) > 0, f"{busy} of the excess clients heard busy"
        assert served_soon(server), "no new client served after the descriptors were freed"
        assert "Traceback" not in server.stderr_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", variant_params(lambda v: v.name == "trio_streams"))
def test_trio_stops_with_clients_in_every_state(name: str, signum: int, tmp_path: Path) -> None:
    with start_server(name, tmp_path) as server:
        idle = connect(server)
        half = connect(server)
        half.sendall(encode_frame(Op.ECHO, b"x" * 100)[:50])
        hog = connect(server)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        flood_until_stuck(hog)  # its task now waits in send_all
        quitting = connect(server)
        quitting.sendall(encode_frame(Op.QUIT, b""))  # its task now lingers, reading
        echo_ok(server)  # all of them accepted and in place
        clients = [idle, half, hog, quitting]
        try:
            server.process.send_signal(signum)
            started = time.monotonic()
            status = server.terminate(timeout=STOP_WITHIN + 2.0)
            assert status == 0, f"exit status {status}: {server.stderr_text()[-800:]}"
            assert time.monotonic() - started < STOP_WITHIN
            for sock in (idle, half, quitting):
                wait_closed(sock, 1.0)  # EOF or reset, not left hanging
        finally:
            for sock in clients:
                sock.close()
        assert server.stderr_text().strip() == ""
