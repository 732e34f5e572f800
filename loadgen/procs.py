"""Process helpers the engine, the suite and the tests share: one home each.

* :data:`MALLOC_ENV`: glibc malloc's fixed state for every process the suite starts;
* :func:`killpg` / :func:`group_alive` / :func:`wait_group_gone`: process groups;
* :func:`raise_nofile`: the descriptor limit;
* :func:`process_tree` / :func:`tree_memory`: memory summed over a process tree.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import time
from dataclasses import dataclass

import psutil

# Fixed glibc malloc thresholds for every process the suite starts (bytes).
# Setting either one also turns off glibc's dynamic adjustment of both: with
# the dynamic mmap threshold, a 256 KiB read buffer is ``mmap``ed and
# ``munmap``ed on every call (about 12 us each) until the first large free
# raises the threshold, so a process's history would otherwise change its speed.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "1048576",  # allocations >= 1 MiB are mmap()ed
    "MALLOC_TRIM_THRESHOLD_": "4194304",  # give heap back only past 4 MiB free at the top
}


# -- process groups -------------------------------------------------------------


def killpg(pgid: int, signum: int) -> None:
    """Signal a whole process group; a group that is gone (or not ours) is not an error."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def die_with_parent() -> None:
    """``preexec_fn`` for a helper process (perf, its sleeper): SIGKILL it when we die.

    Linux's ``PR_SET_PDEATHSIG``: if the process that started it is killed --
    even with SIGKILL, which runs none of our cleanup -- the kernel kills the
    helper too, so no perf outlives the load generator.  A no-op elsewhere.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of the group exists (orphans are reaped by init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.01)
    return False


# -- descriptors -------------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit).

    Returns the soft limit now (``RLIM_INFINITY`` counts as enough);
    processes started or forked afterwards inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# -- memory of a process tree ------------------------------------------------------


@dataclass(frozen=True)
class TreeMemory:
    """Sums over a tree, in bytes.  ``full`` is False when some process's smaps could
    not be read: its RSS is counted, its PSS and USS are not."""

    rss: int
    pss: int
    uss: int
    full: bool


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants, parents first; [] if ``pid`` is gone."""
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory(tree: list[psutil.Process]) -> TreeMemory:
    """RSS, PSS and USS summed over ``tree``; processes gone since the walk are skipped.

    PSS divides each shared page among the processes that map it, so the sum
    over a forking server's tree counts copy-on-write pages once; summed RSS
    counts them once per process.  USS is the memory private to each process.
    """
    rss = pss = uss = 0
    full = True
    for proc in tree:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            full = False
            try:
                rss += proc.memory_info().rss  # smaps is not readable: RSS only
            except psutil.Error:
                pass
            continue
        rss += info.rss
        if hasattr(info, "pss") and hasattr(info, "uss"):
            pss += info.pss
            uss += info.uss
        else:  # no smaps on this platform
            full = False
    return TreeMemory(rss, pss, uss, full)
