"""How one load run looks on a terminal: a live progress line, then a rich table.

The live line is drawn by the parent process only (the workers write four
counters each into shared memory) and refreshed about four times a second,
so drawing it costs the measured loop nothing.
"""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loadgen.engine.driver import Progress
from loadgen.engine.result import CpuShare, Disturbance, Latency, LoadResult, ServerFigures


class LiveLine:
    """A callback for :func:`loadgen.engine.run_load` that draws one transient line."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live: Live | None = None

    def __call__(self, p: Progress) -> None:
        if self._live is None:  # started lazily: after the workers were forked
            self._live = Live(console=self.console, transient=True, refresh_per_second=4)
            self._live.start()
        self._live.update(self.render(p))

    @staticmethod
    def render(p: Progress) -> Text:
        text = Text()
        text.append(f"{p.phase:<10} ", style="bold cyan")
        if p.phase_s:
            text.append(f"{max(0.0, p.elapsed_s):5.1f}/{p.phase_s:.1f} s  ")
        text.append(f"conns {p.connections}  ")
        text.append(f"replies {p.completed:,}  ")
        if p.phase == "measuring":
            text.append(f"measured {p.measured:,}  ~{p.rate_rps:,.0f} req/s  ")
        text.append(f"errors {p.errors}", style="red" if p.errors else "")
        return text

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.1f} ms"
    return f"{value:,.0f} us"


def _percentiles(lat: Latency) -> str:
    return "  ".join(f"{k} {_us(getattr(lat, k))}" for k in ("p50", "p90", "p99", "p999", "max"))


def result_table(result: LoadResult) -> Table:
    """The summary table of one run's result."""
    cfg = result.config
    title = (
        f"{cfg.workload} {cfg.size} B -> {cfg.target}, {cfg.connections} "
        f"{'flows' if cfg.target.startswith('udp:') else 'conns'}, "
        f"{cfg.mode} loop"
        + (f" {cfg.rate:g} req/s" if cfg.rate else "")
        + (f", pipeline {cfg.pipeline}" if cfg.pipeline > 1 else "")
    )
    if result.partial:
        title += "  [PARTIAL]"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("throughput", f"{result.throughput_rps:,.0f} req/s")
    table.add_row("requests", f"{result.requests:,} in {result.duration_s:.3f} s")
    kind = result.latency_kind.replace("_", " ")
    table.add_row(f"latency ({kind})", _percentiles(result.latency_us))
    if result.latency_us_uncorrected is not None:
        table.add_row("latency (uncorrected)", _percentiles(result.latency_us_uncorrected))
    err_text = ", ".join(f"{k} {v}" for k, v in result.errors.items() if v) or "none"
    table.add_row("errors", Text(err_text, style="red" if result.errors_total else "green"))
    f = result.fairness
    table.add_row(
        "fairness",
        f"Jain {f.jain:.3f}, shares {f.min_share:.2f}..{f.max_share:.2f}, "
        f"starved {f.starved}/{f.connections}",
    )
    lg = result.loadgen
    cpu = ", ".join(f"{w.cpu_util:.2f}" for w in lg.workers)
    per_req = lg.cpu_us_per_request
    lg_text = f"cores {cpu}" + (f", {per_req:.2f} us CPU/req" if per_req is not None else "")
    if lg.saturated:
        lg_text += "  SATURATED: " + "; ".join(lg.saturation_reasons)
    table.add_row("load generator", Text(lg_text, style="yellow" if lg.saturated else ""))
    server = result.server
    if server:
        table.add_row("server CPU", _server_cpu(server))
        table.add_row(
            "server memory",
            f"PSS {server.memory_pss_bytes / 2**20:,.1f} MiB, "
            f"RSS {server.memory_rss_bytes / 2**20:,.1f} MiB, "
            f"peak threads {server.peak_threads}, fds {server.peak_fds}, "
            f"children {server.peak_children}",
        )
    if result.disturbance is not None:
        table.add_row("disturbance", _disturbance(result.disturbance))
    slow = result.slow_clients
    if slow:
        table.add_row(
            "slow clients",
            f"{slow.connections} conns, {slow.requests} requests, "
            f"p50 {_us(slow.latency_us.p50)}, max {_us(slow.latency_us.max)}",
        )
    dg = result.datagram
    if dg is not None:  # a UDP load: what became of every request of the period
        lost = f"{dg.lost_fraction:.2%}" if dg.lost_fraction is not None else "-"
        drops = f"{dg.kernel_drops:,}" if dg.kernel_drops is not None else "unreadable"
        table.add_row(
            "datagrams",
            Text(
                f"{dg.flows} flows: sent {dg.sent:,}, answered {dg.answered:,}, "
                f"lost {dg.lost:,} ({lost}, timeout {dg.loss_timeout_s * 1e3:g} ms), "
                f"late {dg.late:,}, duplicated {dg.duplicated:,}, busy {dg.busy:,}; "
                f"kernel drops {drops}",
                style="yellow" if dg.lost else "",
            ),
        )
    near = result.neighbours
    if near:  # the figures above are the victims'; the neighbours' own are here
        table.add_row(
            "neighbours",
            f"{near.connections} conns sending WORK {near.work}: {near.requests} requests, "
            f"{near.throughput_rps:,.1f} req/s, p50 {_us(near.latency_us.p50)}, "
            f"p99 {_us(near.latency_us.p99)}",
        )
    idle = result.idle
    if idle:
        per = idle.memory_per_connection_bytes
        table.add_row(
            "idle connections",
            f"{idle.served}/{idle.connections} served"
            + (f", {per / 1024:,.1f} KiB server memory each" if per is not None else ""),
        )
    return table


def _server_cpu(server: ServerFigures) -> str:
    if server.cpu_s is None:
        return f"- ({server.error or 'not measured'})"
    text = f"{server.cpu_util:.2f} cores"
    if server.cpu_us_per_request is not None:
        text += f", {server.cpu_us_per_request:.2f} us/req"
        user, system = server.cpu_user_us_per_request, server.cpu_system_us_per_request
        # None: /proc's ticks saw too little of the CPU to split it (monitor.SPLIT_MIN_SEEN)
        if user is None or system is None:
            text += " (user/system split unknown)"
        else:
            text += f" (user {user:.2f}, system {system:.2f})"
    return text


def _disturbance(d: Disturbance) -> str:
    """``steal 0.1%, other processes 0.02 CPU`` over the run's CPUs, then each side's."""

    def share(s: CpuShare) -> str:
        other = "?" if s.foreign_cores is None else f"{s.foreign_cores:.2f}"
        return f"steal {s.steal_fraction:.1%}, other processes {other} CPU"

    text = f"CPUs {d.run.cpus}: {share(d.run)}"
    for name, side in (("server", d.server), ("generator", d.generator)):
        if side is not None:
            text += f"; {name} CPU {side.cpus}: {share(side)}"
    return text


def print_result(result: LoadResult, console: Console | None = None) -> None:
    (console or Console()).print(result_table(result))
