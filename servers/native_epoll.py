"""Native epoll reference: a minimal C epoll server for ECHO, to measure the others against.

A ceiling, not a model.  It answers the ECHO opcode of protocol v1 (and
raw echo) and nothing else: LIST, GET and PUT get an ERROR frame, "native_epoll
reference serves ECHO only".  It is here because the cost of a request on
loopback is mostly the kernel's: the gap between a Python server and this
one is what Python costs, and the load generator must be able to keep this
one busy, or it would flatten every comparison.  Reports show it as the
ceiling and never rank it beside the models.

Where its concurrency comes from: one thread, one level-triggered epoll
loop over non-blocking sockets (servers/native_epoll.c, about 200 lines
with comments).  What it costs: a C compiler at run time -- :func:`prepare`
builds it with ``cc -O2`` into a cache directory
(``$XDG_CACHE_HOME/concurrency-bench/<source hash>/native_epoll``, else
``~/.cache/...``), once per version of the source.  How it fails: it serves
ECHO only, and one slow reader's replies are held (up to 1 MiB, then it
stops reading that client) rather than dropped.

:func:`serve` does not serve in Python: it replaces the process with the
binary (``exec`` keeps the pid, so the ready line the command line printed
stays true), handing over the listening socket's descriptor, the protocol
mode and the maximum frame.  SIGTERM/SIGINT make the binary exit 0.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from servers.protocol import RawSession, Session

SOURCE = Path(__file__).with_name("native_epoll.c")
COMPILERS = ("cc", "gcc", "clang")
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")
BUILD_TIMEOUT = 120.0  # seconds


def serve(listener: socket.socket, new_session: Callable[[], Session]) -> None:
    """Exec the native binary on ``listener``; returns only if exec fails."""
    binary = prepare()
    mode, max_frame = session_mode(new_session)
    fd = listener.fileno()
    os.set_inheritable(fd, True)  # the one descriptor the binary needs
    sys.stdout.flush()  # exec discards whatever Python still buffers
    sys.stderr.flush()
    # A SIGTERM between exec and the binary's handlers would kill it with the
    # default action (status -15, not 0): block it across exec; the binary
    # installs its handlers, then unblocks, and a pending signal lands then.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        os.execv(binary, [binary, str(fd), mode, str(max_frame)])
    finally:  # only reached if exec failed
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)


def prepare() -> str:
    """Build the binary if this version of the source is not built yet; its path.

    Raises RuntimeError (one line) if there is no compiler or the build fails.
    """
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError("native_epoll: no C compiler (cc) found")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    binary = cache_root() / key / "native_epoll"
    if os.access(binary, os.X_OK):
        return str(binary)
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeError(f"native_epoll: cannot create {binary.parent}: {exc}") from None
    build(compiler, binary)
    return str(binary)


def build(compiler: str, binary: Path) -> None:
    """Compile to a temporary name, then rename: concurrent builds never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=binary.parent, prefix=".build-")
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = lines[0] if lines else f"exit status {done.returncode}"
            raise RuntimeError(f"native_epoll: {compiler} failed: {why}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"native_epoll: build failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_compiler() -> str | None:
    for name in COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "concurrency-bench"


def session_mode(new_session: Callable[[], Session]) -> tuple[str, int]:
    """("raw" | "framed", max frame) from what the command line's factory builds."""
    session = new_session()
    if isinstance(session, RawSession):
        return "raw", 0
    max_frame = getattr(session, "max_frame", None)
    if not isinstance(max_frame, int):
        raise RuntimeError("native_epoll: cannot tell the session's maximum frame")
    return "framed", max_frame
