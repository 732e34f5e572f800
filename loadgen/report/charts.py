"""Charts of a run (matplotlib, Agg backend): PNG for reading, SVG for scaling.

* ``throughput-<case>``: requests/s per variant (mean, 95% interval), one chart per case;
* ``latency-<case>``: p50 / p99 / p99.9 per variant, log scale;
* ``connections``: requests/s and p99 against the number of connections, one panel
  per scheduling model (small multiples: ~20 variants stay readable);
* ``cores``: requests/s against the CPUs the server may use;
* ``memory-per-connection``: the idle-memory scenario.

Bars are horizontal so that long variant names stay readable; bar colours are
the family (blocking, event-driven, reference), line colours the variant's own
(:func:`variant_colour`, from its place in the registry); failing rows are hatched
and rows the generator limited are labelled as floors; the tie letters (``[ab]``) follow
the names.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402

from loadgen.report.summary import RATIO, CaseSummary, Row  # noqa: E402
from servers import REGISTRY, SCHEDULING  # noqa: E402

FAMILY_COLOURS = {
    "blocking": "#4C72B0",
    "event": "#55A868",
    "reference": "#8C8C8C",
    "test": "#C44E52",
}
CASE_COLOURS = ("#C44E52", "#55A868", "#8172B2")  # the cases of one scenario, side by side
PERCENTILES = (
    ("p50_us", "p50", "#9ecae1"),
    ("p99_us", "p99", "#3182bd"),
    ("p999_us", "p99.9", "#08519c"),
)


def write_charts(
    summaries: list[CaseSummary], out_dir: Path, groups: dict[str, str] | None = None
) -> list[Path]:
    """Every chart that has data; returns the PNG paths written.  ``groups``: variant ->
    its scheduling group (results.json's ``variants``), the connections chart's panels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob("*.png"), *out_dir.glob("*.svg")]:
        old.unlink()  # a re-render must not keep charts of cases that are gone
    written = []
    for s in summaries:
        if s.kind == "memory":
            fig = memory_chart(s)
            if fig:
                written.append(_save(fig, out_dir / "memory-per-connection"))
            continue
        if s.scenario in ("connections", "cores"):
            continue  # one chart for all levels: connections_chart, cores_chart
        if s.kind in ("wait", "neighbour"):
            continue  # one chart per scenario: backend_wait_chart, victims_chart (below)
        if s.kind == "cpu":
            fig = cores_used_chart(s)
            if fig:
                written.append(_save(fig, out_dir / f"cores-used-{s.case}"))
            continue
        # open loop: the rate is set; c10k: the measured period is silent (its latency is
        # the one ECHO round's)
        fig = throughput_chart(s) if s.kind not in ("open", "c10k") else None
        if fig:
            written.append(_save(fig, out_dir / f"throughput-{s.case}"))
        fig = latency_chart(s)
        if fig:
            written.append(_save(fig, out_dir / f"latency-{s.case}"))
    fig = connections_chart(summaries, groups)
    if fig:
        written.append(_save(fig, out_dir / "connections"))
    fig = cores_chart(summaries)
    if fig:
        written.append(_save(fig, out_dir / "cores"))
    fig = backend_wait_chart(summaries, groups)
    if fig:
        written.append(_save(fig, out_dir / "backend-wait"))
    scenarios = dict.fromkeys(s.scenario for s in summaries if s.kind == "neighbour")
    for scenario in scenarios:
        fig = victims_chart([s for s in summaries if s.scenario == scenario])
        if fig:
            written.append(_save(fig, out_dir / f"victims-p99-{scenario}"))
    return written


def _save(fig: Figure, base: Path) -> Path:
    png = base.with_suffix(".png")
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(base.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return png


def _label(row: Row) -> str:
    if row.rank_label:  # the tie letters: rows sharing one are not told apart
        return f"{row.variant} [{row.rank_label}]"
    if row.reference:
        return f"{row.variant} (reference)"
    if row.status != "ok":
        return f"{row.variant} (FAILED)"
    return row.variant


def _bar_rows(summary: CaseSummary, figure: str) -> list[Row]:
    # top of the chart = first row; matplotlib draws y=0 at the bottom
    return [r for r in summary.rows if r.figure(figure) is not None][::-1]


def _family_legend(ax: Axes, rows: list[Row]) -> None:
    families = list(dict.fromkeys(r.family for r in rows))
    handles = [Patch(color=FAMILY_COLOURS.get(f, "#999999"), label=f) for f in families]
    if any(r.status != "ok" for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="failed"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _plain_log_axis(axis: object, values: list[float]) -> None:
    """Log-scale ticks as plain numbers (200, 1000), not 2x10^2.

    Between decades, 2x and 5x are labelled too when the data span under two
    decades (otherwise the labels would collide)."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))  # type: ignore[attr-defined]
    positive = [v for v in values if v and v > 0]
    narrow = bool(positive) and max(positive) / min(positive) < 100
    axis.set_minor_formatter(FuncFormatter(_minor if narrow else lambda v, _: ""))  # type: ignore[attr-defined]


def _minor(v: float, _: object = None) -> str:
    # label 2x and 5x between decades, so a range under one decade still has numbers
    lead = f"{v:.0e}"[0]
    return f"{v:,.6g}" if lead in "25" else ""


def _k(v: float, _: object = None) -> str:
    return f"{v / 1000:,.6g}k" if v >= 1000 else f"{v:,.6g}"


def throughput_chart(summary: CaseSummary) -> Figure | None:
    rows = _bar_rows(summary, "throughput_rps")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    y = range(len(rows))
    means = [r.stats["throughput_rps"].mean for r in rows]
    sds = [r.stats["throughput_rps"].half_width or 0.0 for r in rows]
    colours = [FAMILY_COLOURS.get(r.family, "#999999") for r in rows]
    bars = ax.barh(list(y), means, xerr=sds, color=colours, capsize=3, error_kw={"elinewidth": 1})
    for bar, r, sd in zip(bars, rows, sds, strict=True):
        if r.status != "ok":
            bar.set_hatch("//")
            bar.set_edgecolor("black")
        note = " floor (generator-bound)" if r.floor else ""
        ax.text(
            bar.get_width() + sd,
            bar.get_y() + bar.get_height() / 2,
            f"  {'≥ ' if r.floor else ''}{bar.get_width():,.0f}{note}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(list(y), [_label(r) for r in rows], fontsize=9)
    ax.set_xlabel("requests per second (mean, 95% interval over the repeats)")
    ax.set_xlim(0, max(m + s for m, s in zip(means, sds, strict=True)) * 1.5)
    ax.xaxis.set_major_formatter(FuncFormatter(_k))
    n = max(r.stats["throughput_rps"].n for r in rows)
    basis = ""
    if summary.ranked_by == RATIO:  # the order follows the ratio, not these bars
        basis = f"; ranked by req/s ÷ {summary.paired_reference} in the same round"
    ax.set_title(f"{summary.label}: throughput (n = {n} repeats{basis})")
    ax.grid(axis="x", alpha=0.3)
    _family_legend(ax, rows)
    return fig


def latency_chart(summary: CaseSummary) -> Figure | None:
    rows = _bar_rows(summary, "p50_us")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.6))
    height = 0.27
    for i, (fig_name, label, colour) in enumerate(PERCENTILES):
        vals = [r.figure(fig_name) or 0.0 for r in rows]
        ax.barh(
            [k + (1 - i) * height for k in range(len(rows))],
            vals,
            height=height,
            color=colour,
            label=label,
        )
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=9)
    kind = "response time from the scheduled send" if summary.kind == "open" else "service time"
    ax.set_xlabel(f"latency, µs (log scale; {kind}; mean of repeats)")
    ax.set_title(f"{summary.label}: latency percentiles")
    _plain_log_axis(ax.xaxis, [r.figure(f) or 0.0 for r in rows for f, _, _ in PERCENTILES])
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def variant_colour(name: str) -> tuple[float, ...]:
    """A variant's colour in every chart: its place in the registry picks one of tab20's
    20 colours (dark hues first, then light), so it stays the same from chart to chart."""
    order = [n for n, v in REGISTRY.items() if v.family != "test"]
    i = order.index(name) if name in order else zlib.crc32(name.encode())
    return plt.get_cmap("tab20")((2 * i) % 20 + (2 * i // 20) % 2)


def variant_groups(names: list[str], known: dict[str, str] | None = None) -> dict[str, str]:
    """variant -> its panel: the registry's scheduling (who picks the next client), or
    ``known`` (results.json's ``variants``) for a variant no longer registered."""
    known = known or {}
    out = {}
    for n in names:
        v = REGISTRY.get(n)
        out[n] = known.get(n) or (v.scheduling if v else "other")
    return out


def _level_lines(points: list[CaseSummary], name: str) -> dict[str, list[float]]:
    """One variant's figures over the levels: x, req/s, p99 ms, and the failed points."""
    line: dict[str, list[float]] = {k: [] for k in ("x", "tp", "p99", "bad_x", "bad_tp", "bad_p99")}
    for s in points:
        row = next((r for r in s.rows if r.variant == name), None)
        if row is None or row.figure("throughput_rps") is None:
            continue
        tp, p99 = row.figure("throughput_rps") or 0.0, (row.figure("p99_us") or math.nan) / 1000
        line["x"].append(float(s.x or 0))
        line["tp"].append(tp)
        line["p99"].append(p99)
        if row.status != "ok":
            line["bad_x"].append(float(s.x or 0))
            line["bad_tp"].append(tp)
            line["bad_p99"].append(p99)
    return line


def connections_chart(
    summaries: list[CaseSummary], groups: dict[str, str] | None = None
) -> Figure | None:
    """Small multiples: one column of panels per scheduling group (registry
    ``scheduling``), req/s above and p99 below, shared axes, so that ~20 variants stay
    readable (a panel holds a handful of lines); the reference is drawn dashed in every
    panel, as the ceiling to read the others against.  ``groups``: variant -> group."""
    points = [
        s
        for s in summaries
        if s.x is not None
        and s.kind == "throughput"
        and s.scenario in ("connections", "echo-small")
    ]
    if len({s.x for s in points}) < 2 or not any(s.scenario == "connections" for s in points):
        return None
    return _panels_chart(
        points,
        groups,
        "requests/s and p99 against connections, one panel per scheduling model "
        "(black x: failed at that level)",
    )


def backend_wait_chart(
    summaries: list[CaseSummary], groups: dict[str, str] | None = None
) -> Figure | None:
    """backend-wait: req/s (log) and p99 against connections, one panel per scheduling
    model as in the connections chart, with the ideal (connections ÷ the wait, capped at
    the generator's ceiling) dotted black in every panel."""
    points = [s for s in summaries if s.kind == "wait" and s.x is not None]
    if len({s.x for s in points}) < 2:
        return None
    ideal = sorted((float(s.x or 0), s.ideal_rps) for s in points if s.ideal_rps)
    return _panels_chart(
        points,
        groups,
        "backend-wait: requests/s and p99 against connections when every request waits 1 ms, "
        "one panel per scheduling model (dotted: the ideal; black x: failed at that level)",
        ideal=ideal,
    )


def _panels_chart(
    points: list[CaseSummary],
    groups: dict[str, str] | None,
    title: str,
    ideal: list[tuple[float, float | None]] | None = None,
) -> Figure | None:
    """One column of panels per scheduling group: req/s above, p99 below, a line per
    variant over the levels (``points``, one summary per level); ``ideal``: (x, req/s)
    drawn dotted black in every upper panel, with req/s on a log scale."""
    points = sorted(points, key=lambda s: s.x or 0)
    rows = {r.variant: r for s in points for r in s.rows}
    groups = variant_groups(list(rows), groups)
    references = [n for n, r in rows.items() if r.reference]
    order = list(SCHEDULING) + sorted(set(groups.values()) - set(SCHEDULING))
    panels = [g for g in order if any(groups[n] == g for n in rows if n not in references)]
    if not panels:
        return None
    fig, axes = plt.subplots(
        2, len(panels), figsize=(3.4 * len(panels) + 0.6, 9.5), sharex=True, sharey="row",
        squeeze=False,
    )  # fmt: skip
    for col, group in enumerate(panels):
        top, bottom = axes[0][col], axes[1][col]
        members = [n for n in rows if groups[n] == group and n not in references]
        for name in members + references:
            line = _level_lines(points, name)
            if not line["x"]:
                continue
            ref = name in references
            style = dict(ls="--" if ref else "-", marker="o", ms=3, color=variant_colour(name))
            if ref:
                style["color"] = "#8C8C8C"
            top.plot(line["x"], line["tp"], label=name + (" (ref)" if ref else ""), **style)
            bottom.plot(line["x"], line["p99"], **style)
            top.plot(line["bad_x"], line["bad_tp"], "x", ms=9, mew=2, color="black")
            bottom.plot(line["bad_x"], line["bad_p99"], "x", ms=9, mew=2, color="black")
        if ideal:
            top.plot([x for x, _ in ideal], [y for _, y in ideal], ":", color="black", lw=1.5,
                     label="ideal")  # fmt: skip
        top.set_title(group, fontsize=10)
        bottom.set_xlabel("connections (log)")
        # under the panel, not on it: the event-loop panel holds ten lines
        handles, labels = top.get_legend_handles_labels()
        bottom.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    _level_axes(axes, [s.x or 0 for s in points])
    axes[0][0].set_ylabel("requests per second (mean)")
    if ideal:  # the ideal sits far above the slow models: a log scale keeps both readable
        axes[0][0].set_yscale("log")
        axes[0][0].set_ylabel("requests per second (mean, log)")
        rates = [v for ax in axes[0] for ln in ax.get_lines() for v in ln.get_ydata()]
        rates = [v for v in rates if v == v and v > 0]
        _plain_log_axis(axes[0][0].yaxis, rates)
        axes[0][0].yaxis.set_major_formatter(FuncFormatter(_k))
        if rates:  # _level_axes set a linear bottom of 0, which a log scale cannot show
            axes[0][0].set_ylim(min(rates) / 1.5, max(rates) * 1.5)
    axes[1][0].set_ylabel("p99 latency, ms (log)")
    axes[1][0].set_yscale("log")
    values = [v for ax in axes[1] for ln in ax.get_lines() for v in ln.get_ydata()]
    _plain_log_axis(axes[1][0].yaxis, [v for v in values if v == v])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _level_axes(axes: object, xs: list[int]) -> None:
    for ax in [a for row in axes for a in row]:  # type: ignore[attr-defined]
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs], fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3, which="both")
    for ax in axes[0]:  # type: ignore[index]
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(_k))


def cores_chart(summaries: list[CaseSummary]) -> Figure | None:
    """The cores scenario: req/s against the CPUs the server may use, a line per variant."""
    points = sorted((s for s in summaries if s.scenario == "cores"), key=lambda s: s.x or 0)
    if len(points) < 2:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(r.variant for s in points for r in s.rows):
        line = _level_lines(points, name)
        if line["x"]:
            ax.plot(line["x"], line["tp"], marker="o", color=variant_colour(name), label=name)
            ax.plot(line["bad_x"], line["bad_tp"], "x", ms=9, mew=2, color="black")
    _level_axes([[ax]], [s.x or 0 for s in points])
    ax.set_xlabel("CPUs the server may use (log; the generator on the others)")
    ax.set_ylabel("requests per second (mean of repeats)")
    ax.set_title("echo-small's load against server CPUs (black x: failed)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def cores_used_chart(summary: CaseSummary) -> Figure | None:
    """cpu-bound: the server's cores used per variant (mean, 95% interval), with the CPUs
    it was allowed; the generator's cores (it shares them) as a black tick on each bar."""
    rows = _bar_rows(summary, "server_cpu_util")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    stats = [r.stats["server_cpu_util"] for r in rows]
    means = [st.mean for st in stats]
    errs = [st.half_width or 0.0 for st in stats]
    bars = ax.barh(
        range(len(rows)), means, xerr=errs, capsize=3,
        color=[FAMILY_COLOURS.get(r.family, "#999999") for r in rows],
    )  # fmt: skip
    for bar, r, err in zip(bars, rows, errs, strict=True):
        if r.status != "ok":
            bar.set_hatch("//")
            bar.set_edgecolor("black")
        ax.text(bar.get_width() + err, bar.get_y() + bar.get_height() / 2,
                f"  {bar.get_width():.2f}", va="center", fontsize=8)  # fmt: skip
    gen = [(i, x) for i, r in enumerate(rows) if (x := r.figure("loadgen_cpu_util")) is not None]
    ticks = []
    if gen:
        ticks = ax.plot([x for _, x in gen], [i for i, _ in gen], "|", ms=12, mew=2,
                        color="black", label="generator cores (it shares the CPUs)")  # fmt: skip
    allowed = max((r.figure("server_cpus_allowed") or 0.0 for r in rows), default=0.0)
    if allowed:
        ax.axvline(allowed, ls="--", color="#C44E52", lw=1)
        ax.text(allowed, len(rows) - 0.4, f" {allowed:.0f} CPUs allowed", color="#C44E52",
                fontsize=8, va="bottom")  # fmt: skip
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=9)
    ax.set_xlabel("server cores used: CPU seconds per second of the server tree (mean, 95% CI)")
    ax.set_xlim(0, max([allowed, *(m + e for m, e in zip(means, errs, strict=True))]) * 1.25)
    ax.set_title(f"{summary.label}: cores the server used")
    ax.grid(axis="x", alpha=0.3)
    _family_legend(ax, rows)
    legend = ax.get_legend()
    handles = [*legend.legend_handles, *ticks] if legend is not None else ticks
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def victims_chart(cases: list[CaseSummary]) -> Figure | None:
    """head-of-line, blocking-call: the victims' p99 per variant (log scale), one bar per
    case of the scenario (block and offload side by side); a baseline measured elsewhere
    (head-of-line: echo-small) is a black tick on the bar."""
    cases = [c for c in cases if any(r.figure("p99_us") for r in c.rows)]
    if not cases:
        return None
    names = [r.variant for r in cases[0].rows if r.figure("p99_us")]
    names += [r.variant for c in cases[1:] for r in c.rows if r.figure("p99_us")]
    names = list(dict.fromkeys(names))[::-1]  # the first case's order, top to bottom
    by_case = [{r.variant: r for r in c.rows} for c in cases]
    fig, ax = plt.subplots(figsize=(9, (0.35 + 0.2 * len(cases)) * len(names) + 1.8))
    height = 0.8 / len(cases)
    drawn = {c.case for c in cases}
    values: list[float] = []
    handles: list[Any] = []
    for k, (summary, rows) in enumerate(zip(cases, by_case, strict=True)):
        offset = (len(cases) - 1 - 2 * k) * height / 2  # the first case on top
        ys, p99s, colours = [], [], []
        for i, name in enumerate(names):
            row = rows.get(name)
            if row is not None and row.figure("p99_us"):
                ys.append(i + offset)
                p99s.append((row.figure("p99_us") or 0.0) / 1000)
                colours.append(CASE_COLOURS[k % len(CASE_COLOURS)] if len(cases) > 1 else
                               FAMILY_COLOURS.get(row.family, "#999999"))  # fmt: skip
        bars = ax.barh(ys, p99s, height=height, color=colours)
        for bar in bars:
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {bar.get_width():,.3g}", va="center", fontsize=7)  # fmt: skip
        if len(cases) > 1:
            handles.append(Patch(color=CASE_COLOURS[k % len(CASE_COLOURS)], label=summary.label))
        values += p99s
        if summary.baseline and summary.baseline not in drawn:
            marks = [(i + offset, b / 1000) for i, n in enumerate(names)
                     if n in rows and (b := rows[n].figure("baseline_p99_us"))]  # fmt: skip
            if marks:
                xs, ys = [m for _, m in marks], [y for y, _ in marks]
                label = f"{summary.baseline} p99"
                (tick,) = ax.plot(xs, ys, "|", ms=12, mew=2, color="black", label=label)
                handles.append(tick)
                values += [m for _, m in marks]
    labels = []
    for name in names:
        row = next((rows[name] for rows in by_case if name in rows), None)
        labels.append(_label(row) if row is not None else name)
    ax.set_yticks(range(len(names)), labels, fontsize=9)
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis, values)
    ax.set_xlabel("the victims' p99 latency, ms (log scale; mean of repeats)")
    ax.set_title(f"{cases[0].scenario}: p99 of the ECHO clients beside the neighbour")
    ax.grid(axis="x", alpha=0.3, which="both")
    if len(cases) == 1:
        families = dict.fromkeys(r.family for r in cases[0].rows if r.figure("p99_us"))
        handles[:0] = [Patch(color=FAMILY_COLOURS.get(f, "#999999"), label=f) for f in families]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def memory_chart(summary: CaseSummary) -> Figure | None:
    """USS per idle connection (PSS if no USS); failed rows are listed, not drawn:
    their figures (a part of the connections never served) would set the scale."""
    rows = [r for r in summary.rows if r.memory_stat() is not None][::-1]
    shown = [r for r in rows if r.status == "ok"]
    left_out = [r.variant for r in rows if r.status != "ok"][::-1]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.9))
    stats = [r.memory_stat() for r in shown]
    kib = [s.mean / 1024 for s in stats]  # type: ignore[union-attr]
    sds = [(s.half_width or 0.0) / 1024 for s in stats]  # type: ignore[union-attr]
    bars = ax.barh(
        range(len(shown)),
        kib,
        xerr=sds,
        capsize=3,
        color=[FAMILY_COLOURS.get(r.family, "#999999") for r in shown],
    )
    for bar, sd in zip(bars, sds, strict=True):
        ax.text(
            max(bar.get_width(), 0) + sd,
            bar.get_y() + bar.get_height() / 2,
            f"  {bar.get_width():,.1f}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(shown)), [_label(r) for r in shown], fontsize=9)
    ax.set_xlabel("server memory per idle connection, KiB (USS, mean, 95% interval)")
    top = max(k + d for k, d in zip(kib, sds, strict=True))
    ax.set_xlim(min(0, min(kib) * 1.2), max(top * 1.3, 1))
    ax.set_title(f"{summary.label}: memory per connection")
    ax.grid(axis="x", alpha=0.3)
    if left_out:
        note = "not shown, failed at this level (see the table): " + ", ".join(left_out)
        fig.text(0.01, 0.0, note, fontsize=8, va="top")
    _family_legend(ax, shown)
    return fig
