"""The echo/file protocol, written once and with no I/O in it (sans-I/O, like h11).

Bytes go in, requests come out; responses go in, bytes come out.  Nothing
here imports socket, select, threading, asyncio or gevent, and nothing here
touches a file: the servers own the waiting, :mod:`servers.service` owns the
files.  See ``docs/PROTOCOL.md`` for the wire format with byte tables.

Frame, both directions: a 5-byte header ``struct "!BI"`` -- a code (the
opcode of a request, the status of a response) and the payload length in
network byte order -- then the payload.

The pieces:

* :class:`FrameDecoder` -- ``receive_data(bytes)`` then ``next_frame()``
  until it returns ``None``.  Any split of the stream gives the same frames.
  A declared length above ``max_frame`` raises :class:`ProtocolError` from
  the header alone, before any payload is buffered.
* :func:`encode_frame`, :func:`encode_put_payload`, :func:`decode_put_payload`.
* :func:`answer_datagram` -- the protocol over UDP: one datagram is one
  frame, whose reply (bytes), :class:`Work` to wait for first, or nothing
  (a datagram too short to hold a header is dropped) is what a datagram
  server sends back; :func:`work_reply` is the OK reply once the work is
  done.  Every datagram variant calls it and holds only its concurrency.
* :class:`FramedSession` and :class:`RawSession` -- one per connection; a
  server calls ``receive_data(data)`` with the bytes it read and writes
  whatever bytes it returns, calls ``resume()`` while ``pending`` says
  requests are held back, and closes once ``closing`` is true (the
  :class:`Session` contract).  They call a *handler* (``Request ->
  Response``, normally :meth:`servers.service.FileService.handle`) for every
  complete request.  :class:`SessionFactory` makes one per connection.

The fast path.  One whole request per read, nothing buffered, is what every
benchmark does a million times, so it takes the fast path: the only code in
the servers that trades plainness for speed, in three pieces --
:meth:`FrameDecoder.whole_frame` (no copy through the buffer; the
:class:`Frame` built with ``tuple.__new__``, skipping NamedTuple's
Python-level ``__new__``), the first branch of
:meth:`FramedSession.receive_data` (the header packed directly) and
``FileService._echo`` (its :class:`Response` built with ``tuple.__new__``).
Each sits beside its plain version -- ``next_frame``,
:meth:`FramedSession.receive_data_plain`, ``Response.ok`` -- which is its
specification; ``tests/test_protocol.py`` checks that both give the same
bytes however the stream is split.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import NamedTuple, Protocol

HEADER = struct.Struct("!BI")
HEADER_SIZE = HEADER.size  # 5
_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack
NAME_LENGTH = struct.Struct("!H")
WORK_HEADER = struct.Struct("!BI")  # WORK's payload: kind, amount, then the reply's bytes
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
DEFAULT_MAX_WORK = 10_000_000  # --max-work: the largest WORK amount, µs or compute units (10 s)
REPLY_BUDGET = 1024 * 1024  # replies built by one receive_data or resume call, about
MAX_PAYLOAD = 0xFFFFFFFF  # what the uint32 length field can say
# UDP over IPv4: a datagram carries at most 65,535 - 8 (UDP header) - 20 (IP header)
# = 65,507 bytes, so a frame's payload is at most 65,507 - 5 = 65,502 bytes, both ways.
MAX_DATAGRAM = 65_507
MAX_DATAGRAM_PAYLOAD = MAX_DATAGRAM - 5


class Op(enum.IntEnum):
    ECHO = 0x01
    LIST = 0x02
    GET = 0x03
    PUT = 0x04
    QUIT = 0x05
    WORK = 0x06


class WorkKind(enum.IntEnum):
    """What a WORK request asks the handler to do (docs/PROTOCOL.md, "WORK")."""

    WAIT = 1  # wait `amount` µs the model's own way: a call to a backend
    COMPUTE = 2  # `amount` units of a pure-Python kernel (holds the GIL)
    BLOCK = 3  # block the OS thread `amount` µs: a blocking library call, whatever the model
    OFFLOAD = 4  # the same blocking call, made the way the model's framework recommends


class Status(enum.IntEnum):
    OK = 0
    ERROR = 1


class ProtocolError(Exception):
    """Malformed input.  The only exception the decoding functions raise."""


# NamedTuples rather than dataclasses: they are built once per request on
# the hot path, and a tuple is the cheapest object Python can make.
class Frame(NamedTuple):
    """One frame: ``code`` is an opcode (request) or a status (response)."""

    code: int
    payload: bytes


class Response(NamedTuple):
    status: int  # a Status
    payload: bytes = b""
    close: bool = False  # QUIT: send this, then close the connection

    @classmethod
    def ok(cls, payload: bytes = b"", close: bool = False) -> Response:
        return cls(Status.OK, payload, close)

    @classmethod
    def error(cls, message: str, close: bool = False) -> Response:
        return cls(Status.ERROR, message.encode("utf-8", "replace"), close)


class Work(NamedTuple):
    """A WORK request the handler hands to the model: wait, or offload a blocking call.

    The handler does compute and block itself (they are the handler's own
    code, the same in every model); *waiting* is the model's business -- a
    sleeping thread, a timer in a reactor's heap, ``asyncio.sleep`` -- so
    the session stops there and sets ``session.work``.  The server waits
    ``seconds`` its own way and calls ``session.work_done()``, which returns
    the OK reply carrying ``payload`` and the replies to any requests
    pipelined behind it.
    """

    kind: int  # WorkKind.WAIT or WorkKind.OFFLOAD
    amount: int  # µs
    payload: bytes  # what the OK reply carries once the work is done

    @property
    def seconds(self) -> float:
        return self.amount / 1_000_000


Request = Frame  # a request is a frame whose code is an opcode
_new_frame = tuple.__new__  # Frame(...) without its Python-level __new__: the fast path only
# A handler answers a request, or hands it to the model as Work to be waited for.
Handler = Callable[[Request], "Response | Work"]


def encode_frame(code: int, payload: bytes = b"") -> bytes:
    """Header + payload.  ``code`` must fit a uint8 and the payload a uint32."""
    if not 0 <= code <= 0xFF:
        raise ValueError(f"code {code} does not fit in one byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload longer than a uint32 length can say")
    return HEADER.pack(code, len(payload)) + payload


def encode_response(response: Response) -> bytes:
    return encode_frame(response.status, response.payload)


# The replies a server sends on its own, not to a request (docs/PROTOCOL.md,
# "Timeouts and limits"); each is followed by a close.
TIMEOUT_REPLY = encode_response(Response.error("request timeout", close=True))
BUSY_REPLY = encode_response(Response.error("server busy", close=True))


# -- the protocol over UDP (docs/PROTOCOL.md, "Datagrams") ---------------------

# What a datagram cannot carry: a file may be larger than any datagram, and a
# datagram has no connection to QUIT.  Answered without calling the handler, so
# that nothing over UDP ever touches the served directory.
USE_TCP = frozenset({0x02, 0x03, 0x04, 0x05})  # LIST, GET, PUT, QUIT


def answer_datagram(
    datagram: bytes, handler: Handler, max_payload: int = MAX_DATAGRAM_PAYLOAD
) -> bytes | Work | None:
    """The reply to one request datagram: bytes to send back, :class:`Work`, or ``None``.

    One datagram is one frame: the 5-byte header, then exactly the payload
    its length field declares.  ``None`` (drop, send nothing): a datagram
    shorter than a header -- there is no request to answer, and a reply to
    noise would make the server a reflector.  An ERROR reply: a length field
    that disagrees with the datagram's size (a truncated or padded frame), a
    payload over ``max_payload`` (at most :data:`MAX_DATAGRAM_PAYLOAD`), and
    LIST, GET, PUT and QUIT (``use TCP``).  Everything else goes to the
    handler as it would over TCP: ECHO, WORK and unknown opcodes.  A WORK
    wait or offload comes back as :class:`Work`: the server waits its own
    way, then sends :func:`work_reply` of it.
    """
    if len(datagram) < HEADER_SIZE:
        return None
    code, length = _unpack_header(datagram)
    size = len(datagram) - HEADER_SIZE
    if length != size:
        return _datagram_error(f"length field {length} but the datagram carries {size} bytes")
    if size > max_payload:
        return _datagram_error(f"payload of {size} bytes is over the maximum of {max_payload}")
    if code in USE_TCP:
        return _datagram_error(f"use TCP: {Op(code).name} needs a connection (files do not fit)")
    response = handler(_new_frame(Frame, (code, datagram[HEADER_SIZE:])))
    if type(response) is Work:
        return response
    status, payload, _ = response
    if len(payload) > MAX_DATAGRAM_PAYLOAD:  # cannot happen for ECHO or WORK; never send one
        return _datagram_error("reply too large for a datagram")
    return _pack_header(status, len(payload)) + payload


def work_reply(work: Work) -> bytes:
    """The OK reply to a WORK datagram once the server has waited ``work.seconds``."""
    return _pack_header(Status.OK, len(work.payload)) + work.payload


def _datagram_error(message: str) -> bytes:
    return encode_response(Response.error(message))


def encode_put_payload(name: str | bytes, data: bytes) -> bytes:
    """PUT payload: name length (uint16), the UTF-8 name, then the file's bytes."""
    raw = name.encode("utf-8") if isinstance(name, str) else name
    if len(raw) > 0xFFFF:
        raise ValueError("name longer than a uint16 length can say")
    return NAME_LENGTH.pack(len(raw)) + raw + data


def encode_work_payload(kind: int, amount: int, data: bytes = b"") -> bytes:
    """WORK payload: kind (uint8), amount (uint32: µs, or compute units), then ``data``."""
    return WORK_HEADER.pack(kind, amount) + data


def decode_put_payload(payload: bytes) -> tuple[bytes, bytes]:
    """Split a PUT payload into (raw name bytes, data).  Names are checked later."""
    if len(payload) < NAME_LENGTH.size:
        raise ProtocolError("PUT payload shorter than its 2-byte name length")
    (n,) = NAME_LENGTH.unpack_from(payload)
    end = NAME_LENGTH.size + n
    if end > len(payload):
        raise ProtocolError(f"PUT name length {n} runs past the payload")
    return bytes(payload[NAME_LENGTH.size : end]), bytes(payload[end:])


class FrameDecoder:
    """Accumulates bytes and yields whole frames, however the stream was split."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame  # the largest payload accepted (``--max-frame``)
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def next_frame(self) -> Frame | None:
        """The next whole frame, or ``None`` until more bytes arrive.

        Raises :class:`ProtocolError` as soon as a header declares a payload
        longer than ``max_frame``; the stream cannot be resynchronised after
        that, so the caller must close.
        """
        buf = self._buffer
        if len(buf) < HEADER_SIZE:
            return None
        code, length = HEADER.unpack_from(buf)
        if length > self.max_frame:
            raise ProtocolError(f"frame of {length} bytes is over the maximum of {self.max_frame}")
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return Frame(code, payload)

    def frames(self) -> list[Frame]:
        """Every whole frame buffered now (``next_frame`` until ``None``)."""
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    def whole_frame(self, data: bytes) -> Frame | None:
        """Fast path: ``data`` as a frame if it is exactly one, else ``None`` (nothing consumed).

        Only when nothing is buffered and ``data`` holds one whole frame
        within ``max_frame``; then it is what ``receive_data(data)`` followed
        by ``next_frame()`` would return, without copying ``data`` into the
        buffer and out again.  Otherwise the caller takes the plain path.
        """
        if self._buffer or len(data) < HEADER_SIZE:
            return None
        code, length = _unpack_header(data)
        if length > self.max_frame or len(data) != HEADER_SIZE + length:
            return None
        return _new_frame(Frame, (code, data[HEADER_SIZE:]))


class Session(Protocol):
    """What every server drives, one per connection.

    ``receive_data(data)`` takes the bytes just read (never empty: the end
    of the stream is the server's business, not the session's) and returns
    the bytes to send.  ``pending`` is true while whole requests wait
    unanswered because one call's reply budget was spent: once the replies
    it has are on their way, the server calls ``resume()`` for more -- and
    reads no more input meanwhile.  ``closing`` is true after QUIT or a
    fatal framing error: send what was returned, then close.

    ``work`` is a :class:`Work` the server must do before anything else is
    answered (a WORK request to wait or to offload): send what was
    returned, wait ``work.seconds`` the model's own way -- reading no more
    input meanwhile -- then send what ``work_done()`` returns.  ``pending``
    is false while ``work`` is set: the requests behind it wait on the work.
    """

    closing: bool
    pending: bool
    work: Work | None

    @property
    def in_request(self) -> bool:
        """True while part of a request has arrived and the rest has not."""
        ...

    def receive_data(self, data: bytes) -> bytes: ...

    def resume(self) -> bytes: ...

    def work_done(self) -> bytes: ...


class FramedSession:
    """Protocol v1 for one connection: request frames in, response bytes out.

    ``receive_data`` returns the encoded responses to the requests completed
    by ``data``, in request order (pipelining works because requests are
    answered strictly in turn).  One call builds at most about
    :data:`REPLY_BUDGET` bytes of replies: 64 KiB of pipelined 6-byte GET
    requests for a large file would otherwise build gigabytes before the
    server's backpressure could act.  Requests beyond the budget stay
    buffered, ``pending`` says so and ``resume()`` answers the next budget's
    worth.  After a QUIT or a fatal framing error it sets ``closing``; the
    server writes what was returned, then closes, and ignores anything the
    peer sent after.  A WORK request the handler hands back as :class:`Work`
    stops the answering there: ``work`` holds it until the server calls
    :meth:`work_done`, and bytes received meanwhile are only buffered.

    ``receive_data`` is :meth:`receive_data_plain` plus one fast path (see
    the module docstring); the plain method is its specification.
    """

    __slots__ = ("_decoder", "_handler", "pending", "closing", "in_request", "work")

    def __init__(self, handler: Handler, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._decoder = FrameDecoder(max_frame)
        self._handler = handler
        self.pending = False  # whole requests wait, held back by the reply budget
        self.closing = False
        # Part of a request has arrived and the rest has not: what a server's
        # request timeout watches (servers.tuning.Limits).  While ``pending``,
        # whole requests wait on the *server*, not the client, so it is false.
        # A plain attribute, set where the buffer changes (the plain path): the
        # servers read it after every recv, and the fast path never changes it
        # (it runs only on an empty buffer, and leaves it empty).
        self.in_request = False
        self.work: Work | None = None  # handed to the server; nothing is answered until it is done

    @property
    def max_frame(self) -> int:
        """The largest payload this session accepts (``--max-frame``)."""
        return self._decoder.max_frame

    def receive_data(self, data: bytes) -> bytes:
        """The encoded replies to the requests ``data`` completes: the fast path, then the plain."""
        if self.closing:
            return b""
        request = self._decoder.whole_frame(data)
        if request is None or self.work is not None:
            return self.receive_data_plain(data)
        # Fast path: ``data`` is one whole request and nothing else waits --
        # by far the commonest case.  No budget to count, no list to join.
        response = self._handler(request)
        if type(response) is Work:  # the model waits; work_done() answers
            self.work = response
            return b""
        status, payload, close = response
        if close:
            self.closing = True
        return _pack_header(status, len(payload)) + payload

    def receive_data_plain(self, data: bytes) -> bytes:
        """What :meth:`receive_data` does, without the fast path: buffer, then answer."""
        if not data:
            raise ValueError("receive_data needs bytes; resume() answers held-back requests")
        if self.closing:
            return b""
        self._decoder.receive_data(data)
        if self.work is not None:  # answered in turn once the work is done
            return b""
        return self._answer()

    def resume(self) -> bytes:
        """Answer requests held back by the reply budget (``b""`` when none wait)."""
        if self.closing or not self.pending:
            return b""
        return self._answer()

    def work_done(self) -> bytes:
        """The model has done ``work``: its OK reply, then the requests buffered behind it."""
        work = self.work
        if work is None:
            raise ValueError("work_done() without work handed out")
        self.work = None
        reply = _pack_header(Status.OK, len(work.payload)) + work.payload
        if self.closing:
            return reply
        return reply + self._answer()

    def _answer(self) -> bytes:
        """Answer the buffered whole requests, in order, up to the reply budget."""
        out = []
        size = 0
        self.pending = False
        while True:
            if size >= REPLY_BUDGET:
                self.pending = self._decoder.buffered >= HEADER_SIZE
                break
            try:
                frame = self._decoder.next_frame()
            except ProtocolError as exc:
                out.append(encode_response(Response.error(str(exc))))
                self.closing = True
                break
            if frame is None:
                break
            response = self._handler(frame)
            if type(response) is Work:  # the model waits; work_done() answers the rest
                self.work = response
                break
            out.append(encode_response(response))
            size += HEADER_SIZE + len(response.payload)
            if response.close:
                self.closing = True
                break
        # While work is out, buffered requests wait on the server, not the client.
        self.in_request = not self.pending and self.work is None and self._decoder.buffered > 0
        return b"".join(out)


class RawSession:
    """Raw mode: every byte read is written back, no framing (uvloop's vmbench)."""

    __slots__ = ("closing",)
    pending = False  # output is input: nothing is ever held back
    in_request = False  # no frames: only the idle timeout applies
    work = None  # no requests, so no work

    def __init__(self) -> None:
        self.closing = False

    def receive_data(self, data: bytes) -> bytes:
        return bytes(data)

    def resume(self) -> bytes:
        return b""

    def work_done(self) -> bytes:
        raise ValueError("a raw session hands out no work")


class SessionFactory:
    """Makes the session for each new connection, and says what they speak.

    The command line builds one and passes it to a variant's ``serve`` as
    ``new_session``: calling it returns a fresh session.  ``protocol`` and
    ``max_frame`` are there for a variant that does not serve in Python
    (``native_epoll`` hands them to its binary).
    """

    __slots__ = ("protocol", "max_frame", "handler")

    def __init__(self, protocol: str, max_frame: int, handler: Handler | None = None) -> None:
        if protocol not in ("framed", "raw"):
            raise ValueError(f"protocol must be 'framed' or 'raw', not {protocol!r}")
        if protocol == "framed" and handler is None:
            raise ValueError("the framed protocol needs a handler")
        self.protocol = protocol
        self.max_frame = max_frame
        self.handler = handler

    def datagram(self, data: bytes) -> bytes | Work | None:
        """One request datagram's reply (:func:`answer_datagram`); raw mode returns it as is."""
        if self.handler is None or self.protocol == "raw":
            return bytes(data)
        return answer_datagram(data, self.handler, min(self.max_frame, MAX_DATAGRAM_PAYLOAD))

    def __call__(self) -> Session:
        if self.handler is None or self.protocol == "raw":
            return RawSession()
        return FramedSession(self.handler, self.max_frame)
