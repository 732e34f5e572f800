"""What a run leaves on disk: ``results/<UTC timestamp>/`` and ``results/latest``.

    results/2026-11-28T04-10-00Z/
        results.json     every raw run, the summaries, the plan, environment metadata
        report.md        the tables in Markdown (readable on GitHub) and the charts
        report.html      the same tables and interactive charts, one self-contained page
        charts/*.png|svg matplotlib charts (loadgen.report.charts)
    results/latest -> 2026-11-28T04-10-00Z

Each measurement is appended to ``progress.jsonl`` as soon as it is done;
at the end -- or on Ctrl-C, then with ``"partial": true`` -- results.json,
report.md and the charts are written and progress.jsonl is removed.  (If
the harness itself is killed, progress.jsonl keeps what was measured.)

The same tables are rendered for the terminal (rich) and for report.md
from :func:`loadgen.report.tables.cells`, so they cannot differ.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.table import Table

from loadgen.procs import MALLOC_ENV
from loadgen.report import costs_table, noise, notes, tables, webpage
from loadgen.report import summary as sm

SCHEMA = 1
PACKAGES = (
    "concurrency-bench",
    "rich",
    "gevent",
    "greenlet",
    "uvloop",
    "hdrhistogram",
    "psutil",
    "matplotlib",
    "pytest-benchmark",
)
ROOT = Path(__file__).resolve().parents[2]
PROGRESS = "progress.jsonl"
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ(-\d+)?$")


def utc_stamp(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H-%M-%SZ")


def new_run_dir(output: Path) -> Path:
    """A fresh ``output/<UTC timestamp>`` (suffixed if two runs start in one second)."""
    output.mkdir(parents=True, exist_ok=True)
    base = utc_stamp()
    path, n = output / base, 1
    while path.exists():
        n += 1
        path = output / f"{base}-{n}"
    path.mkdir()
    return path


def environment(pinning: dict[str, list[int]] | None) -> dict[str, Any]:
    """The machine and software a run was measured on."""
    uname = platform.uname()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "packages": {name: _version(name) for name in PACKAGES},
        "kernel": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "pinning": pinning,  # {"server": [0], "loadgen": [1]} or None (--no-pin, < 2 CPUs)
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "malloc_env": dict(MALLOC_ENV),
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- writing ------------------------------------------------------------------


def reuse_run_dir(path: Path) -> Path:
    """``--run-dir``: this exact directory, emptied of a previous run's files."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "report.md", "report.html", PROGRESS):
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / "charts", ignore_errors=True)
    return path


def append_progress(run_dir: Path, data: dict[str, Any]) -> None:
    """After each measurement: append the newest run (and the verify results) to
    ``progress.jsonl``, so even a killed harness leaves its measurements on disk.
    :func:`write` replaces it with results.json."""
    with open(run_dir / PROGRESS, "a") as f:
        if data["runs"]:
            f.write(json.dumps({"run": data["runs"][-1]}, default=str) + "\n")
        else:
            f.write(json.dumps({"verify": data["verify"]}, default=str) + "\n")


def write(
    run_dir: Path, data: dict[str, Any], *, charts: bool = True, latest: bool = True
) -> list[sm.CaseSummary]:
    """(Re)write results.json, report.md, report.html and (optionally) the charts; point
    latest here."""
    summaries = sm.summarize(data)
    data = dict(data, schema=SCHEMA, summaries=[s.to_json() for s in summaries])
    data["disturbance"] = noise.machine_disturbance(data.get("runs", []))
    data["server_python"] = notes.server_pythons(data.get("runs", []))
    _atomic_write(run_dir / "results.json", json.dumps(data, indent=1, default=str))
    chart_paths = []
    if charts:
        from loadgen.report.charts import write_charts  # matplotlib is slow to import

        groups = {
            n: v["scheduling"] for n, v in data.get("variants", {}).items() if "scheduling" in v
        }
        chart_paths = write_charts(summaries, run_dir / "charts", groups)
    markdown = report_markdown(data, summaries, chart_paths, run_dir)
    _atomic_write(run_dir / "report.md", markdown)
    webpage.write_report(run_dir, data, summaries, markdown)  # report.html: the same, to explore
    (run_dir / PROGRESS).unlink(missing_ok=True)
    if latest:
        update_latest(run_dir)
    return summaries


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def update_latest(run_dir: Path) -> None:
    """``<output>/latest`` -> this run (relative link, replaced atomically)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:  # no symlinks here (some filesystems): not worth failing a run
        pass


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A results.json, given its file or its directory (``results/latest`` works)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    return json.loads(p.read_text())


def run_dirs(output: Path) -> list[Path]:
    """Result directories under ``output``, oldest first (by name: UTC timestamps sort)."""
    if not output.is_dir():
        return []
    return sorted(
        d
        for d in output.iterdir()
        if STAMPED.match(d.name)  # not latest, not reference-2core
        and d.is_dir()
        and not d.is_symlink()
        and (d / "results.json").is_file()
    )


# -- rendering ----------------------------------------------------------------


def rich_table(s: sm.CaseSummary, question: str = "") -> Table:
    title = f"{s.label}" + (f" — {question}" if question else "")
    table = Table(
        title=title,
        title_justify="left",
        caption="\n".join(tables.notes(s)),
        caption_justify="left",
        show_lines=False,
    )
    rows = [tables.cells(row, s) for row in s.rows]
    for i, col in enumerate(tables.columns(s)):
        # a figure never wraps, its header does: at 180 columns only the flags fold
        widest = max([len(cells[i]) for cells in rows] + [len(w) for w in col.split()])
        if col == "flags":
            table.add_column(col, justify="left", overflow="fold", min_width=10)
        elif col == "variant":
            table.add_column(col, justify="left", no_wrap=True)
        else:
            table.add_column(col, justify="right", overflow="fold", width=widest)
    for row, cells in zip(s.rows, rows, strict=True):
        style = "dim" if row.reference else ("red" if row.status != "ok" else None)
        table.add_row(*cells, style=style)
    return table


def markdown_table(s: sm.CaseSummary) -> str:
    cols = tables.columns(s)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in s.rows:
        cells = [c.replace("|", "\\|") for c in tables.cells(row, s)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(
    data: dict[str, Any],
    summaries: list[sm.CaseSummary],
    chart_paths: list[Path],
    run_dir: Path,
) -> str:
    env = data.get("environment", {})
    plan = data.get("plan", {})
    status = "PARTIAL (interrupted; only what was measured)" if data.get("partial") else "complete"
    pin = env.get("pinning")
    pin_text = (
        f"server on CPU {pin['server']}, load generator on CPU {pin['loadgen']}" if pin else "none"
    )
    load_avg = env.get("load_average_start")
    pythons = data.get("server_python") or notes.server_pythons(data.get("runs", []))
    out = [
        f"# concurrency-bench report — {env.get('date', '?')}",
        "",
        f"Status: **{status}**. Profile `{plan.get('profile')}`, {plan.get('repeat')} repeats of "
        f"{plan.get('warmup')} s warm-up + {plan.get('duration')} s measured per run, "
        f"shuffled variant order each round. Wall time {data.get('wall_s', 0):.0f} s.",
        "",
        f"Command: `{data.get('command', '')}`",
        "",
        f"Machine: {env.get('cpu_model')}, {env.get('cpu_count')} CPUs, {env.get('kernel')}; "
        f"Python {env.get('python_version')} ({env.get('python_implementation')}); "
        f"pinning: {pin_text}; load average at start: "
        + (", ".join(f"{x:.2f}" for x in load_avg) if load_avg else "?")
        + f"; git {str(env.get('git_commit'))[:12]}{' (dirty)' if env.get('git_dirty') else ''}.",
        "",
        "Servers ran under: "
        + (
            "; ".join(f"{notes.describe_python(p)} at `{p.get('executable')}`" for p in pythons)
            or "(not recorded)"
        )
        + ".",
        "",
        "How to read this: [results/README.md](../README.md) (every column and flag).",
        "",
    ]
    out += _work_unit_lines(data)
    fewer = _fewer_rounds(data)
    if fewer:
        out += [fewer, ""]
    failed = {k: v for k, v in data.get("verify", {}).items() if not v.get("ok")}
    if failed:
        out.append(
            "Failed verification (not timed): "
            + "; ".join(f"`{k}`: {v.get('reason')}" for k, v in failed.items())
            + "."
        )
        out.append("")
    skipped = data.get("skipped", {})
    if skipped:
        out.append("Not run here: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()) + ".")
        out.append("")
    not_run = plan.get("skipped_scenarios") or {}
    if not_run:
        out += ["Scenarios not run here: " + "; ".join(f"`{k}`: {v}" for k, v in not_run.items())]
        out.append("")
    nofile = env.get("nofile") or {}
    if nofile.get("too_low"):
        out += [f"Descriptors: {nofile['too_low']}.", ""]
    redone = noise_note(data.get("rounds") or [])
    if redone:
        out += [redone, ""]
    disturbance = noise.header_line(
        data.get("disturbance") or noise.machine_disturbance(data.get("runs", []))
    )
    if disturbance:
        out += [disturbance, ""]
    elif any(r.get("purpose", "timed") == "timed" for r in data.get("runs", [])):
        # a run measured before each run recorded its steal and foreign CPU: say what it has
        out += [noise.NOT_RECORDED, ""]
    questions = {c["key"]: c.get("question", "") for c in data.get("cases", [])}
    not_applicable = {c["key"]: c.get("not_applicable", {}) for c in data.get("cases", [])}
    for s in summaries:
        out += [f"## {s.label}", "", questions.get(s.case, ""), "", markdown_table(s), ""]
        out += [f"- {n}" for n in tables.notes(s)]
        out += [
            f"- {k}: not applicable ({why})." for k, why in not_applicable.get(s.case, {}).items()
        ]
        calls = [(r.variant, line) for r in s.rows if (line := tables.top_syscalls(r))]
        if calls:
            out += ["", "Top system calls per request (server tree, mean over the repeats):", ""]
            out += [f"- `{name}`: {line}" for name, line in calls]
        out.append("")
        for name in _chart_names(s, summaries):
            png = run_dir / "charts" / f"{name}.png"
            if png in chart_paths:
                out += [f"![{name}](charts/{name}.png)", ""]
    if (run_dir / "charts" / "cores.png") in chart_paths:
        out += ["## Requests/s against server CPUs", "", "![cores](charts/cores.png)", ""]
    if (run_dir / "charts" / "connections.png") in chart_paths:
        out += [
            "## Requests/s and p99 against connections",
            "",
            "![connections](charts/connections.png)",
            "",
        ]
    out += costs_table.markdown(data.get("costs"))
    if data.get("hosts"):
        out += hosts_markdown(data["hosts"], env.get("cluster", {}))
    return "\n".join(out)


def _chart_names(s: sm.CaseSummary, summaries: list[sm.CaseSummary]) -> tuple[str, ...]:
    """The charts shown under a case's table (loadgen.report.charts names them): a chart of
    several cases of one scenario comes after the last of them."""
    last = [x.case for x in summaries if x.scenario == s.scenario][-1]
    if s.kind == "memory":
        return ("memory-per-connection",)
    if s.kind == "wait":
        return ("backend-wait",) if s.case == last else ()
    if s.kind == "neighbour":
        return (f"victims-p99-{s.scenario}",) if s.case == last else ()
    if s.kind == "cpu":
        return (f"cores-used-{s.case}",)
    return (f"throughput-{s.case}", f"latency-{s.case}")


def _work_unit_lines(data: dict[str, Any]) -> list[str]:
    """The report's line on what one WORK compute unit took here ([] without WORK cases)."""
    record = data.get("work_unit")
    if not record:
        return []
    if record.get("work_unit_us") is None:
        return [f"One WORK compute unit: not timed ({record.get('error')}).", ""]
    return [
        f"One WORK compute unit (`servers.service.compute`, {record.get('units'):,} units "
        f"timed {record.get('repeats')} times in the servers' interpreter, on CPUs "
        f"{record.get('cpus')}) took **{record['work_unit_us']:.2f} µs** here (median; fastest "
        f"{record.get('min_us', 0):.2f} µs): a compute:N request is about N × that of "
        "pure Python holding the GIL.",
        "",
    ]


def _fewer_rounds(data: dict[str, Any]) -> str:
    """One line naming the cases measured in fewer rounds or a shorter window than the
    header says ("" when none)."""
    plan = data.get("plan", {})
    repeat, parts = plan.get("repeat"), []
    for c in data.get("cases", []):
        rounds = min(repeat or 0, c.get("max_repeat") or repeat or 0)
        bits = []
        if repeat and rounds < repeat:
            bits.append(f"{rounds} round{'s' if rounds != 1 else ''}")
        if c.get("duration") or c.get("warmup") is not None:
            warmup = plan.get("warmup") if c.get("warmup") is None else c["warmup"]
            bits.append(f"{warmup:g} s warm-up + {c.get('duration') or plan.get('duration'):g} s")
        if bits:
            parts.append(f"{c['key']} ({', '.join(bits)})")
    return ("Fewer rounds or a shorter window: " + "; ".join(parts) + ".") if parts else ""


def hosts_markdown(hosts: list[dict[str, Any]], cluster: dict[str, Any]) -> list[str]:
    """``--cluster``: the report's Hosts section (results.json ``hosts``), one row per host."""
    out = [
        "## Hosts",
        "",
        f"Cluster `{cluster.get('address')}`, servers bound to `{cluster.get('server_host')}`. "
        "Over the timed runs: CPU = cores busy (the server's tree; the generator's workers), "
        "Ray = cores Ray's own processes used on that load host during the window; a clock "
        "offset beyond 5 ms is flagged. No quiet check and no counted runs across hosts.",
        "",
        "| host | role | CPUs | ran | runs (failed) | requests | CPU | Ray | clock offset |",
        "|---|---|--:|---|--:|--:|--:|--:|--:|",
    ]
    for h in hosts:

        def num(v: Any, fmt: str = "{:.2f}") -> str:
            return "–" if v is None else fmt.format(v)

        offset = num(h["clock_offset_ms"], "{:+.2f} ms") + (" ⚠" if h["clock_flagged"] else "")
        out.append(
            f"| {h['name']} | {h['role']} | {num(h['cpus'], '{}')} | {', '.join(h['ran'])} | "
            f"{h['runs']} ({h['failed']}) | {num(h['requests'], '{:,}')} | "
            f"{num(h['cpu_util_mean'])} | {num(h['ray_cpu_util_mean'])} | {offset} |"
        )
    return [*out, ""]


def noise_note(rounds: list[dict[str, Any]]) -> str:
    """One line on the noise control: the rounds that waited for a quiet machine, were
    redone for drift, or measured one run again (slow, disturbed) ("" when none did)."""
    waited = [r for r in rounds if (r.get("waited_s") or 0) > 0]
    redone = [r for r in rounds if r.get("rerun_of") is not None]
    parts = []
    if waited:
        total = sum(r["waited_s"] for r in waited)
        parts.append(f"{len(waited)} round(s) waited {total:.0f} s in all for other work to stop")
    if redone:
        what = "; ".join(
            f"{r.get('case')} round {r.get('rerun_of')}"
            + (f" ({r['reason']})" if r.get("reason") else "")
            for r in redone
        )
        # a round redone for drift, or one run measured again (slow, or disturbed)
        parts.append(f"{len(redone)} round(s) or run(s) redone: {what}")
    return ("Noise control: " + "; ".join(parts) + ".") if parts else ""
