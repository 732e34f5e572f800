"""A fork server for the counted runs of the cost table: one start-up, many servers.

Run under valgrind by :mod:`loadgen.suite.costs` (``python -c "$(cat forkserver.py)"``),
it imports what every ``python -m servers NAME`` imports -- the registry and the command
line -- and then reads one line at a time on stdin:

* ``NAME RUNS``: fork a *variant server* for NAME, which imports the variant's module and
  runs its ``prepare()`` (native_epoll's build), as ``python -m servers NAME`` would, then
  forks ``RUNS`` + 2 children at once, from one state, and prints
  ``{"forkserver": NAME, "children": [...], "calibration": [...]}``.  It then reads
  ``I ARGS-JSON`` lines -- run ``I`` gets its ``python -m servers`` arguments -- until
  ``end``, and exits; the fork server prints ``{"done": NAME}`` once it has.
* end of input: exit.

Each child waits for one line on its own pipe, then *is* that server: its own session
(so its own process group), the command line's ``main()``, its ready line on the shared
stdout, and ``os._exit`` with main's status when it stops.

Why: under valgrind the interpreter's start-up and imports cost seconds of CPU (valgrind
translates every new block of code), far more than the few hundred requests a counted run
serves.  Forked processes inherit the translations, so they start at once -- but they
inherit the parent's counts too: every child's ``cachegrind.out.<pid>`` starts from what
its variant server had executed when it forked it.  The children are forked back to back
with the garbage collector off, so child ``k`` inherits ``k`` iterations of the fork loop
more than child 0, the same number of instructions per iteration.  The 2 calibration
children, forked last and never used, exit at ``end``: the difference of their counts is
one iteration, which :mod:`loadgen.suite.costs` takes ``k`` times off run ``k``'s files.
Each child starts with a full collection, so every server begins with the same garbage
collector state, whatever it was forked after.

Only the standard library and ``servers`` are imported here: anything else would be in
every server's process.  Lines are read a byte at a time from the descriptor, never
buffered, because the fork server, a variant server and its children share stdin.
"""

import gc
import json
import os
import signal
import sys
import traceback

import servers
import servers.__main__ as command_line

CALIBRATION = 2  # children forked last and never used: one fork-loop iteration apart


def read_line(fd: int) -> bytes:
    """One line from ``fd`` without reading past it (b"" at end of input)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def child(read_fd: int) -> None:
    """A forked server: wait for its arguments, run the command line, exit with its status."""
    os.setsid()  # a process group of its own: SIGTERM to it stops this server alone
    gc.enable()
    gc.collect()  # the same collector state in every child: its counters start from zero
    line = read_line(read_fd)
    os.close(read_fd)
    if not line:
        os._exit(0)  # never used: its variant server is done
    status = 1
    try:
        status = command_line.main(json.loads(line)) or 0
    except SystemExit as exc:  # fail() on bad arguments
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def variant_server(name: str, runs: int) -> None:
    """Import ``name``, fork its children, hand out their arguments until ``end``."""
    module = servers.load(name)  # the variant's imports, as python -m servers NAME makes them
    prepare = getattr(module, "prepare", None)
    if prepare is not None:
        prepare()
    count = runs + CALIBRATION
    pipes = [-1] * count  # allocated up front: every iteration of the loop does the same
    pids = [0] * count
    gc.collect()
    gc.disable()  # no collection in the loop: each iteration costs the same
    for i in range(count):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            for w in pipes[:i]:
                os.close(w)
            os.close(write_fd)
            child(read_fd)
        os.close(read_fd)
        pipes[i], pids[i] = write_fd, pid
    gc.enable()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    ready = {"forkserver": name, "children": pids[:runs], "calibration": pids[runs:]}
    print(json.dumps(ready), flush=True)
    while (line := read_line(0)) and line.strip() != b"end":
        index, _, args = line.partition(b" ")
        os.write(pipes[int(index)], args)
    for w in pipes:
        os.close(w)


def main() -> None:
    print(json.dumps({"zygote": os.getpid()}), flush=True)
    while line := read_line(0):
        name, runs = line.decode().split()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                variant_server(name, int(runs))
            except BaseException:  # an import that fails: said on stderr, then done
                traceback.print_exc()
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"done": name, "status": status}), flush=True)


if __name__ == "__main__":
    main()
