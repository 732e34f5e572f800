"""``python -m servers``, plus a stop signal that lands too late to interrupt the wait.

``python -m tests.fakes.late_signal NAME ARGS...`` runs :func:`servers.__main__.main`
with one extra thread.  Once the file named by ``$CB_LATE_SIGNAL_TRIGGER`` exists,
the thread lets the main thread go back to its wait (``accept()``, ``epoll_wait()``,
``recv()``, ``wait4()``), then calls ``_thread.interrupt_main(SIGTERM)``: Python's
C-level handler runs -- the flag is set, the wake-up descriptor written -- and no
system call is interrupted.  That is exactly what a real SIGTERM does when it lands
after Python last checked for signals and before the main thread blocks: a race a
busy machine wins about once in a few hundred stops, made certain here.  A server
whose main thread sleeps without a bound never acts on it.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time

TRIGGER = os.environ.get("CB_LATE_SIGNAL_TRIGGER", "")
SETTLE = 0.3  # s after the trigger: the main thread has answered the test and waits again


def interrupt_when_triggered() -> None:
    while not os.path.exists(TRIGGER):
        time.sleep(0.02)
    time.sleep(SETTLE)
    _thread.interrupt_main(signal.SIGTERM)


if __name__ == "__main__":
    from servers.__main__ import main

    if not TRIGGER:
        sys.exit("set CB_LATE_SIGNAL_TRIGGER to the path whose creation sends the signal")
    threading.Thread(target=interrupt_when_triggered, daemon=True).start()
    sys.exit(main(sys.argv[1:]))
