"""Soak: keep one server up for minutes of hostile load and look for resources that grow.

``python run_all.py --profile soak`` (or ``python -m loadgen.suite.soak``)
starts each variant once and runs back-to-back *segments* against it:

* a ``mixed`` segment: the engine's mixed workload (80% ECHO, 15% GET,
  5% PUT) at 16 connections, 2 of them slow clients that send a byte every
  5 ms (the reference ``native_epoll`` serves ECHO only: it gets ECHO);
* a ``churn`` segment: a new connection for every request;
* after every segment, a burst of abrupt resets: a few raw sockets that send
  half a frame and close with ``SO_LINGER`` 0 (an RST, not a FIN), then one
  ECHO to check the server still answers.

Connections are capped at the variant's inherent client limit
(``blocking_loop`` serves one client at a time, so it gets one): the soak
asks whether a server *leaks*, not how many clients it holds.

After each segment the server has no client; once the tree's descriptor,
thread and process counts are steady, the tree is sampled: RSS, open
descriptors, threads and child processes, each summed over the leader and
every descendant (a zombie counts as a child: nobody reaped it).  The
x axis is the cumulative number of requests the engine completed.

**The rule.**  Each resource is fitted against cumulative requests by least
squares, after discarding the first samples as warm-up (the start sample
and the first segment or two: the allocator and caches grow to their
working size there).  The slope is given per million requests with a 95%
t interval (n - 2 degrees of freedom).  A resource *grows* when both

1. the interval lies wholly above zero (the growth is not noise), and
2. the fitted growth over the fitted part of the run (slope x requests
   spanned) exceeds :data:`THRESHOLDS`: 1 MiB of RSS, 2 descriptors,
   2 threads, 2 children (a real but tiny drift -- one cache filling up --
   is not called a leak).

A growing resource is then judged on the later half of the run, since a
straight line through a curve that levels off (glibc's per-thread arenas
filling, a cache reaching its size) cannot tell it from a leak: it
*plateaus* when the later half's slope is shown below half the first
half's (the upper end of its 95% interval under half the first half's
slope), and it *leaks* when the later half's own interval lies above zero
and it has not slowed so.  Neither shown is "too short to tell".

Fewer than :data:`MIN_FIT_POINTS` samples after warm-up (or in a half, for
a growing resource) gives no verdict ("too short to tell").  Errors from
the load (wrong replies, timeouts, resets, a server that stopped answering)
are counted and reported beside the verdict, never folded into it or hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

import servers
from loadgen.client import Client, ServerError
from loadgen.engine.result import LoadResult
from loadgen.procs import killpg, process_tree, tree_memory
from loadgen.report.leaks import (  # noqa: F401  (re-exported: the soak's public names)
    CONFIDENCE,
    LEVEL_OFF,
    MIN_FIT_POINTS,
    RESOURCES,
    THRESHOLDS,
    Fit,
    fit_slope,
    halves,
    judge,
    trend,
    verdict,
    warmup_samples,
)
from loadgen.suite import harness
from loadgen.suite.harness import Pinning
from loadgen.suite.launch import RunningServer, ServerStartError, start_server
from loadgen.suite.scenarios import Case
from servers.protocol import Op, encode_frame

MIB = 1024 * 1024

DEFAULT_MINUTES = 3.0  # per variant
SEGMENT_SECONDS = 6.0  # one segment's load, before shortening for short soaks
MIN_SEGMENT_SECONDS = 1.0
SEGMENTS_WANTED = 8  # a short soak shortens its segments to get about this many

CONNECTIONS = 16
SLOW_CLIENTS = 2
PAYLOAD = 512  # bytes: ECHO payload and file size (a slow client's ECHO takes ~2.6 s)
CHURN_PAYLOAD = 64

RESETS_PER_BURST = 8
RESET_CONNECT_TIMEOUT = 2.0  # seconds; a full backlog must not hold the soak
RESET_PAUSE = 0.02  # seconds between the half frame and the RST: the server is mid-request
ALIVE_TIMEOUT = 5.0  # seconds for the ECHO that checks the server still answers

QUIESCE_STEP = 0.2  # seconds between reads while waiting for the counts to settle
QUIESCE_LIMIT = 3.0  # seconds; then the last read is taken as it is


# -- sampling the server's tree ---------------------------------------------------------------

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def tree_counts(pid: int) -> tuple[int, int, int] | None:
    """(descriptors, threads, children) summed over the tree; None if the leader is gone."""
    tree = process_tree(pid)
    if not tree:
        return None
    fds = threads = 0
    for proc in tree:
        try:
            fds += proc.num_fds()
            threads += proc.num_threads()
        except _GONE:
            continue  # exited (or a zombie: no threads, no descriptors) since the walk
    return fds, threads, len(tree) - 1


def settled_sample(pid: int) -> dict[str, int] | None:
    """The tree's resources once its counts have stopped moving (clients just left).

    Threads and processes of the last clients take a moment to exit and be
    reaped; sampling while they do would put noise (not growth) in the fit.
    Waits until two reads :data:`QUIESCE_STEP` apart agree, at most
    :data:`QUIESCE_LIMIT` seconds.
    """
    deadline = time.monotonic() + QUIESCE_LIMIT
    last = tree_counts(pid)
    while last is not None and time.monotonic() < deadline:
        time.sleep(QUIESCE_STEP)
        now = tree_counts(pid)
        if now == last:
            break
        last = now
    if last is None:
        return None
    rss = tree_memory(process_tree(pid)).rss
    fds, threads, children = last
    return {"rss_bytes": rss, "fds": fds, "threads": threads, "children": children}


# -- resets -----------------------------------------------------------------------------------

_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() sends RST and drops unsent data


def reset_burst(host: str, port: int, count: int = RESETS_PER_BURST) -> int:
    """``count`` clients that send half an ECHO frame and reset; returns how many connected."""
    frame = encode_frame(Op.ECHO, bytes(PAYLOAD))
    half = frame[: len(frame) // 2]
    done = 0
    for _ in range(count):
        try:
            with socket.create_connection((host, port), timeout=RESET_CONNECT_TIMEOUT) as sock:
                sock.sendall(half)
                time.sleep(RESET_PAUSE)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            done += 1
        except OSError:
            continue  # the check that follows says whether the server is still there
    return done


def still_answers(host: str, port: int) -> str | None:
    """One ECHO on a new connection; None if it came back right, else what went wrong."""
    try:
        with Client(host, port, timeout=ALIVE_TIMEOUT) as client:
            got = client.echo(b"soak")
    except (OSError, ServerError) as exc:
        return f"the server did not answer an ECHO after resets: {exc.__class__.__name__}: {exc}"
    return None if got == b"soak" else f"ECHO after resets returned {got!r}"


# -- one variant --------------------------------------------------------------------------------


def soak_cases(variant: servers.Variant) -> tuple[Case, Case]:
    """The variant's two loads: mixed (ECHO only for the reference) with slow clients, churn."""
    conns = min(CONNECTIONS, variant.max_clients or CONNECTIONS)
    slow = min(SLOW_CLIENTS, conns - 1)
    workload = "echo" if variant.is_reference else "mixed"
    mixed = Case(
        key=f"soak-{workload}",
        scenario="soak",
        label=f"{workload}, {conns} connections, {slow} slow",
        workload=workload,
        size=PAYLOAD,
        connections=conns,
        slow_clients=slow,
    )
    churn = Case(
        key="soak-churn",
        scenario="soak",
        label=f"churn, {conns} connections",
        workload="churn",
        size=CHURN_PAYLOAD,
        connections=conns,
    )
    return mixed, churn


def segment_seconds(minutes: float, wanted: float | None = None) -> float:
    """Seconds of load per segment: :data:`SEGMENT_SECONDS`, shorter in a short soak."""
    if wanted is not None:
        return wanted
    return min(SEGMENT_SECONDS, max(MIN_SEGMENT_SECONDS, minutes * 60 / SEGMENTS_WANTED))


def new_record() -> dict[str, Any]:
    """One variant's entry in the report, filled as the soak goes."""
    return {
        "status": "not run",
        "reason": None,
        "loads": [],
        "requests": 0,
        "segments": 0,
        "resets": 0,
        "samples": [],
        "errors": {},
        "failures": [],
        "fits": {},
        "verdict": None,
        "wall_s": 0.0,
    }


def soak_variant(
    name: str,
    record: dict[str, Any],
    *,
    seconds: float,
    segment: float,
    pinning: Pinning | None,
    console: Console,
) -> None:
    """Run ``name`` for ``seconds`` of segments, filling ``record`` as it goes.

    The server is stopped and its group reaped on every path; a
    KeyboardInterrupt propagates after that, leaving what was measured.
    """
    variant = servers.get(name)
    reason = variant.unavailable_reason
    if reason:
        record.update(status="skipped", reason=f"unavailable: {reason}")
        return
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"cb-soak-{name}-") as root:
        try:
            server = start_server(name, root, cpus=pinning.server if pinning else None)
        except (ServerStartError, OSError, ValueError) as exc:
            record.update(status="failed", reason=f"server did not start: {exc}")
            return
        harness.LIVE_GROUPS.add(server.pid)  # run_all's Ctrl-C path (kill_all) reaches it
        record["status"] = "interrupted"  # until the loop ends normally
        try:
            _segments(server, variant, record, seconds, segment, pinning, console)
        finally:
            _stop(server, record)
            record["wall_s"] = round(time.monotonic() - t0, 3)


def _segments(
    server: RunningServer,
    variant: servers.Variant,
    record: dict[str, Any],
    seconds: float,
    segment: float,
    pinning: Pinning | None,
    console: Console,
) -> None:
    cases = soak_cases(variant)
    record["loads"] = [c.describe() for c in cases]
    errors: Counter[str] = Counter()
    t_start = time.monotonic()
    if not _sample(server, record, 0, "start", t_start):
        return
    number = 0
    while time.monotonic() - t_start < seconds:
        case = cases[number % len(cases)]
        number += 1
        with console.status(f"soak {variant.name}: segment {number} ({case.workload})"):
            result, failure = harness.run_load(
                server, case, duration=segment, warmup=0.0, pinning=pinning
            )
        record["segments"] = number
        if result is not None:
            record["requests"] += result.requests + _slow_requests(result)
            errors.update({k: v for k, v in result.errors.items() if v})
            record["errors"] = dict(errors)
            failure = failure or harness.run_failure(result, case)
        if failure:
            record["failures"].append(f"segment {number} ({case.workload}): {failure}")
        if _server_died(server, record, number):
            return
        _clear_files(server.root)
        record["resets"] += reset_burst(server.host, server.port)
        problem = still_answers(server.host, server.port)
        if problem:
            record["failures"].append(f"segment {number}: {problem}")
        if not _sample(server, record, number, case.workload, t_start):
            return
    record["status"] = "ok"


def _slow_requests(result: LoadResult) -> int:
    """The slow clients' completed requests: counted apart from ``requests`` by the engine."""
    return result.slow_clients.requests if result.slow_clients is not None else 0


def _sample(
    server: RunningServer, record: dict[str, Any], number: int, load: str, t_start: float
) -> bool:
    """Append one settled sample; False (and the reason recorded) if the server is gone."""
    sample = settled_sample(server.pid)
    if sample is None or _server_died(server, record, number):
        record["status"] = "failed"
        record["reason"] = record["reason"] or "the server's process is gone"
        return False
    record["samples"].append(
        {
            "segment": number,
            "load": load,
            "requests": record["requests"],
            "t_s": round(time.monotonic() - t_start, 3),
            **sample,
        }
    )
    return True


def _server_died(server: RunningServer, record: dict[str, Any], number: int) -> bool:
    status = server.process.poll()
    if status is None:
        return False
    tail = server.stderr_text().strip().splitlines()[-1:] or ["(no message)"]
    record["status"] = "failed"
    record["reason"] = f"server exited with status {status} after segment {number}: {tail[0]}"
    return True


def _clear_files(root: str) -> None:
    """Remove the files the segment PUT, so the disk is the same at every sample."""
    for entry in os.scandir(root):
        if entry.name.startswith("loadgen-") and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _stop(server: RunningServer, record: dict[str, Any]) -> None:
    try:
        server.stop()
    finally:
        harness.LIVE_GROUPS.discard(server.pid)
    if server.group_alive():
        killpg(server.pid, signal.SIGKILL)
        record["failures"].append("the server left processes behind after stop (killed)")


# -- the run ------------------------------------------------------------------------------------


def default_variants() -> list[str]:
    """Every registered variant that serves files (the reference serves ECHO only; no fakes;
    a datagram variant serves no files and holds no connection to leak)."""
    return [
        n
        for n, v in servers.REGISTRY.items()
        if v.code != "test" and not v.is_reference and v.transport == "tcp"
    ]


def run_soak(
    variants: list[str],
    minutes: float,
    run_dir: Path,
    console: Console,
    pinning: Pinning | None = None,
    *,
    segment: float | None = None,
) -> dict[str, Any]:
    """Soak each variant for ``minutes``; write ``soak.json`` and ``soak.md`` into ``run_dir``.

    Returns the JSON-able report.  On Ctrl-C every server and load generator
    started here is stopped, what was measured is analysed and written, and
    the report says ``"interrupted": true`` (it is returned, not raised).
    """
    seg = segment_seconds(minutes, segment)
    report: dict[str, Any] = {
        "schema": 1,
        "kind": "soak",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "minutes_per_variant": minutes,
        "segment_seconds": seg,
        "pinning": asdict(pinning) if pinning else None,
        "rule": rule_text(),
        "thresholds": THRESHOLDS,
        "interrupted": False,
        "variants": {},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in variants:
            record = report["variants"][name] = new_record()
            try:
                soak_variant(
                    name, record, seconds=minutes * 60, segment=seg, pinning=pinning,
                    console=console,
                )  # fmt: skip
            finally:
                _analyse(record)
                write(run_dir, report)
            console.print(f"soak {name}: {record['verdict']}  ({_errors_text(record)})")
    except KeyboardInterrupt:
        report["interrupted"] = True  # the servers and loadgens were stopped on the way out
    write(run_dir, report)
    console.print(rich_table(report))
    console.print(f"Wrote {run_dir / 'soak.json'} and {run_dir / 'soak.md'}")
    return report


def _analyse(record: dict[str, Any]) -> None:
    if record["status"] in ("skipped", "not run") or not record["samples"]:
        record["verdict"] = f"not run: {record['reason']}" if record["reason"] else "not run"
        return
    record["fits"] = judge(record["samples"])
    record["verdict"] = verdict(record["fits"])
    if record["status"] == "failed":
        record["verdict"] = f"failed ({record['reason']}); {record['verdict']}"
    elif record["status"] == "interrupted":
        record["verdict"] = f"interrupted; {record['verdict']}"


def rule_text() -> str:
    return (
        "least-squares slope of each resource against cumulative requests, per million "
        f"requests, {CONFIDENCE:.0%} t interval, first samples discarded as warm-up; "
        "a resource grows when the interval lies above zero AND the fitted growth over the "
        "run exceeds 1 MiB RSS / 2 descriptors / 2 threads / 2 children; a growing resource "
        "is judged on the later half of the run: it plateaus when the later half's slope "
        f"is shown below {LEVEL_OFF:.0%} of the first half's (its interval's upper end), "
        "it leaks when the later half still grows (interval above zero) without slowing so"
    )


# -- output ------------------------------------------------------------------------------------

COLUMNS = (
    "variant",
    "requests",
    "RSS KiB/1M",
    "RSS 1st → 2nd half",
    "fds/1M",
    "threads/1M",
    "children/1M",
    "errors",
    "verdict",
)


def _slope_text(entry: dict[str, Any], scale: float = 1.0) -> str:
    if entry.get("slope") is None:
        return "-"
    slope, half = entry["slope"] / scale, (entry["high"] - entry["low"]) / 2 / scale
    return f"{slope:+.1f} ± {half:.1f}"


def _halves_text(entry: dict[str, Any], scale: float = 1.0) -> str:
    """The slopes of the first and the later half, e.g. ``+3100 → +420 ± 310``."""
    first, later = entry.get("first_half"), entry.get("later_half")
    if first is None or later is None:
        return "-"
    return f"{first['slope'] / scale:+.0f} → {_slope_text(later, scale)}"


_UNITS = {"rss_bytes": ("RSS", "KiB", 1024), "fds": ("descriptors", "", 1)}
_UNITS |= {"threads": ("threads", "", 1), "children": ("children", "", 1)}


def growth_notes(report: dict[str, Any]) -> list[str]:
    """One line per resource that grew beyond its threshold: its halves and what they say."""
    lines = []
    for name, rec in report["variants"].items():
        for res, entry in rec["fits"].items():
            if entry.get("slope") is None or entry.get("trend") == "flat":
                continue  # no fit, or no growth beyond noise and the threshold
            label, unit, scale = _UNITS[res]
            said = {"plateaus": "plateaus, not a leak", "leaks": "a leak"}
            lines.append(
                f"{name}: {label} grew {entry['growth'] / scale:,.0f}{' ' + unit if unit else ''}"
                f" over the fitted run; {unit or label}/1M requests {_halves_text(entry, scale)} "
                f"(first half → later half): {said.get(entry['trend'], 'too short to tell')}"
            )
    return lines


def _errors_text(record: dict[str, Any]) -> str:
    errors = record["errors"]
    if not errors:
        return "no errors"
    return ", ".join(f"{v} {k}" for k, v in sorted(errors.items()))


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, rec in report["variants"].items():
        fits = rec["fits"]
        rows.append(
            [
                name,
                f"{rec['requests']:,}",
                _slope_text(fits.get("rss_bytes", {}), 1024),
                _halves_text(fits.get("rss_bytes", {}), 1024),
                _slope_text(fits.get("fds", {})),
                _slope_text(fits.get("threads", {})),
                _slope_text(fits.get("children", {})),
                _errors_text(rec),
                rec["verdict"] or "-",
            ]
        )
    return rows


def rich_table(report: dict[str, Any]) -> Table:
    table = Table(title="Soak: growth per million requests (slope ± 95% CI half-width)")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    for row in table_rows(report):
        table.add_row(*row)
    return table


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Soak",
        "",
        f"{report['minutes_per_variant']:g} min per variant, segments of "
        f"{report['segment_seconds']:g} s (mixed with slow clients, churn; resets after each).",
        "Slopes are per million requests, ± the half-width of the 95% interval.",
        f"Rule: {report['rule']}.",
        "",
    ]
    if report["interrupted"]:
        lines += ["**Interrupted**: what was measured before Ctrl-C.", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    notes = growth_notes(report)
    if notes:
        lines += ["", "## Growth beyond the thresholds: leak or plateau", ""]
        lines += [f"- {line}" for line in notes]
    failures = [(n, f) for n, r in report["variants"].items() for f in r["failures"]]
    if failures:
        lines += ["", "## Failures seen", ""]
        lines += [f"- {name}: {text}" for name, text in failures]
    return "\n".join(lines) + "\n"


def write(run_dir: Path, report: dict[str, Any]) -> None:
    (run_dir / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "soak.md").write_text(markdown(report))


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m loadgen.suite.soak``: 0 no leak and no error, 1 otherwise, 130 on Ctrl-C."""
    p = argparse.ArgumentParser(prog="python -m loadgen.suite.soak", description=__doc__)
    p.add_argument("--servers", default=None, help="comma-separated variants (default: all)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="per variant (3)")
    p.add_argument("--segment-seconds", type=float, default=None, help="load per segment")
    p.add_argument("--out", type=Path, default=None, help="run directory (results/soak-<UTC>)")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load generator")
    args = p.parse_args(argv)
    names = args.servers.split(",") if args.servers else default_variants()
    unknown = [n for n in names if n not in servers.REGISTRY]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(servers.REGISTRY)}")
    udp = [n for n in names if servers.get(n).transport == "udp"]
    if udp:
        p.error(f"{', '.join(udp)}: datagram variants (the soak loads TCP connections)")
    if args.minutes <= 0 or (args.segment_seconds is not None and args.segment_seconds <= 0):
        p.error("--minutes and --segment-seconds must be > 0")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = args.out or Path("results") / f"soak-{stamp}"
    report = run_soak(
        names, args.minutes, run_dir, Console(), Pinning.choose(not args.no_pin),
        segment=args.segment_seconds,
    )  # fmt: skip
    if report["interrupted"]:
        return 130
    clean = all(
        r["verdict"].startswith("no leak") and not r["errors"] and not r["failures"]
        for r in report["variants"].values()
        if r["status"] != "skipped"
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
