"""The suite's measurement across a Ray cluster: ``verify`` and ``measure`` as the harness's.

:class:`ClusterBackend` finds the nodes by their resources (one
``cb_server``, one or more ``cb_loadgen``), puts one actor on each
(:mod:`loadgen.cluster.actors`) and offers :meth:`~ClusterBackend.verify`
and :meth:`~ClusterBackend.measure` with the signatures of
:func:`loadgen.suite.harness.verify` and :func:`~loadgen.suite.harness.measure`,
so :class:`loadgen.suite.runner.Session` runs the same rounds either way.

One measurement: start the variant on the server host; estimate each load
host's clock offset; choose ``start_at`` far enough ahead for every engine
to start and ramp up; run every load host's share of the connections with
``--start-at`` while the server host watches the window; stop the server;
merge (:func:`loadgen.cluster.merge.merge_loads`).  A load host that fails
or dies fails the run (the others' figures are kept, marked partial).
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from loadgen.cluster import actors
from loadgen.cluster.merge import HostLoad, host_records, merge_loads
from loadgen.engine.result import LoadResult
from loadgen.suite import harness
from loadgen.suite.harness import Pinning, RunOutcome, VerifyResult
from loadgen.suite.scenarios import Case

CLOCK_ROUND_TRIPS = 5
START_LEAD_S = 2.5  # seconds from choosing start_at to it: engine start-up and ramp-up


class ClusterError(harness.BackendError):
    """The cluster cannot run the suite (no server node, no load node, unreachable)."""


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """ClusterError unless ``HOST:PORT`` accepts a TCP connection: ``ray.init`` itself
    retries an unreachable address for minutes, printing warnings."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
            "(is `ray start --head` running there? docs/CLUSTER.md)"
        ) from None


class ClusterBackend:
    """One server host and its load hosts, for the whole session."""

    remote = True  # the runner skips what only makes sense on one machine

    def __init__(
        self,
        address: str,
        server_host: str = "127.0.0.1",
        cpus: tuple[tuple[int, ...] | None, list[tuple[int, ...]] | None] = (None, None),
        server_cpus: int = 1,
    ) -> None:
        """Connect to ``address`` and place the actors.

        ``server_host``: where the servers bind, and the address the load
        hosts connect to.  ``cpus``: (the server's CPUs, each load host's) --
        the simulated cluster's split; None: the server on the first
        ``server_cpus`` CPUs of its host (``--server-cpus``), each load host's
        engine on all of its own, one worker process per CPU.
        """
        if not ray.is_initialized():
            check_reachable(address)
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        self.server_host = server_host
        server_nodes = _nodes_with(actors.SERVER_RESOURCE)
        load_nodes = _nodes_with(actors.LOAD_RESOURCE)
        if len(server_nodes) != 1 or not load_nodes:
            raise ClusterError(
                f"need one node with resource {actors.SERVER_RESOURCE} (found "
                f"{len(server_nodes)}) and at least one with {actors.LOAD_RESOURCE} (found "
                f"{len(load_nodes)}): see docs/CLUSTER.md"
            )
        server_cpus_count = server_cpus
        server_cpus, load_cpus = cpus
        self.server = _on(actors.ServerHost, server_nodes[0], actors.SERVER_RESOURCE).remote(
            server_host, server_cpus, server_cpus_count
        )
        self.loads = [
            _on(actors.LoadHost, node, actors.LOAD_RESOURCE).remote(
                load_cpus[i % len(load_cpus)] if load_cpus else None
            )
            for i, node in enumerate(load_nodes)
        ]
        self.server_facts = ray.get(self.server.facts.remote(), timeout=60)
        facts = ray.get([a.facts.remote() for a in self.loads], timeout=60)
        self.load_names = _names(facts)
        self.load_facts = facts

    def _engine_cpus(self, host: int, connections: int) -> dict[str, Any]:
        """The engine's ``cpus`` and ``processes`` on load host ``host``: one worker per CPU
        the host pinned it to (at most one per connection)."""
        pinned = self.load_facts[host].get("pinned")
        if not pinned:
            return {"cpus": None}
        return {"cpus": tuple(pinned), "processes": max(1, min(len(pinned), connections))}

    # -- the harness's two functions ---------------------------------------------

    def verify(
        self,
        name: str,
        *,
        reference: bool = False,
        cpus: tuple[int, ...] | None = None,
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> VerifyResult:
        """:func:`harness.verify` on the server host (its pinning; ``cpus``/``env`` unused;
        ``python``: an interpreter's path on the server host)."""
        verified = self.server.verify.remote(name, reference, python)
        return VerifyResult(**ray.get(verified, timeout=120))

    def measure(
        self,
        name: str,
        case: Case,
        *,
        round_no: int = 1,
        duration: float,
        warmup: float,
        rate: float | None = None,
        pinning: Pinning | None = None,
        env: dict[str, str] | None = None,
        on_tick: Callable[[float], None] | None = None,
        counters: bool = False,
        python: str | None = None,
    ) -> RunOutcome:
        """:func:`harness.measure` across the cluster; never raises for a failing variant."""
        out = RunOutcome(name, case.key, case.scenario, round_no, "failed", rate=rate)
        out.purpose = "count" if counters else "timed"
        if case.transport == "unix":  # a Unix socket is a file: only its own host reaches it
            out.error = "a Unix socket cannot be loaded from another host (run without --cluster)"
            return out
        t0 = time.perf_counter()
        started = ray.get(self.server.start.remote(name, case.protocol, python), timeout=60)
        out.python = started.get("python")
        try:
            if "error" in started:
                out.error = started["error"]
            else:
                self._run(name, case, out, started, duration, warmup, rate, on_tick)
        except KeyboardInterrupt:
            out.status, out.error = "interrupted", "interrupted"
            raise
        finally:
            stopped = ray.get(self.server.stop.remote(), timeout=60)
            if out.error is None and stopped["died"] is not None:
                out.error = (
                    f"server exited with status {stopped['died']} during the run: "
                    f"{stopped['stderr_tail']}"
                )
            if stopped["leftover"]:
                out.leftover = True
                out.error = out.error or "the server left processes behind after stop"
            if out.error is None and out.result is not None:
                out.error = harness.run_failure(out.result, case)
            out.status = "ok" if out.error is None else out.status
            if out.status == "ok" and out.error is not None:
                out.status = "failed"
            out.wall_s = time.perf_counter() - t0
        return out

    def close(self) -> None:
        for actor in [self.server, *self.loads]:
            try:
                ray.kill(actor)
            except Exception:  # already gone: nothing to end
                pass

    # -- one measurement ---------------------------------------------------------------

    def _run(
        self,
        name: str,
        case: Case,
        out: RunOutcome,
        started: dict[str, Any],
        duration: float,
        warmup: float,
        rate: float | None,
        on_tick: Callable[[float], None] | None,
    ) -> None:
        target = SimpleNamespace(
            name=name, host=self.server_host, port=started["port"], pid=0, unix=None
        )
        base = harness.load_config(
            target, case, duration=duration, warmup=max(warmup, case.min_warmup), rate=rate
        )  # type: ignore[arg-type]
        offsets = self.clock_offsets()
        shares = split(case.connections, case.slow_clients, len(self.loads))
        neighbours = even(base.neighbours, len(self.loads))  # each host's share, victims beside
        victims = case.connections - base.neighbours  # the rate is theirs (neighbours: closed)
        lead = START_LEAD_S + case.connections / 1000
        start_at = time.time() + lead
        window_start = start_at + base.admit_timeout + base.warmup
        window = (window_start, window_start + base.duration)
        timeout = lead + base.admit_timeout + base.warmup + base.duration + harness.LOADGEN_GRACE
        refs = {}
        for i, (conns, slow) in enumerate(shares):
            if conns == 0:
                continue
            nb = neighbours[i]
            cfg = dataclasses.replace(
                base, connections=conns, slow_clients=slow, server_pid=None, counters=False,
                neighbours=nb, neighbour_work=base.neighbour_work if nb else None,
                rate=max(1.0, round(base.rate * (conns - nb) / victims)) if base.rate else None,
                start_at=start_at, **self._engine_cpus(i, conns),
            )  # fmt: skip
            refs[i] = self.loads[i].run.remote(cfg.to_argv(), window, timeout)
        watch = self.server.watch.remote(*window)
        replies, failed = self._collect(refs, timeout + 10, on_tick)
        server_figs = ray.get(watch, timeout=30)
        loads = [
            HostLoad(
                name=self.load_names[i],
                cpus=self.load_facts[i]["cpu_count"],
                result=LoadResult.from_dict(reply["result"]),
                mergeable=reply["mergeable"],
                offset_s=offsets[i][0],
                rtt_s=offsets[i][1],
                ray_cpu_s=reply["ray_cpu_s"],
            )
            for i, reply in replies.items()
        ]
        if loads:
            out.result = merge_loads(loads, server_figs, partial=bool(failed))
        server = {
            "name": self.server_name, "cpus": self.server_facts["cpu_count"],
            "ran": name, "figures": server_figs, "error": None,
        }  # fmt: skip
        out.hosts = host_records(server, loads, {self.load_names[i]: w for i, w in failed.items()})
        if failed:
            out.error = "; ".join(f"load host {self.load_names[i]}: {w}" for i, w in failed.items())

    def _collect(
        self, refs: dict[int, Any], timeout: float, on_tick: Callable[[float], None] | None
    ) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
        """Every load host's reply (bounded); a host that died or failed is in the second dict."""
        by_ref = {ref: i for i, ref in refs.items()}
        replies: dict[int, dict[str, Any]] = {}
        failed: dict[int, str] = {}
        pending = list(refs.values())
        t0 = time.monotonic()
        while pending and time.monotonic() - t0 < timeout:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.25)
            for ref in done:
                i = by_ref[ref]
                try:
                    reply = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed[i] = f"died: {type(exc).__name__}"
                    continue
                if reply["result"] is None:
                    failed[i] = reply["error"]
                else:
                    replies[i] = reply
                    if reply["error"]:
                        failed[i] = reply["error"]
            if on_tick:
                on_tick(time.monotonic() - t0)
        for ref in pending:
            failed[by_ref[ref]] = f"no reply within {timeout:.0f} s"
            ray.cancel(ref, force=True)
        return replies, failed

    @property
    def server_name(self) -> str:
        return f"{self.server_facts['hostname']} ({self.server_facts['node_ip']}, server node)"

    def clock_offsets(self) -> list[tuple[float | None, float | None]]:
        """Each load host's clock minus ours, from the round trip with the smallest delay."""
        found: list[tuple[float | None, float | None]] = []
        for actor in self.loads:
            best: tuple[float | None, float | None] = (None, None)
            for _ in range(CLOCK_ROUND_TRIPS):
                t_send = time.time()
                try:
                    remote = ray.get(actor.now.remote(), timeout=10)
                except ray.exceptions.RayError:
                    break
                t_recv = time.time()
                rtt = t_recv - t_send
                if best[1] is None or rtt < best[1]:
                    best = (remote - (t_send + t_recv) / 2, rtt)
            found.append(best)
        return found


def split(connections: int, slow: int, hosts: int) -> list[tuple[int, int]]:
    """(connections, slow clients) for each of ``hosts`` load hosts, as even as whole numbers go."""
    return list(zip(even(connections, hosts), even(slow, hosts), strict=True))


def even(n: int, hosts: int) -> list[int]:
    """``n`` shared by ``hosts`` as evenly as whole numbers go, the first ones taking the rest."""
    return [n // hosts + (1 if i < n % hosts else 0) for i in range(hosts)]


def _nodes_with(resource: str) -> list[str]:
    return sorted(
        n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get(resource, 0) > 0
    )


def _on(cls: type, node_id: str, resource: str) -> Any:
    """``cls`` as an actor pinned to ``node_id`` (no CPU reserved: it mostly waits)."""
    return ray.remote(
        num_cpus=0,
        resources={resource: 1},
        max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    )(cls)


def _names(facts: list[dict[str, Any]]) -> list[str]:
    """A name per load host: its hostname and IP, numbered when several share them."""
    names = [f"{f['hostname']} ({f['node_ip']})" for f in facts]
    if len(set(names)) < len(names):
        names = [f"{n} #{i + 1}" for i, n in enumerate(names)]
    return names
