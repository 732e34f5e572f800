"""How disturbed the machine was, said once per report, and the tables it left unranked.

Every timed run records its disturbance (``result.disturbance``: hypervisor steal and other
processes' CPU on the run's CPUs, :mod:`loadgen.engine.disturbance`), and the runner marks
a run beyond the limits ``disturbed`` and measures it again (``discarded``). Here:

* :func:`machine_disturbance` -- results.json's ``disturbance``: over the timed runs, the
  mean, sample standard deviation and maximum of the steal and of the foreign CPU on the
  server's CPUs and on the generator's (runs pinned apart), and on the run's CPUs (every
  run), and how many runs were beyond the limits and how many of those were measured again;
* :func:`header_line` -- that record as the one line report.md and the terminal print
  above the tables;
* :func:`too_noisy` -- the one line a table gets instead of a ``#`` column of ``a``: when
  nearly every ranked row shares one tie group although each has the repeats to be told
  apart, the wall-clock figures cannot separate the models on this machine, and the counts
  (system calls and context switches per request) can.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from loadgen.engine.disturbance import FOREIGN_MAX, STEAL_MAX

if TYPE_CHECKING:
    from loadgen.report.summary import CaseSummary

NOISY_SHARE = 0.8  # a table is too noisy when one tie group holds this share of its rows ...
NOISY_MIN_ROWS = 3  # ... of at least this many ranked rows ...
# ... with at least this many repeats each (the median row): with fewer, the t factor, not the
# machine, ties the rows (n = 2: 12.7), and the table's own note says so
NOISY_MIN_REPEATS = 3
# Below this median CV the repeats agree with each other: one tie group then means the
# models really are alike (one connection: every model waits on the same round trip).
NOISY_MIN_CV = 0.05
# Where the run has a cost table, the line points to it: instructions per request, which the
# noise does not move; without one, to the counted run's system calls and context switches.
COST_TABLE = (
    "the cost table at the end (instructions, system calls and context switches per "
    'request: counts the noise does not move; results/README.md, "Not separable here")'
)
COUNTED_COLUMNS = (
    "their counts (system calls and context switches per request, the counted run's "
    'columns; results/README.md, "Not separable here")'
)
FIGURES = ("steal_fraction", "foreign_cores")
NOT_RECORDED = (
    "Disturbance: not recorded per run (this run predates that record); the load average at "
    "start, in the Machine line above, is the load it saw."
)


def timed_runs(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timed runs that measured their disturbance (discarded ones included)."""
    return [
        r
        for r in runs
        if r.get("purpose", "timed") == "timed" and ((r.get("result") or {}).get("disturbance"))
    ]


def _spread(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "max": max(values), "n": len(values)}


def machine_disturbance(runs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """results.json's ``disturbance``: per share (``server``, ``generator``: of the runs
    pinned apart; ``run``: every run's CPUs) and figure (``steal_fraction``,
    ``foreign_cores``) the spread over the timed runs; ``runs``, ``disturbed`` (beyond the
    limits), ``redone`` (of those, measured again) and the ``limits``."""
    timed = timed_runs(runs)
    records = [r["result"]["disturbance"] for r in timed]
    out: dict[str, Any] = {
        "runs": len(timed),
        "disturbed": sum(1 for r in timed if r.get("disturbed")),
        "redone": sum(1 for r in timed if r.get("disturbed") and r.get("discarded")),
        "limits": {"steal_fraction": STEAL_MAX, "foreign_cores": FOREIGN_MAX},
        "apart": any(d.get("server") for d in records),  # pinned apart: two sides
    }
    for side in ("server", "generator", "run"):
        shares = [s for d in records if (s := d.get(side))]
        out[side] = {f: _spread([s[f] for s in shares if s.get(f) is not None]) for f in FIGURES}
    return out


def header_line(record: dict[str, Any]) -> str:
    """``Disturbance over N timed runs (mean ± sd): hypervisor steal …; other processes …;
    M runs beyond the limits (…), K measured again.`` ("" when no run measured it)."""
    if not record.get("runs"):
        return ""
    # pinned apart (the suite's way): each side's CPUs; else the run's CPUs, shared
    sides = ("server", "generator") if record["apart"] else ("run",)
    whose = {"server": "the server's", "generator": "the generator's", "run": "the run's"}

    def part(figure: str, fmt: str, words: str) -> str:
        bits = [
            f"{fmt.format(s['mean'])} ± {fmt.format(s['sd'])} {words.format(whose[side])} "
            f"(max {fmt.format(s['max'])})"
            for side in sides
            if (s := record[side][figure]) is not None
        ]
        return " and ".join(bits) or "not measured"

    steal = part("steal_fraction", "{:.1%}", "of {} CPU time")
    other = part("foreign_cores", "{:.2f}", "of a CPU on {} CPUs")
    beyond = record["disturbed"]
    return (
        f"Disturbance over {record['runs']} timed runs (mean ± sd): hypervisor steal {steal}; "
        f"other processes {other}; {beyond} run{'s' if beyond != 1 else ''} beyond the limits "
        f"(steal > {STEAL_MAX:.0%} of a side's CPU time, other processes > {FOREIGN_MAX:.2f} "
        f"of a CPU), {record['redone']} measured again."
    )


def too_noisy(summary: CaseSummary, cost_table: bool = False) -> str | None:
    """The one line for a table whose ranked rows the machine's noise left in one tie group
    (None when the figures separate them, or the rows are too few or too little repeated
    for that to be the machine's doing)."""
    ties = summary.ties
    if ties is None or len(ties.order) < NOISY_MIN_ROWS:
        return None
    if statistics.median(len(v) for v in ties.samples.values()) < NOISY_MIN_REPEATS:
        return None
    largest = max((len(rows) for rows in ties.groups().values()), default=0)
    if largest < NOISY_SHARE * len(ties.order):
        return None
    cvs = [
        statistics.stdev(v) / abs(m) for v in ties.samples.values() if (m := statistics.fmean(v))
    ]
    if cvs and statistics.median(cvs) < NOISY_MIN_CV:
        return None  # the repeats agree: the rows are alike, not hidden by noise
    spread = f", median CV {statistics.median(cvs):.0%}" if cvs else ""
    return (
        f"Not separable here: {largest} of the {len(ties.order)} ranked rows share one tie "
        f"group (each row's repeats vary more than the rows differ{spread}; see the "
        "disturbance line above the tables), so # shows no letters: the wall-clock figures "
        "cannot order these models on this machine; compare them by "
        f"{COST_TABLE if cost_table else COUNTED_COLUMNS}."
    )
