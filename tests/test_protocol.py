"""The sans-I/O protocol: same frames however the stream is split (h11's test style)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.protocol import (
    HEADER,
    MAX_DATAGRAM_PAYLOAD,
    REPLY_BUDGET,
    Frame,
    FrameDecoder,
    FramedSession,
    Handler,
    Op,
    ProtocolError,
    RawSession,
    Request,
    Response,
    SessionFactory,
    Status,
    Work,
    WorkKind,
    answer_datagram,
    decode_put_payload,
    encode_frame,
    encode_put_payload,
    work_reply,
)
from servers.service import FileService

frames_st = st.lists(
    st.builds(Frame, st.integers(0, 255), st.binary(max_size=300)), min_size=0, max_size=12
)


def decode_in_chunks(stream: bytes, cuts: list[int], max_frame: int = 1 << 20) -> list[Frame]:
    decoder = FrameDecoder(max_frame)
    out: list[Frame] = []
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for start, end in zip(points, points[1:], strict=False):
        decoder.receive_data(stream[start:end])
        out.extend(decoder.frames())
    return out


@given(st.integers(0, 255), st.binary(max_size=2000))
def test_encode_decode_round_trip(code: int, payload: bytes) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(code, payload))
    assert decoder.next_frame() == Frame(code, payload)
    assert decoder.next_frame() is None
    assert decoder.buffered == 0


@given(frames_st, st.lists(st.integers(0, 5000), max_size=30))
def test_any_split_gives_the_same_frames(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f.code, f.payload) for f in frames)
    assert decode_in_chunks(stream, cuts) == frames


@given(frames_st)
def test_byte_by_byte_gives_the_same_frames(frames: list[Frame]) -> None:
    stream = b"".join(encode_frame(f.code, f.payload) for f in frames)
    assert decode_in_chunks(stream, list(range(len(stream)))) == frames


@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10))
def test_random_bytes_give_frames_or_protocol_error(data: bytes, cuts: list[int]) -> None:
    try:
        frames = decode_in_chunks(data, cuts, max_frame=256)
    except ProtocolError:
        return
    assert all(isinstance(f, Frame) and len(f.payload) <= 256 for f in frames)


def test_over_max_is_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame=1000)
    decoder.receive_data(HEADER.pack(Op.ECHO, 1001))  # no payload at all
    with pytest.raises(ProtocolError, match="1001"):
        decoder.next_frame()


def test_exactly_max_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=10)
    decoder.receive_data(encode_frame(Op.ECHO, b"0123456789"))
    assert decoder.next_frame() == Frame(Op.ECHO, b"0123456789")


def test_header_split_in_two() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(Op.ECHO, b"abc")
    decoder.receive_data(frame[:2])
    assert decoder.next_frame() is None
    decoder.receive_data(frame[2:])
    assert decoder.next_frame() == Frame(Op.ECHO, b"abc")


@given(st.text(max_size=40), st.binary(max_size=100))
def test_put_payload_round_trip(name: str, data: bytes) -> None:
    raw = name.encode("utf-8")
    assert decode_put_payload(encode_put_payload(name, data)) == (raw, data)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x05abc"])
def test_put_payload_too_short(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_put_payload(payload)


def test_encode_rejects_bad_codes() -> None:
    with pytest.raises(ValueError):
        encode_frame(256, b"")


# -- the session: requests in, responses out --------------------------------


def echo_handler(request: Request) -> Response:
    if request.code == Op.ECHO:
        return Response.ok(request.payload)
    if request.code == Op.QUIT:
        return Response.ok(close=True)
    return Response.error("unknown opcode")


def run_session(stream: bytes, cuts: list[int], max_frame: int = 1 << 20) -> tuple[bytes, bool]:
    session = FramedSession(echo_handler, max_frame)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    pieces = zip(points, points[1:], strict=False)
    out = b"".join(session.receive_data(stream[a:b]) for a, b in pieces)
    return out, session.closing


@given(st.lists(st.binary(max_size=200), max_size=10), st.lists(st.integers(0, 3000), max_size=20))
def test_session_output_independent_of_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(Op.ECHO, p) for p in payloads)
    whole = run_session(stream, [])
    assert run_session(stream, cuts) == whole
    assert run_session(stream, list(range(len(stream)))) == whole
    assert whole == (b"".join(encode_frame(Status.OK, p) for p in payloads), False)


def test_session_stops_at_quit_and_ignores_the_rest() -> None:
    stream = encode_frame(Op.ECHO, b"a") + encode_frame(Op.QUIT) + encode_frame(Op.ECHO, b"b")
    out, closing = run_session(stream, [])
    assert out == encode_frame(Status.OK, b"a") + encode_frame(Status.OK)
    assert closing


def test_session_oversized_frame_answers_error_then_closes() -> None:
    stream = encode_frame(Op.ECHO, b"ok") + HEADER.pack(Op.ECHO, 99)
    out, closing = run_session(stream, [], max_frame=10)
    decoder = FrameDecoder()
    decoder.receive_data(out)
    first, second = decoder.frames()
    assert first == Frame(Status.OK, b"ok")
    assert second.code == Status.ERROR and b"99" in second.payload
    assert closing


def test_reply_budget_holds_requests_back() -> None:
    """64 KiB of pipelined requests for big replies must not build them all at once."""
    big = b"x" * (300 * 1024)

    def big_replies(request: Request) -> Response:
        return Response.ok(big + request.payload)

    session = FramedSession(big_replies)
    stream = b"".join(encode_frame(Op.GET, b"%03d" % i) for i in range(40))
    first = session.receive_data(stream)
    assert REPLY_BUDGET <= len(first) < REPLY_BUDGET + len(big) + 100
    assert session.pending
    out = first
    calls = 1
    while session.pending:
        more = session.resume()
        assert len(more) < REPLY_BUDGET + len(big) + 100
        out += more
        calls += 1
    assert calls > 5
    decoder = FrameDecoder(1 << 30)
    decoder.receive_data(out)
    assert [f.payload[-3:] for f in decoder.frames()] == [b"%03d" % i for i in range(40)]
    assert session.resume() == b""


def test_empty_data_is_refused_not_taken_for_resume() -> None:
    """h11 reads receive_data(b"") as end of stream; ours refuses it: resume() is explicit."""
    session = FramedSession(echo_handler)
    with pytest.raises(ValueError, match="resume"):
        session.receive_data(b"")
    assert session.resume() == b""  # nothing held back


# -- the fast path and its specification ---------------------------------------------


def test_whole_frame_takes_exactly_one_frame() -> None:
    one = encode_frame(Op.ECHO, b"abc")
    decoder = FrameDecoder(max_frame=10)
    assert decoder.whole_frame(one) == Frame(Op.ECHO, b"abc")
    assert decoder.whole_frame(one + one) is None  # two frames: the plain path
    assert decoder.whole_frame(one[:-1]) is None  # part of one
    assert decoder.whole_frame(encode_frame(Op.ECHO, b"x" * 11)) is None  # over max_frame
    decoder.receive_data(b"\x01")
    assert decoder.whole_frame(one) is None  # something already buffered
    assert decoder.buffered == 1  # and nothing was consumed


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> FileService:
    root = tmp_path_factory.mktemp("fast-path")
    (root / "a.txt").write_bytes(b"contents of a")
    return FileService(root)


def plain_handler(service: FileService) -> Handler:
    """The service with ECHO answered by its specification, ``Response.ok``."""

    def handle(request: Request) -> Response:
        if request.code == Op.ECHO:
            return Response.ok(request.payload)
        return service.handle(request)

    return handle


MAX_FRAME = 64  # some payloads are over it, so the error-and-close path is compared too
requests_st = st.lists(
    st.tuples(
        st.sampled_from([Op.ECHO, Op.ECHO, Op.ECHO, Op.LIST, Op.GET, Op.QUIT, 0x7F]),
        st.one_of(
            st.binary(max_size=MAX_FRAME + 16),
            st.sampled_from([b"", b"a.txt", b"../x", b"x" * MAX_FRAME, b"x" * (MAX_FRAME + 1)]),
        ),
    ),
    max_size=8,
)


@settings(max_examples=300)
@given(requests_st, st.data())
def test_fast_path_gives_the_plain_bytes(
    service: FileService, requests: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    """receive_data (fast path) and receive_data_plain answer every split with the same bytes."""
    frames = [encode_frame(op, payload) for op, payload in requests]
    stream = b"".join(frames)
    ends = list(itertools.accumulate(len(f) for f in frames))
    cut_st = st.sampled_from(ends) | st.integers(0, len(stream)) if ends else st.just(0)
    cuts = data.draw(st.lists(cut_st, max_size=12))  # frame ends often: the fast path's case
    points = sorted({0, len(stream), *cuts})
    fast = FramedSession(service.handle, MAX_FRAME)
    plain = FramedSession(plain_handler(service), MAX_FRAME)
    for start, end in zip(points, points[1:], strict=False):
        chunk = stream[start:end]
        assert fast.receive_data(chunk) == plain.receive_data_plain(chunk)
        assert (fast.closing, fast.pending) == (plain.closing, plain.pending)
        assert fast.in_request == plain.in_request
        while plain.pending:
            assert fast.resume() == plain.resume()
            assert fast.in_request == plain.in_request
        if not plain.closing:  # in the middle of a frame exactly when the cut is not a frame end
            assert plain.in_request == (end not in ends)


def test_service_echo_is_its_plain_response(service: FileService) -> None:
    got = service.handle(Frame(Op.ECHO, b"hi"))
    assert type(got) is Response and got == Response.ok(b"hi")


def test_session_factory_says_what_its_sessions_speak(service: FileService) -> None:
    framed = SessionFactory("framed", 123, service.handle)
    session = framed()
    assert isinstance(session, FramedSession) and session.max_frame == 123
    raw = SessionFactory("raw", 123)
    assert isinstance(raw(), RawSession) and raw.protocol == "raw"
    with pytest.raises(ValueError):
        SessionFactory("framed", 123)  # no handler


def test_raw_session_echoes_bytes() -> None:
    session = RawSession()
    assert session.receive_data(bytearray(b"\x05\x00\x00")) == b"\x05\x00\x00"
    assert not session.closing and not session.pending
    assert session.resume() == b""


def test_protocol_module_does_no_io() -> None:
    import servers.protocol as protocol

    source = open(protocol.__file__, encoding="utf-8").read()
    for module in ("socket", "select", "threading", "asyncio", "gevent", "os"):
        assert f"import {module}" not in source


# -- the protocol over UDP (issue 17): one datagram, one frame -----------------------------


def _echo_handler(request: Frame) -> Response:
    return Response.ok(request.payload) if request.code == Op.ECHO else Response.error("no")


@pytest.mark.parametrize("size", [0, 1, 4])
def test_a_datagram_shorter_than_a_header_is_dropped(size: int) -> None:
    assert answer_datagram(b"\x01" * size, _echo_handler) is None


def test_a_datagram_is_one_frame() -> None:
    assert answer_datagram(encode_frame(Op.ECHO, b"hi"), _echo_handler) == encode_frame(
        Status.OK, b"hi"
    )
    padded = answer_datagram(encode_frame(Op.ECHO, b"hi") + b"!", _echo_handler)
    cut = answer_datagram(encode_frame(Op.ECHO, b"hi")[:-1], _echo_handler)
    for reply in (padded, cut):
        assert isinstance(reply, bytes) and reply[0] == Status.ERROR and b"length field" in reply


@pytest.mark.parametrize("op", [Op.LIST, Op.GET, Op.PUT, Op.QUIT])
def test_files_over_udp_are_refused_before_the_handler(op: Op) -> None:
    def never(request: Frame) -> Response:
        raise AssertionError("the handler must not be called")

    reply = answer_datagram(encode_frame(op, b"x"), never)
    assert isinstance(reply, bytes) and b"use TCP" in reply


def test_the_largest_datagram_payload() -> None:
    assert MAX_DATAGRAM_PAYLOAD == 65_507 - 5
    data = b"x" * MAX_DATAGRAM_PAYLOAD
    assert answer_datagram(encode_frame(Op.ECHO, data), _echo_handler) == encode_frame(
        Status.OK, data
    )
    small = answer_datagram(encode_frame(Op.ECHO, b"12345"), _echo_handler, max_payload=4)
    assert isinstance(small, bytes) and b"over the maximum of 4" in small


def test_work_over_udp_comes_back_as_work() -> None:
    work = Work(WorkKind.WAIT, 1000, b"later")
    reply = answer_datagram(encode_frame(Op.WORK, b"....."), lambda request: work)
    assert reply is work
    assert work_reply(work) == encode_frame(Status.OK, b"later")
