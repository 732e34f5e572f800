"""A hostile filesystem, against every registered variant: special files and crashes.

A FIFO with no writer blocks a plain ``open()`` forever; in a one-thread
server that is every client's outage.  Each variant must answer a GET of a
FIFO, a Unix socket file, a directory or a device node with ``ERROR not a
regular file`` at once, serve a second client meanwhile, and refuse a PUT
onto such a name without touching it.  Then crash safety: a server killed
with SIGKILL in the middle of a PUT leaves the previous version whole, and
the next server removes the temporary file a crashed PUT left behind.

Servers are started through the command line as in test_conformance.py.
``native_epoll`` serves ECHO only: its file tests skip, saying so.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
import struct
import termios
import time
from pathlib import Path

import pytest

import servers
from loadgen.client import Client, ServerError
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import HEADER, Op, Status, encode_frame, encode_put_payload
from servers.service import NOT_REGULAR
from tests.conftest import dir_entries

# A reply slower than this is a hang (the FIFO bug never answers at all).
ANSWER_WITHIN = 2.0
SPECIAL_KINDS = ["fifo", "socket", "directory", "device"]


@pytest.fixture
def files_ok(variant: servers.Variant) -> None:
    if variant.is_reference:
        pytest.skip(f"{variant.name} is a reference that serves ECHO only")


def client(server: RunningServer, timeout: float = ANSWER_WITHIN) -> Client:
    return Client(server.host, server.port, timeout=timeout)


def make_special(root: Path, kind: str) -> str:
    """Create a non-regular file of ``kind`` in ``root`` (once); return its name."""
    name = f"special-{kind}"
    path = root / name
    if os.path.lexists(path):
        return name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        if len(os.fsencode(path)) >= 108:
            pytest.skip("the root's path is too long for a Unix socket address")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(os.fspath(path))  # the file stays after close
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        try:  # the character device of /dev/null (1, 3): harmless if ever read
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except OSError as exc:
            pytest.skip(f"cannot create a device node here: {exc.strerror} (needs CAP_MKNOD)")
    return name


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_get_of_a_special_file_is_answered_while_others_are_served(
    server: RunningServer,
    server_root: Path,
    variant: servers.Variant,
    files_ok: None,
    kind: str,
) -> None:
    name = make_special(server_root, kind)
    with client(server) as a:
        a.send(encode_frame(Op.GET, name.encode()))
        if variant.concurrent:  # B is served while A's GET is in progress
            with client(server) as b:
                assert b.echo(b"meanwhile") == b"meanwhile"
        reply = a.read_frame()  # times out after ANSWER_WITHIN if the server hangs
        assert (reply.code, reply.payload) == (Status.ERROR, NOT_REGULAR.encode())
        assert a.echo(b"same connection") == b"same connection"
    with client(server) as c:  # blocking_loop serves B only now; everyone: still serving
        assert c.echo(b"after") == b"after"


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "symlink"])
def test_put_onto_a_special_file_is_refused_and_leaves_it_alone(
    server: RunningServer, server_root: Path, files_ok: None, kind: str, tmp_path: Path
) -> None:
    if kind == "symlink":
        name = "special-symlink"
        (tmp_path / "target.txt").write_bytes(b"outside")
        (server_root / name).symlink_to(tmp_path / "target.txt")
    else:
        name = make_special(server_root, kind)
    path = server_root / name
    before = os.lstat(path)
    entries = dir_entries(server_root)
    with client(server) as c:
        with pytest.raises(ServerError, match=f"^{NOT_REGULAR}$"):
            c.put(name, b"must not be written")
        assert c.echo(b"still here") == b"still here"
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mode,
        before.st_size,
        before.st_mtime_ns,
    )
    assert dir_entries(server_root) == entries  # no temporary file either
    if kind == "symlink":
        assert (tmp_path / "target.txt").read_bytes() == b"outside"
        path.unlink()


def test_list_skips_special_files_without_blocking(
    server: RunningServer, server_root: Path, files_ok: None
) -> None:
    specials = [make_special(server_root, kind) for kind in ("fifo", "socket", "directory")]
    with client(server) as c:
        c.put("plain.txt", b"p")
        listing = c.list()
    assert "plain.txt" in listing
    assert not set(specials) & set(listing)


# -- crash safety -----------------------------------------------------------


def _unacked_bytes(sock: socket.socket) -> int:
    """Bytes this socket sent that the peer's kernel has not acknowledged (Linux SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4))[0]


def _kill_group(server: RunningServer) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.process.wait(5)
    deadline = time.monotonic() + 5
    while server.group_alive() and time.monotonic() < deadline:  # forked children too
        time.sleep(0.01)


def test_sigkill_in_the_middle_of_a_put_keeps_the_old_version(
    variant: servers.Variant, files_ok: None, tmp_path: Path
) -> None:
    """Killed mid-PUT, then restarted: the old file is whole and no temporary file survives.

    The kill is deterministic: the PUT's header declares 8 MiB and only
    256 KiB follow, so the request is certainly incomplete when SIGKILL
    lands.  A crash after the temporary file was written (the harder case)
    is simulated with a leftover named as the dead server would have named
    it; the restarted server must remove it and say so on stderr.
    """
    old = b"the previous version, which must survive\n" * 100
    (tmp_path / "doc.txt").write_bytes(old)
    with start_server(variant.name, tmp_path) as first:
        with socket.create_connection(first.address, timeout=ANSWER_WITHIN) as sock:
            payload = encode_put_payload("doc.txt", b"N" * (8 << 20))
            sock.sendall(HEADER.pack(Op.PUT, len(payload)) + payload[: 256 << 10])
            deadline = time.monotonic() + ANSWER_WITHIN
            while _unacked_bytes(sock) and time.monotonic() < deadline:
                time.sleep(0.005)  # until the server's side holds every byte sent
            _kill_group(first)
        assert (tmp_path / "doc.txt").read_bytes() == old
        assert dir_entries(tmp_path) == {"doc.txt"}
        leftover = f".put-{first.pid}-{'0123456789abcdef'}.tmp"
    (tmp_path / leftover).write_bytes(b"N" * 1000)  # half a new version
    with start_server(variant.name, tmp_path) as second:
        with client(second) as c:
            assert c.get("doc.txt") == old
            assert c.list() == ["doc.txt"]
        assert leftover in second.stderr_text()
    assert dir_entries(tmp_path) == {"doc.txt"}
