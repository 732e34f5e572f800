"""``python -m loadgen --target HOST:PORT``: load one server, print a table, write JSON.

    python -m loadgen --target HOST:PORT|unix:PATH
        [--workload echo|raw|get|put|mixed|churn|idle|c10k|work] [--work KIND:AMOUNT]
        [--size N] [--connections C] [--duration S] [--warmup S] [--rate R]
        [--pipeline D] [--processes N] [--server-pid PID] [--slow-clients K]
        [--neighbours N --neighbour-work KIND:AMOUNT]
        [--cpus LIST] [--timeout S] [--admit-timeout S] [--no-counters]
        [--start-at EPOCH] [--json FILE [--histograms]] [--quiet]

WORK requests (issue 16): ``--workload work --work compute:200 --size 64``
sends WORK on every connection (KIND wait|compute|block|offload, AMOUNT µs,
or units for compute) and checks that each reply carries the 64 bytes back;
``--neighbours 1 --neighbour-work compute:20000`` (with any framed workload,
e.g. echo) makes the first connection send 20 ms computations back to back
beside the others: the headline figures are the others' (the victims'), the
neighbours' own are the result's ``neighbours`` object.  The server's
per-request costs (CPU, system calls, context switches) are over every
request it served, the neighbours' included.  A WORK reply may come its
work's duration late: the reply timeout is ``--timeout`` plus the longest
work of the run.

``--target udp:HOST:PORT`` loads a datagram server (issue 17) with
:mod:`loadgen.engine.datagram`: ``--connections`` flows, each its own UDP
socket, closed loop or ``--rate``; a reply not back within
``--loss-timeout`` (200 ms) is counted lost, and the result gains
``datagram`` (sent, answered, lost, late, duplicated, the kernel's drops).
UDP targets are loopback only.

The target is any host (loopback is what the suite uses; another host's
address is said plainly on stderr at start, since the load then crosses a
network), or ``unix:PATH`` for a Unix domain socket.  Bad arguments or an
unreachable target
print one line on stderr and exit 2 (no traceback); Ctrl-C stops the
workers, prints what was measured marked PARTIAL and exits 130.  The JSON
keys are documented in docs/RESULTS.md.  The options are
:mod:`loadgen.engine.config`'s.
"""

from __future__ import annotations

import json
import sys

from loadgen.engine.config import PROG, LoadConfig, LoadError, build_parser, fail
from loadgen.engine.driver import run_load, run_load_mergeable


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = LoadConfig.from_args(args)
        cfg.validate()
    except ValueError as exc:
        fail(str(exc))
    if cfg.remote:
        print(f"{PROG}: target {cfg.target} is not this machine (not loopback)", file=sys.stderr)
    live = None
    if not args.quiet and sys.stderr.isatty():
        from loadgen.report.terminal import LiveLine

        live = LiveLine()
    if args.histograms and not args.json:
        fail("--histograms needs --json FILE")
    extra: dict[str, object] = {}
    if cfg.udp and args.histograms:
        fail("--histograms is for TCP loads (several load hosts); a UDP load runs on one")
    try:
        if cfg.udp:
            from loadgen.engine.datagram import run_datagram_load

            result = run_datagram_load(cfg, progress=live)
        elif args.histograms:
            result, extra["mergeable"] = run_load_mergeable(cfg, progress=live)
        else:
            result = run_load(config=cfg, progress=live)
    except (LoadError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print("python -m loadgen: interrupted before anything was measured", file=sys.stderr)
        return 130
    finally:
        if live is not None:
            live.close()
    if args.json:
        try:
            with open(args.json, "w") as f:
                json.dump({**result.to_dict(), **extra}, f, indent=2)
                f.write("\n")
        except OSError as exc:
            fail(f"cannot write {args.json}: {exc.strerror or exc}")
    if not args.quiet:
        from loadgen.report.terminal import print_result

        print_result(result)
    return 130 if result.partial else 0


if __name__ == "__main__":
    sys.exit(main())
