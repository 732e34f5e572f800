"""Running a plan: verify every variant, then measure each case, round after round.

Each (case, variant) is measured on a freshly started server
(:func:`loadgen.suite.harness.measure`), in a shuffled order each round;
each measurement is appended to disk as soon as it is done, and the report
is written at the end or on Ctrl-C (:mod:`loadgen.report.results`).

A case's rounds run one after the other, each with noise control
(issue 9): a quiet check first (:meth:`Session.quiet_check`: wait while
other processes use our CPUs, record what was seen in ``data["rounds"]``);
the reference measured in every round of a throughput case; after the
planned rounds, a round whose reference fell more than 15% below its median
is redone (:meth:`Session.redo_drifted`), and with ``--until-stable``
rounds are added until every ranked row's throughput CI is within ±5%
(:meth:`Session.until_stable`).  Extra rounds are bounded in number and
stop at the profile's time cap.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shlex
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import servers
from loadgen.engine import counters
from loadgen.engine.disturbance import excess
from loadgen.report import costs_table, noise, results
from loadgen.report import summary as sm
from loadgen.report.ranking import relative_ci_halfwidth
from loadgen.suite import costs, harness
from loadgen.suite.plan import (
    COUNT_DURATION_S,
    COUNT_WARMUP_S,
    DRIFT_FRACTION,
    MAX_EXTRA_ROUNDS,
    MAX_RERUNS,
    QUIET_BUSY,
    QUIET_MAX_WAIT_S,
    QUIET_SAMPLE_S,
    QUIET_WAIT_BUDGET_S,
    UNTIL_STABLE_CI,
    PlannedCase,
    RunPlan,
    cases_by_key,
)
from loadgen.suite.preamble import cluster_record, nofile_record, print_plan, quiet_check_record
from loadgen.suite.scenarios import Case

# Piped output (CI logs, tests) gets a wide console so tables are not squeezed to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=180)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def execute(plan: RunPlan, args: argparse.Namespace) -> int:
    cluster = getattr(args, "cluster", None)
    # each host pins its own
    pinning = None if cluster else harness.Pinning.choose(plan.pin, plan.server_cpus)
    data: dict[str, Any] = {
        "command": "python run_all.py " + shlex.join(sys.argv[1:]),
        "partial": True,
        "plan": plan.to_json(),
        "environment": results.environment(
            {"server": list(pinning.server), "loadgen": list(pinning.loadgen)} if pinning else None
        ),
        "variants": {
            n: {
                "family": servers.get(n).family,
                "scheduling": servers.get(n).scheduling,  # the charts' panels
                "summary": servers.get(n).summary,
                "max_clients": servers.get(n).max_clients,
                "multicore": servers.get(n).multicore,
                "offload": getattr(servers.get(n), "offload", None),  # how it serves WORK offload
                "transport": servers.get(n).transport,  # tcp | udp (issue 17)
                "tcp_sibling": servers.get(n).tcp_sibling,  # udp-echo's TCP figures beside
            }
            for n in {*plan.variants, *(v for c in plan.cases for v in c.declared_failures)}
        },
        "skipped": plan.skipped,
        "verify": {},
        "cases": [c.to_json() for c in plan.cases],
        "runs": [],
        "rounds": [],  # per (case, round): the quiet check and why a round was added
        "wall_s": 0.0,
    }
    data["environment"]["quiet_check"] = quiet_check_record()
    data["environment"]["nofile"] = nofile_record(plan)
    if cluster:
        data["environment"]["cluster"] = cluster_record(cluster, args.server_host)
    if args.run_dir:
        run_dir = results.reuse_run_dir(Path(args.run_dir))
    else:
        run_dir = results.new_run_dir(Path(args.output))
    print_plan(plan, data, run_dir, console)
    if any(c.work or c.neighbour_work for c in plan.cases):
        data["work_unit"] = _work_unit(plan, pinning, cluster)
        data["work_unit_us"] = data["work_unit"]["work_unit_us"]
    signal.signal(signal.SIGTERM, _raise_interrupt)
    t0 = time.perf_counter()
    interrupted = False
    try:
        with _backend(args) as backend:
            _run_plan(plan, data, run_dir, pinning, backend)
        data["partial"] = False
    except KeyboardInterrupt:
        interrupted = True
    except harness.BackendError as exc:  # e.g. --cluster ADDRESS unreachable: nothing ran
        console.print(f"[red]run_all.py: error: {exc}[/]")
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        harness.kill_all()  # whatever line was interrupted, nothing stays running
        data["wall_s"] = time.perf_counter() - t0
        if cluster:
            from loadgen.cluster.merge import hosts_section

            data["hosts"] = hosts_section(data["runs"])
        summaries = results.write(run_dir, data, charts=not args.no_charts, latest=not args.run_dir)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print_tables(summaries, data)
    state = "PARTIAL results (interrupted)" if interrupted else "Results"
    console.print(
        f"\n{state} in [bold]{run_dir}[/] (report.md, results.json, charts/); "
        f"wall time {data['wall_s']:.0f} s."
    )
    return 130 if interrupted else 0


def _work_unit(
    plan: RunPlan, pinning: harness.Pinning | None, cluster: str | None
) -> dict[str, Any]:
    """What one WORK compute unit took here, in the servers' interpreter on the server's CPU
    (results.json ``work_unit``; printed, and stated in the report)."""
    if cluster:  # the servers' interpreter runs on another host
        return {"work_unit_us": None, "error": "not timed across hosts: the servers run elsewhere"}
    record = harness.work_unit(plan.python, pinning.server if pinning else None)
    if record["work_unit_us"] is not None:
        console.print(
            f"one WORK compute unit: {record['work_unit_us']:.2f} µs here "
            f"(servers.service.compute, median of {record['repeats']} timings of "
            f"{record['units']:,} units in the servers' interpreter)"
        )
    else:
        console.print(f"[yellow]{record['error']}[/]")
    return record


def _backend(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """The harness here, or ``--cluster``'s backend (Ray is imported only then)."""
    if not getattr(args, "cluster", None):
        return contextlib.nullcontext(harness)
    from loadgen.cluster.session import open_backend

    return open_backend(args.cluster, args.server_host, getattr(args, "server_cpus", None) or 1)


def _run_plan(
    plan: RunPlan,
    data: dict[str, Any],
    run_dir: Path,
    pinning: harness.Pinning | None,
    backend: Any,
) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        session = Session(plan, data, run_dir, pinning, progress, backend)
        session.verify_all()
        for record in plan.cases:
            session.run_case(record)
        session.count_costs()
        session.cost_table()


class Session:
    """One run of a plan: the rounds of each case, and the noise control around them."""

    def __init__(
        self,
        plan: RunPlan,
        data: dict[str, Any],
        run_dir: Path | None,
        pinning: harness.Pinning | None,
        progress: Progress,
        backend: Any = harness,
    ) -> None:
        self.plan, self.data, self.run_dir, self.pinning = plan, data, run_dir, pinning
        # verify() and measure(): the harness here, or loadgen.cluster's across hosts
        self.backend = backend
        self.remote = getattr(backend, "remote", False)
        self.progress = progress
        self.whole = progress.add_task("plan", total=len(plan.variants) + plan.runs)
        self.current = progress.add_task("", total=1.0)
        self.rng = random.Random(plan.seed)
        self.t0 = time.perf_counter()
        self.estimated_done = 0.0  # estimated seconds of the work done so far
        self.quiet_budget = QUIET_WAIT_BUDGET_S
        self.verified: set[str] = set()
        self.clock, self.pause = time.monotonic, time.sleep  # the quiet check's (tests: fakes)
        self.cases = cases_by_key()
        self.records = {c["key"]: c for c in data["cases"]}
        data.setdefault("rounds", [])

    def save(self) -> None:
        # Cheap: one line per measurement.  The summaries, report and charts
        # are written once at the end (or on Ctrl-C), so a long plan does
        # not spend its rests re-summarising everything.
        if self.run_dir is not None:
            results.append_progress(self.run_dir, self.data)

    def verify_all(self) -> None:
        for name in self.plan.variants:
            self.progress.update(self.current, description=f"verify {name}", completed=0, total=1)
            v = self.backend.verify(
                name,
                reference=servers.get(name).is_reference,
                cpus=self.pinning.server if self.pinning else None,
                python=self.plan.python,
            )
            self.data["verify"][name] = {"ok": v.ok, "reason": v.reason, "seconds": v.seconds}
            if not v.ok:
                self.progress.console.print(f"[red]{name} FAILED verification: {v.reason}[/]")
            self.progress.advance(self.whole)
            self.estimated_done += 1.0
        self.save()
        self.verified = {n for n, v in self.data["verify"].items() if v["ok"]}

    # -- rounds ----------------------------------------------------------------

    def run_case(self, record: PlannedCase) -> None:
        """The planned rounds, then redone rounds (drift), runs measured again (disturbed,
        then slow), then --until-stable rounds."""
        for round_no in range(1, self.plan.rounds(record) + 1):
            self.run_round(record, round_no)
        if self.plan.drift_checked(record):
            self.redo_drifted(record)
        if record.kind != "memory":  # memory per connection is not timed: noise cannot move it
            self.redo_noisy(record)
        if record.kind == "throughput":
            self.redo_disturbed(record)
        if self.plan.until_stable and record.kind == "throughput":
            self.until_stable(record)

    def run_round(
        self,
        record: PlannedCase,
        round_no: int,
        *,
        rerun_of: int | None = None,
        reason: str | None = None,
    ) -> None:
        """A quiet check, then every variant of the case once, in a shuffled order."""
        noise = self.quiet_check(record.key, round_no)
        noise["rerun_of"] = rerun_of
        noise["reason"] = "; ".join(r for r in (reason, noise["reason"]) if r) or None
        self.data["rounds"].append(noise)
        case = self.cases[record.key]
        order = list(record.variants)
        self.rng.shuffle(order)
        for name in order:
            if name in self.verified:
                self.one_run(name, case, round_no, rerun_of)
                self.save()
                time.sleep(self.plan.rest)
            self.progress.advance(self.whole)
        self.estimated_done += self.plan.round_s(record)

    def add_round(self, record: PlannedCase, **kwargs: Any) -> None:
        """An extra round: the next round number, the progress bar grown to match."""
        task = self.progress.tasks[self.whole]
        self.progress.update(self.whole, total=(task.total or 0) + len(record.variants))
        self.run_round(record, self.next_round(record.key), **kwargs)

    def next_round(self, key: str) -> int:
        return 1 + max((r["round"] for r in self.data["rounds"] if r["case"] == key), default=0)

    def plan_case(self, key: str) -> PlannedCase:
        return next(c for c in self.plan.cases if c.key == key)

    def time_left_for(self, record: PlannedCase, extra_s: float | None = None) -> bool:
        """Whether ``extra_s`` more seconds (default: one more round of ``record``) still
        end the run under the time cap.

        The rest of the plan (``record``'s planned rounds not yet run are not
        counted: extras come after them) is counted at the pace seen so far
        (a busy machine runs slower than the estimate).
        """
        elapsed = time.perf_counter() - self.t0
        pace = max(1.0, elapsed / self.estimated_done) if self.estimated_done else 1.0
        keys = [c.key for c in self.plan.cases]
        later = self.plan.cases[keys.index(record.key) + 1 :]
        rest = sum(self.plan.round_s(c) * self.plan.rounds(c) for c in later)
        rest += self.plan.after_rounds_s()  # the counted runs and the cost table come last
        extra = self.plan.round_s(record) if extra_s is None else extra_s
        return elapsed + extra + pace * rest <= self.plan.time_cap_s

    # -- noise control -----------------------------------------------------------

    def quiet_check(self, key: str, round_no: int) -> dict[str, Any]:
        """Sample the CPUs the run will use; while others keep them busy, wait (bounded).

        Returns the round's noise record (``data["rounds"]``): ``busy_fraction``
        is the sample just before the round, ``waited_s`` how long we waited.
        """
        if self.remote:  # our CPUs are not the hosts': nothing to sample from here
            return {"case": key, "round": round_no, "busy_fraction": None, "waited_s": 0.0,
                    "rerun_of": None, "reason": None, "cpus": None}  # fmt: skip
        cpus = (*self.pinning.server, *self.pinning.loadgen) if self.pinning else None
        self.progress.update(
            self.current, description=f"{key} round {round_no}: quiet check", completed=0, total=1
        )
        first = busy = harness.cpu_busy(cpus, QUIET_SAMPLE_S)
        waited = 0.0
        while (
            busy > QUIET_BUSY
            and waited < QUIET_MAX_WAIT_S
            and self.quiet_budget > 0
            and self.time_left_for(self.plan_case(key), extra_s=1.0)
        ):
            t = self.clock()
            self.pause(1.0 - QUIET_SAMPLE_S)  # 1 s steps, the sample included
            busy = harness.cpu_busy(cpus, QUIET_SAMPLE_S)
            step = self.clock() - t
            waited += step
            self.quiet_budget -= step
        reason = None
        if first > QUIET_BUSY:
            where = f"CPUs {list(cpus)}" if cpus else "the CPUs"
            reason = f"other processes used {first:.0%} of {where}"
            reason += f"; waited {waited:.0f} s, then {busy:.0%}" if waited else ""
            if busy > QUIET_BUSY:
                reason += " (measured anyway: the wait is bounded)"
                self.progress.console.print(f"[yellow]{key} round {round_no}: {reason}[/]")
        return {
            "case": key,
            "round": round_no,
            "busy_fraction": round(busy, 4),
            "waited_s": round(waited, 2),
            "rerun_of": None,
            "reason": reason,
            "cpus": list(cpus) if cpus else None,
        }

    def redo_drifted(self, record: PlannedCase) -> None:
        """Redo (at most MAX_RERUNS) rounds whose reference fell > 15% below its median.

        The original round's runs stay in results.json, marked ``discarded``.
        """
        ref = self.plan.reference
        assert ref is not None
        by_round = self.throughputs(record.key, ref)
        if len(by_round) < 2:
            return  # nothing to compare a round with
        median = statistics.median(by_round.values())
        slow = sorted((tp, r) for r, tp in by_round.items() if tp < (1 - DRIFT_FRACTION) * median)
        redone = []
        for tp, round_no in slow[:MAX_RERUNS]:
            reason = (
                f"the reference {ref} gave {tp:,.0f} req/s in round {round_no}, "
                f"{1 - tp / median:.0%} below its median {median:,.0f} over the case's rounds"
            )
            if not self.time_left_for(record):
                skipped = f"{reason}: not redone (time cap)"
                self.progress.console.print(f"[yellow]{record.key}: {skipped}[/]")
                self.note(record, "drift", skipped)
                break
            self.progress.console.print(f"[yellow]{record.key}: {reason}: redoing it[/]")
            self.discard(record.key, round_no, f"round redone: {reason}")
            self.add_round(record, rerun_of=round_no, reason=reason)
            redone.append(round_no)
        self.note(record, "redone_rounds", redone)

    def redo_disturbed(self, record: PlannedCase) -> None:
        """Measure again (once) a run > 15% below its own variant's median over the case.

        The reference's rule above sees a machine that slowed for a whole
        round; it cannot see a slow spell that hits a few runs, nor one on the
        server's CPU alone when the reference is generator-bound, as
        native_epoll is on 2 cores.  Each variant is its own reference here:
        on a shared VM interference only ever slows a run down, so a run far
        below the variant's other repeats measured the machine, not the model.
        The run stays in results.json, marked ``discarded``; its replacement gets a
        round of its own (so no paired ratio).  At most 2 x MAX_RERUNS per case, in time.
        """
        slow = []
        for name in record.variants:
            by_round = self.throughputs(record.key, name)
            if len(by_round) < 3 or name not in self.verified:
                continue  # two runs cannot say which one is off
            median = statistics.median(by_round.values())
            slow += [
                (tp / median, name, r, median)
                for r, tp in by_round.items()
                if tp < (1 - DRIFT_FRACTION) * median
            ]
        redone = []
        for share, name, round_no, median in sorted(slow)[: MAX_RERUNS * 2]:
            reason = (
                f"{name} gave {share:.0%} of its median {median:,.0f} req/s in round "
                f"{round_no}: measured again"
            )
            if not self.measure_again(record, name, round_no, reason):
                break
            redone.append({"variant": name, "round": round_no})
        self.note(record, "redone_runs", redone)

    def redo_noisy(self, record: PlannedCase) -> None:
        """Measure again (once) a timed run that other work disturbed beyond the limits.

        The harness marks a run ``disturbed`` when, over its window, the hypervisor stole
        more than 2% of a side's CPU time or other processes used more than 0.10 of a CPU
        on the run's CPUs (:func:`loadgen.engine.disturbance.disturbed`). Such a run
        measured the machine as much as the model. It stays in results.json, marked
        ``discarded`` too; its replacement gets a round of its own and is kept, marked, if
        it is disturbed again (the machine is that noisy: the header says how much). The
        most disturbed first, at most 2 x MAX_RERUNS per case, within the time cap.
        """
        noisy = [
            r
            for name in record.variants
            for r in self.counted(record.key, name)
            if r.get("disturbed") and r["status"] == "ok" and r.get("rerun_of") is None
        ]
        noisy.sort(key=lambda r: -excess((r.get("result") or {}).get("disturbance")))
        redone = []
        for r in noisy[: MAX_RERUNS * 2]:
            reason = (
                f"{r['variant']} in round {r['round']} was disturbed ({r['disturbed']}): "
                "measured again"
            )
            if not self.measure_again(record, r["variant"], r["round"], reason):
                break
            redone.append({"variant": r["variant"], "round": r["round"]})
        self.note(record, "redone_disturbed", redone)

    def measure_again(self, record: PlannedCase, name: str, round_no: int, reason: str) -> bool:
        """Discard ``name``'s run of ``round_no`` and measure it again in a round of its own;
        False (nothing done) when the time cap leaves no room for it."""
        case = self.cases[record.key]
        run_s = harness.expected_seconds(
            case, self.plan.duration_of(record), self.plan.warmup_of(record)
        )
        if not self.time_left_for(record, run_s):
            return False
        self.progress.console.print(f"[yellow]{record.key}: {reason}[/]")
        for r in self.counted(record.key, name):
            if r["round"] == round_no:
                r["discarded"] = f"run redone: {reason}"
        new_round = self.next_round(record.key)
        self.data["rounds"].append(
            {"case": record.key, "round": new_round, "busy_fraction": None, "waited_s": 0.0,
             "rerun_of": round_no, "reason": reason, "cpus": None}
        )  # fmt: skip
        self.one_run(name, case, new_round, round_no)
        self.save()
        return True

    def until_stable(self, record: PlannedCase) -> None:
        """Add rounds until every ranked row's throughput CI is within ±5%, or a cap."""
        added, stopped = 0, "stable"
        while wide := self.wide_rows(record):
            if added >= MAX_EXTRA_ROUNDS:
                stopped = f"cap of {MAX_EXTRA_ROUNDS} extra rounds"
                break
            if not self.time_left_for(record):
                stopped = "time cap"
                break
            names = ", ".join(f"{n} ±{w:.0%}" for n, w in wide.items())
            self.add_round(record, reason=f"until-stable: CI wider than ±5% ({names})")
            added += 1
        if stopped != "stable":
            self.progress.console.print(
                f"[yellow]{record.key}: still unstable after {added} extra rounds ({stopped})[/]"
            )
        self.note(record, "until_stable", {"extra_rounds": added, "stopped": stopped})

    def wide_rows(self, record: PlannedCase) -> dict[str, float]:
        """Ranked rows (verified, non-reference, every counted run ok) whose CI is > ±5%."""
        wide = {}
        for name in record.variants:
            if name not in self.verified or servers.get(name).is_reference:
                continue
            runs = self.counted(record.key, name)
            if not runs or any(r["status"] != "ok" for r in runs):
                continue  # a failing row is not ranked: more rounds do not help it
            half = relative_ci_halfwidth([r["result"]["throughput_rps"] for r in runs])
            if half > UNTIL_STABLE_CI:
                wide[name] = half
        return wide

    def counted(self, key: str, name: str) -> list[dict[str, Any]]:
        """The runs of ``name`` in case ``key`` that count (not discarded, not interrupted)."""
        return [
            r
            for r in self.data["runs"]
            if r["case"] == key
            and r["variant"] == name
            and not r.get("discarded")
            and r.get("purpose", "timed") == "timed"
            and r["status"] != "interrupted"
        ]

    def throughputs(self, key: str, name: str) -> dict[int, float]:
        """Round -> throughput of ``name``'s counted, successful runs in case ``key``."""
        return {
            r["round"]: r["result"]["throughput_rps"]
            for r in self.counted(key, name)
            if r["status"] == "ok" and r.get("result")
        }

    def discard(self, key: str, round_no: int, reason: str) -> None:
        for r in self.data["runs"]:
            if r["case"] == key and r["round"] == round_no and not r.get("discarded"):
                r["discarded"] = reason

    def note(self, record: PlannedCase, key: str, value: Any) -> None:
        """Record what noise control did to a case in its results.json ``cases`` record."""
        self.records[record.key][key] = value

    # -- one run ---------------------------------------------------------------------

    def open_loop_rate(self, name: str, case: Case) -> tuple[float | None, str | None]:
        """(requests/s to ask for, or None and why not) for an open-loop case."""
        assert case.rate_fraction is not None
        if case.rate_basis == "common":
            return self.common_rate(case)
        basis = "udp-echo" if case.rate_basis == "udp" else "echo-small"  # udp-flood's: UDP's
        capacity = sm.Stat.of(list(self.throughputs(basis, name).values()))
        if capacity is None or capacity.mean <= 0:
            return None, f"no {basis} capacity measured to derive the open-loop rate from"
        return capacity.mean * case.rate_fraction, None

    def common_rate(self, case: Case) -> tuple[float | None, str | None]:
        """One rate for every variant of the case: rate_fraction x the slowest one's capacity.

        Computed once (the first run of the case) and kept in the case record.
        Variants that failed echo-small are left out: they set no capacity.
        """
        record = self.records[case.key]
        if "common_rate_rps" not in record:
            capacities = {}
            for name in record["variants"]:
                runs = self.counted("echo-small", name)
                if runs and all(r["status"] == "ok" for r in runs):
                    capacities[name] = statistics.fmean(r["result"]["throughput_rps"] for r in runs)
            slowest = min(capacities, key=capacities.__getitem__, default=None)
            record["common_rate_from"] = slowest
            record["common_rate_rps"] = (
                capacities[slowest] * (case.rate_fraction or 0.0) if slowest else None
            )
        if not record["common_rate_rps"]:
            return None, "no concurrent variant passed echo-small to set the common rate from"
        return record["common_rate_rps"], None

    # -- cost counters ------------------------------------------------------------

    def count_costs(self) -> None:
        """One short counted run per (case, variant): context switches and system calls.

        After every timed round, so that no timed figure carries perf's cost;
        inside one tracepoint hold, so that each run's perf stops in ~10 ms
        instead of the ~2.5 s the kernel takes to unregister its tracepoints.
        """
        records = self.plan.counted_cases()
        if not records or self.remote:  # perf counts one machine's server: not across hosts
            return
        with counters.hold_for_suite():
            for record in records:
                case = self.cases[record.key]
                for name in record.variants:
                    if name in self.verified:
                        self.one_run(name, case, 0, None, counted=True)
                        self.save()

    def cost_table(self) -> None:
        """The cost table (loadgen.suite.costs): instructions per request under cachegrind
        and system calls per request, for every verified variant, after the timed rounds
        (two valgrind servers at once use both CPUs)."""
        if self.plan.cost_table is None or self.remote:
            return
        # the stream variants: the counted runs' client speaks TCP, one connection
        names = [
            n
            for n in self.plan.variants
            if n in self.verified and servers.get(n).transport == "tcp"
        ]
        plan = costs.PLANS[self.plan.cost_table]
        runs = sum(len(plan.design_for(n)[0]) + 1 for n in names)
        self.progress.update(
            self.current, description="cost table (cachegrind)", completed=0, total=runs
        )

        def tick(what: str) -> None:
            self.progress.update(self.current, description=f"cost table: {what}", advance=1)

        self.data["costs"] = costs.measure(
            names, plan, python=self.plan.python, pinning=self.pinning, on_run=tick
        )
        self.save()

    def pinning_for(self, case: Case) -> harness.Pinning | None:
        """The run's pinning, or the case's own level of server CPUs (cores scenario), or
        every CPU of the run for both the server and the generator (``all_cpus``)."""
        if self.pinning is None:
            return None  # unpinned: the server may use every CPU already
        if case.all_cpus:
            return harness.Pinning.shared()
        if case.server_cpus is None:
            return self.pinning
        return harness.Pinning.choose(True, case.server_cpus)

    def one_run(
        self, name: str, case: Case, round_no: int, rerun_of: int | None, *, counted: bool = False
    ) -> None:
        duration = COUNT_DURATION_S if counted else self.plan.duration_of(self.plan_case(case.key))
        warmup = COUNT_WARMUP_S if counted else self.plan.warmup_of(self.plan_case(case.key))
        expected = harness.expected_seconds(case, duration, warmup)
        what = "counting costs" if counted else f"round {round_no}"
        self.progress.update(
            self.current,
            description=f"{case.key} {name} ({what})",
            completed=0,
            total=expected,
        )
        rate = None
        if case.rate_fraction is not None:
            rate, why = self.open_loop_rate(name, case)
            if rate is None:
                outcome = harness.RunOutcome(
                    name, case.key, case.scenario, round_no, "failed", error=why
                )
                outcome.rerun_of = rerun_of
                self.data["runs"].append(outcome.to_json())
                return
        outcome = self.backend.measure(
            name,
            case,
            round_no=round_no,
            duration=duration,
            warmup=warmup,
            rate=rate,
            pinning=self.pinning_for(case),
            counters=counted,
            python=self.plan.python,
            on_tick=lambda elapsed: self.progress.update(
                self.current, completed=min(elapsed, expected)
            ),
        )
        outcome.rerun_of = rerun_of
        self.data["runs"].append(outcome.to_json())
        if outcome.status != "ok":
            self.progress.console.print(f"[yellow]{case.key} {name} {what}: {outcome.error}[/]")


def print_tables(summaries: list[sm.CaseSummary], data: dict[str, Any]) -> None:
    # the report's header line on how disturbed the machine was, above the tables
    disturbance = noise.header_line(noise.machine_disturbance(data.get("runs", [])))
    if disturbance:
        console.print(f"\n{disturbance}")
    questions = {c["key"]: c["question"] for c in data["cases"]}
    na = {c["key"]: c.get("not_applicable", {}) for c in data["cases"]}
    for s in summaries:
        console.print()
        console.print(results.rich_table(s, questions.get(s.case, "")))
        for name, reason in na.get(s.case, {}).items():
            console.print(f"  [dim]{name}: not applicable ({reason})[/]")
    for table in costs_table.rich_tables(data.get("costs")):
        console.print()
        console.print(table)
