"""``python -m loadgen --target HOST:PORT``: load one server, print a table, write JSON.

    python -m loadgen --target 127.0.0.1:PORT [--workload echo|raw|get|put|mixed|churn|idle]
        [--size N] [--connections C] [--duration S] [--warmup S] [--rate R]
        [--pipeline D] [--processes N] [--server-pid PID] [--slow-clients K]
        [--cpus LIST] [--timeout S] [--json FILE] [--quiet]

Only loopback targets are accepted.  Bad arguments or an unreachable target
print one line on stderr and exit 2 (no traceback); Ctrl-C stops the
workers, prints what was measured marked PARTIAL and exits 130.  The JSON
keys are documented in docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from loadgen.client import parse_target
from loadgen.engine import WORKLOADS, LoadConfig, LoadError, run_load


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the whole usage text
        fail(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m loadgen", description="Load one server of the suite and measure it."
    )
    p.add_argument("--target", required=True, help="HOST:PORT of the server (loopback only)")
    p.add_argument(
        "--workload",
        choices=WORKLOADS + ("slow",),
        default="echo",
        help="what each connection does (default echo); 'slow' = echo with --slow-clients",
    )
    p.add_argument("--size", type=int, default=64, help="payload / file bytes (default 64)")
    p.add_argument("--connections", "-c", type=int, default=64, help="connections (default 64)")
    p.add_argument("--duration", "-d", type=float, default=3.0, help="measured seconds (3)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, discarded (1)")
    p.add_argument("--rate", type=float, default=None, help="open loop: total requests/s")
    p.add_argument(
        "--pipeline", type=int, default=1, help="closed loop: requests in flight per conn"
    )
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--server-pid", type=int, default=None, help="measure this process tree")
    p.add_argument(
        "--slow-clients",
        type=int,
        default=None,
        help="this many connections send one byte every 5 ms (default 0; 'slow' workload: 1/8)",
    )
    p.add_argument("--cpus", default=None, help="pin the workers, e.g. '1' or '0,1' or '2-3'")
    p.add_argument("--timeout", type=float, default=2.0, help="reply timeout in seconds (2)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no live line, no table")
    return p


def fail(message: str) -> NoReturn:
    print(f"python -m loadgen: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_cpus(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r} (want e.g. 1 or 0,1 or 0-3)")
        cpus.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    return cpus


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    host, port = parse_target(args.target, loopback_only=True)
    return LoadConfig(
        host=host,
        port=port,
        workload=args.workload,
        size=args.size,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        pipeline=args.pipeline,
        processes=args.processes,
        slow_clients=args.slow_clients or 0,
        cpus=parse_cpus(args.cpus) if args.cpus else None,
        server_pid=args.server_pid,
        timeout=args.timeout,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        cfg.validate()
    except ValueError as exc:
        fail(str(exc))
    live = None
    if not args.quiet and sys.stderr.isatty():
        from loadgen.suite.report import LiveLine

        live = LiveLine()
    try:
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
                json.dump(result, f, indent=2)
                f.write("\n")
        except OSError as exc:
            fail(f"cannot write {args.json}: {exc.strerror or exc}")
    if not args.quiet:
        from loadgen.suite.report import print_result

        print_result(result)
    return 130 if result["partial"] else 0


if __name__ == "__main__":
    sys.exit(main())
