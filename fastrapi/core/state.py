"""The WebSocket connection state machine.

Rules, as h11 keeps its own:

1. Everything that changes a connection's state goes through `ConnectionState`;
   nothing else assigns a state.
2. Transitions live in the `TRANSITIONS` table, and what each operation may do
   in each state lives in the `RULES` table; no ``if`` chains elsewhere.
3. A call the state does not allow is a programming error (`WebSocketStateError`,
   a `RuntimeError`) whose message says what to call instead; a send or ping
   after the connection ended is not an error of the program but of the
   network, and raises `WebSocketDisconnect` (a `ConnectionError`).

The states are the seed's numbers: ``ws.client_state == 1`` means connected.

    CONNECTING --accept--> CONNECTED --local_close--> CLOSING
        |                      |                         |
        +--deny--+             +--peer_closed--+         +--peer_closed--+
                 v                             v                         v
            DISCONNECTED                  DISCONNECTED              DISCONNECTED
"""

from __future__ import annotations

from enum import Enum, IntEnum

from fastrapi.core.exceptions import WebSocketStateError


class WebSocketState(IntEnum):
    CONNECTING = 0  # handshake received, not answered yet
    CONNECTED = 1  # 101 sent, messages flow both ways
    CLOSING = 2  # we sent a Close frame and await the peer's (RFC 6455 7.1.2)
    DISCONNECTED = 3  # closing handshake done, connection lost, or handshake denied


class Transition(Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call
    ACCEPT = "accept"  # 101 Switching Protocols sent
    DENY = "deny"  # an HTTP error answered the handshake
    LOCAL_CLOSE = "local_close"  # we sent a Close frame
    PEER_CLOSED = "peer_closed"  # the closing handshake finished, or the connection was lost


TRANSITIONS: dict[WebSocketState, dict[Transition, WebSocketState]] = {
    WebSocketState.CONNECTING: {
        Transition.ACCEPT: WebSocketState.CONNECTED,
        Transition.DENY: WebSocketState.DISCONNECTED,
    },
    WebSocketState.CONNECTED: {
        Transition.LOCAL_CLOSE: WebSocketState.CLOSING,
        Transition.PEER_CLOSED: WebSocketState.DISCONNECTED,
    },
    WebSocketState.CLOSING: {
        Transition.PEER_CLOSED: WebSocketState.DISCONNECTED,
    },
    WebSocketState.DISCONNECTED: {},
}


class Operation(Enum):
    __hash__ = object.__hash__  # as for Transition: these key the RULES table
    ACCEPT = "accept"
    DENY = "deny"
    RECEIVE = "receive"
    SEND = "send"
    PING = "ping"
    CLOSE = "close"


class Verdict(Enum):
    PROCEED = "proceed"  # do it
    DISCONNECTED = "disconnected"  # raise WebSocketDisconnect
    ALREADY_DONE = "already_done"  # nothing to do: close() is idempotent


_ACCEPT_FIRST = "call accept() before {call}"
_ALREADY_ACCEPTED = "accept() was already called; the connection is open"
_ALREADY_CLOSED = (
    "{call} is only possible before the handshake is answered; this connection is already closing or closed"
)
_DENY_AFTER_ACCEPT = (
    "deny() is only possible before accept(); call close(code, reason) to end an open connection"
)

_P, _D, _DONE = Verdict.PROCEED, Verdict.DISCONNECTED, Verdict.ALREADY_DONE

# For each state and operation: the verdict, or the misuse message to raise.
RULES: dict[WebSocketState, dict[Operation, Verdict | str]] = {
    WebSocketState.CONNECTING: {
        Operation.ACCEPT: _P,
        Operation.DENY: _P,
        Operation.RECEIVE: _ACCEPT_FIRST,
        Operation.SEND: _ACCEPT_FIRST,
        Operation.PING: _ACCEPT_FIRST,
        Operation.CLOSE: _P,  # answers the handshake with HTTP 403
    },
    WebSocketState.CONNECTED: {
        Operation.ACCEPT: _ALREADY_ACCEPTED,
        Operation.DENY: _DENY_AFTER_ACCEPT,
        Operation.RECEIVE: _P,
        Operation.SEND: _P,
        Operation.PING: _P,
        Operation.CLOSE: _P,
    },
    # Receiving stays possible after the end: messages that arrived before the
    # Close are delivered first, then WebSocketDisconnect.
    WebSocketState.CLOSING: {
        Operation.ACCEPT: _ALREADY_CLOSED,
        Operation.DENY: _ALREADY_CLOSED,
        Operation.RECEIVE: _P,
        Operation.SEND: _D,
        Operation.PING: _D,
        Operation.CLOSE: _DONE,
    },
    WebSocketState.DISCONNECTED: {
        Operation.ACCEPT: _ALREADY_CLOSED,
        Operation.DENY: _ALREADY_CLOSED,
        Operation.RECEIVE: _P,
        Operation.SEND: _D,
        Operation.PING: _D,
        Operation.CLOSE: _DONE,
    },
}


class ConnectionState:
    """One connection's state; pure, so tests can drive it without sockets."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = WebSocketState.CONNECTING

    def check(self, operation: Operation, call: str) -> Verdict:
        """What ``operation`` may do now; raises if the program should not call it.

        ``call`` names the method the user called (``"receive_text()"``), so the
        error message names it too.

        Raises:
            WebSocketStateError: the state forbids ``operation``; the message
                says what to call instead.
        """
        rule = RULES[self.state][operation]
        if isinstance(rule, str):
            raise WebSocketStateError(rule.format(call=call))
        return rule

    def apply(self, transition: Transition) -> WebSocketState:
        """Move along ``transition``; a transition the table lacks is a bug in fastrapi."""
        try:
            self.state = TRANSITIONS[self.state][transition]
        except KeyError:
            raise AssertionError(
                f"fastrapi bug: no transition {transition.value} from {self.state.name}"
            ) from None
        return self.state

    def try_apply(self, transition: Transition) -> bool:
        """Move along ``transition`` if the table has it; report whether it did."""
        target = TRANSITIONS[self.state].get(transition)
        if target is None:
            return False
        self.state = target
        return True
