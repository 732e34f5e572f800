"""Reference, not a model: a C epoll loop serving ECHO only, the machine's ceiling.

A ceiling, not a model.  It answers the ECHO opcode of protocol v1 (and
raw echo) and nothing else: LIST, GET and PUT get an ERROR frame, "native_epoll
reference serves ECHO only".  It is here because the cost of a request on
loopback is mostly the kernel's: the gap between a Python server and this
one is what Python costs, and the load generator must be able to keep this
one busy, or it would flatten every comparison.  Reports show it as the
ceiling and never rank it beside the models.

Where its concurrency comes from: one thread, one level-triggered epoll
loop over non-blocking sockets (``servers/native_epoll.c``, about 230 lines
with comments).  What it costs: a C compiler at run time -- :func:`prepare`
builds it with ``cc -O2`` (:mod:`servers.native_build`) into a cache
directory (``$XDG_CACHE_HOME/concurrency-bench/<source hash>/native_epoll``,
else ``~/.cache/...``), once per version of the source.  How it fails: it
serves ECHO only, and one slow reader's replies are held (up to 1 MiB, then
it stops reading that client) rather than dropped.  WORK (opcode 0x06) is
one more opcode it does not serve: the C is left as it is, and a WORK
request of any kind -- wait, compute, block or offload -- gets the same
ERROR frame as LIST, "native_epoll reference serves ECHO only", its payload
skipped and the connection kept; a ceiling for ECHO has nothing to wait
for.

:func:`serve` does not serve in Python: it replaces the process with the
binary (``exec`` keeps the pid, so the ready line the command line printed
stays true), handing over the listening socket's descriptor and the
settings the command line gave the session factory -- the protocol mode and
the maximum frame -- and, for a Unix socket, its path, which the binary
removes at exit (the command line's own clean-up never runs after exec).
SIGTERM/SIGINT make the binary exit 0.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from servers.native_build import build_cached, exec_binary
from servers.protocol import Session, SessionFactory
from servers.tuning import Limits

SOURCE = Path(__file__).with_name("native_epoll.c")


def serve(listener: socket.socket, new_session: Callable[[], Session], limits: Limits) -> None:
    """Exec the native binary on ``listener``; returns only if exec fails."""
    binary = prepare()
    mode, max_frame = settings(new_session)
    exec_binary(binary, listener, mode, max_frame)


def prepare() -> str:
    """Build the binary if this version of the source is not built yet; its path.

    Raises RuntimeError (one line) if there is no compiler or the build fails.
    """
    return build_cached(SOURCE, "native_epoll")


def settings(new_session: Callable[[], Session]) -> tuple[str, int]:
    """("framed" | "raw", max frame) from the command line's session factory."""
    if not isinstance(new_session, SessionFactory):
        raise RuntimeError("native_epoll: needs a SessionFactory to know its protocol settings")
    return new_session.protocol, new_session.max_frame
