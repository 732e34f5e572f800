"""The numbers every variant shares: read size, buffer limits, backlog.

One home, so that a comparison compares concurrency models and never two
settings of the same knob.  A variant that needs one of these imports it
from here; none defines its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# listen() backlog for every variant; the kernel caps it at net.core.somaxconn.
# asyncio and uvloop call listen() again on a socket they are given (with 100
# unless told), so the asyncio variants pass this too.
LISTEN_BACKLOG = 1024

# Bytes asked of one recv().  Under glibc's 128 KiB mmap threshold: a larger
# buffer is mmap()ed and munmap()ed on every call, which costs more than the
# system call itself.
RECV_SIZE = 64 * 1024

# Backpressure on a client that sends requests but does not read the replies:
# stop reading it once its unsent replies exceed HIGH_WATER, start again once
# they are down to LOW_WATER.  Memory per client stays about one high-water
# mark plus one reply (the reactors, asyncio's transports).
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024

# After QUIT the server sends its FIN and keeps reading (a close with unread
# input would send a RST that can destroy the last reply); it discards at
# most this much before closing hard.
LINGER_LIMIT = 16 * 1024 * 1024

# Level-triggered loops accept at most this many connections per wake-up, so
# a burst of connections cannot starve the clients already connected.
ACCEPT_BATCH = 64

# What protects a server from its clients (docs/PROTOCOL.md, "Timeouts and
# limits").  The command line's --idle-timeout / --request-timeout /
# --max-clients fill a Limits and hand it to every variant's serve().
# The longest a main thread sleeps in one system call (s).  A stop signal that
# lands after Python last checked for signals and before accept(), epoll_wait()
# or wait4() blocks is handled in C at once (a flag is set) and interrupts
# nothing: Python acts on it only when the call returns -- with no timeout, at
# the next client, or never.  Python offers no ppoll()/pselect() to close the gap
# atomically, so every model's main thread wakes at least this often
# (socketserver's serve_forever polls at 0.5 s for the same reason; its
# variants pass this as poll_interval).  $CB_STOP_CHECK overrides it: the cost
# table counts instructions per request under valgrind, which runs a server
# ~50x slower, so a wake-up per half second of its time would be counted as
# if 50x as frequent; it sets 60.
STOP_CHECK = float(os.environ.get("CB_STOP_CHECK", "0.5"))

IDLE_TIMEOUT = 60.0  # s: no request in progress and no input -> close
REQUEST_TIMEOUT = 30.0  # s: a request begun but not complete, or output stuck -> close


@dataclass(frozen=True)
class Limits:
    """The protections a variant enforces, each in its own idiom.

    * ``idle_timeout`` -- a connection with no request in progress
      (``session.in_request`` false) and no input for this many seconds is
      closed.
    * ``request_timeout`` -- a request whose first byte arrived this many
      seconds ago and which is still not complete is answered
      :data:`servers.protocol.TIMEOUT_REPLY` (when the socket takes it) and
      the connection closed: a client that trickles one byte every few
      seconds cannot hold a connection forever.  Output that makes no
      progress for this long (a client that never reads) closes it too.
    * ``max_clients`` -- at most this many connections are served at once;
      the next one gets :data:`servers.protocol.BUSY_REPLY` and is closed at
      once.  ``None``: no limit.
    * ``workers`` -- how many worker threads or processes a pool or prefork
      model runs; ``None``: the variant's default.
    """

    idle_timeout: float = IDLE_TIMEOUT
    request_timeout: float = REQUEST_TIMEOUT
    max_clients: int | None = None
    workers: int | None = None

    def timeout(self, in_request: bool) -> float:
        """The timeout that runs now: the request timeout mid-request, else the idle one."""
        return self.request_timeout if in_request else self.idle_timeout
