"""The registry of server variants: one entry per concurrency model.

A variant's name is its file name in this package, its registry key, its
pytest id, its key in results and what ``python -m servers NAME`` and
``run_all.py --servers`` take.  Importing this module imports no variant --
gevent's monkey-patching and uvloop must stay out of processes that do not
run them -- so each entry is plain data, and :func:`load` imports the module
only when a server is about to run.  Each entry's ``summary`` is the one
line that describes the model; the module's docstring opens with it and the
README's table repeats it (``tests/test_registry.py`` checks both).

Every variant module has the same entry point::

    serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None

``listener`` is already bound and listening (``python -m servers`` made it
and printed the ready line); ``new_session()`` returns a fresh sans-I/O
session (:mod:`servers.protocol`) for each accepted connection -- it is a
:class:`servers.protocol.SessionFactory`, whose ``protocol`` and
``max_frame`` say what the sessions speak.  ``limits`` (a
:class:`servers.tuning.Limits`) holds the idle and request timeouts and the
client limit the variant enforces, each in its own idiom.  ``serve`` runs until
SIGTERM/SIGINT (the command line turns both into :class:`SystemExit`), then
returns having closed its clients and reaped any child process.

A variant module may also define ``prepare() -> object`` (optional): the
command line calls it once the module is imported and before it listens, so
that slow or failing set-up (``native_epoll`` compiles its binary here)
happens before the ready line.  It raises :class:`RuntimeError` with a
one-line message to refuse to start; its return value is ignored.

A variant module may also define ``LISTEN_OPTIONS`` (optional): a dict of
keyword arguments the command line adds to its ``socket.create_server`` call
for the listener -- ``prefork_reuseport`` sets ``{"reuse_port": True}``,
because ``SO_REUSEPORT`` must be set before ``bind`` for its workers' own
listeners to join the first one's port.

A variant module imports the shared code (``protocol``, ``service``,
``tuning``, ``_blocking``, ``_nonblocking``, ``_asyncio_shared``,
``_asyncio_streams``, ``_datagram``, ``native_build``), never another variant
(``tests/test_registry.py``).

A variant's ``transport`` is ``tcp`` (a stream: TCP, or a Unix socket with
``--unix``) or ``udp`` (datagrams, issue 17).  A datagram variant gets the
same ``serve(sock, new_session, limits)`` call, where ``sock`` is a bound UDP
socket (``SOCK_DGRAM``, no listen) and ``new_session.datagram(data)`` is the
protocol's one datagram entry point (:func:`servers.protocol.answer_datagram`).
Every TCP suite takes the ``tcp`` variants only (:func:`names`), the datagram
suites the ``udp`` ones; ``tcp_sibling`` names the TCP variant of the same
model, whose figures the ``udp-echo`` table shows beside its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from servers.tuning import LISTEN_BACKLOG

__all__ = [
    "CODE",
    "LISTEN_BACKLOG",
    "REGISTRY",
    "SCHEDULING",
    "TRANSPORTS",
    "Variant",
    "get",
    "interpreter",
    "load",
    "names",
    "register",
]

# What a variant shares code with: Variant.code.
CODE = {
    "blocking": "a blocking read-answer-write loop per client (servers/_blocking.py)",
    "nonblocking": "a non-blocking Connection driven by a readiness loop (servers/_nonblocking.py)",
    "asyncio": "asyncio's streams, protocols or raw socket calls, on asyncio's loop or uvloop's",
    "trio": "trio's structured concurrency: nurseries of tasks over trio's own loop and streams",
    "datagram": "one UDP socket, no connections: every datagram goes to"
    " servers.protocol.answer_datagram (issue 17)",
    "reference": "native code: the ceiling, measured but not ranked",
    "test": "deliberately broken, started by the tests only (tests/fakes)",
}

# Who decides which client is served next: Variant.scheduling.
SCHEDULING = {
    "one at a time": "nobody: one client is served to the end, the others wait",
    "processes": "the kernel, one process per client, on every core",
    "threads": "the kernel, one thread per client (the GIL lets one run Python at a time)",
    "thread pool": "the kernel, a fixed pool of threads, each serving one client to the end;"
    " the next clients wait in a queue",
    "greenlets": "one thread; each client's greenlet yields to the hub when it would block",
    "event loop": "one thread; a loop serves whichever sockets are ready",
    "event loop per process": "the kernel spreads connections over worker processes"
    " (SO_REUSEPORT); each one's loop serves whichever of its sockets are ready",
    "thread per datagram": "the kernel, one short-lived thread per datagram (the GIL lets"
    " one run Python at a time)",
    "process per datagram": "the kernel, one forked process per datagram, on every core",
}

TRANSPORTS = ("tcp", "udp")  # Variant.transport: a stream (TCP or --unix), or datagrams

# --max-clients of the thread- and process-per-client models when not given:
# 1,024 threads (8 MiB of stack address space each) or processes is far
# below what takes a 2-core, 24 GiB machine down, and above the suite's
# largest connection level (1,000).
DEFAULT_CLIENT_LIMIT = 1024

# ``family``, the grouping results and charts have always used, follows ``code``.
_FAMILY_OF_CODE = {
    "blocking": "blocking",
    "nonblocking": "event",
    "asyncio": "event",
    "trio": "event",
    "datagram": "datagram",
    "reference": "reference",
    "test": "test",
}


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str  # the one line; the module docstring and README repeat it
    concurrent: bool  # serves a second client while a first one is connected
    code: str  # what it shares code with: a key of CODE
    scheduling: str  # who picks the next client to serve: a key of SCHEDULING
    limit: str | None = None  # platform or descriptor limit, for humans
    max_clients: int | None = None  # hard cap on simultaneous clients, if any
    # --max-clients when not given (Limits.max_clients): a finite default
    # for the models that spend a thread or a process per client, so that a
    # flood of connections cannot take the machine down; None: unlimited.
    default_max_clients: int | None = None
    # "how hostile clients hurt the model; what protects it here" (issue 10):
    # the README's "fails how; protected how" column.  The docstring says more.
    protection: str = ""
    requires: Callable[[], str | None] | None = None  # returns why unavailable
    forks: bool = False  # serves clients in child processes (zombie and orphan checks apply)
    module: str = ""  # import path; default servers.<name>
    # None: runs over a Unix stream socket (``--unix PATH``) too; else why it cannot (issue 11)
    unix: str | None = None
    # can use more than one server core (processes, or threads on a free-threaded build): the
    # ``cores`` scenario measures it at 1, 2, 4 ... server CPUs (issue 11)
    multicore: bool = False
    # for --list and the README: what --workers means for this variant and its default;
    # None: no workers
    workers: str | None = None
    # for --list: how it serves a WORK offload (a blocking call made the model's recommended
    # way): the idiom, or why none is needed or none exists (issue 16)
    offload: str = ""
    # "tcp": a stream server (TCP, or a Unix socket); "udp": a datagram server (issue 17).
    # The TCP suites take the tcp variants only, the datagram suites the udp ones.
    transport: str = "tcp"
    # a udp variant: the TCP variant of the same model (udp-echo shows its figures beside)
    tcp_sibling: str | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"{self.name}: transport {self.transport!r} is not one of {TRANSPORTS}"
            )
        if self.code not in CODE:
            raise ValueError(f"{self.name}: code {self.code!r} is not one of {list(CODE)}")
        if self.scheduling not in SCHEDULING:
            raise ValueError(
                f"{self.name}: scheduling {self.scheduling!r} is not one of {list(SCHEDULING)}"
            )

    @property
    def family(self) -> str:
        """``blocking``, ``event``, ``reference`` (or ``test``): follows :attr:`code`."""
        return _FAMILY_OF_CODE[self.code]

    def client_cap(self) -> tuple[int, str] | None:
        """The most clients it serves at once as this suite runs it, and where that cap is
        declared (``max_clients``, else ``default_max_clients``); None: no declared cap."""
        if self.max_clients is not None:
            return (
                self.max_clients,
                f"client limit {self.max_clients:,} (its own: max_clients)",
            )
        if self.default_max_clients is not None:
            n = self.default_max_clients
            return n, f"client limit {n:,} (--max-clients, its default)"
        return None

    @property
    def module_name(self) -> str:
        """The import path :func:`load` imports."""
        return self.module or f"{__name__}.{self.name}"

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
        return self.code == "reference"


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


def _needs_all(*checks: Callable[[], str | None]) -> Callable[[], str | None]:
    def check() -> str | None:
        return next((reason for reason in (c() for c in checks) if reason), None)

    return check


DATAGRAM_NO_UNIX = "a datagram server: --unix takes a stream socket's path"

# under --python EXE this is EXE's verdict: say what to do, not only where uvloop never runs
NO_UVLOOP = "uvloop is not installed for this interpreter (pip install uvloop; POSIX only)"


def _needs_c_compiler() -> str | None:
    from servers.native_build import find_c_compiler  # only when asked: it imports subprocess

    return None if find_c_compiler() else "no C compiler (cc) found"


_VARIANTS = [
    # -- one blocking routine per client (servers/_blocking.py); who runs it differs --
    Variant(
        "blocking_loop",
        "one client at a time: accept, serve until it leaves, accept the next",
        concurrent=False,
        code="blocking",
        scheduling="one at a time",
        limit="serves one client at a time; every other client waits in the listen backlog",
        max_clients=1,
        protection="one silent client stops everyone; the timeouts bound that to one timeout",
        offload="no idiom: served as block (stalls the loop; one client at a time anyway)",
    ),
    Variant(
        "fork_per_client",
        "os.fork() per connection; the parent reaps children on SIGCHLD",
        concurrent=True,
        code="blocking",
        scheduling="processes",
        limit="one process per client (memory, fork cost, the process limit)",
        forks=True,
        requires=_needs_fork,
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        protection="a process per silent client;"
        " socket timeouts in the child, client limit (1,024) counted by the parent",
        multicore=True,
        offload="none needed: a process per client",
    ),
    Variant(
        "thread_per_client",
        "one threading.Thread per connection",
        concurrent=True,
        code="blocking",
        scheduling="threads",
        limit="one OS thread (and its stack) per client; the GIL serialises Python code",
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        protection="a thread per silent client, EMFILE from accept;"
        " socket timeouts, a semaphore of threads (1,024), a spare descriptor",
        multicore=True,
        offload="none needed: a thread per client already",
    ),
    Variant(
        "thread_pool",
        "a fixed pool of worker threads, fed accepted connections through a queue",
        concurrent=True,
        code="blocking",
        scheduling="thread pool",
        limit="serves --workers clients at once (default 64); the next ones are accepted"
        " and wait unanswered until a worker is free; the GIL serialises Python code",
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        protection="N idle clients stop everyone else for the idle timeout;"
        " socket timeouts, a bounded queue (1,024 clients), a spare descriptor",
        multicore=True,
        workers="worker threads, each serving one client at a time (default 64)",
        offload="none needed: a client being served has a worker thread of its own",
    ),
    Variant(
        "socketserver_forking",
        "socketserver ForkingMixIn + TCPServer + StreamRequestHandler",
        concurrent=True,
        code="blocking",
        scheduling="processes",
        limit="one process per client; ForkingMixIn blocks at max_children (40) live children,"
        " so the 40th simultaneous client is refused busy",
        max_clients=39,
        forks=True,
        requires=_needs_fork,
        protection="ForkingMixIn blocks everyone at 40 children;"
        " the 40th refused busy, socket timeouts",
        offload="none needed: a process per client",
    ),
    Variant(
        "socketserver_threading",
        "socketserver ThreadingMixIn + TCPServer + StreamRequestHandler",
        concurrent=True,
        code="blocking",
        scheduling="threads",
        limit="one OS thread (and its stack) per client; the GIL serialises Python code",
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        protection="spins while out of descriptors;"
        " a spare descriptor in get_request, client limit (1,024), socket timeouts",
        offload="none needed: a thread per client already",
    ),
    Variant(
        "gevent_server",
        "gevent.server.StreamServer: one greenlet per connection",
        concurrent=True,
        code="blocking",
        scheduling="greenlets",
        limit="one process, one core; anything that blocks without yielding stalls everyone",
        requires=_needs_module("gevent", "gevent is not installed"),
        protection="a blocking call stalls all;"
        " gevent.Timeout per recv/send, StreamServer backs off on EMFILE",
        offload="gevent's threadpool: gevent.get_hub().threadpool.apply",
    ),
    Variant(
        "greenlet_hub",
        "a greenlet per connection, switched by a hand-written epoll hub (gevent without gevent)",
        concurrent=True,
        code="blocking",
        scheduling="greenlets",
        limit="Linux only; one process, one core; anything that blocks without switching to"
        " the hub stalls everyone",
        requires=_needs_all(
            _needs_module("greenlet", "greenlet is not installed"),
            _needs_attr("select", "epoll", "select.epoll is not available (Linux only)"),
        ),
        protection="a blocking call stalls all;"
        " a deadline heap in the hub, a spare descriptor, a paused listener",
        offload="no idiom: served as block (stalls the hub)",
    ),
    # -- one thread, non-blocking sockets, a readiness loop (servers/_nonblocking.py) --
    Variant(
        "select_reactor",
        "one thread waits on select.select() for every client at once",
        concurrent=True,
        code="nonblocking",
        scheduling="event loop",
        limit="select() cannot watch a descriptor >= FD_SETSIZE (1024): about 1020 clients,"
        " the rest are closed on accept; O(n) scan of every socket per call",
        max_clients=1020,
        protection="FD_SETSIZE, spins while out of descriptors;"
        " a timer heap, a spare descriptor, a paused listener",
        offload="no idiom: served as block (stalls the loop)",
    ),
    Variant(
        "poll_reactor",
        "one thread waits on select.poll() for every client at once",
        concurrent=True,
        code="nonblocking",
        scheduling="event loop",
        limit="one thread, one core; poll() copies and scans every socket per call (O(n))",
        requires=_needs_attr("select", "poll", "select.poll is not available on this platform"),
        protection="spins while out of descriptors;"
        " a timer heap, a spare descriptor, a paused listener",
        offload="no idiom: served as block (stalls the loop)",
    ),
    Variant(
        "epoll_reactor",
        "one thread waits on select.epoll() for every client, level-triggered",
        concurrent=True,
        code="nonblocking",
        scheduling="event loop",
        limit="Linux only; one thread, one core",
        requires=_needs_attr("select", "epoll", "select.epoll is not available (Linux only)"),
        protection="spins while out of descriptors;"
        " a timer heap, a spare descriptor, a paused listener",
        offload="no idiom: served as block (stalls the loop)",
    ),
    Variant(
        "epoll_edge",
        "select.epoll() with EPOLLET: read, write and accept until EAGAIN",
        concurrent=True,
        code="nonblocking",
        scheduling="event loop",
        limit="Linux only; one thread, one core",
        requires=_needs_attr("select", "epoll", "select.epoll is not available (Linux only)"),
        protection="deaf once out of descriptors (no new edge);"
        " a timer heap, a spare descriptor, accept retried on a timer",
        offload="no idiom: served as block (stalls the loop)",
    ),
    Variant(
        "prefork_reuseport",
        "N worker processes, each with its own SO_REUSEPORT listener and epoll loop",
        concurrent=True,
        code="nonblocking",
        scheduling="event loop per process",
        limit="Linux only; the kernel balances connections, not work, over the workers;"
        " a client stays with its worker",
        requires=_needs_all(
            _needs_fork,
            _needs_attr("select", "epoll", "select.epoll is not available (Linux only)"),
            _needs_attr("socket", "SO_REUSEPORT", "socket.SO_REUSEPORT is not available here"),
        ),
        protection="a dead worker loses its clients; the parent restarts it on the same listener,"
        " a timer heap, a shared client limit, a spare descriptor",
        forks=True,
        unix="SO_REUSEPORT balances TCP listeners only; a Unix socket path binds once",
        multicore=True,
        workers="worker processes, each with its own SO_REUSEPORT listener and epoll loop"
        " (default: the CPUs the server may use)",
        offload="no idiom: served as block (stalls its worker's loop)",
    ),
    # -- asyncio's loop (servers/_asyncio_shared.py) ---------------------------
    Variant(
        "asyncio_streams",
        "asyncio.start_server with StreamReader/StreamWriter: a task per connection",
        concurrent=True,
        code="asyncio",
        scheduling="event loop",
        limit="one thread, one core; a blocking step stalls every client",
        protection="deaf out of descriptors (asyncio logs EMFILE);"
        " timeout_at per read, a spare-descriptor listener",
        offload="asyncio.to_thread: the loop's default thread pool",
    ),
    Variant(
        "asyncio_sockets",
        "coroutines on asyncio's raw socket calls: loop.sock_recv/sock_sendall, no streams",
        concurrent=True,
        code="asyncio",
        scheduling="event loop",
        limit="one thread, one core; a blocking step stalls every client",
        protection="spins while out of descriptors (EMFILE at once);"
        " timeout_at per read, a spare-descriptor listener",
        offload="asyncio.to_thread: the loop's default thread pool",
    ),
    Variant(
        "asyncio_protocol",
        "loop.create_server with an asyncio.Protocol: callbacks, no tasks",
        concurrent=True,
        code="asyncio",
        scheduling="event loop",
        limit="one thread, one core; a blocking callback stalls every client",
        protection="deaf out of descriptors (asyncio logs EMFILE);"
        " a call_later timer per connection, a spare-descriptor listener",
        offload="loop.run_in_executor(None, ...): the loop's default thread pool",
    ),
    Variant(
        "uvloop_protocol",
        "the asyncio_protocol server, unchanged, on uvloop's event loop (libuv)",
        concurrent=True,
        code="asyncio",
        scheduling="event loop",
        limit="one thread, one core; POSIX only",
        requires=_needs_module("uvloop", NO_UVLOOP),
        protection="a blocking callback stalls all;"
        " asyncio_protocol's timers, libuv's own spare descriptor",
        offload="loop.run_in_executor(None, ...): the loop's default thread pool",
    ),
    Variant(
        "uvloop_streams",
        "the asyncio_streams server, unchanged, on uvloop's event loop (libuv)",
        concurrent=True,
        code="asyncio",
        scheduling="event loop",
        limit="one thread, one core; POSIX only",
        requires=_needs_module("uvloop", NO_UVLOOP),
        protection="a blocking step stalls all;"
        " asyncio_streams' timeouts, libuv's own spare descriptor",
        offload="asyncio.to_thread: the loop's default thread pool",
    ),
    # -- trio's loop: structured concurrency -----------------------------------
    Variant(
        "trio_streams",
        "trio's structured concurrency: trio.serve_listeners, a nursery, a SocketStream per client",
        concurrent=True,
        code="trio",
        scheduling="event loop",
        limit="one thread, one core; a blocking step stalls every client",
        requires=_needs_module("trio", "trio is not installed"),
        protection="logs EMFILE every 100 ms, clients left waiting;"
        " a moving cancel-scope deadline, a spare-descriptor listener",
        offload="trio.to_thread.run_sync: trio's worker threads",
    ),
    # -- the reference: a native ceiling, measured but not ranked -------------
    Variant(
        "native_epoll",
        "reference, not a model: a C epoll loop serving ECHO only, the machine's ceiling",
        concurrent=True,
        code="reference",
        scheduling="event loop",
        limit="serves ECHO only; needs a C compiler at run time",
        requires=_needs_c_compiler,
        protection="no timeouts, no client limit (a reference); EMFILE handled in C",
        offload="ECHO only: WORK answers ERROR native_epoll reference serves ECHO only",
    ),
    # -- datagrams (issue 17): one UDP socket, servers.protocol.answer_datagram ----------
    Variant(
        "udp_loop",
        "socketserver.UDPServer: one datagram at a time (the notes' UDP loop server)",
        concurrent=False,
        code="datagram",
        scheduling="one at a time",
        limit="answers one datagram at a time; the others wait in the socket's receive buffer,"
        " and the kernel drops what does not fit",
        protection="a long request stalls all, a flood overflows the receive buffer;"
        " malformed datagrams dropped or answered ERROR, nothing is per client",
        offload="no idiom: served as block (stalls the loop; one datagram at a time anyway)",
        transport="udp",
        tcp_sibling="blocking_loop",
        unix=DATAGRAM_NO_UNIX,
    ),
    Variant(
        "udp_threading",
        "socketserver ThreadingUDPServer: a thread per datagram",
        concurrent=True,
        code="datagram",
        scheduling="thread per datagram",
        limit="a thread started and ended per datagram; the GIL serialises Python code",
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        protection="a thread per datagram under a flood;"
        " at most 1,024 in progress (--max-clients), the next answered busy",
        offload="none needed: a thread per datagram already",
        transport="udp",
        tcp_sibling="socketserver_threading",
        unix=DATAGRAM_NO_UNIX,
    ),
    Variant(
        "udp_forking",
        "socketserver ForkingUDPServer: a process per datagram",
        concurrent=True,
        code="datagram",
        scheduling="process per datagram",
        limit="a fork per datagram (about a millisecond); ForkingMixIn blocks at max_children"
        " (40), so the 40th datagram in progress is answered busy",
        max_clients=39,
        forks=True,
        requires=_needs_fork,
        protection="ForkingMixIn blocks everyone at 40 children;"
        " at most 39 in progress, the next answered busy",
        multicore=True,
        offload="none needed: a process per datagram",
        transport="udp",
        tcp_sibling="socketserver_forking",
        unix=DATAGRAM_NO_UNIX,
    ),
    Variant(
        "asyncio_datagram",
        "loop.create_datagram_endpoint with an asyncio.DatagramProtocol: a callback per datagram",
        concurrent=True,
        code="datagram",
        scheduling="event loop",
        limit="one thread, one core; a blocking callback stalls every client",
        protection="a blocking callback stalls all;"
        " WORK waits are call_later timers, at most 1,024 in progress (--max-clients)",
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        offload="loop.run_in_executor(None, ...): the loop's default thread pool",
        transport="udp",
        tcp_sibling="asyncio_protocol",
        unix=DATAGRAM_NO_UNIX,
    ),
    Variant(
        "gevent_datagram",
        "gevent.server.DatagramServer: a greenlet per datagram",
        concurrent=True,
        code="datagram",
        scheduling="greenlets",
        limit="one process, one core; anything that blocks without yielding stalls everyone",
        requires=_needs_module("gevent", "gevent is not installed"),
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        protection="a blocking call stalls all;"
        " a gevent Pool of 1,024 greenlets (--max-clients): full, it stops reading",
        offload="gevent's threadpool: gevent.get_hub().threadpool.apply",
        transport="udp",
        tcp_sibling="gevent_server",
        unix=DATAGRAM_NO_UNIX,
    ),
    Variant(
        "udp_reuseport",
        "N worker processes, each with its own SO_REUSEPORT UDP socket on the same port",
        concurrent=True,
        code="datagram",
        scheduling="event loop per process",
        limit="Linux only; the kernel hashes each client address to one socket: one flow"
        " stays with one worker, however busy",
        requires=_needs_all(
            _needs_fork,
            _needs_attr("socket", "SO_REUSEPORT", "socket.SO_REUSEPORT is not available here"),
        ),
        protection="a dead worker's flows queue, then drop; the parent restarts it on the"
        " same socket, at most 1,024 WORK waits a worker (--max-clients)",
        default_max_clients=DEFAULT_CLIENT_LIMIT,
        forks=True,
        multicore=True,
        workers="worker processes, each with its own SO_REUSEPORT UDP socket"
        " (default: the CPUs the server may use)",
        offload="no idiom: served as block (stalls its worker)",
        transport="udp",
        tcp_sibling="prefork_reuseport",
        unix=DATAGRAM_NO_UNIX,
    ),
    Variant(
        "native_epoll_udp",
        "reference, not a model: native_epoll's datagram mode, recvmmsg/sendmmsg in C, ECHO only",
        concurrent=True,
        code="reference",
        scheduling="event loop",
        limit="serves ECHO only; needs a C compiler at run time",
        requires=_needs_c_compiler,
        protection="no limits (a reference); malformed datagrams dropped or answered ERROR in C",
        offload="ECHO only: WORK answers ERROR native_epoll reference serves ECHO only",
        transport="udp",
        tcp_sibling="native_epoll",
        unix=DATAGRAM_NO_UNIX,
    ),
]

REGISTRY: dict[str, Variant] = {v.name: v for v in _VARIANTS}


def register(variant: Variant) -> None:
    """Add a variant (tests/fakes registers deliberately broken ones this way)."""
    REGISTRY[variant.name] = variant


def names(*, include_reference: bool = True, transport: str | None = "tcp") -> list[str]:
    """Registered variants of ``transport`` (None: every one), the references or not."""
    return [
        n
        for n, v in REGISTRY.items()
        if (include_reference or not v.is_reference) and transport in (None, v.transport)
    ]


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
    return importlib.import_module(variant.module_name)


def interpreter() -> dict[str, object]:
    """The Python running this process: the ready line's and ``--probe``'s ``python``.

    ``gil_enabled`` is ``sys._is_gil_enabled()`` where the interpreter has it
    (3.13 on), else ``None`` (an interpreter without it always has a GIL).
    """
    gil = getattr(sys, "_is_gil_enabled", None)
    return {
        "version": platform.python_version(),
        "implementation": sys.implementation.name,
        "gil_enabled": gil() if gil else None,
        "executable": sys.executable,
    }
