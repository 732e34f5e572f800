"""Compile a C program once per version of its source, and cache the binary.

Not a variant: the build step that ``native_epoll`` and ``native_epoll_udp``
(one binary) run before they start, and the hand-over to it
(:func:`exec_binary`).  :func:`build_cached` compiles
``source`` with the first C compiler found on ``PATH`` into
``$XDG_CACHE_HOME/concurrency-bench/<hash of source and flags>/<name>``
(``~/.cache/...`` without ``XDG_CACHE_HOME``), so a second start costs a
``stat``, and a changed source gets a fresh directory of its own.
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
from collections.abc import Sequence
from pathlib import Path

C_COMPILERS = ("cc", "gcc", "clang")  # tried in this order
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")
BUILD_TIMEOUT = 120.0  # seconds


class BuildError(RuntimeError):
    """No compiler, or the build failed; the message is one line."""


def find_c_compiler() -> str | None:
    """The path of the first C compiler on ``PATH``, or ``None``."""
    for name in C_COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "concurrency-bench"


def build_cached(source: Path, name: str, cflags: Sequence[str] = CFLAGS) -> str:
    """The path of ``name`` built from ``source``, compiling it only if not cached yet.

    Raises :class:`BuildError` (a one-line message starting with ``name``)
    if there is no compiler or the build fails.
    """
    compiler = find_c_compiler()
    if compiler is None:
        raise BuildError(f"{name}: no C compiler (cc) found")
    key = hashlib.sha256(source.read_bytes() + " ".join(cflags).encode()).hexdigest()[:16]
    binary = cache_root() / key / name
    if os.access(binary, os.X_OK):
        return str(binary)
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"{name}: cannot create {binary.parent}: {exc}") from None
    compile_to(compiler, source, binary, cflags)
    return str(binary)


def compile_to(compiler: str, source: Path, binary: Path, cflags: Sequence[str]) -> None:
    """Compile to a temporary name, then rename: concurrent builds never see half a file."""
    name = binary.name
    fd, tmp = tempfile.mkstemp(dir=binary.parent, prefix=".build-")
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *cflags, "-o", tmp, str(source)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = lines[0] if lines else f"exit status {done.returncode}"
            raise BuildError(f"{name}: {compiler} failed: {why}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{name}: build failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def exec_binary(binary: str, sock: socket.socket, mode: str, max_frame: int) -> None:
    """Replace this process with ``binary``, serving ``sock``; returns only if exec fails.

    ``exec`` keeps the pid, so the ready line the command line printed stays
    true; the binary gets the socket's descriptor, the protocol mode and the
    maximum frame (and a Unix socket's path, which it removes at exit).
    """
    fd = sock.fileno()
    argv = [binary, str(fd), mode, str(max_frame)]
    if sock.family == socket.AF_UNIX:
        argv.append(sock.getsockname())
    os.set_inheritable(fd, True)  # the one descriptor the binary needs
    sys.stdout.flush()  # exec discards whatever Python still buffers
    sys.stderr.flush()
    # A SIGTERM between exec and the binary's handlers would kill it with the
    # default action (status -15, not 0): block it across exec; the binary
    # installs its handlers, then unblocks, and a pending signal lands then.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        os.execv(binary, argv)
    finally:  # only reached if exec failed
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
