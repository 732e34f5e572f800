"""The server on one host, the load from several: ``run_all.py --cluster`` (docs/CLUSTER.md).

:mod:`~loadgen.cluster.merge` (pure, no Ray) merges the load hosts' results
into one; :mod:`~loadgen.cluster.actors` holds the Ray actors that run a
server or the engine on a host; :mod:`~loadgen.cluster.backend` is the
suite's measurement over those actors; :mod:`~loadgen.cluster.local` starts
and tears down a simulated cluster on this machine (``--cluster local:N``).
Only ``merge`` may be imported without Ray installed.
"""
