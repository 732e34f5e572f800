"""Fuzzing live servers: a hypothesis state machine against a model of the served directory.

Every variant is started through its real command line (``python -m servers
NAME``), once per test, and driven through random sequences of:

* pipelined batches of valid and invalid requests (ECHO of 0 B to 64 KiB,
  LIST, GET and PUT of valid and invalid names, unknown opcodes, PUT payloads
  whose name length runs past the payload), sent in random splits, sometimes
  a few bytes per millisecond, optionally ended by QUIT or a header over
  ``--max-frame`` (both close the connection);
* frames cut off by a close or an abrupt reset (``SO_LINGER`` 0), and resets
  with replies still unread;
* reconnects, and a second client served while the first is connected.

A model (a dict name -> bytes, plus the rules of docs/PROTOCOL.md written
out again here, not imported from the server) predicts every reply, which
is checked exactly: status and payload for OK, status and a non-empty UTF-8
message for ERROR (the protocol fixes no wording).  A PUT cut off mid-frame
must change nothing, so the model keeps the old contents.

An example fails on a wrong reply, a hang (no byte moves for
:data:`HANG_LIMIT` seconds while a reply is owed), a dead server, a
traceback on the server's stderr, a directory that differs from the model
(temporary files included), or a leaked descriptor: once the example's
connections are closed the server's descriptor count must fall back to its
count after warm-up within :data:`SETTLE` seconds.  Only the server's own
process is counted: in the forking variants each child holds one
connection and exits with it, so counting the tree would race child exits;
there the children must be gone (zombies excepted) within the same time --
except a prefork model's workers, alive after warm-up: their descriptors are
counted with the server's, and they must stay.

The normal run fuzzes three representative variants on a small budget; a
larger budget over every variant runs with ``pytest -m fuzz``.  Each example
starts from an empty served directory on the same server; the server is
restarted only if it died, stopped answering or failed an example's final
checks, so one bad example cannot fail the next ones (and hypothesis can
shrink it).
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import socket
import struct
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import servers
from loadgen.suite.launch import RunningServer, start_server
from servers.protocol import (
    DEFAULT_MAX_FRAME,
    HEADER,
    MAX_PAYLOAD,
    NAME_LENGTH,
    Frame,
    FrameDecoder,
    Op,
    Status,
    encode_frame,
    encode_put_payload,
)
from tests.conftest import variant_params
from tests.fakes import fake_env

HANG_LIMIT = 2.0  # seconds without a byte moving while a reply is owed: a hang
SETTLE = 2.0  # seconds for the server to close its side after the client closes
RECV_SIZE = 64 * 1024
REPRESENTATIVE = ("thread_per_client", "epoll_edge", "asyncio_protocol")

COMMON = settings(
    deadline=None,
    database=None,  # keep the repository clean
    suppress_health_check=[HealthCheck.too_slow],
)
# Normal run: three variants in well under 30 s on 2 busy cores.  No shrinking:
# a failing example can cost a restart and a 2 s wait per attempt, and shrinking
# would outlast the test's timeout; the failing steps are printed as found.
NORMAL_BUDGET = settings(
    COMMON,
    max_examples=50,
    stateful_step_count=25,
    phases=[phase for phase in Phase if phase is not Phase.shrink],
)
# `pytest -m fuzz`: every variant, 5-15 s each, and failures shrunk to a minimal example.
FUZZ_BUDGET = settings(COMMON, max_examples=120, stateful_step_count=30)


# -- the model: the protocol's rules, written out again ---------------------


def valid_name(raw: bytes) -> str | None:
    """The name ``raw`` stands for if docs/PROTOCOL.md ("Names") allows it, else None."""
    if not 1 <= len(raw) <= 255:
        return None
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name.startswith("."):  # also rules out "." and ".."
        return None
    if any(ch in "/\\:" or unicodedata.category(ch) == "Cc" for ch in name):
        return None
    return name


# An expected reply: (status, payload); payload None means "any non-empty UTF-8 text".
Expected = tuple[int, bytes | None]
ERROR: Expected = (Status.ERROR, None)


@dataclass
class Model:
    """What the served directory holds, and whether the variant serves files at all."""

    files: dict[str, bytes] = field(default_factory=dict)
    serves_files: bool = True


class Blob(bytes):
    """Large random bytes with a short repr, so a failing example prints readably."""

    def __repr__(self) -> str:
        return f"Blob({len(self)} bytes)"


def blob(size: int, seed: int) -> bytes:
    return Blob(random.Random(seed).randbytes(size))


@dataclass(frozen=True)
class Echo:
    payload: bytes

    def frame(self) -> bytes:
        return encode_frame(Op.ECHO, self.payload)

    def predict(self, model: Model) -> Expected:
        return (Status.OK, self.payload)


@dataclass(frozen=True)
class ListFiles:
    payload: bytes = b""  # LIST takes an empty payload; anything else is malformed

    def frame(self) -> bytes:
        return encode_frame(Op.LIST, self.payload)

    def predict(self, model: Model) -> Expected:
        if not model.serves_files or self.payload:
            return ERROR
        return (Status.OK, "\n".join(sorted(model.files)).encode("utf-8"))


@dataclass(frozen=True)
class Get:
    name: bytes

    def frame(self) -> bytes:
        return encode_frame(Op.GET, self.name)

    def predict(self, model: Model) -> Expected:
        name = valid_name(self.name)
        if not model.serves_files or name not in model.files:
            return ERROR
        return (Status.OK, model.files[name])


@dataclass(frozen=True)
class Put:
    name: bytes
    data: bytes

    def frame(self) -> bytes:
        return encode_frame(Op.PUT, encode_put_payload(self.name, self.data))

    def predict(self, model: Model) -> Expected:
        name = valid_name(self.name)
        if not model.serves_files or name is None:
            return ERROR
        model.files[name] = self.data
        return (Status.OK, b"")


@dataclass(frozen=True)
class BadPut:
    """A PUT payload shorter than its name length field, or whose name runs past its end."""

    payload: bytes

    def frame(self) -> bytes:
        return encode_frame(Op.PUT, self.payload)

    def predict(self, model: Model) -> Expected:
        return ERROR


@dataclass(frozen=True)
class Unknown:
    code: int
    payload: bytes

    def frame(self) -> bytes:
        return encode_frame(self.code, self.payload)

    def predict(self, model: Model) -> Expected:
        return ERROR


@dataclass(frozen=True)
class Quit:
    """Ends a batch: OK with an empty payload, then the server closes."""

    def frame(self) -> bytes:
        return encode_frame(Op.QUIT)

    def predict(self, model: Model) -> Expected:
        return (Status.OK, b"")


@dataclass(frozen=True)
class Oversized:
    """Ends a batch: a bare header declaring more than --max-frame; ERROR, then close."""

    code: int
    length: int

    def frame(self) -> bytes:
        return HEADER.pack(self.code, self.length)

    def predict(self, model: Model) -> Expected:
        return ERROR


Request = Echo | ListFiles | Get | Put | BadPut | Unknown
BatchEnd = Quit | Oversized

# -- strategies ---------------------------------------------------------------

payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(blob, st.integers(0, 64 * 1024), st.integers(0, 2**32 - 1)),
)
# A few fixed valid names, drawn half the time, so that GETs and PUTs meet the same files.
NAME_POOL = [n.encode() for n in ("a", "é ü.txt", "z" * 255, "é" * 127)]
INVALID_NAMES = [
    b"",
    b".",
    b"..",
    b"../x",
    b"a/b",
    b"/etc/passwd",
    b"\\\\host\\share",
    b"C:x",
    b"a\x00b",
    b"a\x1bb",
    b"a\x7fb",
    "a\u0085b".encode(),  # a C1 control
    b"x" * 256,
    b"\xff\xfe",
    b"\xc3",  # truncated UTF-8
    b".hidden",
    b".put-1-2-3",  # the servers' own temporary-file pattern
]
names = st.sampled_from(NAME_POOL) | st.one_of(
    st.sampled_from(INVALID_NAMES),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).map(str.encode),
    st.binary(min_size=1, max_size=12),
)
bad_put_payloads = st.one_of(
    st.sampled_from([b"", b"\x00"]),
    st.binary(max_size=8).flatmap(
        lambda rest: st.integers(len(rest) + 1, 0xFFFF).map(lambda n: NAME_LENGTH.pack(n) + rest)
    ),
)
OPCODES = {int(op) for op in Op}
unknown_codes = st.integers(0, 255).filter(lambda code: code not in OPCODES)
readonly_requests = st.one_of(
    st.builds(Echo, payloads),
    st.builds(Get, names),
    st.builds(ListFiles, st.just(b"") | st.binary(min_size=1, max_size=8)),
    st.builds(Unknown, unknown_codes, payloads),
    st.builds(BadPut, bad_put_payloads),
)
requests = st.one_of(st.builds(Put, names, payloads), readonly_requests)
batch_ends = st.one_of(
    st.none(),
    st.just(Quit()),
    st.builds(Oversized, st.integers(0, 255), st.integers(DEFAULT_MAX_FRAME + 1, MAX_PAYLOAD)),
)
cut_points = st.lists(st.integers(0, 2**32 - 1), max_size=6)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo its length)."""
    points = sorted({c % len(data) for c in cuts} - {0}) if data else []
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- one client connection -------------------------------------------------------


class Hang(AssertionError):
    """No byte moved for HANG_LIMIT seconds while the server owed a reply."""


class ConnectionLost(AssertionError):
    """The server closed or reset the connection while a reply was owed."""


class Conn:
    """A non-blocking client socket that sends and reads at once, so pipelining cannot deadlock."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=HANG_LIMIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.decoder = FrameDecoder(MAX_PAYLOAD)

    def exchange(
        self, chunks: list[bytes], replies: int, *, eof: bool = False, dribble: bool = False
    ) -> list[Frame]:
        """Send ``chunks`` (one send each) while reading; return ``replies`` frames.

        With ``eof`` the server must then close the connection, sending nothing more.
        ``dribble`` pauses a millisecond between chunks so that they arrive apart.
        """
        try:
            return self._exchange(chunks, replies, eof, dribble)
        except (OSError, ConnectionLost) as exc:
            lost = f"{type(exc).__name__}: {exc}"
        # Raised here, outside the handler, so every way of losing the connection
        # is one failure to hypothesis (it tells failures apart by where they came from).
        raise ConnectionLost(lost)

    def _exchange(self, chunks: list[bytes], replies: int, eof: bool, dribble: bool) -> list[Frame]:
        pending = [c for c in chunks if c]
        frames: list[Frame] = []
        closed = False
        last_progress = time.monotonic()
        while pending or len(frames) < replies or (eof and not closed):
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
            self.selector.modify(self.sock, events)
            left = last_progress + HANG_LIMIT - time.monotonic()
            ready = self.selector.select(left) if left > 0 else []
            if not ready:
                raise Hang(
                    f"no byte for {HANG_LIMIT} s: {len(frames)} of {replies} replies read,"
                    f" {sum(map(len, pending))} bytes unsent, server closed: {closed}"
                )
            last_progress = time.monotonic()
            mask = ready[0][1]
            if mask & selectors.EVENT_READ:
                closed = self._read(frames, replies, eof)
            if mask & selectors.EVENT_WRITE and pending:
                sent = self.sock.send(pending[0])
                pending[0] = pending[0][sent:]
                if not pending[0]:
                    pending.pop(0)
                    if dribble and pending:
                        time.sleep(0.001)
            if closed and pending:
                raise ConnectionLost("the server closed before the whole request was sent")
        return frames

    def _read(self, frames: list[Frame], replies: int, eof: bool) -> bool:
        """Read once into ``frames``; True once the server has closed."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            if not eof or len(frames) < replies or self.decoder.buffered:
                raise ConnectionLost(f"the server closed after {len(frames)} of {replies} replies")
            return True
        self.decoder.receive_data(data)
        frames.extend(self.decoder.frames())
        assert len(frames) <= replies, f"{len(frames) - replies} reply frame(s) nobody asked for"
        return False

    def close(self, *, reset: bool = False) -> None:
        """Close; with ``reset`` abruptly (SO_LINGER 0: RST instead of FIN)."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.selector.close()
        self.sock.close()


def check_reply(got: Frame, expected: Expected, request: object) -> None:
    status, payload = expected
    where = f"reply to {request!r}"
    assert got.code == status, (
        f"{where}: status {got.code}, expected {status} ({got.payload[:80]!r})"
    )
    if payload is not None:
        assert got.payload == payload, f"{where}: payload differs ({len(got.payload)} bytes)"
    else:
        assert got.payload, f"{where}: an ERROR with an empty message"
        got.payload.decode("utf-8")  # a message for humans: UTF-8 text


# -- the server under test ---------------------------------------------------------


def fd_table(pid: int) -> list[str]:
    """What each descriptor of ``pid`` points at (for the failure message)."""
    base = f"/proc/{pid}/fd"
    out = []
    for fd in os.listdir(base):
        try:
            out.append(os.readlink(os.path.join(base, fd)))
        except OSError:
            pass
    return sorted(out)


class LiveServer:
    """One running variant shared by every example of a test; restarted only when unwell."""

    def __init__(
        self, variant: servers.Variant, root: Path, env: dict[str, str] | None = None
    ) -> None:
        self.variant = variant
        self.root = root
        self.env = env  # extra environment for the server (test-only variants)
        self.running: RunningServer | None = None
        self.baseline_fds = 0
        self.baseline_table: list[str] = []
        # A prefork model's worker processes, alive after warm-up: the server's own,
        # counted with it rather than as children that outlived their connections.
        self.workers: set[int] = set()
        self.dirty = False  # an example's final checks failed: start the next one afresh

    @property
    def process(self) -> psutil.Process:
        assert self.running is not None
        return psutil.Process(self.running.pid)

    def start(self) -> None:
        self.running = start_server(self.variant.name, self.root, env=self.env)
        self._warm_up()
        if self.variant.forks and self.variant.workers:
            self.workers = {child.pid for child in self.live_children()}
        self.baseline_fds = self._steady_fd_count()
        self.baseline_table = fd_table(self.running.pid)

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None
        self.dirty = False

    def ready(self) -> RunningServer:
        """The server, restarted first if it died or does not answer an ECHO at once."""
        if self.running is None or self.dirty or not self._answers():
            self.stop()
            self.start()
        self.clean_root()
        assert self.running is not None
        return self.running

    def clean_root(self) -> None:
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    def _answers(self) -> bool:
        assert self.running is not None
        if self.running.process.poll() is not None:
            return False
        try:
            conn = Conn(self.running.address)
            try:
                [reply] = conn.exchange([encode_frame(Op.ECHO, b"probe")], 1)
            finally:
                conn.close()
        except (OSError, AssertionError):
            return False
        return reply == (Status.OK, b"probe")

    def _warm_up(self) -> None:
        """One connection using every operation: lazily opened descriptors count from here."""
        assert self.running is not None
        batch = [Echo(b"warm"), Put(b"warm-up", b"x"), Get(b"warm-up"), ListFiles()]
        conn = Conn(self.running.address)
        try:
            conn.exchange([b"".join(r.frame() for r in batch)], len(batch))
        finally:
            conn.close()
        self.clean_root()

    def _steady_fd_count(self) -> int:
        """The descriptor count once it holds still for 100 ms (at most about 2 s)."""
        previous = -1
        for _ in range(20):
            count = self.num_fds()
            if count == previous:
                return count
            previous = count
            time.sleep(0.1)
        return previous

    def num_fds(self) -> int:
        """Descriptors of the server's process and of its workers (a dead worker fails)."""
        return self.process.num_fds() + sum(psutil.Process(w).num_fds() for w in self.workers)

    def live_children(self) -> list[psutil.Process]:
        out = []
        for child in self.process.children(recursive=True):
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    out.append(child)
            except psutil.NoSuchProcess:
                pass
        return out

    def check_settled(self) -> None:
        """Back to the warm-up descriptor count (and no live child) within SETTLE seconds."""
        deadline = time.monotonic() + SETTLE
        while True:
            fds = self.num_fds()
            children = self.live_children() if self.variant.forks else []
            children = [child for child in children if child.pid not in self.workers]
            if fds <= self.baseline_fds and not children:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert not children, f"{len(children)} child process(es) outlived their connections"
        extra = sorted(set(fd_table(self.process.pid)) - set(self.baseline_table))
        raise AssertionError(
            f"descriptor leak: {fds} open, {self.baseline_fds} after warm-up; new: {extra}"
        )


# -- the state machine -------------------------------------------------------------


class ServerMachine(RuleBasedStateMachine):
    """Drives one live server; subclassed per test with ``live`` set (see :func:`fuzz`)."""

    live: LiveServer

    def __init__(self) -> None:
        super().__init__()
        self.server = self.live.ready()
        self.model = Model(serves_files=not self.live.variant.is_reference)
        self.conn: Conn | None = None

    def talk(self, conn: Conn, chunks: list[bytes], replies: int, **flags: bool) -> list[Frame]:
        """``conn.exchange``; a lost connection is first blamed on a dead server, if it is one."""
        try:
            return conn.exchange(chunks, replies, **flags)
        except ConnectionLost:
            try:
                self.server.process.wait(0.5)  # a dying server may take a moment to exit
            except subprocess.TimeoutExpired:
                pass
            self.server_alive()
            raise

    def connection(self) -> Conn:
        if self.conn is None:
            self.conn = Conn(self.server.address)
        return self.conn

    def drop(self, *, reset: bool = False) -> None:
        if self.conn is not None:
            self.conn.close(reset=reset)
            self.conn = None

    def run_batch(
        self,
        conn: Conn,
        batch: list[Request],
        end: BatchEnd | None,
        cuts: list[int],
        dribble: bool,
    ) -> None:
        """Send the batch pipelined in random pieces; check every reply against the model."""
        everything: list[Request | BatchEnd] = [*batch, end] if end is not None else [*batch]
        expected = [request.predict(self.model) for request in everything]
        data = b"".join(request.frame() for request in everything)
        got = self.talk(
            conn, split(data, cuts), len(everything), eof=end is not None, dribble=dribble
        )
        for reply, want, request in zip(got, expected, everything, strict=True):
            check_reply(reply, want, request)

    @rule(
        batch=st.lists(requests, min_size=1, max_size=5),
        end=batch_ends,
        cuts=cut_points,
        dribble=st.booleans(),
    )
    def pipeline(
        self, batch: list[Request], end: BatchEnd | None, cuts: list[int], dribble: bool
    ) -> None:
        self.run_batch(self.connection(), batch, end, cuts, dribble)
        if end is not None:  # the server has closed: so do we
            self.drop()

    @rule(request=requests, cut=st.integers(0, 2**32 - 1), reset=st.booleans())
    def cut_mid_frame(self, request: Request, cut: int, reset: bool) -> None:
        """A frame cut short by a close or a reset: no reply owed, no file changed."""
        frame = request.frame()
        self.talk(self.connection(), [frame[: cut % len(frame)]], 0)
        self.drop(reset=reset)

    @rule(batch=st.lists(readonly_requests, min_size=1, max_size=4))
    def reset_with_replies_unread(self, batch: list[Request]) -> None:
        """Whole requests (none that writes a file), then a reset while the replies flow."""
        self.talk(self.connection(), [b"".join(r.frame() for r in batch)], 0)
        self.drop(reset=True)

    @rule()
    def reconnect(self) -> None:
        self.drop()
        self.connection()

    @precondition(lambda self: self.live.variant.concurrent)
    @rule(batch=st.lists(requests, min_size=1, max_size=3), cuts=cut_points)
    def second_client(self, batch: list[Request], cuts: list[int]) -> None:
        """Another client is served while this one stays connected."""
        self.connection()
        other = Conn(self.server.address)
        try:
            self.run_batch(other, batch, None, cuts, dribble=False)
        finally:
            other.close()

    @invariant()
    def server_alive(self) -> None:
        status = self.server.process.poll()
        assert status is None, f"the server exited with status {status}"

    def teardown(self) -> None:
        self.live.dirty = True  # until every check below has passed
        self.drop()
        self.server_alive()
        self.live.check_settled()
        on_disk = sorted(os.listdir(self.live.root))
        assert on_disk == sorted(self.model.files), (
            f"the directory differs from the model: {on_disk}"
        )
        for name, data in self.model.files.items():
            assert (self.live.root / name).read_bytes() == data, f"{name} on disk differs"
        stderr = self.server.stderr_text()
        assert "Traceback" not in stderr, f"the server logged a traceback:\n{stderr[-2000:]}"
        self.live.dirty = False


@pytest.fixture
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(servers.get(request.param), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def fuzz(live: LiveServer, budget: settings) -> None:
    machine = type(f"Fuzz_{live.variant.name}", (ServerMachine,), {"live": live})
    run_state_machine_as_test(machine, settings=budget)


@pytest.mark.parametrize("live", variant_params(lambda v: v.name in REPRESENTATIVE), indirect=True)
def test_fuzz_representative_variants(live: LiveServer) -> None:
    fuzz(live, NORMAL_BUDGET)


@pytest.mark.fuzz
@pytest.mark.timeout(600)
@pytest.mark.parametrize("live", variant_params(), indirect=True)
def test_fuzz_every_variant(live: LiveServer) -> None:
    fuzz(live, FUZZ_BUDGET)


def test_fuzz_catches_a_wrong_echo(tmp_path: Path) -> None:
    """The fuzzer can fail: a server whose ECHO lies (tests/fakes/bad_echo.py) is caught.

    Any failure will do: the fake has other faults (it logs a traceback on an
    oversized header), and which one the fuzzer meets first is up to chance.
    """
    fake = servers.Variant(
        "fake_bad_echo", "lies", True, "test", "threads", module="tests.fakes.bad_echo"
    )
    env = fake_env()
    server = LiveServer(fake, tmp_path, env)
    try:
        server.start()
        with pytest.raises(AssertionError):
            fuzz(server, NORMAL_BUDGET)
    finally:
        server.stop()
