"""The file service: executes one request against the served directory.

This is the only code in the project that touches files.  It is plain,
synchronous Python: a request goes in, a :class:`~servers.protocol.Response`
comes out.  Every server, whatever its concurrency model, calls
:meth:`FileService.handle` and nothing else.

Rules enforced here (docs/PROTOCOL.md, "Names" and "Files"):

* The served directory is flat.  A name is 1-255 bytes of UTF-8, not ``.``
  or ``..``, does not start with ``.``, and has no ``/``, ``\\``, ``:``, NUL
  or other control character.  Anything else is an ERROR and no file is
  touched, so nothing outside the directory can ever be named.
* Only regular files are served, and nothing else is ever waited on.  A
  FIFO with no writer blocks a plain ``open()`` forever -- in a one-thread
  server that is every client's outage -- so GET opens with ``O_NONBLOCK``
  and ``O_NOFOLLOW`` (a symlink fails with ELOOP, a FIFO opens at once, a
  Unix socket fails with ENXIO), then checks the open descriptor with
  fstat: anything but a regular file is ``ERROR not a regular file``.  The
  check is on the descriptor, not the name, so swapping the name between
  check and read cannot fool it.  LIST never opens an entry: it reads the
  types scandir already has and lists regular files only.  PUT refuses a
  name that exists as anything but a regular file and leaves it as it is.
* PUT is atomic: write a hidden temporary file in the same directory,
  flush, fsync, then ``os.replace`` it over the name.  A reader sees the old
  file or the new one, never a part; a crash (even SIGKILL) leaves the old
  file whole and at worst a temporary file, which
  :func:`remove_stale_temp_files` deletes when the next server starts.
  Temporary names start with ``.`` so they are never listed or served, and
  no client can create one.

In an event loop (select, epoll, asyncio, gevent) these calls block the
loop while the disk works; that is part of what those models cost.

WORK (docs/PROTOCOL.md, "WORK") is what a handler does besides files.  Its
payload is checked here (``kind``, ``amount``, at most ``max_work``); then
*compute* runs :func:`compute` and *block* calls :func:`block` right here,
in whatever thread, process, greenlet or loop called
:meth:`FileService.handle` -- that is the point of both -- while *wait* and
*offload* come back as a :class:`~servers.protocol.Work` for the model to
do its own way (the session hands it to the server).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
import time
import unicodedata
from pathlib import Path

from servers.protocol import (
    DEFAULT_MAX_WORK,
    WORK_HEADER,
    Op,
    ProtocolError,
    Request,
    Response,
    Status,
    Work,
    WorkKind,
    decode_put_payload,
)

_OK = int(Status.OK)  # a plain int packs faster than an IntEnum member
_new_response = tuple.__new__  # Response(...) without its Python-level __new__: the fast path only
MAX_NAME_BYTES = 255
TEMP_PREFIX = ".put-"
_FORBIDDEN = frozenset("/\\:")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO or device must not block open()
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)  # a terminal device must not become ours
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)  # a forked or exec'd child must not inherit it
_GET_FLAGS = os.O_RDONLY | _O_NONBLOCK | _O_NOFOLLOW | _O_NOCTTY | _O_CLOEXEC | _O_BINARY
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
NOT_REGULAR = "not a regular file"
# compute: one unit is this many steps of the kernel below.  Sized so that a
# unit takes about 1 µs under CPython 3.11 on the 2-core machine the
# reference ran on; fixed, so that a slower interpreter takes longer.
STEPS_PER_UNIT = 12
# A PUT's temporary file: .put-<pid>-<16 hex digits>.tmp.  Only this code makes
# such names (a client's names cannot start with "."), and the pattern is
# narrow so that startup cleanup never takes a file someone else put there.
TEMP_PATTERN = re.compile(r"\.put-(?P<pid>[0-9]{1,10})-[0-9a-f]{16}\.tmp")


class InvalidName(ValueError):
    """A name the protocol does not allow; the message says why."""


def check_name(raw: bytes) -> str:
    """Return ``raw`` decoded if it is a valid file name, else raise InvalidName."""
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        raise InvalidName(f"name must be 1-{MAX_NAME_BYTES} bytes, got {len(raw)}")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidName("name is not valid UTF-8") from None
    if name.startswith("."):
        raise InvalidName("name must not start with '.'")
    for ch in name:
        if ch in _FORBIDDEN:
            raise InvalidName(f"name must not contain {ch!r}")
        # Cc covers NUL, C0, DEL and C1 controls.
        if unicodedata.category(ch) == "Cc":
            raise InvalidName("name must not contain control characters")
    return name


def compute(units: int) -> int:
    """WORK compute: ``units`` units of a fixed pure-Python kernel (an LCG), about 1 µs each.

    Pure Python on purpose: it holds the GIL all the way, as a handler that
    parses, renders or hashes in Python does.  Returns the last value so
    that nothing can optimise the loop away.
    """
    x = 1
    for _ in range(units * STEPS_PER_UNIT):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def _original_sleep() -> object:
    """``time.sleep`` as the C library has it, even where gevent has patched ``time``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("time"):
        return monkey.get_original("time", "sleep")
    return time.sleep


def block(seconds: float) -> None:
    """WORK block: hold this OS thread ``seconds`` in a blocking call, whatever the model.

    The mistake WORK block stands for -- calling a blocking library from an
    event loop or a greenlet: the real ``time.sleep`` (gevent's original
    one where it patched ``time``), which releases the GIL but not the
    thread.  A thread or a process blocks itself only; a loop blocks every
    client it has.
    """
    _original_sleep()(seconds)  # type: ignore[operator]


class FileService:
    """Serves ECHO, LIST, GET, PUT, QUIT and WORK against one flat directory."""

    def __init__(self, root: str | os.PathLike[str], max_work: int = DEFAULT_MAX_WORK) -> None:
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a directory")
        self.max_work = max_work  # the largest WORK amount accepted (--max-work)
        self._dispatch = {
            Op.ECHO: self._echo,
            Op.LIST: self._list,
            Op.GET: self._get,
            Op.PUT: self._put,
            Op.QUIT: self._quit,
            Op.WORK: self._work,
        }

    def handle(self, request: Request) -> Response | Work:
        """Execute one request.  Never raises: every failure is an ERROR response.

        A WORK request to wait or offload comes back as :class:`Work`: the
        model does it and the session answers (see the module docstring).
        """
        action = self._dispatch.get(request.code)
        if action is None:
            return Response.error(f"unknown opcode 0x{request.code:02x}")
        try:
            return action(request.payload)
        except (InvalidName, ProtocolError) as exc:
            return Response.error(str(exc))
        except OSError as exc:
            # Say what failed without leaking the absolute path of the root.
            return Response.error(f"{type(exc).__name__}: {exc.strerror or exc}")

    # -- the operations ---------------------------------------------------

    @staticmethod
    def _echo(payload: bytes) -> Response:
        # The fast path's last piece (see servers.protocol): the same tuple as
        # its plain version, Response.ok(payload), built without Python code.
        return _new_response(Response, (_OK, payload, False))

    def _list(self, payload: bytes) -> Response:
        if payload:
            return Response.error("LIST takes an empty payload")
        # scandir's entry types come from the directory itself (d_type, or
        # lstat where the filesystem has none): no entry is opened, so a FIFO
        # cannot block LIST.  FIFOs, sockets, devices, directories and
        # symlinks are not listed: a client could not GET them anyway.
        with os.scandir(self.root) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".")
            )
        return Response.ok("\n".join(names).encode("utf-8"))

    def _get(self, payload: bytes) -> Response:
        name = check_name(payload)
        try:
            fd = self._open_regular(name)
        except FileNotFoundError:
            return Response.error(f"no such file: {name}")
        if fd is None:
            return Response.error(NOT_REGULAR)
        with os.fdopen(fd, "rb") as f:
            return Response.ok(f.read())

    def _open_regular(self, name: str) -> int | None:
        """Open ``name`` for reading if it is a regular file; ``None`` if it is anything else.

        Never blocks: ``O_NONBLOCK`` makes opening a FIFO or device return at
        once, and the type is checked on the descriptor (fstat) before any
        read.  Raises OSError (FileNotFoundError for a missing name) otherwise.
        """
        try:
            fd = os.open(self.root / name, _GET_FLAGS)
        except OSError:
            # ELOOP (a symlink, O_NOFOLLOW), ENXIO (a Unix socket), ENOENT,
            # EACCES...: say "not a regular file" only when that is what the
            # name is; anything else goes up as it is.
            if self._exists_not_regular(name):
                return None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            # Linux ignores O_NONBLOCK on a regular file (mandatory locks
            # aside), but POSIX lets a system honour it: clear it, read as usual.
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _exists_not_regular(self, name: str) -> bool:
        """True if ``name`` exists in the root as anything but a regular file (lstat: no follow)."""
        try:
            mode = os.lstat(self.root / name).st_mode
        except FileNotFoundError:
            return False
        return not stat.S_ISREG(mode)

    def _put(self, payload: bytes) -> Response:
        raw_name, data = decode_put_payload(payload)
        name = check_name(raw_name)
        # Refuse a FIFO, directory, symlink, socket or device without touching
        # it.  Should the name change after this check, os.replace still only
        # swaps a directory entry: it never opens, follows or writes the old one.
        if self._exists_not_regular(name):
            return Response.error(NOT_REGULAR)
        tmp = self.root / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _TEMP_FLAGS, 0o644)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.root / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # ENOSPC, EIO...: no half-written file stays behind
            raise
        return Response.ok()

    @staticmethod
    def _quit(payload: bytes) -> Response:
        return Response.ok(close=True)

    def _work(self, payload: bytes) -> Response | Work:
        if len(payload) < WORK_HEADER.size:
            return Response.error(
                f"WORK payload shorter than its {WORK_HEADER.size}-byte kind and amount"
            )
        kind, amount = WORK_HEADER.unpack_from(payload)
        if kind not in _WORK_KINDS:
            return Response.error(f"unknown WORK kind {kind}")
        if amount > self.max_work:
            return Response.error(f"WORK amount {amount} is over the maximum of {self.max_work}")
        rest = payload[WORK_HEADER.size :]
        if kind == WorkKind.COMPUTE:
            compute(amount)
        elif kind == WorkKind.BLOCK:
            block(amount / 1_000_000)
        else:  # WAIT, OFFLOAD: the model's own way
            return Work(kind, amount, rest)
        return Response.ok(rest)


_WORK_KINDS = frozenset(int(kind) for kind in WorkKind)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def remove_stale_temp_files(root: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """Delete temporary files that a crashed PUT left in ``root``; say what happened to each.

    Returns ``(name, None)`` for each file removed and ``(name, reason)`` for
    each one left in place.  Only names matching :data:`TEMP_PATTERN` are
    considered, only regular files (a symlink, FIFO or directory of that
    name is left alone and never followed), only directly in ``root``.  A
    file whose writer process is still alive is kept: another server may be
    serving the same directory.  Our own pid counts as dead -- this runs
    before we have written anything, so a match is from an earlier life
    (a restarted container reuses pids).
    """
    results: list[tuple[str, str | None]] = []
    with os.scandir(root) as entries:
        for entry in entries:
            match = TEMP_PATTERN.fullmatch(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            if _pid_alive(int(match["pid"])):
                results.append((entry.name, "its writer process is still running"))
                continue
            try:
                os.unlink(entry.path)  # unlink never follows a symlink
            except FileNotFoundError:
                continue  # someone else removed it first
            except OSError as exc:
                results.append((entry.name, exc.strerror or str(exc)))
                continue
            results.append((entry.name, None))
    return results


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OverflowError:  # larger than any pid: no such process
        return False
    except PermissionError:  # it exists, it is someone else's
        return True
    return True
