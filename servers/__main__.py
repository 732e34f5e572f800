"""``python -m servers NAME``: start one variant, print one JSON ready line.

    python -m servers NAME [--host 127.0.0.1] [--port 0] [--unix PATH] [--root DIR]
                           [--protocol framed|raw] [--max-frame BYTES] [--max-work N]
                           [--idle-timeout S] [--request-timeout S] [--max-clients N]
                           [--workers N]
    python -m servers --list
    python -m servers --probe

The listening socket is made here, the same way for every variant, so that a
variant's ``serve()`` holds nothing but its concurrency model.  Once it
listens, one line of JSON goes to stdout (``server``, ``host``, ``port``,
``unix``, ``pid``, ``python``, ...) and is flushed: that is how tests and the
harness learn the address, with no sleeping and no guessing.  SIGTERM and
SIGINT both become ``SystemExit(0)`` in the main thread; ``serve()`` cleans up
and the process exits 0.

``--unix PATH`` listens on a Unix domain stream socket at PATH instead of TCP
(``host`` and ``port`` are then null in the ready line).  A socket file a
killed server left at PATH is replaced; any other file there is refused.  The
path is removed when the server stops.  A variant that cannot serve a Unix
socket says why in the registry (``Variant.unix``) and ``--unix`` is refused
with that reason.

A datagram variant (registry ``transport`` ``udp``, issue 17) gets a bound UDP
socket instead of a listener (``--host``, ``--port`` as for TCP; ``transport``
in the ready line says which); ``--unix`` is refused for it.

``--probe`` prints one line of JSON about this interpreter (version,
implementation, whether the GIL is enabled) and why each variant cannot run
here (null: it can); ``run_all.py --python EXE`` asks another interpreter this
before it starts servers there.

Before it listens, a framed server removes the temporary files that a
crashed PUT of an earlier server left in its root, and says so on stderr
(:func:`servers.service.remove_stale_temp_files`).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import stat
import sys
from typing import NoReturn

import servers
from servers.protocol import DEFAULT_MAX_FRAME, DEFAULT_MAX_WORK, MAX_PAYLOAD, SessionFactory
from servers.tuning import IDLE_TIMEOUT, REQUEST_TIMEOUT, Limits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m servers",
        description="Run one concurrency model of the echo/file server.",
    )
    p.add_argument("name", nargs="?", help="variant to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
    p.add_argument(
        "--probe",
        action="store_true",
        help="print this interpreter and each variant's availability as JSON, and exit",
    )
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 0: pick a free one)")
    p.add_argument(
        "--unix",
        default=None,
        metavar="PATH",
        help="listen on a Unix domain stream socket at PATH instead of TCP",
    )
    p.add_argument("--root", default=".", help="the served directory (default: .)")
    p.add_argument(
        "--protocol",
        choices=("framed", "raw"),
        default="framed",
        help="framed: protocol v1 (docs/PROTOCOL.md); raw: echo every byte back",
    )
    p.add_argument(
        "--max-frame",
        type=int,
        default=DEFAULT_MAX_FRAME,
        metavar="BYTES",
        help=f"largest payload accepted (default {DEFAULT_MAX_FRAME})",
    )
    p.add_argument(
        "--max-work",
        type=int,
        default=DEFAULT_MAX_WORK,
        metavar="N",
        help="largest WORK amount accepted, in µs (wait, block, offload) or compute units "
        f"(default {DEFAULT_MAX_WORK:,}: 10 s)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=IDLE_TIMEOUT,
        metavar="S",
        help=f"close a connection with no request in progress and no input for S seconds "
        f"(default {IDLE_TIMEOUT:g})",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        metavar="S",
        help="answer 'ERROR request timeout' and close when a request is still incomplete S "
        f"seconds after its first byte, or output makes no progress for S (default "
        f"{REQUEST_TIMEOUT:g})",
    )
    p.add_argument(
        "--max-clients",
        type=int,
        metavar="N",
        help="serve at most N clients at once; the next gets 'ERROR server busy' and is closed "
        "(default: the variant's, see --list; 0: no limit)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker threads or processes of a pool or prefork model (default: the variant's, "
        "see --list; ignored by the others)",
    )
    return p


def limits_from(args: argparse.Namespace, variant: servers.Variant) -> Limits:
    """The Limits a variant is given: the options, or the variant's default client limit."""
    max_clients = variant.default_max_clients if args.max_clients is None else args.max_clients
    return Limits(args.idle_timeout, args.request_timeout, max_clients or None, args.workers)


def fail(message: str) -> NoReturn:
    print(f"python -m servers: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def print_list() -> None:
    """One line per variant (name, summary, flags), then its limit indented below."""
    width = max(len(n) for n in servers.REGISTRY)
    for variant in servers.REGISTRY.values():
        line = f"{variant.name:<{width}}  [{variant.transport}] {variant.summary}"
        if variant.is_reference:
            line += "  [reference]"
        reason = variant.unavailable_reason
        if reason:
            line += f"  [unavailable: {reason}]"
        print(line)
        if variant.limit:
            print(f"{'':<{width}}  limit: {variant.limit}")
        if variant.default_max_clients:
            print(f"{'':<{width}}  --max-clients default: {variant.default_max_clients}")
        if variant.workers:
            print(f"{'':<{width}}  --workers: {variant.workers}")
        if variant.unix:
            print(f"{'':<{width}}  no --unix: {variant.unix}")
        if variant.offload:
            print(f"{'':<{width}}  WORK offload: {variant.offload}")
        if variant.tcp_sibling:
            print(f"{'':<{width}}  TCP sibling: {variant.tcp_sibling}")


def probe() -> dict[str, object]:
    """This interpreter, and why each variant cannot run under it (None: it can)."""
    return {
        "python": servers.interpreter(),
        "unavailable": {name: v.unavailable_reason for name, v in servers.REGISTRY.items()},
    }


def session_factory(
    protocol: str, root: str, max_frame: int, max_work: int = DEFAULT_MAX_WORK
) -> SessionFactory:
    if protocol == "raw":
        return SessionFactory("raw", max_frame)
    from servers.service import FileService  # only the framed protocol serves files

    return SessionFactory("framed", max_frame, FileService(root, max_work).handle)


def remove_crash_leftovers(root: str) -> None:
    """Delete the temporary files a killed server's PUTs left in ``root``; report each on stderr."""
    from servers.service import remove_stale_temp_files

    try:
        results = remove_stale_temp_files(root)
    except OSError as exc:  # an unreadable root: LIST will say so; serving can still start
        results = [("the root's temporary files", exc.strerror or str(exc))]
    for name, problem in results:
        if problem is None:
            message = f"removed {name}, left by a PUT that never finished (a crash)"
        else:
            message = f"kept {name}: {problem}"
        print(f"python -m servers: {message}", file=sys.stderr, flush=True)


def _exit_on_signal(signum: int, frame: object) -> None:
    # Ignore any further SIGTERM/SIGINT: a second one must not interrupt the
    # cleanup (reaping children) that this first one starts, and Python
    # resets handlers to the default during interpreter shutdown, where a
    # late signal would kill the process with -15 instead of exit 0.
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print_list()
        return 0
    if args.probe:
        print(json.dumps(probe()), flush=True)
        return 0
    if not args.name:
        fail("give a variant NAME, or --list")
    if args.name not in servers.REGISTRY:
        fail(f"unknown server {args.name!r} (python -m servers --list shows them)")
    if not os.path.isdir(args.root):
        fail(f"root {args.root!r} is not an existing directory")
    if args.max_frame < 0:
        fail("--max-frame must be >= 0")
    if not 0 <= args.max_work <= MAX_PAYLOAD:
        fail("--max-work must be from 0 to 4294967295 (a uint32)")
    if args.idle_timeout <= 0 or args.request_timeout <= 0:
        fail("--idle-timeout and --request-timeout must be > 0")
    if args.max_clients is not None and args.max_clients < 0:
        fail("--max-clients must be >= 0 (0: no limit)")
    if args.workers is not None and args.workers < 1:
        fail("--workers must be >= 1")
    variant = servers.get(args.name)
    if args.unix is not None:
        if args.host is not None or args.port is not None:
            fail("--unix listens on a path: give it without --host and --port")
        if variant.unix:
            fail(f"{args.name} cannot serve a Unix socket: {variant.unix}")
    limits = limits_from(args, variant)
    try:
        module = servers.load(args.name)
    except (RuntimeError, ImportError) as exc:
        fail(str(exc))
    prepare = getattr(module, "prepare", None)
    if prepare is not None:  # e.g. native_epoll compiles itself before we listen
        try:
            prepare()
        except RuntimeError as exc:
            fail(str(exc))
    if args.protocol == "framed":  # raw mode never touches the root
        remove_crash_leftovers(args.root)
    new_session = session_factory(args.protocol, args.root, args.max_frame, args.max_work)
    if args.unix is not None:
        listener = unix_listener(args.unix)
        identity = socket_file_identity(args.unix)
        host, port = None, None
    elif variant.transport == "udp":
        listener = udp_socket(
            args.host or "127.0.0.1", args.port or 0, getattr(module, "LISTEN_OPTIONS", {})
        )
        identity = None
        host, port = listener.getsockname()[:2]
    else:
        listener = tcp_listener(
            args.host or "127.0.0.1", args.port or 0, getattr(module, "LISTEN_OPTIONS", {})
        )
        identity = None
        host, port = listener.getsockname()[:2]
    owner = os.getpid()  # a forked child must not remove the parent's socket file

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    ready = {
        "server": args.name,
        "transport": variant.transport,
        "host": host,
        "port": port,
        "unix": os.path.abspath(args.unix) if args.unix is not None else None,
        "pid": os.getpid(),
        "python": servers.interpreter(),
        "protocol": args.protocol,
        "root": os.path.abspath(args.root),
        "max_frame": args.max_frame,
        "max_work": args.max_work,
        "idle_timeout": limits.idle_timeout,
        "request_timeout": limits.request_timeout,
        "max_clients": limits.max_clients,
        "workers": limits.workers,
    }
    print(json.dumps(ready), flush=True)
    try:
        module.serve(listener, new_session, limits)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # serve() may have returned on its own
            signal.signal(signum, signal.SIG_IGN)
        listener.close()
        if identity is not None and os.getpid() == owner:
            remove_socket_file(args.unix, identity)
    return 0


def tcp_listener(host: str, port: int, options: dict[str, bool]) -> socket.socket:
    """A listening TCP socket; ``options`` is the variant's ``LISTEN_OPTIONS`` (e.g.
    ``reuse_port``, which must be set before bind)."""
    try:
        return socket.create_server((host, port), backlog=servers.LISTEN_BACKLOG, **options)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def udp_socket(host: str, port: int, options: dict[str, bool]) -> socket.socket:
    """A bound UDP socket (no listen: datagrams need no connection); ``options`` as
    :func:`tcp_listener`'s (``reuse_port`` is set before bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if options.get("reuse_port"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}")
    return sock


def unix_listener(path: str) -> socket.socket:
    """A listening AF_UNIX stream socket at ``path``, replacing a dead server's socket file."""
    clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(servers.LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on unix:{path}: {exc.strerror or exc}")
    return sock


def clear_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on (a killed server's); refuse anything else.

    A socket someone still accepts on is another server's: replacing it would
    steal its clients, so that is refused too.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        fail(f"cannot use {path!r} for --unix: {exc.strerror or exc}")
    if not stat.S_ISSOCK(mode):
        fail(f"{path!r} exists and is not a socket: refusing to replace it with one")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        err = probe.connect_ex(path)
    if err == 0 or err == errno.EAGAIN:  # accepted, or a full backlog: alive
        fail(f"another server is listening on {path!r}")
    os.unlink(path)
    print(f"python -m servers: replaced {path}, a socket nobody listens on", file=sys.stderr)


def socket_file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the socket file just bound, to recognise it at shutdown."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_socket_file(path: str, identity: tuple[int, int]) -> None:
    """Unlink ``path`` if it is still the file we bound (a successor's is left alone)."""
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
