"""Follow a client's frames in the raw byte stream, ahead of the library that parses them.

Libraries hold a frame until it is complete, and some check a text
message's UTF-8 only once the whole message is in. RFC 6455 section 8.1 wants
invalid UTF-8 to fail the connection as soon as it arrives, and a frame too big
to accept should be refused from its header, before its payload is buffered.
A backend feeds every chunk it reads from the socket to a `FrameCheck` before
handing it to its library; the check reads only frame headers and, where
needed, unmasks text payloads into an incremental UTF-8 decoder. It judges
three things and leaves every other rule to the library:

- a data frame longer than the frame limit: 1009;
- a frame from the client without a mask: 1002 (RFC 6455 section 5.1);
- text that is not UTF-8, at the first byte that makes it so: 1007.

Uncompressed text is checked as it arrives, except a message in one frame
that is already whole in the chunk: the library checks that one at once,
and skipping it keeps the common small message cheap. Compressed messages
(RSV1) are the library's to check once inflated.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from fastrapi.core.codes import CloseCode

_OPCODE_CONTINUATION = 0x0
_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_CONTROL = 0x8  # opcodes from here on are control frames
_FIN = 0x80
_RSV1 = 0x40
_MASKED = 0x80
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


@dataclass(frozen=True, slots=True)
class FrameViolation:
    """Why the connection must fail, and where the offending frame began.

    ``frame_start`` is the offset of that frame's first byte in the chunk
    that revealed the violation; it is negative or zero when the frame began
    in an earlier chunk. The bytes before it are sound and may still be
    parsed (the messages they complete are delivered before the failure).
    """

    code: int
    reason: str
    frame_start: int


class FrameCheck:
    """Checks one connection's incoming frames; feed it every byte in order."""

    __slots__ = (
        "_checking_frame",
        "_chunk_size",
        "_checking_message",
        "_decoder",
        "_fed",
        "_fin",
        "_frame_start",
        "_head",
        "_header_size",
        "_mask",
        "_remaining",
        "_unmasked",
        "check_text",
        "max_frame_size",
        "violation",
    )

    def __init__(self, max_frame_size: int, check_text: bool = True) -> None:
        self.max_frame_size = max_frame_size
        self.check_text = check_text
        self.violation: FrameViolation | None = None
        self._head = b""  # the start of a frame header split across chunks
        self._remaining = 0  # payload bytes of the current frame yet to come
        self._fed = 0  # bytes fed so far, the current chunk included
        self._frame_start = 0  # where the current frame began, counted from the stream's start
        self._mask = b""
        self._unmasked = 0  # payload bytes of the current frame seen so far
        self._fin = False
        self._checking_frame = False  # this frame's payload goes to the decoder
        self._checking_message = False  # the text message being received is checked
        self._decoder: codecs.IncrementalDecoder | None = None  # made for the first fragmented text
        self._header_size = 0
        self._chunk_size = 0

    def feed(self, data: bytes) -> FrameViolation | None:
        """Read the next chunk; return a violation once one is found (then always it)."""
        if self.violation is not None:
            return self.violation
        size = len(data)
        if 6 <= size < 132 and not (self._head or self._remaining or self._checking_message):
            # The common case, kept cheap: the chunk is one small, masked,
            # whole frame, either a control frame or a final data frame
            # (so the message is whole and the library checks it).
            first, second = data[0], data[1]
            if (
                second & _MASKED
                and (second & 0x7F) + 6 == size
                and (first & 0x0F >= _CONTROL or first & _FIN and size - 6 <= self.max_frame_size)
            ):
                self._fed += size
                return None
        elif size >= 134 and not (self._head or self._remaining or self._checking_message):
            # The same for one bigger whole frame (a 16- or 64-bit length):
            # a final data frame that fills the chunk exactly.
            first, second = data[0], data[1]
            if second == _MASKED | 126:
                length, header = (data[2] << 8) | data[3], 8
            elif second == _MASKED | 127:
                length, header = int.from_bytes(data[2:10]), 14
            else:
                length, header = -1, 0
            if (
                length + header == size
                and first & _FIN
                and first & 0x0F < _CONTROL
                and length <= self.max_frame_size
            ):
                self._fed += size
                return None
        self._chunk_size = size
        base = self._fed - len(self._head)  # the stream offset of data[0]
        self._fed += size
        if self._head:
            data = self._head + data
            self._head = b""
        index = 0
        end = len(data)
        while True:
            if self._remaining:
                take = min(self._remaining, end - index)
                if self._checking_frame and take:
                    violation = self._check_text(data[index : index + take])
                    if violation is not None:
                        return violation
                index += take
                self._remaining -= take
                if self._remaining:
                    return None
                if self._checking_frame and self._fin:
                    violation = self._check_text(b"", final=True)
                    if violation is not None:
                        return violation
            if not self._checking_message:
                index = self._skip_whole_frames(data, index, end)
            if index == end:
                return None
            violation = self._read_header(data, index, end, base)
            if violation is not None:
                return violation
            if self._head:
                return None
            index += self._header_size

    def _skip_whole_frames(self, data: bytes, index: int, end: int) -> int:
        # Many small messages in one chunk: step over each small, masked,
        # whole frame that is a control frame or a final data frame (nothing
        # to check in it) without the general path; stop at anything else.
        limit = self.max_frame_size
        while end - index >= 6:
            first, second = data[index], data[index + 1]
            length = second & 0x7F
            if length > 125 or not second & _MASKED or index + 6 + length > end:
                break
            if first & 0x0F < _CONTROL and (not first & _FIN or length > limit):
                break
            index += 6 + length
        return index

    def _read_header(self, data: bytes, index: int, end: int, base: int) -> FrameViolation | None:
        available = end - index
        if available < 2:
            self._head = data[index:end]
            return None
        first, second = data[index], data[index + 1]
        length = second & 0x7F
        size = 2
        if length == 126:
            size = 4
        elif length == 127:
            size = 10
        masked = second & _MASKED
        if masked:
            size += 4
        if available < size:
            self._head = data[index:end]
            return None
        self._frame_start = base + index
        if length == 126:
            length = int.from_bytes(data[index + 2 : index + 4])
        elif length == 127:
            length = int.from_bytes(data[index + 2 : index + 10])
            if length >> 63:
                return self._fail(CloseCode.PROTOCOL_ERROR, "a 64-bit length with its top bit set")
        if not masked:
            return self._fail(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
        opcode = first & 0x0F
        if opcode < _CONTROL and length > self.max_frame_size:
            return self._fail(CloseCode.MESSAGE_TOO_BIG, f"frame of {length} bytes exceeds max_frame_size")
        self._header_size = size
        self._remaining = length
        self._fin = bool(first & _FIN)
        self._mask = data[index + size - 4 : index + size]
        self._unmasked = 0
        if opcode >= _CONTROL or not self.check_text:
            self._checking_frame = False
            return None
        if opcode == _OPCODE_TEXT:
            # One whole frame holding the whole message: the library checks it now.
            whole = self._fin and available - size >= length
            self._checking_message = not (first & _RSV1) and not whole
            if self._checking_message:
                if self._decoder is None:
                    self._decoder = _utf8_decoder()
                else:
                    self._decoder.reset()
        elif opcode == _OPCODE_BINARY:
            self._checking_message = False
        elif opcode != _OPCODE_CONTINUATION:
            self._checking_message = False  # a reserved opcode: the library fails it
        self._checking_frame = self._checking_message
        if self._fin and length == 0 and self._checking_frame:
            return self._check_text(b"", final=True)
        return None

    def _check_text(self, masked: bytes, final: bool = False) -> FrameViolation | None:
        payload = _unmask(masked, self._mask, self._unmasked)
        self._unmasked += len(masked)
        assert self._decoder is not None  # made when the message began
        try:
            self._decoder.decode(payload, final)
        except UnicodeDecodeError:
            return self._fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message")
        if final:
            self._checking_message = self._checking_frame = False
        return None

    def _fail(self, code: int, reason: str) -> FrameViolation:
        chunk_start = self._fed - self._chunk_size
        self.violation = FrameViolation(int(code), reason, self._frame_start - chunk_start)
        return self.violation


def _unmask(data: bytes, mask: bytes, offset: int) -> bytes:
    """XOR ``data`` with ``mask``, starting ``offset`` bytes into the payload."""
    size = len(data)
    if not size:
        return data
    turn = offset % 4
    key = mask[turn:] + mask[:turn]
    keystream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data) ^ int.from_bytes(keystream)).to_bytes(size)
