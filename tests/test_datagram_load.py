"""The UDP load generator (issue 17) against fake servers that lose, repeat, delay or
corrupt replies on purpose, and the datagram command lines.

The fakes are threads of this process over one UDP socket each, so that every
reply's fate is known: ``drop`` every third reply is lost, ``duplicate``
every fifth is sent twice, ``delay`` every seventh arrives after the loss
timeout (late), ``corrupt`` flips a byte of every fourth.  Each run is short
(0.1 s warm-up, 0.6 s measured) and bounded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import servers
from loadgen.engine.config import LoadConfig
from loadgen.engine.datagram import kernel_udp_counters, run_datagram_load
from loadgen.suite import plan as suite_plan
from loadgen.suite.cli import build_parser
from loadgen.suite.launch import start_server, suite_env
from servers.protocol import Status, answer_datagram

DELAY_S = 0.35  # past the 0.2 s loss timeout: a late reply


@contextmanager
def fake_server(mode: str) -> Iterator[int]:
    """A UDP echo server in a thread that misbehaves as ``mode`` says; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()
    timers: list[threading.Timer] = []

    def echo(request: object) -> object:  # the protocol's own ECHO handler shape
        return (Status.OK, request.payload, False)  # type: ignore[attr-defined]

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                data, address = sock.recvfrom(70_000)
            except TimeoutError:
                continue
            reply = answer_datagram(data, echo)
            if not isinstance(reply, bytes):
                continue
            n += 1
            if mode == "drop" and n % 3 == 0:
                continue
            if mode == "corrupt" and n % 4 == 0:
                reply = reply[:-1] + bytes([reply[-1] ^ 0xFF])
            if mode == "delay" and n % 7 == 0:
                timer = threading.Timer(DELAY_S, sock.sendto, (reply, address))
                timers.append(timer)
                timer.start()
                continue
            sock.sendto(reply, address)
            if mode == "duplicate" and n % 5 == 0:
                sock.sendto(reply, address)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for timer in timers:
            timer.join(5)
        sock.close()


def load(port: int, **options: object) -> object:
    settings: dict[str, object] = {"connections": 32, "duration": 0.6, "warmup": 0.1}
    cfg = LoadConfig(host="127.0.0.1", port=port, udp=True, **{**settings, **options})
    return run_datagram_load(cfg)


def test_a_server_that_drops_every_third_reply_loses_a_third() -> None:
    with fake_server("drop") as port:
        result = load(port)
    dg = result.datagram
    assert dg is not None and dg.answered > 100  # 32 flows, ~3 requests per 200 ms stall
    assert result.errors_total == 0
    assert dg.late == 0 and dg.duplicated == 0
    assert dg.answered == result.requests
    assert 0.28 <= dg.lost_fraction <= 0.39, dg  # 1/3, give or take the window's edges
    assert dg.sent == dg.answered + dg.lost  # every request of the period has its outcome


def test_duplicates_are_counted_not_answered_twice() -> None:
    with fake_server("duplicate") as port:
        result = load(port)
    dg = result.datagram
    assert dg.lost == 0 and result.errors_total == 0
    assert 0.12 <= dg.duplicated / dg.answered <= 0.28  # every fifth


def test_a_reply_after_the_timeout_is_lost_then_late() -> None:
    with fake_server("delay") as port:
        result = load(port)
    dg = result.datagram
    assert dg.lost > 0 and dg.late > 0 and result.errors_total == 0
    assert dg.late <= dg.lost


def test_a_wrong_byte_is_an_error_never_a_success() -> None:
    with fake_server("corrupt") as port:
        result = load(port)
    assert result.errors["wrong_reply"] > 0
    assert result.datagram.lost > 0  # a corrupted reply settles nothing: its request is lost


def test_open_loop_sends_the_rate_and_nothing_more() -> None:
    with fake_server("none") as port:
        result = load(port, rate=2000.0)
    dg = result.datagram
    assert 0.8 * 2000 * 0.6 <= dg.sent <= 1.05 * 2000 * 0.6 + 8
    assert dg.lost == 0 and result.latency_us_uncorrected is not None


def test_the_kernel_counters_are_read() -> None:
    counters = kernel_udp_counters()
    assert counters is not None and set(counters) == {"InErrors", "RcvbufErrors", "SndbufErrors"}


def test_nothing_listening_is_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "--target", f"udp:127.0.0.1:{port}", "-d", "0.2"],
        capture_output=True, text=True, timeout=30, env=suite_env(),
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_udp_targets_are_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoadConfig.from_args(build_loadgen_args("udp:192.0.2.1:9"))


def build_loadgen_args(target: str) -> object:
    from loadgen.engine.config import build_parser as loadgen_parser

    return loadgen_parser().parse_args(["--target", target])


# -- the command lines against a real datagram server -------------------------------------


def test_loadgen_cli_reports_rate_p99_and_lost(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with start_server("asyncio_datagram", tmp_path) as server:
        done = subprocess.run(
            [sys.executable, "-m", "loadgen", "--target", server.target, "-c", "8",
             "-d", "0.4", "--warmup", "0.1", "--server-pid", str(server.pid), "--no-counters",
             "--json", str(out)],
            capture_output=True, text=True, timeout=60, env=suite_env({"COLUMNS": "200"}),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "req/s" in done.stdout and "p99" in done.stdout and "lost" in done.stdout
    data = json.loads(out.read_text())
    assert data["config"]["target"].startswith("udp:")
    assert data["datagram"]["answered"] == data["requests"] > 0
    assert data["server"]["cpu_us_per_request"] is not None


def test_shell_echoes_over_udp(tmp_path: Path) -> None:
    with start_server("udp_loop", tmp_path) as server:
        done = subprocess.run(
            [sys.executable, "-m", "loadgen.shell", server.target],
            input="echo hello datagram\nlist\nquit\n", capture_output=True, text=True,
            timeout=30, env=suite_env({"COLUMNS": "200"}),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "hello datagram" in done.stdout
    assert "use TCP" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_servers_list_shows_the_transport() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "servers", "--list"], capture_output=True, text=True, timeout=30,
        env=suite_env(),
    )  # fmt: skip
    lines = done.stdout.splitlines()
    udp = [line.split()[0] for line in lines if "[udp]" in line]
    assert set(udp) == {
        "udp_loop", "udp_threading", "udp_forking", "asyncio_datagram", "gevent_datagram",
        "udp_reuseport", "native_epoll_udp",
    }  # fmt: skip
    assert any(line.startswith("blocking_loop") and "[tcp]" in line for line in lines)


# -- the suite's plan: the transports apart ------------------------------------------------


def test_udp_scenarios_plan_the_datagram_variants_and_their_siblings_only() -> None:
    args = build_parser().parse_args(["--scenarios", "udp-echo,udp-flood", "--no-pin"])
    p = suite_plan.make_plan(args)
    by_key = {c.key: c for c in p.cases}
    assert list(by_key) == ["echo-small", "udp-echo", "udp-flood-1x", "udp-flood-2x",
                            "udp-flood-4x"]  # fmt: skip
    udp = set(by_key["udp-echo"].variants)
    assert "udp_loop" in udp and "blocking_loop" not in udp
    siblings = {servers.get(n).tcp_sibling for n in udp}
    assert set(by_key["echo-small"].variants) <= siblings
    assert "epoll_reactor" not in p.variants
    assert "udp-echo" in {c.key for c in p.counted_cases()}


def test_tcp_scenarios_never_plan_a_datagram_variant() -> None:
    args = build_parser().parse_args(["--scenarios", "echo-small,head-of-line", "--no-pin"])
    p = suite_plan.make_plan(args)
    assert not [n for n in p.variants if n.startswith("udp_") or n.endswith("_datagram")]
    assert "native_epoll_udp" not in p.variants


def test_timing_is_bounded() -> None:
    t0 = time.monotonic()
    with fake_server("drop") as port:
        load(port, duration=0.2, warmup=0.0)
    assert time.monotonic() - t0 < 5.0


# -- the datagram tables, from run records -------------------------------------------------


def _run(case: str, variant: str, round_no: int, tp: float, cpu: float, **datagram: float) -> dict:
    server = {
        "cpu_us_per_request": cpu,
        "cpu_user_us_per_request": cpu / 2,
        "cpu_system_us_per_request": cpu / 2,
        "syscalls_per_request": 2.0 + round_no / 100,
    }
    result = {"throughput_rps": tp + round_no, "latency_us": {"p50": 100.0, "p99": 900.0},
              "server": server, "fairness": {"jain": 1.0, "starved": 0, "not_admitted": 0},
              "errors_total": 0}  # fmt: skip
    if datagram:
        result["datagram"] = datagram
    return {"variant": variant, "case": case, "round": round_no, "status": "ok",
            "purpose": "timed", "result": result, "rate": datagram.get("rate")}  # fmt: skip


def test_udp_echo_rows_show_their_tcp_siblings_costs_and_the_ratio() -> None:
    from loadgen.report import summary, tables

    runs = [_run("echo-small", "asyncio_protocol", r, 40_000.0, 10.0) for r in (1, 2, 3)]
    runs += [_run("udp-echo", "asyncio_datagram", r, 35_000.0, 5.0, lost=2, late=1,
                  duplicated=0, busy=0, lost_fraction=0.001) for r in (1, 2, 3)]  # fmt: skip
    runs += [_run("udp-flood-2x", "asyncio_datagram", r, 50_000.0, 6.0, lost=900, late=0,
                  duplicated=0, busy=0, lost_fraction=0.2 + r / 100, sent_rps=60_000.0,
                  kernel_drops=950) for r in (1, 2, 3)]  # fmt: skip
    cases = [
        {"key": "echo-small", "scenario": "echo-small", "label": "echo-small",
         "kind": "throughput", "variants": ["asyncio_protocol"]},
        {"key": "udp-echo", "scenario": "udp-echo", "label": "udp-echo", "kind": "udp",
         "variants": ["asyncio_datagram"], "transport": "udp", "tcp_case": "echo-small"},
        {"key": "udp-flood-2x", "scenario": "udp-flood", "label": "2x", "kind": "flood",
         "variants": ["asyncio_datagram"], "transport": "udp", "rate_basis": "udp"},
    ]  # fmt: skip
    data = {"cases": cases, "runs": runs, "variants": {}, "verify": {}}
    by_key = {s.case: s for s in summary.summarize(data)}
    echo = by_key["udp-echo"]
    row = echo.rows[0]
    assert row.tcp_sibling == "asyncio_protocol"
    cells = dict(zip(tables.columns(echo), tables.cells(row, echo), strict=True))
    assert cells["CPU UDP ÷ TCP"] == "0.50×"
    assert cells["TCP sibling (echo-small)"] == "asyncio_protocol"
    assert cells["lost / late / dup / busy"] == "2 / 1 / 0 / 0"
    flood = by_key["udp-flood-2x"]
    assert flood.ranked_by == "lost_fraction"
    cells = dict(zip(tables.columns(flood), tables.cells(flood.rows[0], flood), strict=True))
    assert cells["lost % ± CI95"].startswith("22.00%")
    assert cells["kernel drops"] == "950"
