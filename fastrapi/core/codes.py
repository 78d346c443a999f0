"""Close codes (RFC 6455 section 7.4) and which of them an endpoint may send."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# 1004 is reserved; 1005, 1006 and 1015 only ever describe a close locally
# (section 7.4.1); 1016-2999 are for future RFCs; 3000-4999 are for libraries
# and applications. 1012-1014 are registered with IANA since the RFC.
_SENDABLE_BELOW_3000 = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))

MAX_REASON_BYTES = 123  # a control frame payload is at most 125 bytes (5.5)


def is_sendable(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame on the wire."""
    return code in _SENDABLE_BELOW_3000 or 3000 <= code <= 4999


def check_close(code: int, reason: str) -> None:
    """Raise `ValueError` unless ``code`` and ``reason`` may be sent in a Close frame."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"close code must be an int, not {type(code).__name__}")
    if not is_sendable(code):
        raise ValueError(
            f"close code {code} may not be sent (RFC 6455 section 7.4); use 1000 for a "
            "normal close, 1008 for a policy violation, or an application code 4000-4999"
        )
    if not isinstance(reason, str):
        raise TypeError(f"close reason must be a str, not {type(reason).__name__}")
    if len(reason.encode()) > MAX_REASON_BYTES:
        raise ValueError(
            f"close reason is {len(reason.encode())} bytes in UTF-8; "
            f"at most {MAX_REASON_BYTES} fit in a Close frame"
        )
