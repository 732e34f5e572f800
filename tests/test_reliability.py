"""Hostile clients, against every variant: timeouts, client limits, descriptor exhaustion.

Issue 10, items 2-4 (docs/PROTOCOL.md, "Timeouts and limits").  Each scenario
gets a server of its own, started through the command line with short
timeouts or a low descriptor limit:

* idle -- a client that connects and sends nothing is closed after
  ``--idle-timeout``, and a second client is served (``blocking_loop``: once
  the first has been closed);
* trickle -- a request whose first byte arrived ``--request-timeout`` ago and
  is still incomplete is answered ``ERROR request timeout`` (when it
  arrives) and closed, however slowly the client keeps trickling;
* stuck output -- a client that sends requests and never reads the replies
  is closed ``--request-timeout`` after the server's output stops moving;
* max clients -- with ``--max-clients 2`` the third client gets one
  ``ERROR server busy`` frame and an end of stream at once, the first two
  are unaffected, and a place that frees up is given to the next client;
* out of descriptors -- with the server's ``RLIMIT_NOFILE`` at 64 and 120
  clients connected, the server stays alive, spends under a fifth of a core
  while out, and serves a new client within seconds once they have left.

Most of each scenario is waiting for a timeout, so the scenarios of one
variant run at the same time (fixture ``observed``): every server is started
first, then every scenario runs in a thread of its own against its own
server, then every server is stopped.  No two scenarios share a server, so
none can pass thanks to another's protection or fail from another's
leftovers.  Each test then reports its own scenario's outcome, its own
failure with the traceback of the assertion that failed.

``native_epoll`` (the C reference) has no timeouts and no client limit: only
the descriptor test applies to it.  ``blocking_loop`` serves one client at a
time by design, so the client-limit test does not apply to it either.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial

import psutil
import pytest

import servers
from loadgen.client import Client, ServerError
from loadgen.procs import process_tree
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import BUSY_REPLY, TIMEOUT_REPLY, Op, encode_frame

IDLE_TIMEOUT = 0.5
REQUEST_TIMEOUT = 1.0
SLACK = 2.0  # s a close may come after its deadline on a busy 2-core machine
TRICKLE_EVERY = 0.3  # s between two bytes of a trickled header
LOW_NOFILE = 64  # the server's descriptor limit in the exhaustion test
FLOOD = 120  # clients connected while the server is out of descriptors
MAX_IDLE_CPU = 0.2  # cores the server tree may spend while out of descriptors
RECOVER_WITHIN = 2.5  # s after the flood leaves until a new client must be served
TCP_ESTABLISHED = 1  # tcpi_state, the first byte of struct tcp_info (Linux)


def connect(server: RunningServer, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def wait_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Read until the server closes (EOF or reset); return what came and when (monotonic)."""
    deadline = time.monotonic() + within
    received = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received, time.monotonic()
        if not data:
            return received, time.monotonic()
        received += data
    raise AssertionError(f"still open after {within:.1f} s (received {received[:40]!r})")


def echo_ok(server: RunningServer, data: bytes = b"ping", timeout: float = 5.0) -> None:
    with Client(server.host, server.port, timeout=timeout) as c:
        assert c.echo(data) == data


# -- 1. idle ---------------------------------------------------------------


def check_idle_client_is_closed(server: RunningServer) -> None:
    idle = connect(server)
    started = time.monotonic()
    with idle:
        # Served meanwhile (blocking_loop: as soon as the idle one is gone).
        echo_ok(server, timeout=IDLE_TIMEOUT + SLACK)
        received, closed = wait_closed(idle, IDLE_TIMEOUT + SLACK)
    assert received == b""
    assert IDLE_TIMEOUT - 0.1 <= closed - started <= IDLE_TIMEOUT + SLACK
    echo_ok(server)  # and the server still serves


# -- 2. trickle ------------------------------------------------------------


def check_incomplete_request_times_out(style: str, server: RunningServer) -> None:
    frame = encode_frame(Op.ECHO, b"x" * 100)  # 105 bytes: never complete at 1 byte per 0.3 s
    with connect(server) as sock:
        started = time.monotonic()
        if style == "two-bytes":
            sock.sendall(frame[:2])
            received, closed = wait_closed(sock, REQUEST_TIMEOUT + SLACK)
        else:
            received, closed = trickle_until_closed(sock, frame, REQUEST_TIMEOUT + SLACK)
        assert received in (b"", TIMEOUT_REPLY)
        # Measured from the first byte: the trickle must not restart the clock.
        assert REQUEST_TIMEOUT - 0.2 <= closed - started <= REQUEST_TIMEOUT + SLACK
        echo_ok(server)


def trickle_until_closed(sock: socket.socket, frame: bytes, within: float) -> tuple[bytes, float]:
    """Send ``frame`` one byte every TRICKLE_EVERY s until the server closes."""
    deadline = time.monotonic() + within
    received = b""
    for byte in frame:
        if time.monotonic() > deadline:
            break
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return received, time.monotonic()
        readable, _, _ = select.select([sock], [], [], TRICKLE_EVERY)
        if readable:
            more, closed = wait_closed(sock, max(0.1, deadline - time.monotonic()))
            return received + more, closed
    raise AssertionError(f"still open after {within:.1f} s of trickling")


# -- 3. stuck output -------------------------------------------------------


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def flood_until_stuck(sock: socket.socket, limit: int = 32 * 1024 * 1024) -> None:
    """Send ECHO requests without reading until the server stops taking them for 0.5 s."""
    request = encode_frame(Op.ECHO, b"y" * 65536)
    sent = 0
    sock.setblocking(False)
    stop = time.monotonic() + 10.0
    while sent < limit and time.monotonic() < stop:
        _, writable, _ = select.select([], [sock], [], 0.5)
        if not writable:
            return  # the server reads no more: its output is stuck behind us
        try:
            sent += sock.send(request)
        except BlockingIOError:
            continue
    raise AssertionError(f"the server kept reading ({sent} bytes sent) although nobody reads")


def check_client_that_never_reads_is_closed(server: RunningServer) -> None:
    with connect(server) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # fill up sooner
        flood_until_stuck(hog)
        stuck = time.monotonic()
        deadline = stuck + REQUEST_TIMEOUT + SLACK
        while tcp_state(hog) == TCP_ESTABLISHED and time.monotonic() < deadline:
            time.sleep(0.05)  # never read: reading would let the output progress
        assert tcp_state(hog) != TCP_ESTABLISHED, "the server kept a client that never reads"
        echo_ok(server)


# -- 4. max clients --------------------------------------------------------


def check_client_over_the_limit_is_refused(server: RunningServer) -> None:
    first = Client(server.host, server.port, timeout=5.0)
    second = Client(server.host, server.port, timeout=5.0)
    with first, second:
        assert first.echo(b"1") == b"1" and second.echo(b"2") == b"2"
        with connect(server) as third:
            received, _ = wait_closed(third, SLACK)
        assert received == BUSY_REPLY
        assert first.echo(b"1") == b"1" and second.echo(b"2") == b"2"
        first.close()
        assert served_soon(server), "the place client 1 left was not given to a new client"
        assert second.echo(b"2") == b"2"


def served_soon(server: RunningServer, within: float = RECOVER_WITHIN) -> bool:
    """A new client is served (not refused busy, not left waiting) within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with Client(
                server.host, server.port, timeout=max(0.1, deadline - time.monotonic())
            ) as c:
                if c.echo(b"again") == b"again":
                    return True
        except (OSError, ServerError):  # busy, reset or not yet accepted
            time.sleep(0.05)
    return False


# -- 5. out of descriptors -------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) spent so far by the process and its live children."""
    total = 0.0
    for proc in process_tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def open_flood(server: RunningServer, count: int) -> list[socket.socket]:
    """``count`` connections, kept open; those the server refuses or resets are fine."""
    socks = []
    for _ in range(count):
        try:
            socks.append(connect(server, timeout=1.0))
        except OSError:
            pass
    return socks


def check_out_of_descriptors(server: RunningServer) -> None:
    # Every process of the server: a prefork worker accepts on its own listener.
    leader = psutil.Process(server.pid)
    for proc in [leader, *leader.children(recursive=True)]:
        proc.rlimit(psutil.RLIMIT_NOFILE, (LOW_NOFILE, LOW_NOFILE))
    flood = open_flood(server, FLOOD)
    try:
        time.sleep(0.3)  # let it run into the limit
        before, t0 = tree_cpu(server.pid), time.monotonic()
        time.sleep(0.6)  # a spinning server shows ~1 core over this; a waiting one ~0
        cores = (tree_cpu(server.pid) - before) / (time.monotonic() - t0)
        assert server.process.poll() is None, f"the server died:\n{server.stderr_text()}"
        assert cores < MAX_IDLE_CPU, f"{cores:.2f} cores spent while out of descriptors"
    finally:
        for sock in flood:
            sock.close()
    assert served_soon(server), "no new client served after the descriptors were freed"
    assert server.process.poll() is None


# -- the scenarios, each on its own server, all of a variant at once --------


def no_timeouts(variant: servers.Variant) -> str | None:
    if variant.is_reference:
        return f"{variant.name} is a reference with no timeouts or client limit (ECHO only)"
    return None


def no_client_limit(variant: servers.Variant) -> str | None:
    if not variant.concurrent:
        return f"{variant.name} serves one client at a time by design: no client limit"
    return no_timeouts(variant)


@dataclass(frozen=True)
class Scenario:
    """One hostile client: the server options it needs, and what it checks."""

    args: tuple[str, ...]
    check: Callable[[RunningServer], None]
    skip_reason: Callable[[servers.Variant], str | None] = no_timeouts


REQUEST_ARGS = ("--request-timeout", str(REQUEST_TIMEOUT), "--idle-timeout", "30")
SCENARIOS = {
    "idle": Scenario(("--idle-timeout", str(IDLE_TIMEOUT)), check_idle_client_is_closed),
    "trickle": Scenario(REQUEST_ARGS, partial(check_incomplete_request_times_out, "trickle")),
    "two-bytes": Scenario(REQUEST_ARGS, partial(check_incomplete_request_times_out, "two-bytes")),
    "stuck output": Scenario(REQUEST_ARGS, check_client_that_never_reads_is_closed),
    "max clients": Scenario(
        ("--max-clients", "2"), check_client_over_the_limit_is_refused, no_client_limit
    ),
    "out of descriptors": Scenario((), check_out_of_descriptors, lambda v: None),
}
# The scenario of each test without a ``scenario`` parameter.
SCENARIO_OF_TEST = {
    "test_idle_client_is_closed": "idle",
    "test_client_that_never_reads_is_closed": "stuck output",
    "test_client_over_the_limit_is_refused": "max clients",
    "test_out_of_descriptors": "out of descriptors",
}

Outcomes = dict[str, BaseException | None]


def selected_scenarios(request: pytest.FixtureRequest, name: str) -> set[str]:
    """The scenarios of this module's tests selected for variant ``name`` (``-k`` honoured)."""
    wanted = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is request.module and params.get("variant") == name:
            wanted.add(params.get("scenario") or SCENARIO_OF_TEST[item.originalname])  # type: ignore[attr-defined]
    return wanted


def outcome_of(
    check: Callable[[RunningServer], None], server: RunningServer
) -> BaseException | None:
    try:
        check(server)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the scenario's own test
        return exc
    return None


@pytest.fixture(scope="module")
def observed(
    variant: servers.Variant,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outcomes]:
    """Run this variant's selected scenarios at once, each against its own server."""
    keys = sorted(
        key
        for key in selected_scenarios(request, variant.name)
        if SCENARIOS[key].skip_reason(variant) is None
    )
    # Made here, not in the threads: mktemp is not thread-safe.
    roots = {
        key: tmp_path_factory.mktemp(f"{variant.name}-{key.replace(' ', '-')}") for key in keys
    }
    outcomes: Outcomes = {}
    with ThreadPoolExecutor(max(1, len(keys))) as pool, ExitStack() as stop_all:

        def start(key: str) -> RunningServer:
            return start_server(variant.name, roots[key], extra_args=list(SCENARIOS[key].args))

        # Every server ready before any scenario's clock starts: start-up is the CPU-heavy part.
        starting = {key: pool.submit(start, key) for key in keys}
        running: dict[str, RunningServer] = {}
        for key, future in starting.items():
            try:
                running[key] = stop_all.enter_context(future.result())
            except BaseException as exc:  # noqa: BLE001 - reported by the scenario's test
                outcomes[key] = exc
        checks = {
            key: pool.submit(outcome_of, SCENARIOS[key].check, s) for key, s in running.items()
        }
        outcomes.update({key: future.result() for key, future in checks.items()})
        stop_all.callback(lambda: list(pool.map(RunningServer.stop, running.values())))
    yield outcomes


def verdict(variant: servers.Variant, observed: Outcomes, key: str) -> None:
    """Skip where the scenario does not apply; else fail as the scenario failed, if it did."""
    reason = SCENARIOS[key].skip_reason(variant)
    if reason:
        pytest.skip(reason)
    error = observed[key]
    if error is not None:
        raise error


def test_idle_client_is_closed(variant: servers.Variant, observed: Outcomes) -> None:
    verdict(variant, observed, "idle")


@pytest.mark.parametrize("scenario", ["trickle", "two-bytes"])
def test_incomplete_request_times_out(
    variant: servers.Variant, observed: Outcomes, scenario: str
) -> None:
    verdict(variant, observed, scenario)


def test_client_that_never_reads_is_closed(variant: servers.Variant, observed: Outcomes) -> None:
    verdict(variant, observed, "stuck output")


def test_client_over_the_limit_is_refused(variant: servers.Variant, observed: Outcomes) -> None:
    verdict(variant, observed, "max clients")


def test_out_of_descriptors(variant: servers.Variant, observed: Outcomes) -> None:
    verdict(variant, observed, "out of descriptors")
