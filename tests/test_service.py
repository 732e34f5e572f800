"""The file service: names, symlinks, atomic PUT -- called directly, no sockets."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from servers.protocol import Frame, Op, Status, encode_put_payload
from servers.service import (
    NOT_REGULAR,
    TEMP_PATTERN,
    TEMP_PREFIX,
    FileService,
    check_name,
    remove_stale_temp_files,
)

INVALID = [
    b"",
    b".",
    b"..",
    b"../x",
    b"a/b",
    b"/etc/passwd",
    b"\\\\host\\share",
    b"C:x",
    b"a\x00b",
    b"a\x07b",
    b"a\x7fb",  # DEL
    "a\u0085b".encode(),  # a C1 control
    b"x" * 256,
    b"\xff\xfe",
    b".hidden",
]
VALID = [b"a", b"x" * 255, "é ü 日本.txt".encode(), b"name with spaces", b"a.b.c", b"-dash"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "served"
    served.mkdir()
    return served


@pytest.fixture
def service(root: Path) -> FileService:
    return FileService(root)


def put(service: FileService, name: bytes | str, data: bytes) -> Frame:
    r = service.handle(Frame(Op.PUT, encode_put_payload(name, data)))
    return Frame(r.status, r.payload)


def get(service: FileService, name: bytes | str) -> Frame:
    raw = name.encode() if isinstance(name, str) else name
    r = service.handle(Frame(Op.GET, raw))
    return Frame(r.status, r.payload)


def listing(service: FileService) -> list[str]:
    r = service.handle(Frame(Op.LIST, b""))
    assert r.status == Status.OK
    return r.payload.decode().split("\n") if r.payload else []


@pytest.mark.parametrize("raw", INVALID, ids=repr)
def test_invalid_names_are_errors_and_touch_nothing(
    service: FileService, root: Path, tmp_path: Path, raw: bytes
) -> None:
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(root))
    assert get(service, raw).code == Status.ERROR
    assert put(service, raw, b"data").code == Status.ERROR
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(root))) == before


@pytest.mark.parametrize("raw", VALID, ids=repr)
def test_valid_names_round_trip(service: FileService, raw: bytes) -> None:
    assert check_name(raw) == raw.decode()
    assert put(service, raw, b"contents") == Frame(Status.OK, b"")
    assert get(service, raw) == Frame(Status.OK, b"contents")


def test_list_is_sorted_regular_files_only(service: FileService, root: Path) -> None:
    (root / "b.txt").write_bytes(b"b")
    (root / "a.txt").write_bytes(b"a")
    (root / "subdir").mkdir()
    (root / ".hidden").write_bytes(b"h")
    (root / f"{TEMP_PREFIX}123").write_bytes(b"partial")
    assert listing(service) == ["a.txt", "b.txt"]
    assert get(service, "subdir").code == Status.ERROR


def test_empty_listing(service: FileService) -> None:
    r = service.handle(Frame(Op.LIST, b""))
    assert (r.status, r.payload) == (Status.OK, b"")


def test_symlink_outside_is_neither_listed_nor_served(
    service: FileService, root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the served directory")
    (root / "link.txt").symlink_to(secret)
    (root / "inner.txt").write_bytes(b"in")
    (root / "inner-link").symlink_to(root / "inner.txt")
    assert listing(service) == ["inner.txt"]
    for name in ("link.txt", "inner-link"):
        reply = get(service, name)
        assert reply.code == Status.ERROR
        assert b"outside" not in reply.payload


def test_put_does_not_write_through_a_symlink(
    service: FileService, root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"original")
    (root / "link.txt").symlink_to(secret)
    assert put(service, "link.txt", b"overwritten?").code == Status.ERROR
    assert secret.read_bytes() == b"original"


def test_put_is_atomic(service: FileService, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "f.txt").write_bytes(b"old")
    seen_during_write: list[bytes] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        # The new bytes are written and about to be made durable: a reader
        # looking now must still see the whole old file.
        seen_during_write.append((root / "f.txt").read_bytes())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spying_fsync)
    assert put(service, "f.txt", b"new contents") == Frame(Status.OK, b"")
    assert seen_during_write == [b"old"]
    assert (root / "f.txt").read_bytes() == b"new contents"
    assert sorted(os.listdir(root)) == ["f.txt"]  # no temporary file left


def _disk_full(*args: object) -> NoReturn:
    raise OSError(errno.ENOSPC, "No space left on device")


def _write_part_then_disk_full(real_write: Callable[[int, bytes], int]) -> Callable[..., int]:
    """os.write that writes 1000 bytes once (a partial temporary file), then hits ENOSPC."""
    calls = []

    def write(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) > 1:
            _disk_full()
        return real_write(fd, memoryview(data)[:1000])

    return write


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_disk_full_put_answers_error_keeps_old_file_and_no_temp(
    service: FileService, root: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """ENOSPC wherever it strikes: ERROR with the reason, the old file whole, no temporary file."""
    (root / "f.txt").write_bytes(b"old")
    fake = _write_part_then_disk_full(os.write) if step == "write" else _disk_full
    monkeypatch.setattr(os, step, fake)
    reply = put(service, "f.txt", b"new" * 10_000)
    assert reply.code == Status.ERROR and b"No space left on device" in reply.payload
    assert (root / "f.txt").read_bytes() == b"old"
    assert sorted(os.listdir(root)) == ["f.txt"]


def test_get_missing(service: FileService) -> None:
    reply = get(service, "nope.txt")
    assert reply.code == Status.ERROR and b"no such file" in reply.payload


def test_unknown_opcode_and_bad_payloads(service: FileService) -> None:
    assert service.handle(Frame(0x42, b"x")).status == Status.ERROR
    assert service.handle(Frame(Op.LIST, b"junk")).status == Status.ERROR
    assert service.handle(Frame(Op.PUT, b"\x00")).status == Status.ERROR
    assert service.handle(Frame(Op.PUT, b"\x00\x09abc")).status == Status.ERROR


def test_echo_and_quit(service: FileService) -> None:
    assert service.handle(Frame(Op.ECHO, b"hi")).payload == b"hi"
    quit_reply = service.handle(Frame(Op.QUIT, b""))
    assert quit_reply.status == Status.OK and quit_reply.close


def test_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileService(tmp_path / "missing")


# -- special files: never block, never touch ---------------------------------


def _answer_within(call: Callable[[], Frame], seconds: float, fifo: Path | None = None) -> Frame:
    """Run ``call`` in a thread; fail (rather than hang the suite) if it takes over ``seconds``."""
    result: list[Frame] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    blocked = worker.is_alive()
    if blocked and fifo is not None:
        # Release an open() blocked on the FIFO (a writer appearing unblocks its
        # reader), so that the failing test leaves no thread stuck behind.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    assert not blocked, f"no answer within {seconds} s: the service blocked"
    return result[0]


def make_special(root: Path, kind: str, tmp_path: Path) -> Path:
    """Create a non-regular file called ``kind`` in ``root``; skip if this system forbids it."""
    path = root / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        if len(os.fsencode(path)) >= 108:
            pytest.skip("path too long for a Unix socket address")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(os.fspath(path))  # the file stays after close
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        (tmp_path / "target.txt").write_bytes(b"outside")
        path.symlink_to(tmp_path / "target.txt")
    elif kind == "device":
        try:  # a character device like /dev/null (1, 3): reading it is harmless
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except OSError as exc:
            pytest.skip(f"cannot create a device node here: {exc.strerror} (needs CAP_MKNOD)")
    return path


SPECIAL_KINDS = ["fifo", "socket", "directory", "symlink", "device"]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_get_of_a_special_file_is_refused_at_once(
    service: FileService, root: Path, tmp_path: Path, kind: str
) -> None:
    path = make_special(root, kind, tmp_path)
    reply = _answer_within(lambda: get(service, kind), 2.0, path if kind == "fifo" else None)
    assert reply == Frame(Status.ERROR, NOT_REGULAR.encode())


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_put_onto_a_special_file_is_refused_and_touches_nothing(
    service: FileService, root: Path, tmp_path: Path, kind: str
) -> None:
    path = make_special(root, kind, tmp_path)
    before = os.lstat(path)
    reply = _answer_within(lambda: put(service, kind, b"new"), 2.0)
    assert reply == Frame(Status.ERROR, NOT_REGULAR.encode())
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mode,
        before.st_mtime_ns,
    )
    if kind == "symlink":
        assert (tmp_path / "target.txt").read_bytes() == b"outside"
    assert sorted(os.listdir(root)) == [kind]  # and no temporary file


def test_list_shows_regular_files_only_and_never_blocks(
    service: FileService, root: Path, tmp_path: Path
) -> None:
    (root / "plain.txt").write_bytes(b"p")
    for kind in SPECIAL_KINDS[:-1]:  # the device may be forbidden; LIST treats it alike
        make_special(root, kind, tmp_path)
    reply = _answer_within(lambda: Frame(*service.handle(Frame(Op.LIST, b""))[:2]), 2.0)
    assert reply == Frame(Status.OK, b"plain.txt")


def test_get_reads_a_regular_file_in_blocking_mode(
    service: FileService, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_NONBLOCK, needed to open a FIFO safely, is cleared before a regular file is read."""
    (root / "f.txt").write_bytes(b"data")
    seen: list[bool] = []
    real_fdopen = os.fdopen

    def spying_fdopen(fd: int, *args: object, **kwargs: object) -> object:
        seen.append(os.get_blocking(fd))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", spying_fdopen)
    assert get(service, "f.txt") == Frame(Status.OK, b"data")
    assert seen == [True]


def test_get_of_an_unreadable_file_says_why(service: FileService, root: Path) -> None:
    """A regular file that cannot be opened is not "not a regular file": the OS reason goes back."""
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (root / "locked.txt").write_bytes(b"secret")
    (root / "locked.txt").chmod(0)
    reply = get(service, "locked.txt")
    assert reply.code == Status.ERROR and b"Permission denied" in reply.payload


# -- crash leftovers ----------------------------------------------------------


def _dead_pid() -> int:
    """A pid no process has now (a reaped child's, unless reused in the meantime)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_temp_files_match_the_cleanup_pattern(
    service: FileService, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spying_replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    assert put(service, "f.txt", b"x").code == Status.OK
    assert len(seen) == 1 and TEMP_PATTERN.fullmatch(seen[0]), seen


def test_stale_temp_files_are_removed_and_nothing_else(root: Path, tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [f".put-{dead}-{'0123456789abcdef'}.tmp", f".put-{os.getpid()}-{'f' * 16}.tmp"]
    for name in stale:
        (root / name).write_bytes(b"half a file")
    live = f".put-1-{'a' * 16}.tmp"  # pid 1 is always running: its writer may be busy
    (root / live).write_bytes(b"in progress")
    (tmp_path / "outside.txt").write_bytes(b"keep")
    kept_names = [
        "user.txt",
        ".put-notes",  # a user's hidden file with the prefix
        f".put-{dead}-{'0' * 16}.tmp.bak",
        f"x.put-{dead}-{'0' * 16}.tmp",
        f".put-{dead}-{'0' * 15}.tmp",
        f".put-{dead}-{'A' * 16}.tmp",
    ]
    for name in kept_names:
        (root / name).write_bytes(b"keep")
    link = f".put-{dead}-{'1' * 16}.tmp"
    (root / link).symlink_to(tmp_path / "outside.txt")  # matches, but is a symlink
    folder = f".put-{dead}-{'2' * 16}.tmp"
    (root / folder).mkdir()
    results = remove_stale_temp_files(root)
    assert sorted(results) == sorted(
        [(n, None) for n in stale] + [(live, "its writer process is still running")]
    )
    assert sorted(os.listdir(root)) == sorted([live, *kept_names, link, folder])
    assert (tmp_path / "outside.txt").read_bytes() == b"keep"


def test_cleanup_of_a_clean_root_reports_nothing(root: Path) -> None:
    (root / "a.txt").write_bytes(b"a")
    assert remove_stale_temp_files(root) == []
