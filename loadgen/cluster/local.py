"""``--cluster local:N``: a throwaway simulated cluster on this machine, torn down after.

One server node (resource ``cb_server``) and N-1 load nodes (``cb_loadgen``),
each a raylet of :class:`ray.cluster_utils.Cluster`.  They share this
machine's CPUs: the server is pinned to the first CPU we may use and the
load nodes share the others (their own CPU each where there are enough) --
the same split as a local run.  :func:`local_cluster` shuts the cluster down
on success, error or Ctrl-C, then kills whatever process it started that is
still alive (servers and engines included) and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import psutil

from loadgen.cluster.actors import LOAD_RESOURCE, SERVER_RESOURCE
from loadgen.procs import killpg

RAY_NAMES = ("raylet", "gcs_server", "ray::", "default_worker", "plasma_store", "redis-server")


def parse_local(address: str) -> int | None:
    """``"local:N"`` -> N (>= 2: a server node and a load node); None for a real address."""
    if not address.startswith("local:"):
        return None
    text = address.partition(":")[2]
    if not text.isdigit() or int(text) < 2:
        raise ValueError(f"--cluster {address}: want local:N with N >= 2 (one server node)")
    return int(text)


def node_cpus(nodes: int) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """(the server's CPUs, each load node's CPUs) for a simulated cluster of ``nodes``."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    if len(usable) < 2:
        return (usable[0],), [(usable[0],)] * (nodes - 1)
    rest = usable[1:]
    return (usable[0],), [(rest[i % len(rest)],) for i in range(nodes - 1)]


@contextlib.contextmanager
def local_cluster(nodes: int) -> Iterator[str]:
    """Start the simulated cluster; yield its address; tear it all down, leaving nothing.

    RuntimeError after the teardown if a process of ours had to be killed by hand.
    """
    from ray.cluster_utils import Cluster

    server_cpus, load_cpus = node_cpus(nodes)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": len(server_cpus),
                "resources": {SERVER_RESOURCE: 1},
                "include_dashboard": False,
            },
        )
        for cpus in load_cpus:
            cluster.add_node(num_cpus=len(cpus), resources={LOAD_RESOURCE: 1})
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        ours = [p for p in _descendants() if p.pid not in before]
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        left = reap(ours)
        if left:
            raise RuntimeError(f"killed {len(left)} process(es) left after the cluster: {left}")


def _descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def reap(procs: list[psutil.Process], timeout: float = 5.0) -> list[str]:
    """Wait for ``procs`` to be gone; SIGKILL (with their groups) those that are not.

    Returns a description of each one that had to be killed.  ``psutil``
    remembers each process's start time, so a recycled pid is never signalled.
    """
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    killed = []
    for p in alive:
        with contextlib.suppress(psutil.Error):
            killed.append(f"{p.pid} {p.name()}")
            if p.pid == os.getpgid(p.pid):
                killpg(p.pid, signal.SIGKILL)  # a server's or an engine's whole group
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return killed


def ray_processes() -> list[psutil.Process]:
    """Ray's processes (raylet, gcs_server, workers) descended from this process."""
    found = []
    for p in _descendants():
        with contextlib.suppress(psutil.Error):
            text = p.name() + " " + " ".join(p.cmdline()[:2])
            if any(n in text for n in RAY_NAMES):
                found.append(p)
    return found
