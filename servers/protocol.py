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
* :class:`FramedSession` and :class:`RawSession` -- one per connection; a
  server calls ``receive_data(data)`` and writes whatever bytes it returns,
  then closes once ``closing`` is true.  They call a *handler*
  (``Request -> Response``, normally :meth:`servers.service.FileService.handle`)
  for every complete request.
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
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
REPLY_BUDGET = 1024 * 1024  # replies built by one receive_data call, about
MAX_PAYLOAD = 0xFFFFFFFF  # what the uint32 length field can say


class Op(enum.IntEnum):
    ECHO = 0x01
    LIST = 0x02
    GET = 0x03
    PUT = 0x04
    QUIT = 0x05


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


Request = Frame  # a request is a frame whose code is an opcode
_new_frame = tuple.__new__  # Frame(...) without the Python-level __new__: hot path only
Handler = Callable[[Request], Response]


def encode_frame(code: int, payload: bytes = b"") -> bytes:
    """Header + payload.  ``code`` must fit a uint8 and the payload a uint32."""
    if not 0 <= code <= 0xFF:
        raise ValueError(f"code {code} does not fit in one byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload longer than a uint32 length can say")
    return HEADER.pack(code, len(payload)) + payload


def encode_response(response: Response) -> bytes:
    return encode_frame(response.status, response.payload)


def encode_put_payload(name: str | bytes, data: bytes) -> bytes:
    """PUT payload: name length (uint16), the UTF-8 name, then the file's bytes."""
    raw = name.encode("utf-8") if isinstance(name, str) else name
    if len(raw) > 0xFFFF:
        raise ValueError("name longer than a uint16 length can say")
    return NAME_LENGTH.pack(len(raw)) + raw + data


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

    __slots__ = ("_buffer", "_need", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
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


class Session(Protocol):
    """What every server drives, one per connection.

    ``receive_data(data)`` returns the bytes to send.  ``pending`` is true
    while whole requests wait unanswered because the reply budget of one
    call was spent: the server calls ``receive_data(b"")`` to answer more
    once the replies it has are on their way (and reads no more input
    meanwhile).  ``closing`` is true after QUIT or a fatal framing error:
    send what was returned, then close.
    """

    closing: bool
    pending: bool

    def receive_data(self, data: bytes) -> bytes: ...


class FramedSession:
    """Protocol v1 for one connection: request frames in, response bytes out.

    ``receive_data`` returns the encoded responses to the requests completed
    by ``data``, in request order (pipelining works because requests are
    answered strictly in turn).  One call builds at most about
    :data:`REPLY_BUDGET` bytes of replies: 64 KiB of pipelined 6-byte GET
    requests for a large file would otherwise build gigabytes before the
    server's backpressure could act.  Requests beyond the budget stay
    buffered and ``pending`` says so.  After a QUIT or a fatal framing error
    it sets ``closing``; the server writes what was returned, then closes,
    and ignores anything the peer sent after.
    """

    __slots__ = ("_decoder", "_handler", "_max_frame", "pending", "closing")

    def __init__(self, handler: Handler, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._decoder = FrameDecoder(max_frame)
        self._handler = handler
        self._max_frame = max_frame
        self.pending = False  # whole requests wait, held back by the reply budget
        self.closing = False

    @property
    def max_frame(self) -> int:
        """The largest payload this session accepts (``--max-frame``)."""
        return self._max_frame

    def receive_data(self, data: bytes) -> bytes:
        if self.closing:
            return b""
        # Fast path, by far the common case: nothing buffered and ``data`` is
        # exactly one whole frame -- answer it without copying into a buffer.
        if not self._decoder._buffer and len(data) >= HEADER_SIZE:
            code, length = _unpack_header(data)
            if length <= self._max_frame and len(data) == HEADER_SIZE + length:
                request = _new_frame(Frame, (code, data[HEADER_SIZE:]))
                status, payload, close = self._handler(request)
                if close:
                    self.closing = True
                return _pack_header(status, len(payload)) + payload
        self._decoder.receive_data(data)
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
            out.append(encode_frame(response.status, response.payload))
            size += HEADER_SIZE + len(response.payload)
            if response.close:
                self.closing = True
                break
        return b"".join(out)


class RawSession:
    """Raw mode: every byte read is written back, no framing (uvloop's vmbench)."""

    __slots__ = ("closing",)
    pending = False  # output is input: nothing is ever held back

    def __init__(self) -> None:
        self.closing = False

    def receive_data(self, data: bytes) -> bytes:
        return bytes(data)
