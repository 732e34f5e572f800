"""The registry of server variants: one entry per concurrency model.

A variant's name is its file name in this package, its registry key, its
pytest id, its key in results and its ``--server`` value.  Importing this
module imports no variant -- gevent's monkey-patching and uvloop must stay
out of processes that do not run them -- so each entry is plain data, and
:func:`load` imports the module only when a server is about to run.

Every variant module has the same entry point::

    serve(listener: socket.socket, new_session: Callable[[], Session]) -> None

``listener`` is already bound and listening (``python -m servers`` made it
and printed the ready line); ``new_session()`` returns a fresh sans-I/O
session (:mod:`servers.protocol`) for each accepted connection.  ``serve``
runs until SIGTERM/SIGINT (the command line turns both into
:class:`SystemExit`), then returns having closed its clients and reaped any
child process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

__all__ = ["Variant", "REGISTRY", "LISTEN_BACKLOG", "get", "load", "names"]

# listen() backlog for every variant; the kernel caps it at net.core.somaxconn.
# asyncio and uvloop call listen() again on a socket they are given (with 100
# unless told), so the asyncio variants pass this too.
LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    concurrent: bool  # serves a second client while a first one is connected
    family: str  # "blocking", "event" or "reference"
    limit: str | None = None  # platform or descriptor limit, for humans
    max_clients: int | None = None  # hard cap on simultaneous clients, if any
    requires: Callable[[], str | None] | None = None  # returns why unavailable
    forks: bool = False  # serves clients in child processes (zombie and orphan checks apply)
    module: str = ""  # import path; default servers.<name>

    @property
    def unavailable_reason(self) -> str | None:
        """``None`` when the variant can run here, else a one-line reason."""
        return self.requires() if self.requires else None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    @property
    def is_reference(self) -> bool:
        """A reference (native ceiling) is measured but not ranked as a model."""
        return self.family == "reference"


def _needs_fork() -> str | None:
    return None if hasattr(os, "fork") else "os.fork() is not available on this platform"


def _needs_module(module: str, why: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if importlib.util.find_spec(module) is not None else why

    return check


def _needs_attr(module: str, attr: str, why: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return why
        return None if hasattr(mod, attr) else why

    return check


def _needs_c_compiler() -> str | None:
    found = any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))
    return None if found else "no C compiler (cc) found"


_VARIANTS = [
    # -- the blocking family: one shared blocking connection routine ---------
    Variant(
        "blocking_loop",
        "one client at a time: accept, serve until it leaves, accept the next",
        concurrent=False,
        family="blocking",
        limit="serves one client at a time; every other client waits in the listen backlog",
        max_clients=1,
    ),
    Variant(
        "fork_per_client",
        "os.fork() per connection; the parent reaps children on SIGCHLD",
        concurrent=True,
        family="blocking",
        limit="one process per client (memory, fork cost, the process limit)",
        forks=True,
        requires=_needs_fork,
    ),
    Variant(
        "thread_per_client",
        "one threading.Thread per connection",
        concurrent=True,
        family="blocking",
        limit="one OS thread (and its stack) per client; the GIL serialises Python code",
    ),
    Variant(
        "socketserver_forking",
        "socketserver ForkingMixIn + TCPServer + StreamRequestHandler",
        concurrent=True,
        family="blocking",
        limit="one process per client; ForkingMixIn caps live children at max_children (40)",
        max_clients=40,
        forks=True,
        requires=_needs_fork,
    ),
    Variant(
        "socketserver_threading",
        "socketserver ThreadingMixIn + TCPServer + StreamRequestHandler",
        concurrent=True,
        family="blocking",
        limit="one OS thread (and its stack) per client; the GIL serialises Python code",
    ),
    Variant(
        "gevent_server",
        "gevent.server.StreamServer: one greenlet per connection",
        concurrent=True,
        family="blocking",
        limit="one process, one core; anything that blocks without yielding stalls everyone",
        requires=_needs_module("gevent", "gevent is not installed"),
    ),
    # -- the event family: one thread, non-blocking sockets, a readiness loop --
    Variant(
        "select_reactor",
        "one thread, select.select() over non-blocking sockets",
        concurrent=True,
        family="event",
        limit="select() cannot watch a descriptor >= FD_SETSIZE (1024): about 1020 clients,"
        " the rest are closed on accept; O(n) scan of every socket per call",
        max_clients=1020,
    ),
    Variant(
        "poll_reactor",
        "the same loop over select.poll()",
        concurrent=True,
        family="event",
        limit="one thread, one core; poll() copies and scans every socket per call (O(n))",
        requires=_needs_attr("select", "poll", "select.poll is not available on this platform"),
    ),
    Variant(
        "epoll_reactor",
        "the same loop over select.epoll(), level-triggered",
        concurrent=True,
        family="event",
        limit="Linux only; one thread, one core",
        requires=_needs_attr("select", "epoll", "select.epoll is not available (Linux only)"),
    ),
    Variant(
        "epoll_edge",
        "select.epoll() with EPOLLET: read, write and accept until EAGAIN",
        concurrent=True,
        family="event",
        limit="Linux only; one thread, one core",
        requires=_needs_attr("select", "epoll", "select.epoll is not available (Linux only)"),
    ),
    Variant(
        "asyncio_streams",
        "asyncio.start_server with StreamReader/StreamWriter: a task per connection",
        concurrent=True,
        family="event",
        limit="one thread, one core; a blocking step stalls every client",
    ),
    Variant(
        "asyncio_protocol",
        "loop.create_server with an asyncio.Protocol: callbacks, no tasks",
        concurrent=True,
        family="event",
        limit="one thread, one core; a blocking callback stalls every client",
    ),
    Variant(
        "uvloop_protocol",
        "the asyncio_protocol server on uvloop's event loop (libuv)",
        concurrent=True,
        family="event",
        limit="one thread, one core; POSIX only",
        requires=_needs_module("uvloop", "uvloop is not installed (it does not support Windows)"),
    ),
    # -- the reference: a native ceiling, measured but not ranked -------------
    Variant(
        "native_epoll",
        "C epoll loop serving ECHO only (framed and raw): the native ceiling",
        concurrent=True,
        family="reference",
        limit="serves ECHO only; needs a C compiler at run time",
        requires=_needs_c_compiler,
    ),
]

REGISTRY: dict[str, Variant] = {v.name: v for v in _VARIANTS}


def register(variant: Variant) -> None:
    """Add a variant (tests use this for deliberately broken fakes)."""
    REGISTRY[variant.name] = variant


def names(*, include_reference: bool = True) -> list[str]:
    return [n for n, v in REGISTRY.items() if include_reference or not v.is_reference]


def get(name: str) -> Variant:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise KeyError(f"unknown server {name!r}; known: {known}") from None


def load(name: str) -> ModuleType:
    """Import the variant's module (only now: it may monkey-patch or need uvloop)."""
    variant = get(name)
    reason = variant.unavailable_reason
    if reason:
        raise RuntimeError(f"{name} is unavailable here: {reason}")
    return importlib.import_module(variant.module or f"{__name__}.{name}")


def _register_extra(spec: str) -> None:
    """Test-only variants from ``CONCURRENCY_BENCH_EXTRA="name=module,..."``.

    Lets a test start a deliberately broken server through the real command
    line (``python -m servers NAME``) without adding it to the registry that
    users see.
    """
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, module = item.partition("=")
        register(Variant(name, f"test-only variant from {module}", True, "test", module=module))


_register_extra(os.environ.get("CONCURRENCY_BENCH_EXTRA", ""))
