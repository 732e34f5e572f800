"""report.html and compare.html (issue 19), parsed with the standard library's HTML parser.

Built from the committed full run (results/reference-2core/results.json, rendered into a
temporary folder, never in place) and from small synthetic results: every case, row and flag
of results.json is on the page, nothing on it points outside, and the embedded data is
results.json's figures. Where a headless Chromium is on the machine, a test loads the page,
sorts a table and hides a variant from the URL; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loadgen.report import results, tables, webpage
from loadgen.report import summary as sm
from loadgen.report.compare import _fmt_for, compare
from loadgen.report.figures import FIGURES
from loadgen.report.work import BASELINE_FIGURES
from tests.test_run_all import fake_run_data

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference-2core" / "results.json"
# every figure a row can have (a case's rows may lack some: no counted run, ...)
FIGURE_NAMES = {
    *FIGURES,
    sm.RATIO,
    "pct_of_ideal",
    "tcp_throughput_rps",
    *BASELINE_FIGURES.values(),
}
EXTERNAL = re.compile(r"^\s*(https?:|//|ftp:|data:)", re.I)


class Page(HTMLParser):
    """The parts of a page the tests read: tables (rows, cells, titles), every attribute,
    the embedded JSON, the scripts and styles."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self._svg = 0  # inside an inline SVG (a whisker: its <title> is no cell text)
        self.tables: list[dict[str, Any]] = []
        self.data_json = ""
        self.code = ""  # the text of every <script> and <style>
        self._in: list[str] = []
        self._cell: dict[str, Any] | None = None
        self._row: dict[str, Any] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.attrs += [(tag, k, v) for k, v in a.items()]
        self.elements.append((tag, a))
        self._svg += tag == "svg"
        if tag in ("script", "style"):
            self._in.append("json" if a.get("id") == "data" else tag)
        elif tag == "table":
            self.tables.append({"case": a.get("data-case"), "head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self._row = {"variant": a.get("data-variant"), "class": a.get("class", ""),
                         "hidden": "hidden" in a, "cells": []}  # fmt: skip
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"text": "", "title": a.get("title", ""), "keys": [], "titles": []}
        elif self._cell is not None:
            if "data-key" in a:
                self._cell["keys"].append(a["data-key"])
            if "title" in a:
                self._cell["titles"].append(a["title"])

    def handle_endtag(self, tag: str) -> None:
        self._svg -= tag == "svg"
        if tag in ("script", "style") and self._in:
            self._in.pop()
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if self._row["variant"] is None and not table["head"]:
                table["head"] = self._row["cells"]
            else:
                table["rows"].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "json":
            self.data_json += data
        elif self._in:
            self.code += data
        elif self._cell is not None and not self._svg:
            self._cell["text"] += data

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._svg -= tag == "svg"

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.data_json)

    def case_table(self, case: str) -> dict[str, Any]:
        return next(t for t in self.tables if t["case"] == case)


def cell_text(cell: dict[str, Any]) -> str:
    return cell["text"].strip()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The committed full run rendered into a copy: results.json as written, the page,
    the summaries."""
    run_dir = tmp_path_factory.mktemp("reference")
    summaries = results.write(run_dir, results.load(REFERENCE), charts=False, latest=False)
    text = (run_dir / "report.html").read_text()
    return {
        "dir": run_dir,
        "saved": json.loads((run_dir / "results.json").read_text()),
        "summaries": summaries,
        "text": text,
        "page": Page(text),
    }


def test_every_case_row_and_cell_of_the_report_is_on_the_page(reference: dict) -> None:
    page: Page = reference["page"]
    for s in reference["summaries"]:
        table = page.case_table(s.case)
        assert [cell_text(c) for c in table["head"]] == tables.columns(s)
        assert [r["variant"] for r in table["rows"]] == [r.variant for r in s.rows]
        for row, html_row in zip(s.rows, table["rows"], strict=True):
            # the same text as report.md's cells (the whiskers add no text)
            assert [cell_text(c) for c in html_row["cells"]] == tables.cells(row, s)
            assert ("failed" in html_row["class"]) == (row.status != "ok")


def test_every_flag_is_explained_on_hover(reference: dict) -> None:
    page: Page = reference["page"]
    saved = {
        s["case"]: {r["variant"]: r for r in s["rows"]} for s in reference["saved"]["summaries"]
    }
    for s in reference["summaries"]:
        rows = {r["variant"]: r for r in page.case_table(s.case)["rows"]}
        for row in s.rows:
            flags = rows[row.variant]["cells"][-1]
            for sentence in saved[s.case][row.variant]["flags"]:
                assert sentence in flags["title"]  # the whole cell's title: every sentence
            # each word's own title: the sentences that explain it
            pairs = webpage.flag_sentences(row)
            assert all(why for _, why in pairs), (s.case, row.variant, pairs)
            assert flags["titles"] == [" ".join(why) for _, why in pairs]


def test_no_external_url_anywhere(reference: dict) -> None:
    text, page = reference["text"], reference["page"]
    for tag, name, value in page.attrs:
        if name in ("src", "href", "xlink:href", "action", "poster", "srcset"):
            assert not EXTERNAL.match(value), (tag, name, value)
    assert "@import" not in page.code
    assert not re.search(r"url\(\s*['\"]?\s*(https?:|//)", text)
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text  # no stylesheet, icon or font fetched


def test_embedded_figures_round_trip_to_results_json(reference: dict) -> None:
    embedded = reference["page"].data["cases"]
    for saved in reference["saved"]["summaries"]:
        case = embedded[saved["case"]]
        assert case["order"] == [r["variant"] for r in saved["rows"]]
        for row in saved["rows"]:
            mine = case["rows"][row["variant"]]
            assert mine["status"] == row["status"] and mine["rank"] == row["rank_label"]
            assert set(mine["s"]) == set(row["stats"])
            for fig, stat in row["stats"].items():
                assert mine["s"][fig] == [stat["mean"], stat["sd"], stat["n"], *stat["ci95"]]


def test_every_figure_column_sorts_by_a_figure(reference: dict) -> None:
    """A column sorts by numbers (a stat of the rows, or a row key), not by its text; only
    the text columns sort by text."""
    text_columns = {"variant", tables.LIMIT, "flags", tables.OFFLOAD}
    page: Page = reference["page"]
    embedded = page.data["cases"]
    for s in reference["summaries"]:
        stats = {f for r in embedded[s.case]["rows"].values() for f in r["s"]} | FIGURE_NAMES
        for col, head in zip(tables.columns(s), page.case_table(s.case)["head"], strict=True):
            keys = head["keys"]
            if col in text_columns:
                assert keys == [webpage.TEXT]
            elif col != "ideal":
                assert keys and all(k in stats or k in webpage.ROW_KEYS for k in keys), col


def test_the_charts_name_cases_and_figures_that_exist(reference: dict) -> None:
    data = reference["page"].data
    figures = {a["data-chart"] for t, a in reference["page"].elements if t == "figure"}
    assert {c["id"] for c in data["charts"]} == figures
    kinds = {c["type"] for c in data["charts"]}
    assert kinds == {"bars", "percentiles", "lines"}
    for chart in data["charts"]:
        for case in chart.get("cases") or [chart["case"]]:
            assert case in data["cases"]
    connections = next(c for c in data["charts"] if c["id"] == "connections")
    assert connections["groups"] and len(connections["cases"]) == 5  # 1, 16, 64, 256, 1000
    colours = {n: v["colour"] for n, v in data["variants"].items()}
    assert len(set(colours.values())) == len(colours)  # one colour per variant


def test_the_reference_page_is_under_2_mb(reference: dict) -> None:
    assert len(reference["text"].encode()) < 2_000_000


def test_links_to_each_servers_source(reference: dict) -> None:
    page, run_dir = reference["page"], reference["dir"]
    hrefs = [v for t, n, v in page.attrs if t == "a" and n == "href" and v.endswith(".py")]
    assert hrefs
    for href in hrefs:
        assert (run_dir / href).resolve().is_file(), href


# -- small synthetic runs ----------------------------------------------------------------------


def costs_record(skipped: str | None = None) -> dict[str, Any]:
    kinds = [
        {"key": "echo", "label": "ECHO 64 B, one at a time", "batch": 1, "echo": True,
         "low": 40, "high": 240, "calls_window": 400},
        {"key": "echo-pipelined", "label": "ECHO 64 B, 16 per write", "batch": 16,
         "echo": True, "low": 64, "high": 384, "calls_window": 1024},
    ]  # fmt: skip

    def figures(ipr: float | None, error: str | None = None) -> dict[str, Any]:
        return {"instructions_per_request": ipr, "spread": 0.002,
                "estimates": [ipr, ipr] if ipr else [], "syscalls_per_request": 2.01,
                "context_switches_per_request": 0.01, "error": error}  # fmt: skip

    return {
        "plan": {"name": "quick", "kinds": kinds},
        "tool": "valgrind-3.22.0 --tool=cachegrind",
        "skipped": skipped,
        "variants": {
            "fast": {"echo": figures(41_234.5), "echo-pipelined": figures(12_345.6)},
            "slow": {
                "echo": figures(None, "did not start: boom"),
                "echo-pipelined": figures(None, "did not start: boom"),
            },
        },  # fmt: skip
        "runs": [],
        "wall_s": 12.0,
    }


def synthetic(tmp_path: Path, **extra: Any) -> tuple[str, Page]:
    data = fake_run_data(
        {"fast": [200.0, 201.0, 199.0], "slow": [50.0, 51.0, 49.0], "broken": [40.0] * 3,
         "ceiling": [300.0, 301.0, 299.0]},
        broken={"status": "failed", "error": "10 errors"},
        ceiling={"family": "reference"},
    )  # fmt: skip
    data.update(extra)
    results.write(tmp_path, data, charts=False, latest=False)
    text = (tmp_path / "report.html").read_text()
    return text, Page(text)


def test_failed_rows_are_kept_and_marked(tmp_path: Path) -> None:
    text, page = synthetic(tmp_path)
    rows = {r["variant"]: r for r in page.case_table("echo-small")["rows"]}
    assert set(rows) == {"fast", "slow", "broken", "ceiling"}
    assert "failed" in rows["broken"]["class"] and "failed" not in rows["fast"]["class"]
    assert "ref" in rows["ceiling"]["class"]
    flags = rows["broken"]["cells"][-1]
    assert cell_text(flags) == "FAILED 3/3"
    assert "FAILED at this level (3/3 runs): 10 errors" in flags["titles"][0]
    # the tie letters: fast and slow differ (no letter in common)
    assert cell_text(rows["fast"]["cells"][0]) == "a" and cell_text(rows["slow"]["cells"][0]) == "b"


def test_header_says_command_machine_and_skipped_scenarios(tmp_path: Path) -> None:
    text, _ = synthetic(
        tmp_path,
        command="python run_all.py --servers fast,slow",
        skipped={"gone": "not installed here"},
    )
    plan_skip = "needs 2 or more levels of server CPUs"
    assert "python run_all.py --servers fast,slow" in text
    assert "<code>gone</code>: not installed here" in text
    assert "Profile <code>quick</code>" in text and "pinning: none" in text
    data = fake_run_data({"a": [1.0, 2.0]})
    data["plan"]["skipped_scenarios"] = {"cores": plan_skip}
    results.write(tmp_path, data, charts=False, latest=False)
    assert plan_skip in (tmp_path / "report.html").read_text()


def test_the_cost_table_is_shown_when_present(tmp_path: Path) -> None:
    text, page = synthetic(tmp_path, costs=costs_record())
    cost_tables = [t for t in page.tables if t["case"] is None and t["rows"]]
    assert len(cost_tables) == 2  # one per kind
    assert "ECHO 64 B, 16 per write" in text and "valgrind-3.22.0" in text
    first = cost_tables[0]["rows"]
    assert [r["variant"] for r in first] == ["fast", "slow"]  # fewest instructions first
    # report.md's cells (loadgen.report.costs_table): rank, variant, instructions ...
    assert cell_text(first[0]["cells"][0]) == "1"
    assert cell_text(first[0]["cells"][2]) == "41,234"
    assert "did not start: boom" in cell_text(first[1]["cells"][2])
    assert "failed" in first[1]["class"]


def test_a_skipped_or_absent_cost_table(tmp_path: Path) -> None:
    text, _ = synthetic(tmp_path, costs=costs_record("valgrind not installed"))
    assert "Cost table skipped: valgrind not installed." in text
    text, _ = synthetic(tmp_path)
    assert 'id="costs"' not in text


def test_the_hosts_table_with_cluster(tmp_path: Path) -> None:
    hosts = [
        {"name": "node-a", "role": "server", "cpus": 2, "ran": ["fast"], "runs": 3, "failed": 0,
         "requests": None, "cpu_util_mean": 0.95, "ray_cpu_util_mean": None,
         "clock_offset_ms": 0.0, "clock_flagged": False},
        {"name": "node-b", "role": "load", "cpus": 4, "ran": ["fast"], "runs": 3, "failed": 1,
         "requests": 12345, "cpu_util_mean": 0.5, "ray_cpu_util_mean": 0.02,
         "clock_offset_ms": 7.5, "clock_flagged": True},
    ]  # fmt: skip
    data = fake_run_data({"fast": [1.0, 2.0, 3.0]})
    data["hosts"] = hosts
    data["environment"]["cluster"] = {"address": "local:3", "server_host": "127.0.0.1"}
    results.write(tmp_path, data, charts=False, latest=False)
    page = Page((tmp_path / "report.html").read_text())
    host_rows = [r for t in page.tables if t["case"] is None for r in t["rows"]]
    assert [cell_text(r["cells"][0]) for r in host_rows] == ["node-a", "node-b"]
    assert cell_text(host_rows[1]["cells"][-1]) == "+7.50 ms ⚠"


def test_compare_page_gives_each_ratio_and_its_significance(tmp_path: Path) -> None:
    a = fake_run_data({"moved": [100.0, 102.0, 98.0], "noisy": [100.0, 110.0, 90.0]})
    b = fake_run_data({"moved": [150.0, 152.0, 148.0], "noisy": [105.0, 115.0, 95.0]})
    changes = compare(a, b)
    path = webpage.write_compare(tmp_path / "compare.html", "runA", "runB", changes, _fmt_for)
    page = Page(path.read_text())
    rows = [r for t in page.tables for r in t["rows"]]
    assert len(rows) == len(changes)
    by = {(r["variant"], cell_text(r["cells"][1])): r for r in rows}
    moved = by[("moved", "req/s")]
    assert "better" in moved["class"] and cell_text(moved["cells"][4]) == "1.500"
    assert cell_text(moved["cells"][-1]) == "1.50x faster (+50.0%)"
    noisy = by[("noisy", "req/s")]
    assert noisy["class"] == "" and cell_text(noisy["cells"][-1]) == "not significant"
    text = path.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text
    embedded = page.data["changes"]
    for c, e in zip(changes, embedded, strict=True):
        assert e["a"][0] == c.a.mean and e["b"][0] == c.b.mean
        assert e["significant"] == c.significant and e["ratio"] == c.test["ratio"]


def test_inline_markdown_escapes_and_links_nothing_outside() -> None:
    assert webpage.inline_md("`a<b>` **x**") == "<code>a&lt;b&gt;</code> <b>x</b>"
    assert webpage.inline_md("[doc](../README.md)") == '<a href="../README.md">doc</a>'
    assert "href" not in webpage.inline_md("[ray](https://example.org)")


def test_embedded_json_cannot_end_its_script_element() -> None:
    text = webpage.embed_json({"x": "</script><!-- a"})
    assert "</" not in text and "<!--" not in text
    assert json.loads(text) == {"x": "</script><!-- a"}


def test_flag_words_pair_with_their_sentences() -> None:
    row = sm.Row("v", "event", "failed", runs=3, failed_runs=1, reasons=["boom"])
    row.unstable = ["throughput_rps"]
    row.stats["throughput_rps"] = sm.Stat(100.0, 20.0, 3, (80.0, 100.0, 120.0))
    row.notes.append(("TCP loopback (echo-small): 1k req/s; Unix / TCP = 1.20×", "TCP 1k, ×1.2"))
    pairs = dict(webpage.flag_sentences(row))
    assert pairs["FAILED 1/3"] == ["FAILED at this level (1/3 runs): boom"]
    assert pairs["unstable"] == ["unstable req/s (CV 20%)"]
    assert pairs["TCP 1k, ×1.2"] == ["TCP loopback (echo-small): 1k req/s; Unix / TCP = 1.20×"]


# -- a real browser, where one is installed ------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _browser() -> str | None:
    return next((p for b in BROWSERS if (p := shutil.which(b))), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on this machine "
                    f"(looked for {', '.join(BROWSERS)} on PATH)")  # fmt: skip
def test_a_headless_browser_sorts_and_hides(reference: dict) -> None:
    """The page as Chromium runs it: no script error, the first table sorted by p99 and
    trio_streams hidden, both from the URL (the view a shared link reopens)."""
    page = reference["dir"] / "report.html"
    url = page.as_uri() + "#sort=0~4~p99_us~1&hide=trio_streams"
    proc = subprocess.run(
        [_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the script's own text holds the message: look for the element it draws on failure
    assert "Uncaught" not in proc.stderr and 'class="bad">chart not drawn' not in proc.stdout
    dom = Page(proc.stdout)
    first = dom.tables[0]
    shown = [r for r in first["rows"] if not r["hidden"]]
    embedded = reference["page"].data["cases"][first["case"]]["rows"]
    p99 = [embedded[r["variant"]]["s"].get("p99_us", [None])[0] for r in shown]
    known = [x for x in p99 if x is not None]
    assert known == sorted(known)
    trio = [r for t in dom.tables for r in t["rows"] if r["variant"] == "trio_streams"]
    assert trio and all(r["hidden"] for r in trio)


# Run after the page's own script: click the first legend entry, then the first table's
# p50/p99 header, and write what the page did into <body data-probe> for --dump-dom.
PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const first = document.querySelector("table");
  const shown = () => [...first.tBodies[0].rows].filter((r) => !r.hidden)
    .map((r) => r.dataset.variant);
  const item = document.querySelector(".legend .item:not(.off)");
  const out = { legend: item.textContent };
  item.click();
  out.afterLegend = shown();
  out.hash = location.hash;
  const head = [...first.querySelectorAll("th .sk")].find((h) => /p99/.test(h.textContent));
  head.click();
  out.sortedBy = head.textContent;
  out.afterSort = shown();
  out.hashAfterSort = location.hash;
  document.body.setAttribute("data-probe", JSON.stringify(out));
}, 50));
</script>"""


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on this machine "
                    f"(looked for {', '.join(BROWSERS)} on PATH)")  # fmt: skip
def test_a_headless_browser_hides_from_the_legend_and_sorts_on_a_click(
    reference: dict, tmp_path: Path
) -> None:
    """Clicks, as a reader makes them: a legend entry hides its variant from the tables and
    lands in the URL; a click on a header sorts by that column and lands in the URL."""
    page = tmp_path / "report.html"
    page.write_text(reference["text"].replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Uncaught" not in proc.stderr
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, "the probe did not run"
    out = json.loads(html.unescape(found.group(1)))
    assert out["legend"] not in out["afterLegend"] and out["legend"] in out["hash"]
    embedded = reference["page"].data["cases"][reference["page"].tables[0]["case"]]["rows"]
    p99 = [embedded[n]["s"]["p99_us"][0] for n in out["afterSort"] if "p99_us" in embedded[n]["s"]]
    assert p99 == sorted(p99) or p99 == sorted(p99, reverse=True)
    assert "sort=" in out["hashAfterSort"]


# -- the page's script in jsdom, where node and jsdom are installed ---------------------------

JSDOM_CHECK = r"""
const { JSDOM, VirtualConsole } = require("jsdom");
const fs = require("fs");
const [path, hash] = process.argv.slice(1);
const errors = [];
const vc = new VirtualConsole();
vc.on("jsdomError", (e) => errors.push(String(e.message)));
vc.on("error", (e) => errors.push(String(e)));
const dom = new JSDOM(fs.readFileSync(path, "utf8"), { runScripts: "dangerously",
  url: "file://" + path + hash, virtualConsole: vc });
const d = dom.window.document;
const first = d.querySelector("table");
const shown = () => [...first.tBodies[0].rows].filter((r) => !r.hidden)
  .map((r) => r.dataset.variant);
const out = { fromUrl: shown() };
const legend = d.querySelector(".legend .item:not(.off)");
out.legendVariant = legend.textContent;
legend.click();
out.afterLegend = shown();
out.hash = dom.window.location.hash;
out.charts = [...d.querySelectorAll("figure[data-chart]")]
  .map((f) => f.querySelectorAll("svg").length);
out.errors = errors.concat([...d.querySelectorAll("figure p.bad")].map((p) => p.textContent));
console.log(JSON.stringify(out));
"""


def _jsdom() -> str | None:
    """Why the jsdom test cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "no node on PATH"
    probe = subprocess.run([node, "-e", "require.resolve('jsdom')"], capture_output=True)
    return None if probe.returncode == 0 else "node has no jsdom (npm install jsdom; NODE_PATH)"


@pytest.mark.skipif(_jsdom() is not None, reason=f"page script not run in jsdom: {_jsdom()}")
def test_the_page_script_in_jsdom(reference: dict) -> None:
    """The inlined script runs without an error, sorts the first table and hides a variant
    from the URL, draws every chart, and a legend click hides its variant and lands in the
    URL."""
    page = reference["dir"] / "report.html"
    proc = subprocess.run(
        ["node", "-e", JSDOM_CHECK, str(page), "#sort=0~4~p99_us~1&hide=trio_streams"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["errors"] == []
    embedded = reference["page"].data["cases"][reference["page"].tables[0]["case"]]["rows"]
    p99 = [embedded[n]["s"]["p99_us"][0] for n in out["fromUrl"] if "p99_us" in embedded[n]["s"]]
    assert p99 == sorted(p99) and "trio_streams" not in out["fromUrl"]
    assert out["legendVariant"] not in out["afterLegend"]
    assert out["legendVariant"] in out["hash"] and "trio_streams" in out["hash"]
    assert all(n >= 1 for n in out["charts"])


def test_a_run_without_per_run_disturbance_says_so(reference: dict) -> None:
    """The committed reference predates the per-run steal record: its report says what load
    it does record (the load average), rather than nothing."""
    from loadgen.report import noise

    assert noise.NOT_RECORDED in (reference["dir"] / "report.md").read_text()
    assert "load average at start" in (reference["dir"] / "report.md").read_text()
