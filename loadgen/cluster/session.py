"""``run_all.py --cluster ADDRESS``: the backend for one session, and its teardown.

``ADDRESS`` is a running Ray cluster's (``ray start --head`` printed it, or
``auto``), or ``local:N`` for a simulated one on this machine
(:mod:`loadgen.cluster.local`), started here and torn down at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ray

from loadgen.cluster.backend import ClusterBackend
from loadgen.cluster.local import local_cluster, node_cpus, parse_local


@contextlib.contextmanager
def open_backend(address: str, server_host: str, server_cpus: int = 1) -> Iterator[ClusterBackend]:
    """A :class:`ClusterBackend` on ``address``; its actors killed and Ray left on exit."""
    with contextlib.ExitStack() as stack:
        nodes = parse_local(address)
        cpus: tuple = (None, None)
        if nodes is not None:
            address = stack.enter_context(local_cluster(nodes))
            cpus = node_cpus(nodes)
        stack.callback(ray.shutdown)
        backend = ClusterBackend(address, server_host, cpus, server_cpus)
        try:
            yield backend
        finally:
            backend.close()
