"""The text of every table cell and note: the same in the terminal and in report.md.

:mod:`loadgen.report.summary` turns runs into rows of figures; this module
turns a row into the strings a reader sees (``columns``, ``cells``,
``notes``, ``top_syscalls``) and holds the number formats (``fmt_rate``,
``fmt_us``, ``fmt_bytes``, ...).  :mod:`loadgen.report.results` prints and
writes them, so the terminal and report.md cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable

from loadgen.engine.bottleneck import NEAR_CEILING
from loadgen.report.summary import (
    MEMORY_FIGURES,
    RATIO,
    SHORT_NAMES,
    CaseSummary,
    Row,
    Stat,
    resolution,
)
from loadgen.report.units import fmt_bytes, fmt_count, fmt_rate, fmt_ratio, fmt_us

# -- cells: the same text in the terminal and in report.md --------------------


def fmt_ci(stat: Stat | None, fmt: Callable[[float | None], str]) -> str:
    """``mean ± half-width of the 95% interval``; the mean alone with one repeat."""
    if stat is None:
        return "–"
    half = stat.half_width
    if half is None:
        return fmt(stat.mean)
    if fmt is fmt_rate and stat.mean >= 10_000:  # both in k: "100.3k ± 5.6k"
        return f"{fmt(stat.mean)} ± {half / 1000:.1f}k"
    mean, pm = fmt(stat.mean), fmt(half)
    unit = mean.rpartition(" ")[2]
    if " " in mean and pm.endswith(" " + unit):  # one unit for both: "2.7 ± 1.6 ms"
        return f"{mean.rpartition(' ')[0]} ± {pm}"
    return f"{mean} ± {pm}"


def _memory_cell(row: Row, figure: str) -> str:
    stat = row.stats.get(figure)
    res = resolution(stat, row.figure("idle_served"))
    if stat is not None and res is not None and stat.mean < res:
        return f"below resolution (< {fmt_bytes(res)})"
    return fmt_ci(stat, fmt_bytes)


COSTS = "ctx sw / syscalls per req"
LIMIT = "limit"  # the bottleneck class
FAIR = "Jain / starved / errors"


def columns(summary: CaseSummary) -> list[str]:
    """The table's header. Throughput tables fit 180 terminal columns: fairness and errors
    share a column, and the paired-ratio column, when ranks come from it, replaces % best."""
    if summary.kind == "memory":
        return [
            "#",
            "variant",
            "memory/conn USS ± CI95",
            "memory/conn PSS ± CI95",
            "PSS before",
            "PSS with N",
            "threads",
            "children",
            "errors",
            "flags",
        ]
    if summary.kind == "c10k":
        return [
            "#",
            "variant",
            "connect all",
            "all served",
            "ECHO round p99 ± CI95",
            "p50",
            "memory/conn USS ± CI95",
            "memory/conn PSS ± CI95",
            "PSS with N",
            "errors",
            "flags",
        ]
    if summary.kind in WORK_KINDS:
        return _work_columns(summary)
    if summary.kind in DATAGRAM_KINDS:
        return _datagram_columns(summary)
    if summary.kind == "open":
        return [
            "#",
            "variant",
            "req/s done / asked",
            "p99 ± CI95",
            "p50 / p99.9",
            "p99 uncorr.",
            "CPU µs/req usr/sys",
            COSTS,
            LIMIT,
            FAIR,
            "flags",
        ]
    relative = "% best"
    if summary.ranked_by == RATIO:  # the figure the ranks were decided on must be visible
        relative = f"× {summary.paired_reference or 'ref'} ± CI95"
    return [
        "#",
        "variant",
        "req/s ± CI95",
        relative,
        "p50 / p99 / p99.9",
        "CPU µs/req usr/sys",
        COSTS,
        LIMIT,
        "PSS",
        FAIR,
        "flags",
    ]


def cells(row: Row, summary: CaseSummary) -> list[str]:
    """One row's cells, in :func:`columns` order."""
    s = row.stats
    rank = row.rank_label or ("ref" if row.reference else "–")
    if summary.too_noisy and row.rank is not None:
        rank = "–"  # one tie group for nearly every row: the note under the table says so
    if summary.kind == "memory":
        err = row.figure("errors_total")
        errors = "–" if err is None else f"{err:,.1f}".removesuffix(".0")
        return [
            rank,
            row.variant,
            _memory_cell(row, MEMORY_FIGURES[0]),
            _memory_cell(row, MEMORY_FIGURES[1]),
            fmt_bytes(row.figure("baseline_pss_bytes")),
            fmt_bytes(row.figure("memory_pss_bytes")),
            _num(row.figure("peak_threads")),
            _num(row.figure("peak_children")),
            errors,
            row.short_flags(),
        ]
    if summary.kind == "c10k":
        return _c10k_cells(row, rank)
    if summary.kind in WORK_KINDS:
        return _work_cells(row, summary, rank)
    if summary.kind in DATAGRAM_KINDS:
        return _datagram_cells(row, summary, rank)
    shared = [_cpu_cell(row), _costs_cell(row), row.bottleneck or "–"]
    if summary.kind == "open":
        tails = " / ".join(fmt_us(row.figure(f)) for f in ("p50_us", "p999_us"))
        return [
            rank,
            row.variant,
            f"{fmt_rate(row.figure('throughput_rps'))} / {fmt_rate(row.figure('rate'))}",
            fmt_ci(s.get("p99_us"), fmt_us),
            tails,
            fmt_us(row.figure("p99_uncorrected_us")),
            *shared,
            _fair_cell(row),
            row.short_flags(),
        ]
    tp = fmt_ci(s.get("throughput_rps"), fmt_rate)
    if row.floor and tp != "–":
        tp = "≥ " + tp
    if summary.ranked_by == RATIO:
        relative = fmt_ci(s.get(RATIO), fmt_ratio)
        if row.variant == summary.paired_reference:
            relative = "1 (ref)"
    else:
        relative = "–" if row.pct_of_best is None else f"{row.pct_of_best:.0f}%"
    lat = " / ".join(fmt_us(row.figure(f)) for f in ("p50_us", "p99_us", "p999_us"))
    return [
        rank,
        row.variant,
        tp,
        relative,
        lat,
        *shared,
        fmt_bytes(row.figure("memory_pss_bytes")),
        _fair_cell(row),
        row.short_flags(),
    ]


# -- the datagram scenarios (issue 17): udp-echo, udp-flood -------------------------

DATAGRAM_KINDS = ("udp", "flood")
LOSS = "lost / late / dup"


def _datagram_columns(summary: CaseSummary) -> list[str]:
    if summary.kind == "udp":
        tcp = summary.baseline or "TCP"
        return ["#", "variant", "req/s ± CI95", "% best", "p50 / p99", LOSS + " / busy",
                "CPU µs/req usr/sys", COSTS, f"TCP sibling ({tcp})", "TCP CPU µs/req usr/sys",
                "TCP " + COSTS, "CPU UDP ÷ TCP", LIMIT, "flags"]  # fmt: skip
    return ["#", "variant", "req/s answered / sent / asked", "lost % ± CI95", LOSS, "busy",
            "kernel drops", "answered p50 / p99 from the send", "p99 from the schedule",
            "CPU µs/req usr/sys", LIMIT, "flags"]  # fmt: skip


def _datagram_cells(row: Row, summary: CaseSummary, rank: str) -> list[str]:
    s = row.stats
    loss = " / ".join(_num(row.figure(f)) for f in ("lost", "late", "duplicated"))
    lat = f"{fmt_us(row.figure('p50_us'))} / {fmt_us(row.figure('p99_us'))}"
    if summary.kind == "flood":
        rates = " / ".join(fmt_rate(row.figure(f)) for f in ("throughput_rps", "sent_rps", "rate"))
        sent = " / ".join(fmt_us(row.figure(f"{p}_uncorrected_us")) for p in ("p50", "p99"))
        return [rank, row.variant, rates, fmt_ci(s.get("lost_fraction"), _percent), loss,
                _num(row.figure("busy")), _num(row.figure("kernel_drops")), sent,
                fmt_us(row.figure("p99_us")), _cpu_cell(row), row.bottleneck or "–",
                row.short_flags()]  # fmt: skip
    tp = fmt_ci(s.get("throughput_rps"), fmt_rate)
    if row.floor and tp != "–":
        tp = "≥ " + tp
    loss += f" / {_num(row.figure('busy'))}"
    best = "–" if row.pct_of_best is None else f"{row.pct_of_best:.0f}%"
    udp_cpu, tcp_cpu = row.figure("cpu_us_per_request"), row.figure("tcp_cpu_us_per_request")
    ratio = f"{udp_cpu / tcp_cpu:.2f}×" if udp_cpu is not None and tcp_cpu else "–"
    tcp = _cpu_cell(row, "tcp_")
    tcp_costs = _costs_cell(row, "tcp_")
    return [rank, row.variant, tp, best, lat, loss, _cpu_cell(row), _costs_cell(row),
            row.tcp_sibling or "–", tcp, tcp_costs, ratio, row.bottleneck or "–",
            row.short_flags()]  # fmt: skip


def _percent(x: float | None) -> str:
    """A fraction as a percentage: 0.0123 -> ``1.23%`` (two decimals: a loss is small)."""
    return "–" if x is None else f"{100 * x:.2f}%"


def _datagram_notes(summary: CaseSummary) -> list[str]:
    if summary.kind == "udp":
        out = [
            "lost = no reply within 200 ms (the flow went on); late = a reply to a request "
            "already counted lost; dup = a second reply to one answered; busy = ERROR server "
            "busy, the model's own limit on requests in progress (counts in the measured "
            "period, means over the repeats).",
        ]
        if summary.baseline and not summary.baseline_found:
            out.append(
                f"{summary.baseline} was not run here: no TCP figures to set beside "
                f"(run it too: --scenarios {summary.baseline},{summary.scenario})."
            )
        elif summary.baseline:
            out.append(
                f"TCP sibling: the TCP variant of the same model; its figures are its row in "
                f"{summary.baseline} of this run (copied, not measured again: 64 connections "
                "of 64-byte ECHO, the same load over TCP). CPU UDP ÷ TCP: the ratio of the "
                "two CPU µs/req means (below 1: the datagram costs less per request)."
            )
        return out
    return [
        "Open loop at the multiple of each variant's own udp-echo req/s in the table's title; "
        "lost % = lost ÷ (answered + lost + busy) of the requests scheduled in the measured "
        "period, ranked by it (less is better); busy = ERROR server busy (the server's own "
        "limit). kernel drops = /proc/net/snmp Udp InErrors over the period and its 200 ms "
        "drain, machine-wide (the generator's sockets' drops too). The answered requests' "
        "latency from the send is the server's (its queue and its work, under the 200 ms "
        "timeout); from the schedule it also holds the generator's own lag where it could "
        "not keep the rate. req/s answered / sent / asked: one Python "
        "generator cannot send every rate asked (flagged 'rate not reached'); the sent rate "
        "is the load the server was offered, the multiple it really faced.",
    ]


# -- the WORK scenarios (issue 16): backend-wait, cpu-bound, head-of-line, blocking-call ----

WORK_KINDS = ("wait", "cpu", "neighbour")
OFFLOAD = "offload served by"  # how each variant serves WORK offload (the registry's words)
CORES = "server cores"  # the server tree's CPU seconds per second over the window


def _work_columns(summary: CaseSummary) -> list[str]:
    if summary.kind == "wait":
        return ["#", "variant", "req/s ± CI95", "ideal", "% of ideal", "p50 / p99",
                "CPU µs/req usr/sys", CORES, LIMIT, FAIR, "flags"]  # fmt: skip
    if summary.kind == "cpu":
        return ["#", "variant", "req/s ± CI95", "% best", f"{CORES} ± CI95", "generator cores",
                "p50 / p99", "CPU µs/req usr/sys", LIMIT, FAIR, "flags"]  # fmt: skip
    beside = []
    if summary.baseline:
        b = summary.baseline
        beside = [f"{b} p50 / p99", f"{b} req/s", f"p99 ÷ {b}'s"]
    if summary.offload is not None:
        beside.append(OFFLOAD)
    return ["#", "variant", "victims p99 ± CI95", "p50", "victims req/s", "neighbour req/s",
            *beside, FAIR, "flags"]  # fmt: skip


def _work_cells(row: Row, summary: CaseSummary, rank: str) -> list[str]:
    s = row.stats
    lat = f"{fmt_us(row.figure('p50_us'))} / {fmt_us(row.figure('p99_us'))}"
    tp = fmt_ci(s.get("throughput_rps"), fmt_rate)
    if row.floor and tp != "–":
        tp = "≥ " + tp
    if summary.kind == "wait":
        pct = row.figure("pct_of_ideal")
        return [rank, row.variant, tp, fmt_rate(summary.ideal_rps),
                "–" if pct is None else f"{pct:.0f}%", lat, _cpu_cell(row),
                _cores(row.figure("server_cpu_util")), row.bottleneck or "–", _fair_cell(row),
                row.short_flags()]  # fmt: skip
    if summary.kind == "cpu":
        best = "–" if row.pct_of_best is None else f"{row.pct_of_best:.0f}%"
        return [rank, row.variant, tp, best, fmt_ci(s.get("server_cpu_util"), _cores),
                _cores(row.figure("loadgen_cpu_util")), lat, _cpu_cell(row),
                row.bottleneck or "–", _fair_cell(row), row.short_flags()]  # fmt: skip
    beside = []
    if summary.baseline:
        base_p99 = row.figure("baseline_p99_us")
        p99 = row.figure("p99_us")
        ratio = f"{p99 / base_p99:,.2g}×" if p99 is not None and base_p99 else "–"
        beside = [
            f"{fmt_us(row.figure('baseline_p50_us'))} / {fmt_us(base_p99)}",
            fmt_rate(row.figure("baseline_throughput_rps")),
            ratio,
        ]
    if summary.offload is not None:
        # the idiom's name or "none needed" / "no idiom"; the note under the table says more
        beside.append(summary.offload.get(row.variant, "–").split(":")[0])
    return [rank, row.variant, fmt_ci(s.get("p99_us"), fmt_us), fmt_us(row.figure("p50_us")),
            fmt_rate(row.figure("throughput_rps")), _neighbour_rate(row.figure("neighbour_rps")),
            *beside, _fair_cell(row), row.short_flags()]  # fmt: skip


def _cores(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _neighbour_rate(x: float | None) -> str:
    """A neighbour's req/s: tens per second, so one decimal below 100."""
    if x is None:
        return "–"
    return f"{x:.1f}" if x < 100 else fmt_rate(x)


def _cpu_cell(row: Row, prefix: str = "") -> str:
    """``usr / sys`` µs per request; the total alone (``12.3 total``) when the user/system
    split was unknown (the monitor's ticks saw too little of the CPU: a fork server's young
    children).  ``prefix`` "tcp_": udp-echo's TCP sibling's figures."""
    user = row.figure(prefix + "cpu_user_us_per_request")
    sysc = row.figure(prefix + "cpu_system_us_per_request")
    if user is None:
        total = row.figure(prefix + "cpu_us_per_request")
        return "–" if total is None else f"{total:.1f} total"
    return f"{user:.1f} / {sysc:.1f}" if sysc is not None else f"{user:.1f}"


def _work_notes(summary: CaseSummary) -> list[str]:
    """The sentences a WORK table needs to be read: what the ideal is, what the generator
    cost, what the victims and the neighbour are."""
    out = []
    repeats = [r.runs for r in summary.rows if r.ranked]
    if repeats and max(repeats) == 2:
        out.append(
            "2 repeats: at n = 2 the t factor is 12.7, so the intervals are wide and the tie "
            "test separates only large differences; read the figures, not only the letters."
        )
    elif repeats and max(repeats) == 1:
        out.append(
            "1 repeat (a profile's short version): no spread is known, so no row is told "
            "apart from another and every row has the letter a; the figures still show the "
            "pattern."
        )
    if summary.kind == "wait" and summary.uncapped_ideal_rps is not None:
        ideal = f"ideal = connections ÷ the wait = {fmt_rate(summary.uncapped_ideal_rps)} req/s"
        if summary.ceiling_rps is None:
            out.append(
                f"{ideal}, not capped: echo-small was not run here, whose best req/s is the "
                "generator's ceiling (run it too for a bounded ideal)."
            )
        else:
            capped = summary.ideal_rps == summary.ceiling_rps
            out.append(
                f"{ideal}, capped at the generator's ceiling: the most req/s any variant "
                f"reached in echo-small in this run ({summary.ceiling_from}, "
                f"{fmt_rate(summary.ceiling_rps)})"
                + (f", so {fmt_rate(summary.ideal_rps)}" if capped else ", above it")
                + "; % of ideal = each repeat's req/s ÷ the ideal."
            )
    if summary.kind == "cpu":
        gen = [(x, r.variant) for r in summary.rows if (x := r.figure("loadgen_cpu_util"))]
        cores = [x for r in summary.rows if (x := r.figure("server_cpu_util")) is not None]
        if gen and cores:
            most, who = max(gen)
            out.append(
                f"The generator used at most {most:.2f} of a core (beside {who}), the servers "
                f"up to {max(cores):.2f} cores: on the CPUs they share, the generator's cost is "
                "small at this rate. server cores = the server tree's CPU seconds per second."
            )
        out.append(
            "limit `neither` at about 1 server core: the GIL or the one loop was the limit, "
            "not the CPUs (the server may use all of them here)."
        )
    if summary.kind == "neighbour":
        out.append(
            "victims = the ECHO connections (their p50, p99, req/s, fairness and errors are the "
            "table's); neighbour req/s = the neighbour's own completed WORK requests per second "
            "(at most 1 ÷ the time one takes)."
        )
        if summary.baseline and not summary.baseline_found:
            out.append(
                f"{summary.baseline} was not run here: nothing to set beside "
                f"(run it too: --scenarios {summary.baseline},{summary.scenario})."
            )
        if summary.offload:
            out.append(
                f"{OFFLOAD}: the model's framework idiom for a blocking call (the registry's "
                "Variant.offload); 'none needed': a thread or a process per client blocks "
                "itself only; 'no idiom': a hand-written loop or hub has no executor, so the "
                "call is served as block and stalls it like the block case."
            )
        if summary.baseline and summary.baseline_found:
            out.append(
                f"{summary.baseline} p50 / p99, req/s: the same variant in the {summary.baseline} "
                f"case of this run (copied, not measured again); p99 ÷ {summary.baseline}'s: "
                "how many times the victims' p99 is that one."
            )
    return out


def _c10k_cells(row: Row, rank: str) -> list[str]:
    """c10k: the time to open every connection (client side), to serve every one its ECHO
    (``admit_s``; "> limit" when some never were), the round's latency, memory, errors."""
    served = row.figure("admit_s")
    if served is None and row.runs:
        served = "not all"
    err = row.figure("errors_total")
    return [
        rank,
        row.variant,
        _seconds(row.figure("ramp_s")),
        served if isinstance(served, str) else _seconds(served),
        fmt_ci(row.stats.get("p99_us"), fmt_us),
        fmt_us(row.figure("p50_us")),
        _memory_cell(row, MEMORY_FIGURES[0]),
        _memory_cell(row, MEMORY_FIGURES[1]),
        fmt_bytes(row.figure("memory_pss_bytes")),
        "–" if err is None else f"{err:,.1f}".removesuffix(".0"),
        row.short_flags(),
    ]


def _seconds(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def _fair_cell(row: Row) -> str:
    """``0.99 / 0 / 0``: Jain's index, starved connections and errors, means over repeats."""
    jain, starved, err = (row.figure(f) for f in ("jain", "starved", "errors_total"))
    if jain is None and err is None:
        return "–"
    errors = "–" if err is None else f"{err:,.1f}".removesuffix(".0")
    return f"{'–' if jain is None else f'{jain:.2f}'} / {starved or 0:.0f} / {errors}"


def _costs_cell(row: Row, prefix: str = "") -> str:
    """``0.02 / 3.10``: context switches and system calls per request (``–`` if not counted;
    the note under the table says why syscalls are missing); ``prefix`` as :func:`_cpu_cell`."""
    cs = row.figure(prefix + "context_switches_per_request")
    sc = row.figure(prefix + "syscalls_per_request")
    if cs is None and sc is None:
        return "–"
    return f"{fmt_count(cs)} / {fmt_count(sc)}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def top_syscalls(row: Row, n: int = 5) -> str:
    """``"recvfrom 1.00, sendto 1.00, epoll_wait 0.31"``: the row's most frequent calls per
    request ("other", the calls not named, left out); "" when none were counted."""
    if not row.syscalls_by_name:
        return ""
    items = [(k, v) for k, v in row.syscalls_by_name.items() if k != "other" and v > 0]
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v:.2f}" for k, v in items[:n])


def notes(summary: CaseSummary) -> list[str]:
    """Sentences printed under a table: how it is ranked, what is a floor, what is missing."""
    out = [_ranking_note(summary), *_work_notes(summary)]
    if summary.kind in DATAGRAM_KINDS:
        out += _datagram_notes(summary)
    if summary.too_noisy:
        out.insert(0, summary.too_noisy)
    rows = summary.rows
    # (the neighbour tables have no limit column: their server runs a neighbour's work too)
    if any(r.bottleneck == "both" for r in rows) and summary.kind not in ("memory", "neighbour"):
        out.append(
            "limit `both`: the server and the generator were each at their CPU limit; on a "
            "2-core machine that is the machine's figure, not the model's alone."
        )
    below = [r.variant for r in rows if r.below_ceiling]
    if below and summary.kind not in ("memory", "neighbour"):
        out.append(
            "limit: a generator at its CPU limit is called the limit only when the row's req/s "
            f"came within {1 - NEAR_CEILING:.0%} of native_epoll's in the same round (the "
            "generator's ceiling); below it the busy generator was polling, not limiting, in "
            "runs of " + ", ".join(below) + " (`both` read as `server`, `generator` as "
            "`neither`)."
        )
    floors = [r.variant for r in rows if r.floor]
    if floors:
        out.append(
            "≥: the load generator was the limit (limit `generator`) for "
            + ", ".join(floors)
            + ": their req/s is a floor; they are still ranked by it, so a floor may belong "
            "higher."
        )
    unavailable = sorted({r.syscalls_unavailable for r in rows if r.syscalls_unavailable})
    if summary.kind == "flood":  # no cost column in it: nothing to explain
        unavailable = []
    for why in unavailable:
        out.append(f"syscalls/req not counted: {why}")
    for row in rows:
        details = row.flags()
        if details:
            out.append(f"{row.variant}: " + "; ".join(details) + ".")
    return out


def _ranking_note(summary: CaseSummary) -> str:
    tie = (
        "# = letters: two rows share one when Welch's t-test over every pair, Holm-corrected "
        "(5%), does not separate them; rows with no letter in common differ"
    )
    if summary.kind == "memory":
        return (
            "Ranked by memory per connection (mean ± 95% CI half-width), "
            f"{SHORT_NAMES.get(summary.ranked_by or '', 'USS')}, less is better; {tie}. "
            "'below resolution' = under one page per connection or inside the interval of zero."
        )
    if summary.kind == "c10k":
        return (
            "Ranked by the p99 of the round of one ECHO per connection, sent by all of them "
            f"at once once every connection is open (mean ± 95% CI half-width; less is "
            f"better); {tie}. connect all: from the first connect to the last one done "
            "(the kernel completed the handshake: the connection is in the accept queue); "
            "all served: from the round's start to the last reply (every connection "
            "accepted and served). Memory per connection as in idle-memory."
        )
    if summary.kind == "flood":
        return (
            "Ranked by lost % (mean ± 95% CI half-width over the repeats; less is better), "
            f"every variant at the same multiple of its own capacity; {tie}."
        )
    if summary.kind == "neighbour":
        return (
            "Ranked by the victims' p99 (mean ± 95% CI half-width over the repeats; less is "
            f"better); {tie}."
        )
    if summary.kind == "open":
        if summary.rate_basis != "common":
            return (
                "Not ranked: each variant runs at half of its own echo-small req/s, so the rows "
                "carry different loads; latency is measured from the scheduled send time. "
                "Compare latency in the common-rate table."
            )
        return (
            "One common rate for every concurrent variant; latency from the scheduled send "
            f"time; ranked by that p99 (mean ± 95% CI half-width; less is better); {tie}."
        )
    if summary.ranked_by == RATIO:
        return (
            f"Ranked by the paired ratio to {summary.paired_reference} measured in the same "
            "round (× ref ± 95% CI half-width): it cancels the machine's drift and was tighter "
            f"than raw req/s here; {tie}. % best is relative to the best ranked variant's req/s."
        )
    if summary.kind == "wait":
        return f"Ranked by requests/s (mean ± 95% CI half-width over the repeats); {tie}."
    return (
        f"Ranked by requests/s (mean ± 95% CI half-width over the repeats); {tie}. "
        "% best is relative to the best ranked Python variant."
    )
