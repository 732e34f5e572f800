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
* Symlinks are never followed: LIST skips them, GET refuses them (opened
  with ``O_NOFOLLOW`` where the platform has it, then checked with fstat).
* PUT is atomic: write a hidden temporary file in the same directory,
  flush, fsync, then ``os.replace`` it over the name.  A reader sees the old
  file or the new one, never a part.  Temporary names start with ``.`` so
  they are never listed or served.

In an event loop (select, epoll, asyncio, gevent) these calls block the
loop while the disk works; that is part of what those models cost.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

from servers.protocol import (
    Op,
    ProtocolError,
    Request,
    Response,
    Status,
    decode_put_payload,
)

_OK = int(Status.OK)  # a plain int packs faster than an IntEnum member
_new_response = tuple.__new__  # Response(...) without its Python-level __new__: the fast path only
MAX_NAME_BYTES = 255
TEMP_PREFIX = ".put-"
_FORBIDDEN = frozenset("/\\:")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


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


class FileService:
    """Serves ECHO, LIST, GET, PUT and QUIT against one flat directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a directory")
        self._dispatch = {
            Op.ECHO: self._echo,
            Op.LIST: self._list,
            Op.GET: self._get,
            Op.PUT: self._put,
            Op.QUIT: self._quit,
        }

    def handle(self, request: Request) -> Response:
        """Execute one request.  Never raises: every failure is an ERROR response."""
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
        names = sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".")
        )
        return Response.ok("\n".join(names).encode("utf-8"))

    def _get(self, payload: bytes) -> Response:
        name = check_name(payload)
        path = self.root / name
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
        except FileNotFoundError:
            return Response.error(f"no such file: {name}")
        except OSError as exc:
            if os.path.islink(path):  # O_NOFOLLOW answers ELOOP
                return Response.error(f"not a regular file: {name}")
            raise exc
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return Response.error(f"not a regular file: {name}")
            return Response.ok(f.read())

    def _put(self, payload: bytes) -> Response:
        raw_name, data = decode_put_payload(payload)
        name = check_name(raw_name)
        target = self.root / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            return Response.error(f"not a regular file: {name}")
        tmp = self.root / f"{TEMP_PREFIX}{os.getpid()}-{id(data):x}-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Response.ok()

    @staticmethod
    def _quit(payload: bytes) -> Response:
        return Response.ok(close=True)
