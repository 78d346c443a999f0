"""The frame check that runs ahead of a library's parser (fastrapi.core.framecheck)."""

from __future__ import annotations

import codecs
import os
import struct
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi.core.framecheck import FrameCheck

MAX = 1 << 20
INVALID_SEQUENCES = [b"\xff", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xed\xa0\x80", b"\xe0\x80\xaf", b"\xf8"]


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    masked: bool = True

    def encode(self) -> bytes:
        first = (0x80 if self.fin else 0) | (0x40 if self.rsv1 else 0) | self.opcode
        size = len(self.payload)
        mask_bit = 0x80 if self.masked else 0
        if size < 126:
            head = bytes([first, mask_bit | size])
        elif size < 1 << 16:
            head = bytes([first, mask_bit | 126]) + struct.pack("!H", size)
        else:
            head = bytes([first, mask_bit | 127]) + struct.pack("!Q", size)
        if not self.masked:
            return head + self.payload
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(self.payload))
        return head + mask + masked


def fragments(opcode: int, payload: bytes, cuts: list[int]) -> list[Frame]:
    """The message ``payload`` split at ``cuts`` (byte offsets, any order)."""
    points = sorted({0, len(payload), *(cut % (len(payload) + 1) for cut in cuts)})
    parts = [payload[a:b] for a, b in zip(points, points[1:], strict=False)] or [b""]
    return [Frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1) for i, part in enumerate(parts)]


def stream(frames: list[Frame]) -> tuple[bytes, list[int]]:
    """The frames on the wire, and the offset at which each one starts."""
    data, starts = b"", []
    for frame in frames:
        starts.append(len(data))
        data += frame.encode()
    return data, starts


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


messages = st.one_of(
    st.tuples(st.just(1), st.text(max_size=300).map(str.encode)),
    st.tuples(st.just(2), st.binary(max_size=300)),
)
cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=6)


@st.composite
def valid_frames(draw: st.DrawFn) -> list[Frame]:
    frames: list[Frame] = []
    for opcode, payload in draw(st.lists(messages, min_size=1, max_size=6)):
        parts = fragments(opcode, payload, draw(cut_lists))
        for part in parts:
            if draw(st.booleans()):  # a control frame may come between fragments
                frames.append(Frame(0x9, draw(st.binary(max_size=125))))
            frames.append(part)
    return frames


@settings(max_examples=200, deadline=None)
@given(valid_frames(), cut_lists)
def test_valid_streams_pass_however_they_are_chunked(frames: list[Frame], cuts: list[int]) -> None:
    data, _ = stream(frames)
    check = FrameCheck(MAX)
    for chunk in chunked(data, cuts):
        assert check.feed(chunk) is None
    assert check.violation is None


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40),
    st.text(max_size=40),
    st.sampled_from(INVALID_SEQUENCES),
    cut_lists,
)
def test_invalid_utf8_fails_at_the_first_byte_that_makes_it_invalid(
    before: str, after: str, bad: bytes, cuts: list[int]
) -> None:
    payload = before.encode() + bad + after.encode()
    frames = [Frame(0x2, b"binary first"), *fragments(0x1, payload, cuts)]
    data, starts = stream(frames)
    # The offset (in the stream) of the byte that makes the text invalid.
    decoder = codecs.getincrementaldecoder("utf-8")()
    bad_index = next(i for i in range(len(payload)) if _fails(decoder, payload[i : i + 1]))
    bad_at = _stream_offset(frames, starts, bad_index)
    offending = max(start for start in starts if start <= bad_at)
    check = FrameCheck(MAX)
    for position in range(len(data)):  # one byte at a time: nothing is whole early
        violation = check.feed(data[position : position + 1])
        if position < bad_at:
            assert violation is None, position
        else:
            assert violation is not None
            assert violation.code == 1007
            assert violation.frame_start == offending - position
            break


def _fails(decoder: codecs.IncrementalDecoder, byte: bytes) -> bool:
    try:
        decoder.decode(byte)
    except UnicodeDecodeError:
        return True
    return False


def _stream_offset(frames: list[Frame], starts: list[int], payload_index: int) -> int:
    """Where byte ``payload_index`` of the text message (frames[1:]) is in the stream."""
    for frame, start in zip(frames[1:], starts[1:], strict=True):
        if payload_index < len(frame.payload):
            header = len(frame.encode()) - len(frame.payload)
            return start + header + payload_index
        payload_index -= len(frame.payload)
    raise AssertionError("index beyond the message")


def test_a_bad_fragment_fails_as_soon_as_it_arrives() -> None:
    # Autobahn 6.4.1: the message's later fragments have not been sent yet.
    check = FrameCheck(MAX)
    assert check.feed(Frame(0x1, "κόσμε".encode(), fin=False).encode()) is None
    violation = check.feed(Frame(0x0, b"\xf4\x90\x80\x80", fin=False).encode())
    assert violation is not None and (violation.code, violation.frame_start) == (1007, 0)
    assert check.feed(Frame(0x0, b"edited").encode()) is violation  # and it stays failed


def test_a_whole_one_frame_message_is_left_to_the_library_but_a_partial_one_is_not() -> None:
    frame = Frame(0x1, b"abc\xffdef").encode()
    assert FrameCheck(MAX).feed(frame) is None  # the library checks it in the same step
    check = FrameCheck(MAX)
    assert check.feed(frame[:-3]) is not None  # Autobahn 6.4.3: the rest is still to come


def test_an_unfinished_code_point_at_the_end_of_a_message_fails() -> None:
    check = FrameCheck(MAX)
    assert check.feed(Frame(0x1, b"ok\xe2\x82", fin=False).encode()) is None
    violation = check.feed(Frame(0x0, b"", fin=True).encode())
    assert violation is not None and violation.code == 1007


def test_compressed_text_is_not_checked_before_inflating() -> None:
    check = FrameCheck(MAX)
    assert check.feed(Frame(0x1, b"\xff\xfe deflated", fin=False, rsv1=True).encode()) is None
    assert check.feed(Frame(0x0, b"\xff more").encode()) is None


def test_binary_is_not_checked() -> None:
    check = FrameCheck(MAX)
    assert check.feed(Frame(0x2, b"\xff" * 10, fin=False).encode()) is None
    assert check.feed(Frame(0x0, b"\xff").encode()) is None


def test_text_checking_can_be_turned_off() -> None:
    check = FrameCheck(MAX, check_text=False)
    assert check.feed(Frame(0x1, b"\xff", fin=False).encode()) is None


def test_a_frame_over_the_limit_fails_from_its_header() -> None:
    check = FrameCheck(1000)
    good = Frame(0x2, b"x" * 1000).encode()
    big = Frame(0x2, b"x" * 1001).encode()
    violation = check.feed(good + big[:8])  # the header, none of the payload
    assert violation is not None
    assert (violation.code, violation.frame_start) == (1009, len(good))
    assert "max_frame_size" in violation.reason


def test_the_frame_limit_counts_frames_not_messages() -> None:
    check = FrameCheck(1000)
    for frame in fragments(0x2, b"x" * 5000, [1000, 2000, 3000, 4000]):
        assert check.feed(frame.encode()) is None


def test_control_frames_are_not_held_to_the_frame_limit() -> None:
    assert FrameCheck(10).feed(Frame(0x9, b"p" * 125).encode()) is None


def test_unmasked_frames_fail_with_1002() -> None:
    check = FrameCheck(MAX)
    masked = Frame(0x1, b"fine").encode()
    violation = check.feed(masked + Frame(0x1, b"bare", masked=False).encode())
    assert violation is not None
    assert (violation.code, violation.frame_start) == (1002, len(masked))


def test_a_64_bit_length_with_its_top_bit_set_fails_with_1002() -> None:
    head = bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63) + b"mask"
    violation = FrameCheck(MAX).feed(head)
    assert violation is not None and violation.code == 1002


def test_a_header_split_across_chunks_is_reassembled() -> None:
    check = FrameCheck(1000)
    big = Frame(0x2, b"y" * 70_000).encode()  # a 64-bit length: a 14-byte header
    assert check.feed(Frame(0x2, b"first").encode() + big[:3]) is None
    violation = check.feed(big[3:14])
    assert violation is not None
    assert (violation.code, violation.frame_start) == (1009, -3)


def test_one_small_frame_per_chunk_is_still_held_to_every_rule() -> None:
    # The cheap path for a chunk holding exactly one small frame.
    violation = FrameCheck(10).feed(Frame(0x2, b"x" * 20).encode())
    assert violation is not None and violation.code == 1009
    violation = FrameCheck(MAX).feed(Frame(0x2, b"bare", masked=False).encode())
    assert violation is not None and violation.code == 1002
    violation = FrameCheck(MAX).feed(Frame(0x1, b"\xff", fin=False).encode())
    assert violation is not None and violation.code == 1007
    check = FrameCheck(MAX)  # a final fragment of a checked message is checked too
    assert check.feed(Frame(0x1, b"ok", fin=False).encode()) is None
    violation = check.feed(Frame(0x0, b"\xc0").encode())
    assert violation is not None and violation.code == 1007


def test_many_small_frames_in_one_chunk_are_still_held_to_every_rule() -> None:
    # The cheap path over runs of small whole frames stops at anything it cannot judge.
    whole = b"".join(Frame(opcode, b"fine").encode() for opcode in (0x1, 0x2, 0x9, 0xA))
    cases = [
        (Frame(0x2, b"x" * 20), 10, 1009),  # over the frame limit
        (Frame(0x2, b"bare", masked=False), 100, 1002),
        (Frame(0x1, b"\xff", fin=False), 100, 1007),  # a fragment, checked as it comes
    ]
    for bad, limit, code in cases:
        violation = FrameCheck(limit).feed(whole + bad.encode() + whole)
        assert violation is not None
        assert (violation.code, violation.frame_start) == (code, len(whole))
