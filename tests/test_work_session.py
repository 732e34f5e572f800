"""The sans-I/O session hands out WORK and resumes it correctly, however the input is split.

A fake model drives :class:`servers.protocol.FramedSession` over the real
:class:`servers.service.FileService` as the Session contract says a server
must: send what ``receive_data`` returns; while ``session.work`` is set, do
the work (here: nothing, no real waiting) and send what ``work_done()``
returns; while ``pending``, send what ``resume()`` returns.  A stream of
ECHO, WORK of every kind (small), malformed WORK and GETs of a file big
enough to spend the reply budget is fed whole, cut at random points and byte
by byte -- through the fast path and through its plain specification -- and
the replies must be the expected ones, in order, every time.  An *eager*
driver also feeds input while work is outstanding (a server that kept
reading): the session must only buffer it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from servers.protocol import (
    HEADER_SIZE,
    REPLY_BUDGET,
    FramedSession,
    Op,
    Status,
    Work,
    WorkKind,
    encode_frame,
    encode_work_payload,
)
from servers.service import FileService

MAX_WORK = 1000  # the service's --max-work here: amounts above it are errors
BIG = 300 * 1024  # a GET of this file replies 300 KiB: four of them spend the budget
BIG_NAME = b"big.bin"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    root = tmp_path_factory.mktemp("work-session")
    data = bytes(range(256)) * (BIG // 256)
    (root / BIG_NAME.decode()).write_bytes(data)
    return root, data


@dataclass(frozen=True)
class Case:
    """One request: its bytes, the reply expected, and the Work it hands out (if any)."""

    frame: bytes
    reply: bytes
    work: Work | None = None


def ok(payload: bytes) -> bytes:
    return encode_frame(Status.OK, payload)


def error(message: str) -> bytes:
    return encode_frame(Status.ERROR, message.encode())


def echo_case(data: bytes) -> Case:
    return Case(encode_frame(Op.ECHO, data), ok(data))


def handed_out_case(kind: int, amount: int, data: bytes) -> Case:
    """WAIT or OFFLOAD: the session hands it to the model; work_done answers it."""
    payload = encode_work_payload(kind, amount, data)
    return Case(encode_frame(Op.WORK, payload), ok(data), Work(kind, amount, data))


def in_handler_case(kind: int, amount: int, data: bytes) -> Case:
    """COMPUTE or BLOCK: done in the handler, answered at once."""
    return Case(encode_frame(Op.WORK, encode_work_payload(kind, amount, data)), ok(data))


def bad_kind_case(kind: int, amount: int) -> Case:
    payload = encode_work_payload(kind, amount, b"x")
    return Case(encode_frame(Op.WORK, payload), error(f"unknown WORK kind {kind}"))


def short_case(payload: bytes) -> Case:
    message = "WORK payload shorter than its 5-byte kind and amount"
    return Case(encode_frame(Op.WORK, payload), error(message))


def over_max_case(kind: int, amount: int) -> Case:
    message = f"WORK amount {amount} is over the maximum of {MAX_WORK}"
    return Case(encode_frame(Op.WORK, encode_work_payload(kind, amount)), error(message))


data_st = st.binary(max_size=40)
handed_out_st = st.builds(
    handed_out_case,
    st.sampled_from([WorkKind.WAIT, WorkKind.OFFLOAD]),
    st.integers(0, MAX_WORK),
    data_st,
)
case_st = st.one_of(
    st.builds(echo_case, data_st),
    handed_out_st,
    st.builds(in_handler_case, st.just(WorkKind.COMPUTE), st.integers(0, 50), data_st),
    st.builds(in_handler_case, st.just(WorkKind.BLOCK), st.integers(0, 100), data_st),
    st.builds(bad_kind_case, st.sampled_from([0, 5, 6, 127, 255]), st.integers(0, MAX_WORK)),
    st.builds(short_case, st.binary(max_size=4)),
    st.builds(over_max_case, st.sampled_from(list(WorkKind)), st.integers(MAX_WORK + 1, 2**32 - 1)),
)
GET_BIG = Case(encode_frame(Op.GET, BIG_NAME), b"")  # its reply is the file's bytes (``expected``)
# Work handed out more often than the rest, and runs of up to five big GETs: four in a
# row spend the reply budget, so that requests (and work) wait on it.
group_st = st.one_of(
    case_st.map(lambda c: [c]),
    handed_out_st.map(lambda c: [c]),
    st.integers(1, 5).map(lambda n: [GET_BIG] * n),
)
cases_st = st.lists(group_st, min_size=1, max_size=8).map(lambda groups: sum(groups, []))


@dataclass
class Driver:
    """A fake model: feeds chunks, does the work handed out (no waiting), resumes.

    ``eager``: after a chunk that left work outstanding, leave it outstanding
    while the next chunk is fed, when ``defer`` says so.
    """

    session: FramedSession
    feed: Callable[[bytes], bytes]
    out: list[bytes] = field(default_factory=list)
    works: list[Work] = field(default_factory=list)
    resumed: int = 0  # resume() calls: the reply budget was spent
    deferred: int = 0  # chunks fed while work was outstanding

    def add(self, reply: bytes) -> None:
        # One call builds at most the reply budget, plus the reply that crossed it.
        assert len(reply) <= REPLY_BUDGET + HEADER_SIZE + BIG
        self.out.append(reply)

    def settle(self) -> None:
        """What a server does between reads: the work, then held-back requests, until none."""
        session = self.session
        while True:
            if session.work is not None:
                assert not session.pending, "pending while work is out"
                assert not session.in_request, "in_request while work is out"
                assert session.work.kind in (WorkKind.WAIT, WorkKind.OFFLOAD)
                self.works.append(session.work)
                self.add(session.work_done())
            elif session.pending:
                self.resumed += 1
                self.add(session.resume())
            else:
                return

    def chunk(self, data: bytes, defer: bool) -> None:
        session = self.session
        outstanding = session.work
        reply = self.feed(data)
        if outstanding is not None:  # fed while the work was out: only buffered
            self.deferred += 1
            assert reply == b""
            assert session.work is outstanding
            assert not session.pending and not session.in_request
        self.add(reply)
        if session.work is not None and defer:
            return
        self.settle()


def expected(cases: list[Case], big: bytes) -> tuple[bytes, list[Work]]:
    replies = [ok(big) if c is GET_BIG else c.reply for c in cases]
    return b"".join(replies), [c.work for c in cases if c.work is not None]


def run(
    cases: list[Case],
    root: Path,
    cuts: list[int],
    *,
    plain: bool,
    defers: list[bool] | None = None,
) -> Driver:
    session = FramedSession(FileService(root, MAX_WORK).handle)
    feed = session.receive_data_plain if plain else session.receive_data
    driver = Driver(session, feed)
    stream = b"".join(c.frame for c in cases)
    ends = set(itertools.accumulate(len(c.frame) for c in cases))
    points = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    defer_at = itertools.cycle(defers or [False])
    for start, end in zip(points, points[1:], strict=False):
        driver.chunk(stream[start:end], defer=next(defer_at))
        if session.work is None:  # settled: in the middle of a request exactly off a frame end
            assert session.in_request == (end not in ends)
            assert not session.pending
    driver.settle()
    assert not session.in_request and not session.pending and session.work is None
    assert not session.closing
    with pytest.raises(ValueError, match="without work"):
        session.work_done()
    return driver


SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(cases=cases_st, data=st.data(), plain=st.booleans())
def test_work_is_handed_out_and_resumed_for_any_split(
    big_file: tuple[Path, bytes], cases: list[Case], data: st.DataObject, plain: bool
) -> None:
    root, big = big_file
    want_bytes, want_works = expected(cases, big)
    length = sum(len(c.frame) for c in cases)
    cuts = data.draw(st.lists(st.integers(0, length), max_size=20), label="cuts")
    resumed = 0
    for split in ([], cuts, list(range(length))):  # whole, at random points, byte by byte
        driver = run(cases, root, split, plain=plain)
        assert b"".join(driver.out) == want_bytes
        assert driver.works == want_works
        resumed += driver.resumed
    event(f"work handed out: {bool(want_works)}; budget spent: {resumed > 0}")


@SETTINGS
@given(cases=cases_st, data=st.data())
def test_input_fed_while_work_is_out_is_only_buffered(
    big_file: tuple[Path, bytes], cases: list[Case], data: st.DataObject
) -> None:
    """A driver that goes on reading while work is outstanding gets b"" until work_done,
    and the same replies in the end."""
    root, big = big_file
    want_bytes, want_works = expected(cases, big)
    length = sum(len(c.frame) for c in cases)
    cuts = data.draw(st.lists(st.integers(0, length), max_size=20), label="cuts")
    defers = data.draw(st.lists(st.booleans(), min_size=1, max_size=30), label="defers")
    deferred = 0
    for split in (cuts, list(range(length))):
        driver = run(cases, root, split, plain=False, defers=defers)
        assert b"".join(driver.out) == want_bytes
        assert driver.works == want_works
        deferred += driver.deferred
    event(f"fed while work was out: {deferred > 0}")


def test_work_behind_the_reply_budget_waits_for_resume(big_file: tuple[Path, bytes]) -> None:
    """Four big GETs then a WAIT in one read: the budget stops before the WAIT (pending, no
    work yet); resume() reaches it and hands it out; work_done() answers it and the ECHO."""
    root, big = big_file
    session = FramedSession(FileService(root, MAX_WORK).handle)
    get = encode_frame(Op.GET, BIG_NAME)
    wait = handed_out_case(WorkKind.WAIT, 500, b"after the budget")
    first = session.receive_data(get * 4 + wait.frame + encode_frame(Op.ECHO, b"last"))
    assert first == ok(big) * 4  # 1.2 MiB: the budget is spent
    assert session.pending and session.work is None
    assert session.resume() == b""  # the WAIT is next: nothing to answer before it
    assert session.work == wait.work and not session.pending
    assert session.receive_data(encode_frame(Op.ECHO, b"meanwhile")) == b""
    assert session.work_done() == wait.reply + ok(b"last") + ok(b"meanwhile")
    assert session.work is None and not session.pending and not session.in_request


def test_quit_behind_work_closes_after_work_done(big_file: tuple[Path, bytes]) -> None:
    root, _ = big_file
    session = FramedSession(FileService(root, MAX_WORK).handle)
    wait = handed_out_case(WorkKind.OFFLOAD, 1, b"w")
    stream = wait.frame + encode_frame(Op.QUIT) + encode_frame(Op.ECHO, b"ignored")
    assert session.receive_data(stream) == b""
    assert session.work == wait.work
    assert session.work_done() == ok(b"w") + ok(b"")
    assert session.closing and session.work is None
    assert session.receive_data(encode_frame(Op.ECHO, b"after quit")) == b""
