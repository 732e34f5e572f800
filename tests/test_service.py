"""The file service: names, symlinks, atomic PUT -- called directly, no sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servers.protocol import Frame, Op, Status, encode_put_payload
from servers.service import TEMP_PREFIX, FileService, check_name

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


def test_failed_put_leaves_old_file_and_no_temp(
    service: FileService, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "f.txt").write_bytes(b"old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    reply = put(service, "f.txt", b"new")
    assert reply.code == Status.ERROR and b"No space" in reply.payload
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
