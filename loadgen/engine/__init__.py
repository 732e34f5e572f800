"""The load engine: ``python -m loadgen``'s worker processes, the parent that drives them, the result.

Read in this order: ``config`` (what to run, and its command line), ``plan``
(every request and expected reply, encoded before the run), ``conns`` (the
per-connection state), ``worker`` and ``hotloop`` (one worker's epoll loop),
``process`` (a worker's life and its messages to the parent), ``driver``
(the parent), ``result`` (the typed result, docs/RESULTS.md), ``stats``
(histograms, fairness) and ``monitor`` (the server's CPU and memory).
"""

from loadgen.engine.driver import ERROR_KINDS, WORKLOADS, LoadConfig, LoadError, Progress, run_load

__all__ = ["ERROR_KINDS", "WORKLOADS", "LoadConfig", "LoadError", "Progress", "run_load"]
