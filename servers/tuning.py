"""The numbers every variant shares: read size, buffer limits, backlog.

One home, so that a comparison compares concurrency models and never two
settings of the same knob.  A variant that needs one of these imports it
from here; none defines its own.
"""

from __future__ import annotations

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
