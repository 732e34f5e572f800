"""The load engine: `python -m loadgen`'s worker processes, the parent driving them, the result.

Read in this order: ``config`` (what to run, and its command line), ``plan``
(every request and expected reply, encoded before the run), ``conns`` (the
per-connection state), ``worker`` and ``hotloop`` (one worker's epoll loop),
``messages`` and ``process`` (a worker's life and what it tells the parent),
``driver`` (the parent), ``result`` (the typed result, docs/RESULTS.md),
``stats`` (histograms, fairness), ``monitor`` (the server's CPU and memory)
and ``cli`` (the command line).
"""

from loadgen.engine.config import WORKLOADS, LoadConfig, LoadError
from loadgen.engine.driver import Progress, run_load
from loadgen.engine.result import LoadResult
from loadgen.engine.worker import ERROR_KINDS

__all__ = [
    "ERROR_KINDS",
    "WORKLOADS",
    "LoadConfig",
    "LoadError",
    "LoadResult",
    "Progress",
    "run_load",
]
