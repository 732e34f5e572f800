"""User-space instructions of a server's process tree, counted by valgrind's cachegrind.

Time per request on a shared machine moves with whatever else runs; the
number of instructions a server executes per request does not.  Run the
server under ``valgrind --tool=cachegrind --cache-sim=no`` (instruction
counting only, no cache simulation: the fastest cachegrind can go) and
every process of its tree writes one ``cachegrind.out.<pid>`` when it
exits: threads are counted in their process's file, forked children
(valgrind follows a fork whatever the options) and exec'd programs
(``--trace-children=yes``) in files of their own.  :func:`total` sums
the ``summary:`` lines of a directory of them.

What the files count: every instruction the tree executed in user space
from the interpreter's first instruction to its exit -- start-up and
shutdown included, system calls' kernel side excluded.  A forked child's
file starts from the counts the parent had at the fork (valgrind's state is
copied with the process), so a tree's sum counts the parent's work before
each fork twice; both disappear in a *difference* of two runs that differ
only in their number of requests (:mod:`loadgen.suite.costs`).  A process
killed with SIGKILL writes nothing: stop a counted server with SIGTERM and
wait for its whole group (:func:`loadgen.suite.costs` does).

Under valgrind a program runs ~20-50x slower (one thread at a time), so
these runs measure counts, never time.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

OUT_PREFIX = "cachegrind.out."
INSTALL_HINT = "apt-get install valgrind"
VERSION_TIMEOUT_S = 10.0


@functools.cache
def unavailable(valgrind: str = "valgrind") -> str | None:
    """None if ``valgrind --tool=cachegrind`` can run here, else why not (one line, with the
    install hint); asked once per process."""
    exe = shutil.which(valgrind)
    if exe is None:
        return f"valgrind is not installed ({INSTALL_HINT})"
    try:
        done = subprocess.run(
            [exe, "--tool=cachegrind", "--cache-sim=no", "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"valgrind does not run here: {exc}"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"valgrind --tool=cachegrind does not run here: {tail}"
    return None


def version(valgrind: str = "valgrind") -> str | None:
    """``valgrind-3.19.0`` or None."""
    exe = shutil.which(valgrind)
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def wrapper(out_dir: str | os.PathLike[str], valgrind: str = "valgrind") -> list[str]:
    """The argv prefix that runs a command under cachegrind, one out file per process in
    ``out_dir`` (``%p``: the pid), valgrind's own messages off."""
    exe = shutil.which(valgrind) or valgrind
    return [
        exe,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--trace-children=yes",
        f"--cachegrind-out-file={os.fspath(out_dir)}/{OUT_PREFIX}%p",
        "--quiet",
    ]


class CachegrindError(ValueError):
    """An out file without the counts it should hold (a process killed mid-write, say)."""


_EVENTS = re.compile(r"^events:\s*(.+)$", re.M)
_COMMAND = re.compile(r"^cmd:\s*(.*)$", re.M)
_SUMMARY = re.compile(r"^summary:\s*(.+)$", re.M)


def instructions(text: str) -> int:
    """The ``Ir`` total of one cachegrind out file (its ``events:`` and ``summary:`` lines)."""
    events = _EVENTS.search(text)
    summary = _SUMMARY.search(text)
    if events is None or summary is None:
        raise CachegrindError("no 'events:' or 'summary:' line (did the process finish?)")
    names, values = events.group(1).split(), summary.group(1).split()
    if "Ir" not in names or len(values) != len(names):
        raise CachegrindError(f"summary {summary.group(1)!r} does not match events {names}")
    return int(values[names.index("Ir")])


def command(text: str) -> str | None:
    """The command line an out file was written for (its ``cmd:`` line): a forked child's is
    its parent's, an exec'd program's its own."""
    found = _COMMAND.search(text)
    return found.group(1).strip() if found else None


@dataclass(frozen=True)
class Totals:
    """A tree's instructions: the sum, and each process's (pid -> Ir, pid -> command)."""

    instructions: int
    by_pid: dict[int, int]
    commands: dict[int, str | None]


def total(out_dir: str | os.PathLike[str], skip: Collection[str] = ()) -> Totals:
    """The sum over every ``cachegrind.out.<pid>`` in ``out_dir`` but the names in ``skip``
    (an earlier run's); CachegrindError if there is none or one holds no summary."""
    by_pid: dict[int, int] = {}
    commands: dict[int, str | None] = {}
    for path in sorted(Path(out_dir).glob(f"{OUT_PREFIX}*")):
        suffix = path.name[len(OUT_PREFIX) :]
        if not suffix.isdigit() or path.name in skip:
            continue
        text = path.read_text(errors="replace")
        try:
            by_pid[int(suffix)] = instructions(text)
        except CachegrindError as exc:
            raise CachegrindError(f"{path.name}: {exc}") from None
        commands[int(suffix)] = command(text)
    if not by_pid:
        raise CachegrindError(f"no {OUT_PREFIX}<pid> file in {out_dir}")
    return Totals(sum(by_pid.values()), by_pid, commands)
