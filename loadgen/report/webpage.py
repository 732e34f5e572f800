"""``report.html`` and ``compare.html``: one self-contained page per run, to look, sort and filter.

The page is built from the same summaries as report.md: the tables are static HTML whose
cells are :func:`loadgen.report.tables.cells` (so the page and the markdown cannot differ),
and the figures behind them -- every row's stats, as results.json's ``summaries`` hold them --
are embedded as JSON in a ``<script type="application/json" id="data">`` element. The page's
own script (``webpage_assets/report.js``, inlined with its stylesheet) reads that JSON to sort
the tables by a figure (not by its text), to filter the variants (kept in the URL's hash, so
a shared URL reopens the view) and to draw the charts as inline SVG. Nothing is fetched: no
CDN, no font, no external URL; a page opened from disk works offline.

What the page shows, and where it comes from:

* the header: report.md's header lines (the same text, its inline markdown made HTML);
* per case its question, its table (every column of report.md, a CI whisker beside each
  ``± CI95`` figure, the tie letters, flags explained on hover by the row's flag sentences),
  the notes under it, and its charts (:func:`chart_specs`, after ``charts.py``'s choices);
* the cost table (results.json ``costs``) when the run has one, and the hosts (``--cluster``).

``compare.html`` (:func:`write_compare`) is ``--compare``'s table: each figure's ratio B ÷ A
and its significance, as the terminal prints it.
"""

from __future__ import annotations

import html
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import servers
from loadgen.report import costs_table, tables, units
from loadgen.report import summary as sm

if TYPE_CHECKING:
    from loadgen.report.compare import Change

ASSETS = Path(__file__).with_name("webpage_assets")
ROOT = Path(__file__).resolve().parents[2]
PAGE_SCHEMA = 1
TEXT = "text"  # a column sorted by its text (variant, limit, flags)
# matplotlib's tab20, as loadgen.report.charts.variant_colour picks from it: the page's
# colours are the PNG charts' (no matplotlib import here: it is slow and not needed)
TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip
REFERENCE_COLOUR = "#8c8c8c"

# -- the sort keys of each column -----------------------------------------------------------
# A column's header is one or more parts: (text, key). ``key`` names the figure a click on
# that part sorts by (a stat of the row, or one of ROW_KEYS), TEXT for the cell's text, None
# for a separator. Combined cells ("p50 / p99 / p99.9") get one sortable part per figure.
SEP = (" / ", None)
COLUMN_PARTS: dict[str, list[tuple[str, str | None]]] = {
    "#": [("#", "rank")],
    "variant": [("variant", TEXT)],
    "req/s ± CI95": [("req/s ± CI95", "throughput_rps")],
    "% best": [("% best", "pct_of_best")],
    "p50 / p99 / p99.9": [("p50", "p50_us"), SEP, ("p99", "p99_us"), SEP, ("p99.9", "p999_us")],
    "CPU µs/req usr/sys": [
        ("CPU µs/req usr", "cpu_user_us_per_request"),
        ("/", None),
        ("sys", "cpu_system_us_per_request"),
    ],
    tables.COSTS: [
        ("ctx sw", "context_switches_per_request"),
        SEP,
        ("syscalls per req", "syscalls_per_request"),
    ],
    tables.LIMIT: [("limit", TEXT)],
    "PSS": [("PSS", "memory_pss_bytes")],
    tables.FAIR: [("Jain", "jain"), SEP, ("starved", "starved"), SEP, ("errors", "errors_total")],
    "flags": [("flags", TEXT)],
    "req/s done / asked": [("req/s done", "throughput_rps"), SEP, ("asked", "rate")],
    "p99 ± CI95": [("p99 ± CI95", "p99_us")],
    "p50 / p99.9": [("p50", "p50_us"), SEP, ("p99.9", "p999_us")],
    "p99 uncorr.": [("p99 uncorr.", "p99_uncorrected_us")],
    "memory/conn USS ± CI95": [("memory/conn USS ± CI95", "memory_per_connection_uss_bytes")],
    "memory/conn PSS ± CI95": [("memory/conn PSS ± CI95", "memory_per_connection_bytes")],
    "PSS before": [("PSS before", "baseline_pss_bytes")],
    "PSS with N": [("PSS with N", "memory_pss_bytes")],
    "threads": [("threads", "peak_threads")],
    "children": [("children", "peak_children")],
    "errors": [("errors", "errors_total")],
    "connect all": [("connect all", "ramp_s")],
    "all served": [("all served", "admit_s")],
    "ECHO round p99 ± CI95": [("ECHO round p99 ± CI95", "p99_us")],
    "p50": [("p50", "p50_us")],
    "ideal": [("ideal", None)],  # one figure for the whole table
    "% of ideal": [("% of ideal", "pct_of_ideal")],
    "p50 / p99": [("p50", "p50_us"), SEP, ("p99", "p99_us")],
    tables.CORES: [(tables.CORES, "server_cpu_util")],
    f"{tables.CORES} ± CI95": [(f"{tables.CORES} ± CI95", "server_cpu_util")],
    "generator cores": [("generator cores", "loadgen_cpu_util")],
    "victims p99 ± CI95": [("victims p99 ± CI95", "p99_us")],
    "victims req/s": [("victims req/s", "throughput_rps")],
    "neighbour req/s": [("neighbour req/s", "neighbour_rps")],
    tables.OFFLOAD: [(tables.OFFLOAD, TEXT)],
}
# sort keys that are not a stat of the row (read from the row itself: row_keys)
ROW_KEYS = ("rank", "pct_of_best", "p99_ratio")


def column_parts(col: str, summary: sm.CaseSummary) -> list[tuple[str, str | None]]:
    """The sortable parts of a column's header (see :data:`COLUMN_PARTS`)."""
    if col in COLUMN_PARTS:
        return COLUMN_PARTS[col]
    b = summary.baseline
    if col.startswith("× ") and col.endswith("± CI95"):  # the paired-ratio column
        return [(col, sm.RATIO)]
    if b and col == f"{b} p50 / p99":
        return [(f"{b} p50", "baseline_p50_us"), SEP, ("p99", "baseline_p99_us")]
    if b and col == f"{b} req/s":
        return [(col, "baseline_throughput_rps")]
    if b and col == f"p99 ÷ {b}'s":
        return [(col, "p99_ratio")]
    return [(col, TEXT)]  # a column this module does not know yet: sorted by its text


def ci_figure(col: str, summary: sm.CaseSummary) -> str | None:
    """The figure whose 95% interval a ``± CI95`` column draws as a whisker."""
    if not col.endswith("± CI95"):
        return None
    keys = [k for _, k in column_parts(col, summary) if k and k != TEXT]
    return keys[0] if keys else None


def row_keys(row: sm.Row) -> dict[str, float]:
    """The row's sort keys that are not stats (absent when unknown: sorted last)."""
    out: dict[str, float] = {}
    if row.rank is not None:
        out["rank"] = row.rank
    if row.pct_of_best is not None:
        out["pct_of_best"] = row.pct_of_best
    p99, base = row.figure("p99_us"), row.figure("baseline_p99_us")
    if p99 is not None and base:
        out["p99_ratio"] = p99 / base
    return out


# -- variants: colour, group, source ---------------------------------------------------------


def variant_colour(name: str) -> str:
    """The variant's colour on every chart of the page, as in the PNG charts
    (:func:`loadgen.report.charts.variant_colour`: its place in the registry)."""
    order = [n for n, v in servers.REGISTRY.items() if v.family != "test"]
    i = order.index(name) if name in order else zlib.crc32(name.encode())
    return TAB20[(2 * i) % 20 + (2 * i // 20) % 2]


def source_link(name: str, run_dir: Path | None) -> str | None:
    """The relative link from the run folder to ``servers/NAME.py`` (None: no such file)."""
    path = ROOT / "servers" / f"{name}.py"
    if run_dir is None or not path.is_file():
        return None
    return Path(os.path.relpath(path, run_dir)).as_posix()


def variants_data(data: dict[str, Any], names: Iterable[str], run_dir: Path | None) -> dict:
    known = data.get("variants", {})
    out = {}
    for name in names:
        v = known.get(name, {})
        reg = servers.REGISTRY.get(name)
        family = v.get("family") or (reg.family if reg else "?")
        out[name] = {
            "family": family,
            "scheduling": v.get("scheduling") or (reg.scheduling if reg else "other"),
            "summary": v.get("summary") or (reg.summary if reg else ""),
            "colour": REFERENCE_COLOUR if family == "reference" else variant_colour(name),
            "source": source_link(name, run_dir),
        }
    return out


# -- the embedded data -----------------------------------------------------------------------


def stat_list(stat: dict[str, Any]) -> list[Any]:
    """results.json's stat as ``[mean, sd, n, ci95 low, ci95 high]`` (cv follows: sd/mean)."""
    low, high = stat.get("ci95") or (stat["mean"], stat["mean"])
    return [stat["mean"], stat["sd"], stat["n"], low, high]


def case_data(s: sm.CaseSummary, saved: dict[str, Any]) -> dict[str, Any]:
    """One case's figures for the page's script: per row its stats (``saved``: the case's
    summary as results.json holds it) and its sort keys."""
    rows = {r["variant"]: r for r in saved.get("rows", [])}
    out_rows = {}
    for row in s.rows:
        stats = (rows.get(row.variant) or {}).get("stats", {})
        out_rows[row.variant] = {
            "status": row.status,
            "reference": row.reference,
            "rank": row.rank_label,
            "floor": row.floor,
            "k": row_keys(row),
            "s": {k: stat_list(v) for k, v in stats.items()},
        }
    return {
        "label": s.label,
        "scenario": s.scenario,
        "kind": s.kind,
        "x": s.x,
        "ranked_by": s.ranked_by,
        "order": [r.variant for r in s.rows],
        "rows": out_rows,
    }


def page_data(
    data: dict[str, Any], summaries: list[sm.CaseSummary], run_dir: Path | None
) -> dict[str, Any]:
    """The JSON the page embeds: variants, each case's figures, the charts to draw."""
    saved = {s["case"]: s for s in data.get("summaries", [])}
    names = dict.fromkeys(r.variant for s in summaries for r in s.rows)
    return {
        "page": "report",
        "schema": PAGE_SCHEMA,
        "variants": variants_data(data, names, run_dir),
        "scheduling": list(servers.SCHEDULING),
        "cases": {s.case: case_data(s, saved.get(s.case, {})) for s in summaries},
        "charts": chart_specs(summaries),
    }


# -- the charts: which, after charts.py's choices --------------------------------------------


def chart_specs(summaries: list[sm.CaseSummary]) -> list[dict[str, Any]]:
    """The charts the script draws, each placed after the table of its ``after`` case:
    ``bars`` (a figure per variant, mean and 95% interval), ``percentiles`` (p50, p99, p99.9
    per variant, log scale) and ``lines`` (a figure against a level: connections, cores)."""
    out: list[dict[str, Any]] = []
    for s in summaries:
        out += _case_charts(s)
    out += _level_charts(summaries)
    return out


def _bars(s: sm.CaseSummary, figure: str, title: str, **opts: Any) -> dict[str, Any]:
    return {"type": "bars", "id": f"{figure}-{s.case}", "after": s.case, "case": s.case,
            "figure": figure, "title": title, **opts}  # fmt: skip


def _case_charts(s: sm.CaseSummary) -> list[dict[str, Any]]:
    """A case's own charts (the level charts are :func:`_level_charts`)."""
    if s.kind == "memory":
        figure = s.ranked_by or sm.MEMORY_FIGURES[0]
        return [_bars(s, figure, f"{s.label}: memory per idle connection", unit="bytes",
                      skip_failed=True)]  # fmt: skip
    if s.scenario in ("connections", "cores") or s.kind == "wait":
        return []
    if s.kind == "cpu":
        return [_bars(s, "server_cpu_util", f"{s.label}: server cores used", unit="cores")]
    if s.kind == "neighbour":
        return [_bars(s, "p99_us", f"{s.label}: the victims' p99", unit="us", log=True)]
    out = []
    if s.kind not in ("open", "c10k"):
        title = f"{s.label}: requests/s"
        if s.ranked_by == sm.RATIO:
            title += f" (ranked by req/s ÷ {s.paired_reference} in the same round)"
        out.append(_bars(s, "throughput_rps", title, unit="rate"))
    out.append({"type": "percentiles", "id": f"latency-{s.case}", "after": s.case,
                "case": s.case, "figures": ["p50_us", "p99_us", "p999_us"],
                "title": f"{s.label}: latency p50, p99, p99.9 (log scale)"})  # fmt: skip
    return out


def _level_charts(summaries: list[sm.CaseSummary]) -> list[dict[str, Any]]:
    out = []
    connections = [s for s in summaries if s.x is not None and s.kind == "throughput"
                   and s.scenario in ("connections", "echo-small")]  # fmt: skip
    levels = {s.x for s in connections}
    if len(levels) >= 2 and any(s.scenario == "connections" for s in connections):
        out.append(_lines("connections", connections, "requests/s and p99 against connections",
                          "connections"))  # fmt: skip
    wait = [s for s in summaries if s.kind == "wait" and s.x is not None]
    if len({s.x for s in wait}) >= 2:
        spec = _lines("backend-wait", wait, "backend-wait: requests/s and p99 against "
                      "connections when every request waits 1 ms", "connections")  # fmt: skip
        spec["ideal"] = sorted([s.x, s.ideal_rps] for s in wait if s.ideal_rps)
        spec["log_y"] = True
        out.append(spec)
    cores = [s for s in summaries if s.scenario == "cores" and s.x is not None]
    if len(cores) >= 2:
        spec = _lines("cores", cores, "requests/s against the CPUs the server may use", "CPUs")
        spec["figures"] = ["throughput_rps"]
        out.append(spec)
    return out


def _lines(key: str, points: list[sm.CaseSummary], title: str, xlabel: str) -> dict[str, Any]:
    """A level chart, after the last of its cases on the page (``points`` in page order)."""
    after = points[-1].case
    points = sorted(points, key=lambda s: s.x or 0)
    return {"type": "lines", "id": key, "after": after, "cases": [s.case for s in points],
            "figures": ["throughput_rps", "p99_us"], "title": title, "xlabel": xlabel,
            "groups": True}  # fmt: skip


# -- HTML pieces -----------------------------------------------------------------------------


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline_md(text: str) -> str:
    """report.md's inline markdown (code, bold, relative links) as HTML; everything else
    escaped. A link to an absolute URL stays text: the page links nothing outside."""
    out = esc(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<b>\1</b>", out)

    def link(m: re.Match[str]) -> str:
        target = m.group(2)
        if "://" in target or target.startswith("//"):
            return f"{m.group(1)} ({target})"
        return f'<a href="{target}">{m.group(1)}</a>'

    return _LINK.sub(link, out)


def header_html(markdown: str) -> str:
    """report.md's header (everything above its first table) as HTML: the title, then a
    paragraph per line (status, command, machine, interpreter, pinning, load, disturbance,
    skipped variants and scenarios...)."""
    head = markdown.split("\n## ", 1)[0].splitlines()
    out = []
    for line in head:
        if line.startswith("# "):
            out.append(f"<h1>{inline_md(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{inline_md(line)}</p>")
    return "\n".join(out)


def fmt_figure(figure: str, x: float | None) -> str:
    """A figure's value as the tables write it (the whiskers' titles)."""
    if x is None:
        return "–"
    if figure.endswith("_bytes"):
        return units.fmt_bytes(x)
    if figure in ("throughput_rps", "rate", "neighbour_rps") or figure.endswith("throughput_rps"):
        return units.fmt_rate(x)
    if figure == sm.RATIO:
        return units.fmt_ratio(x)
    if figure.startswith("cpu_"):
        return f"{x:.2f} µs"
    if figure.endswith("per_request"):
        return units.fmt_count(x)
    if figure.endswith("_us"):
        return units.fmt_us(x)
    if figure.startswith("pct_"):
        return f"{x:.1f}%"
    if figure.endswith("_util"):
        return f"{x:.2f}"
    return f"{x:,.4g}"


def whisker(stat: sm.Stat | None, figure: str, span: tuple[float, float] | None) -> str:
    """An inline SVG of the 95% interval on the column's common scale (``span``)."""
    if stat is None or span is None or stat.half_width is None:
        return ""
    lo, hi = stat.ci95
    left, right = span
    width = 60.0

    def x(v: float) -> float:
        return 2 + (width - 4) * ((v - left) / (right - left) if right > left else 0.5)

    tip = (f"{fmt_figure(figure, stat.mean)}, 95% CI {fmt_figure(figure, lo)} – "
           f"{fmt_figure(figure, hi)} (n = {stat.n})")  # fmt: skip
    return (
        f'<svg class="ci" width="60" height="10" viewBox="0 0 60 10" role="img">'
        f"<title>{esc(tip)}</title>"
        f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="5" y2="5"/>'
        f'<line x1="{x(lo):.1f}" x2="{x(lo):.1f}" y1="2" y2="8"/>'
        f'<line x1="{x(hi):.1f}" x2="{x(hi):.1f}" y1="2" y2="8"/>'
        f'<circle cx="{x(stat.mean):.1f}" cy="5" r="2"/></svg>'
    )


def column_span(rows: Sequence[sm.Row], figure: str) -> tuple[float, float] | None:
    """The lowest and highest interval ends of a column: the whiskers' shared scale."""
    ends = [v for r in rows if (st := r.stats.get(figure)) is not None for v in st.ci95]
    return (min(ends), max(ends)) if ends else None


def flag_sentences(row: sm.Row) -> list[tuple[str, list[str]]]:
    """The flags column's words, each with the sentences (:meth:`Row.flags`) that explain
    it: report.md prints the same sentences under the table."""
    notes = [(words, [sentence]) for sentence, words in row.notes]
    own_text = row.short_flags()
    tail = ", ".join(w for w, _ in notes)
    own_text = own_text[: len(own_text) - len(tail)].rstrip(", ") if tail else own_text
    sentences = row.flags()[: len(row.flags()) - len(notes)]
    own = []
    for word in [w for w in own_text.split(", ") if w]:
        own.append((word, [s for s in sentences if _explains(word, s)]))
    return own + notes


def _explains(word: str, sentence: str) -> bool:
    if word == "ceiling":
        return sentence.startswith("reference")
    if word == "floor":
        return sentence.startswith("generator-bound")
    if word == "rate not reached":
        return sentence.startswith("served under")
    if word.endswith("not admitted"):
        return "not admitted" in sentence
    if word.startswith("FAILED") and word != "FAILED verify":
        return sentence.startswith("FAILED at this level")
    return sentence.startswith(word)  # FAILED verify, not run, unstable


def flags_cell(row: sm.Row) -> str:
    parts = []
    for word, why in flag_sentences(row):
        cls = ' class="bad"' if word.startswith("FAILED") else ""
        parts.append(f'<span{cls} title="{esc(" ".join(why) or word)}">{esc(word)}</span>')
    return ", ".join(parts)


def variant_cell(row: sm.Row, info: dict[str, Any]) -> str:
    swatch = f'<i class="sw" style="background:{info["colour"]}"></i>'
    name = esc(row.variant)
    if info.get("source"):
        name = f'<a href="{esc(info["source"])}" title="{esc(info["summary"])}">{name}</a>'
    return swatch + name


def table_html(s: sm.CaseSummary, variants: dict[str, dict[str, Any]]) -> str:
    """The case's table: report.md's cells, sortable headers, whiskers, letters, flags."""
    cols = tables.columns(s)
    head = []
    for col in cols:
        parts = "".join(
            esc(text) if key is None else f'<span class="sk" data-key="{key}">{esc(text)}</span>'
            for text, key in column_parts(col, s)
        )
        head.append(f"<th>{parts}</th>")
    spans = {col: column_span(s.rows, fig) for col in cols if (fig := ci_figure(col, s))}
    body = [_row_html(row, s, cols, spans, variants) for row in s.rows]
    return (
        f'<table class="cases" data-case="{esc(s.case)}"><thead><tr>{"".join(head)}</tr>'
        f"</thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"
    )


def _row_html(
    row: sm.Row,
    s: sm.CaseSummary,
    cols: list[str],
    spans: dict[str, tuple[float, float] | None],
    variants: dict[str, dict[str, Any]],
) -> str:
    classes = [c for c, on in (("ref", row.reference), ("failed", row.status != "ok")) if on]
    out = []
    for col, text in zip(cols, tables.cells(row, s), strict=True):
        if col == "#":
            letters = "".join(row.letters) if row.rank is not None and not s.too_noisy else ""
            tip = ("tie letters: rows sharing a letter are not separated (Welch, Holm, 5%)"
                   if letters else "not ranked")  # fmt: skip
            out.append(f'<td class="rank" data-letters="{letters}" title="{tip}">{esc(text)}</td>')
        elif col == "variant":
            out.append(f'<td class="variant">{variant_cell(row, variants[row.variant])}</td>')
        elif col == "flags":
            why = " ".join(row.flags())
            title = f' title="{esc(why)}"' if why else ""
            out.append(f'<td class="flags"{title}>{flags_cell(row)}</td>')
        else:
            fig = ci_figure(col, s)
            bar = whisker(row.stats.get(fig), fig, spans.get(col)) if fig else ""
            out.append(f"<td>{esc(text)}{bar}</td>")
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f'<tr data-variant="{esc(row.variant)}"{cls}>' + "".join(out) + "</tr>"


def notes_html(s: sm.CaseSummary, record: dict[str, Any]) -> str:
    """What report.md prints under the table: the notes, what was not applicable, and the
    top system calls per request."""
    items = [inline_md(n) for n in tables.notes(s)]
    items += [
        f"{esc(k)}: not applicable ({esc(why)})."
        for k, why in (record.get("not_applicable") or {}).items()
    ]
    out = '<ul class="notes">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
    calls = [(r.variant, line) for r in s.rows if (line := tables.top_syscalls(r))]
    if calls:
        out += (
            "<details><summary>Top system calls per request (server tree, mean over the "
            "repeats)</summary><ul>"
            + "".join(f'<li data-variant="{esc(n)}"><code>{esc(n)}</code>: {esc(line)}</li>'
                      for n, line in calls)
            + "</ul></details>"
        )  # fmt: skip
    return out


def case_html(s: sm.CaseSummary, record: dict[str, Any], charts: list[dict[str, Any]],
              variants: dict[str, dict[str, Any]]) -> str:  # fmt: skip
    chart_divs = "".join(
        f'<figure class="chart" data-chart="{esc(c["id"])}"><figcaption>{esc(c["title"])}'
        "</figcaption></figure>"
        for c in charts
    )
    return (
        f'<section class="case" id="case-{esc(s.case)}"><h2>{esc(s.label)}</h2>'
        f'<p class="question">{esc(record.get("question", ""))}</p>'
        f"{table_html(s, variants)}{notes_html(s, record)}{chart_divs}</section>"
    )


# -- the cost table and the hosts ------------------------------------------------------------

# the cost table's columns (loadgen.report.costs_table.COLUMNS): text, or a figure to sort by
COST_COLUMNS = tuple(
    (c, TEXT if c in ("rank", "variant", "top syscalls / req") else "@v")
    for c in costs_table.COLUMNS
)


def _sortable_head(columns: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<th><span class="sk" data-key="{k}">{esc(c)}</span></th>' for c, k in columns)


def _td(text: str, value: float | None = None) -> str:
    """A cell; ``value``: its sort key (``data-v``) when the text is a figure."""
    v = "" if value is None else f' data-v="{value!r}"'
    return f"<td{v}>{esc(text)}</td>"


def costs_html(costs: dict[str, Any] | None, variants: dict[str, dict[str, Any]]) -> str:
    """results.json ``costs`` (the cost table): one table per kind of request, fewest
    instructions first; the reason when it was skipped; nothing when the run has none."""
    if not costs:
        return ""
    out = ['<section id="costs"><h2>Costs per request: instructions, system calls, '
           "context switches</h2>"]  # fmt: skip
    if isinstance(costs.get("skipped"), str):
        return "".join(out) + f"<p>Cost table skipped: {esc(costs['skipped'])}.</p></section>"
    if costs.get("tool"):
        out.append(f"<p>Counted by {esc(costs['tool'])}; counts, not times: they do not move "
                   "with the machine's load.</p>")  # fmt: skip
    for kind in (costs.get("plan") or {}).get("kinds", []):
        out.append(_cost_kind(costs, kind, variants))
    return "".join(out) + "</section>"


def _cost_kind(costs: dict[str, Any], kind: dict[str, Any], variants: dict[str, Any]) -> str:
    """One kind's table: report.md's rows and ranks (costs_table), the figures sortable."""
    rows = []
    for cells in costs_table.kind_rows(costs, kind["key"]):
        rank, name, *figures = cells
        info = variants.get(name) or {"colour": variant_colour(name), "summary": "", "source": None}
        variant = variant_cell(sm.Row(name, info.get("family", "?"), "ok"), info)
        cls = ' class="failed"' if cells[2].startswith("error") else ""
        rows.append(
            f'<tr data-variant="{esc(name)}"{cls}>{_td(rank)}<td class="variant">{variant}</td>'
            + "".join(_td(c, _figure(c)) for c in figures[:-1])
            + _td(figures[-1])
            + "</tr>"
        )
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in costs_table.notes(costs, kind))
    return (
        f"<h3>{esc(costs_table.title(costs, kind))}</h3>"
        f'<table class="plain"><thead><tr>{_sortable_head(COST_COLUMNS)}</tr></thead><tbody>'
        + "".join(rows)
        + f"</tbody></table>{notes}"
    )


def _figure(text: str) -> float | None:
    """A cost cell's number (``34,523``, ``0.06%``, ``2.33×``), None for ``–``."""
    try:
        return float(text.replace(",", "").rstrip("%×"))
    except ValueError:
        return None


HOST_COLUMNS = (
    ("host", TEXT), ("role", TEXT), ("CPUs", "@v"), ("ran", TEXT), ("runs (failed)", "@v"),
    ("requests", "@v"), ("CPU", "@v"), ("Ray", "@v"), ("clock offset", "@v"),
)  # fmt: skip


def hosts_html(hosts: list[dict[str, Any]] | None, cluster: dict[str, Any]) -> str:
    """``--cluster``: the hosts, as report.md's Hosts section."""
    if not hosts:
        return ""

    def num(v: Any, fmt: str = "{:.2f}") -> str:
        return "–" if v is None else fmt.format(v)

    rows = []
    for h in hosts:
        offset = num(h.get("clock_offset_ms"), "{:+.2f} ms") + (
            " ⚠" if h.get("clock_flagged") else ""
        )
        rows.append(
            "<tr>" + _td(h.get("name", "?")) + _td(h.get("role", "?"))
            + _td(num(h.get("cpus"), "{}"), h.get("cpus")) + _td(", ".join(h.get("ran") or []))
            + _td(f"{h.get('runs')} ({h.get('failed')})", h.get("runs"))
            + _td(num(h.get("requests"), "{:,}"), h.get("requests"))
            + _td(num(h.get("cpu_util_mean")), h.get("cpu_util_mean"))
            + _td(num(h.get("ray_cpu_util_mean")), h.get("ray_cpu_util_mean"))
            + _td(offset, h.get("clock_offset_ms")) + "</tr>"
        )  # fmt: skip
    return (
        f'<section id="hosts"><h2>Hosts</h2><p>Cluster <code>{esc(cluster.get("address"))}'
        f"</code>, servers bound to <code>{esc(cluster.get('server_host'))}</code>. Over the "
        "timed runs: CPU = cores busy (the server's tree; the generator's workers), Ray = cores "
        "Ray's own processes used on that load host during the window; a clock offset beyond "
        "5 ms is flagged (⚠).</p>"
        f'<table class="plain"><thead><tr>{_sortable_head(HOST_COLUMNS)}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></section>"
    )


# -- the page --------------------------------------------------------------------------------


def asset(name: str) -> str:
    return (ASSETS / name).read_text()


def embed_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</`` (it would end the element) and no
    ``<!--``."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c")


def page(title: str, body: str, data: dict[str, Any]) -> str:
    """A whole document: the body, the embedded data, the inlined stylesheet and script."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>\n<style>\n{asset('report.css')}</style></head>\n"
        f'<body>\n<nav id="filter" aria-label="variant filter"></nav>\n'
        "<noscript><p>Without JavaScript the tables are all here, unsorted and unfiltered; "
        "the charts, sorting and the filter need it.</p></noscript>\n"
        f"<main>\n{body}\n</main>\n"
        '<div id="tip" role="tooltip" hidden></div>\n'
        f'<script type="application/json" id="data">{embed_json(data)}</script>\n'
        f"<script>\n{asset('report.js')}</script>\n</body></html>\n"
    )


def contents_html(summaries: list[sm.CaseSummary], data: dict[str, Any]) -> str:
    """A link to each case's section (and the cost table's, the hosts')."""
    links = [f'<a href="#case-{esc(s.case)}">{esc(s.label)}</a>' for s in summaries]
    if data.get("costs"):
        links.append('<a href="#costs">costs</a>')
    if data.get("hosts"):
        links.append('<a href="#hosts">hosts</a>')
    return f'<nav class="contents"><b>Cases:</b> {" ".join(links)}</nav>' if links else ""


def report_html(
    data: dict[str, Any],
    summaries: list[sm.CaseSummary],
    markdown: str,
    run_dir: Path | None = None,
) -> str:
    """report.html's text. ``data``: results.json as written (with its ``summaries``);
    ``markdown``: report.md's text, whose header the page repeats."""
    embedded = page_data(data, summaries, run_dir)
    variants = embedded["variants"]
    records = {c["key"]: c for c in data.get("cases", [])}
    sections = []
    for s in summaries:
        charts = [c for c in embedded["charts"] if c["after"] == s.case]
        sections.append(case_html(s, records.get(s.case, {}), charts, variants))
    env = data.get("environment", {})
    body = (
        f"<header>{header_html(markdown)}{contents_html(summaries, data)}</header>\n"
        + "\n".join(sections)
        + costs_html(data.get("costs"), variants)
        + hosts_html(data.get("hosts"), env.get("cluster") or {})
    )
    title = f"concurrency-bench report — {env.get('date', '?')}"
    return page(title, body, embedded)


def write_report(
    run_dir: Path, data: dict[str, Any], summaries: list[sm.CaseSummary], markdown: str
) -> Path:
    """Write ``run_dir/report.html`` (atomically: a reader never sees half a page)."""
    path = run_dir / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(report_html(data, summaries, markdown, run_dir))
    os.replace(tmp, path)
    return path


# -- compare.html ----------------------------------------------------------------------------

COMPARE_COLUMNS = (
    ("variant", TEXT), ("figure", TEXT), ("A mean ± CI95", "a"), ("B mean ± CI95", "b"),
    ("ratio B ÷ A", "ratio"), ("Welch p", "p"), ("change", TEXT),
)  # fmt: skip


def compare_data(changes: Sequence[Change], run_dir: Path | None) -> dict[str, Any]:
    """compare.html's embedded data: each change's two sides and its test."""

    def side(stat: sm.Stat) -> list[Any]:
        lo, hi = stat.ci95
        return [stat.mean, stat.sd, stat.n, lo, hi]

    names = dict.fromkeys(c.variant for c in changes)
    return {
        "page": "compare",
        "schema": PAGE_SCHEMA,
        "variants": variants_data({}, names, run_dir),
        "scheduling": list(servers.SCHEDULING),
        "changes": [
            {"case": c.case, "variant": c.variant, "figure": c.figure, "a": side(c.a),
             "b": side(c.b), "ratio": c.test["ratio"], "p": c.test["p_value"],
             "significant": c.significant, "better": c.better, "text": c.text}
            for c in changes
        ],
        "charts": [],
    }  # fmt: skip


def _change_row(c: Change, variants: dict[str, Any], fmt: Callable[[float | None], str]) -> str:
    cls = ""
    if c.significant:
        cls = ' class="better"' if c.better else ' class="worse"'
    row = sm.Row(c.variant, variants[c.variant]["family"], "ok")
    ratio, p = c.test["ratio"], c.test["p_value"]
    return (
        f'<tr data-variant="{esc(c.variant)}"{cls}><td class="variant">'
        f"{variant_cell(row, variants[c.variant])}</td>"
        + _td(sm.SHORT_NAMES.get(c.figure, c.figure))
        + _td(tables.fmt_ci(c.a, fmt), c.a.mean)
        + _td(tables.fmt_ci(c.b, fmt), c.b.mean)
        + _td("–" if ratio is None else f"{ratio:.3f}", ratio)
        + _td(f"{p:.2g}", p)
        + _td(c.text)
        + "</tr>"
    )


def compare_html(
    a: str,
    b: str,
    changes: Sequence[Change],
    run_dir: Path | None = None,
    fmt_for: Callable[[str], Callable[[float | None], str]] | None = None,
) -> str:
    """compare.html's text: per case, every figure present in both runs. ``fmt_for``: the
    number format of a figure (the terminal's: :func:`loadgen.report.compare._fmt_for`)."""
    fmt_for = fmt_for or (lambda f: lambda x: fmt_figure(f, x))
    embedded = compare_data(changes, run_dir)
    variants = embedded["variants"]
    head = "".join(
        f'<th><span class="sk" data-key="{"@v" if k != TEXT else TEXT}">{esc(c)}</span></th>'
        for c, k in COMPARE_COLUMNS
    )
    sections = []
    for case in dict.fromkeys(c.case for c in changes):
        rows = [_change_row(c, variants, fmt_for(c.figure)) for c in changes if c.case == case]
        sections.append(
            f'<section class="case" id="case-{esc(case)}"><h2>{esc(case)}</h2>'
            f'<table class="plain compare"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows)
            + "</tbody></table></section>"
        )
    flagged = sum(1 for c in changes if c.significant)
    body = (
        f"<header><h1>concurrency-bench: B against A</h1><p>A = <code>{esc(a)}</code><br>"
        f"B = <code>{esc(b)}</code></p><p>ratio = mean B ÷ mean A; a change is given only "
        "where Welch's t-test (two-sided, 5%) over the repeats says it is significant (green: "
        "better, red: worse); 'n&lt;2' = a side has one run, no spread known. "
        f"<b>{flagged} of {len(changes)}</b> figures changed significantly.</p>"
        '<p><label><input type="checkbox" id="only-significant"> only significant changes'
        "</label></p></header>\n" + "\n".join(sections)
    )
    return page("concurrency-bench: compare", body, embedded)


def write_compare(
    path: Path,
    a: str,
    b: str,
    changes: Sequence[Change],
    fmt_for: Callable[[str], Callable[[float | None], str]] | None = None,
) -> Path:
    """Write compare.html at ``path`` (links to the servers' sources relative to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(compare_html(a, b, changes, path.parent.resolve(), fmt_for))
    os.replace(tmp, path)
    return path
