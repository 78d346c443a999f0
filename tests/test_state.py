"""The connection state machine: first on its own, then through a real WebSocket in memory."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect, WebSocketState, WebSocketStateError
from fastrapi.backends.memory import Accepted, MemoryClient, memory_connection
from fastrapi.core.events import Ping, Pong, TextMessage
from fastrapi.core.state import ConnectionState, Operation, Transition, Verdict
from fastrapi.core.transport import Response

pytestmark = pytest.mark.anyio

CONNECTING, CONNECTED, CLOSING, DISCONNECTED = (
    WebSocketState.CONNECTING,
    WebSocketState.CONNECTED,
    WebSocketState.CLOSING,
    WebSocketState.DISCONNECTED,
)

# -- the numbers ---------------------------------------------------------------


def test_states_are_the_seeds_numbers() -> None:
    assert [(state.name, state.value) for state in WebSocketState] == [
        ("CONNECTING", 0),
        ("CONNECTED", 1),
        ("CLOSING", 2),
        ("DISCONNECTED", 3),
    ]
    assert int(WebSocketState.CONNECTED) == 1
    assert ConnectionState().state is CONNECTING


# -- the pure state machine --------------------------------------------------------

# The expected behaviour, written out independently of fastrapi's own tables.
MODEL_TRANSITIONS: dict[WebSocketState, dict[Transition, WebSocketState]] = {
    CONNECTING: {Transition.ACCEPT: CONNECTED, Transition.DENY: DISCONNECTED},
    CONNECTED: {Transition.LOCAL_CLOSE: CLOSING, Transition.PEER_CLOSED: DISCONNECTED},
    CLOSING: {Transition.PEER_CLOSED: DISCONNECTED},
    DISCONNECTED: {},
}

MISUSE = "misuse"  # check() must raise WebSocketStateError
ACCEPT_FIRST = "accept first"  # ... with exactly "call accept() before <call>"

MODEL_CHECKS: dict[WebSocketState, dict[Operation, Verdict | str]] = {
    CONNECTING: {
        Operation.ACCEPT: Verdict.PROCEED,
        Operation.DENY: Verdict.PROCEED,
        Operation.RECEIVE: ACCEPT_FIRST,
        Operation.SEND: ACCEPT_FIRST,
        Operation.PING: ACCEPT_FIRST,
        Operation.CLOSE: Verdict.PROCEED,
    },
    CONNECTED: {
        Operation.ACCEPT: MISUSE,
        Operation.DENY: MISUSE,
        Operation.RECEIVE: Verdict.PROCEED,
        Operation.SEND: Verdict.PROCEED,
        Operation.PING: Verdict.PROCEED,
        Operation.CLOSE: Verdict.PROCEED,
    },
    CLOSING: {
        Operation.ACCEPT: MISUSE,
        Operation.DENY: MISUSE,
        Operation.RECEIVE: Verdict.PROCEED,  # what arrived before the end, then the end
        Operation.SEND: Verdict.DISCONNECTED,
        Operation.PING: Verdict.DISCONNECTED,
        Operation.CLOSE: Verdict.ALREADY_DONE,
    },
}
MODEL_CHECKS[DISCONNECTED] = MODEL_CHECKS[CLOSING]

CALLS: dict[Operation, list[str]] = {
    Operation.ACCEPT: ["accept()"],
    Operation.DENY: ["deny()"],
    Operation.RECEIVE: ["receive()", "receive_text()", "receive_bytes()", "receive_json()"],
    Operation.SEND: ["send()", "send_text()", "send_bytes()", "send_json()"],
    Operation.PING: ["ping()"],
    Operation.CLOSE: ["close()"],
}


class ConnectionStateMachine(RuleBasedStateMachine):
    """Drives `ConnectionState` with every operation and transition, against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.connection = ConnectionState()
        self.expected = CONNECTING
        self.seen = [CONNECTING]

    @rule(operation=st.sampled_from(Operation), data=st.data())
    def check(self, operation: Operation, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(CALLS[operation]), label="call")
        expected = MODEL_CHECKS[self.expected][operation]
        try:
            verdict = self.connection.check(operation, call)
        except WebSocketStateError as error:
            message = str(error)
            assert isinstance(expected, str), f"{call} in {self.expected.name} raised {message!r}"
            if expected == ACCEPT_FIRST:
                assert message == f"call accept() before {call}"
            else:
                assert call in message, message
                if self.expected is CONNECTED and operation is Operation.DENY:
                    assert "close(" in message, "says what to call instead"
        else:
            assert isinstance(verdict, Verdict)
            assert verdict is expected, f"{call} in {self.expected.name}: {verdict} != {expected}"
        assert self.connection.state is self.expected, "check() never changes the state"

    @rule(transition=st.sampled_from(Transition))
    def try_apply(self, transition: Transition) -> None:
        target = MODEL_TRANSITIONS[self.expected].get(transition)
        moved = self.connection.try_apply(transition)
        assert moved is (target is not None)
        if target is not None:
            self.expected = target
        self.seen.append(self.connection.state)

    @rule(transition=st.sampled_from(Transition))
    def apply(self, transition: Transition) -> None:
        target = MODEL_TRANSITIONS[self.expected].get(transition)
        if target is None:
            with pytest.raises(AssertionError) as error:
                self.connection.apply(transition)
            assert transition.value in str(error.value) and self.expected.name in str(error.value)
        else:
            assert self.connection.apply(transition) is target
            self.expected = target
        self.seen.append(self.connection.state)

    @invariant()
    def state_is_a_websocket_state(self) -> None:
        assert isinstance(self.connection.state, WebSocketState)
        assert self.connection.state in (0, 1, 2, 3)

    @invariant()
    def state_follows_the_model(self) -> None:
        assert self.connection.state is self.expected

    @invariant()
    def nothing_leaves_disconnected(self) -> None:
        if DISCONNECTED in self.seen:
            after = self.seen[self.seen.index(DISCONNECTED) :]
            assert all(state is DISCONNECTED for state in after), self.seen

    @invariant()
    def states_only_move_forward(self) -> None:
        assert all(a <= b for a, b in zip(self.seen, self.seen[1:], strict=False)), self.seen
        assert CLOSING not in self.seen or CONNECTED in self.seen, "CLOSING only comes after CONNECTED"


ConnectionStateMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
TestConnectionState = ConnectionStateMachine.TestCase


@settings(max_examples=50, deadline=None)
@given(
    operation=st.sampled_from([Operation.RECEIVE, Operation.SEND, Operation.PING]),
    call=st.text(min_size=1, max_size=20),
)
def test_calls_before_accept_say_to_accept_first(operation: Operation, call: str) -> None:
    with pytest.raises(WebSocketStateError) as error:
        ConnectionState().check(operation, call)
    assert str(error.value) == f"call accept() before {call}"
    assert isinstance(error.value, RuntimeError)


def test_no_transition_leaves_disconnected() -> None:
    for transition in Transition:
        connection = ConnectionState()
        assert connection.try_apply(Transition.DENY)
        assert connection.try_apply(transition) is False
        assert connection.state is DISCONNECTED
        with pytest.raises(AssertionError):
            connection.apply(transition)
        assert connection.state is DISCONNECTED


# -- the real WebSocket over the in-memory transport ---------------------------------

STEP_TIMEOUT = 2.0  # every call here completes in milliseconds in memory

VALID_CODES = [1000, 1001, 1003, 1008, 1011, 1013, 3000, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, -1]


@dataclass
class Harness:
    """One connection: the handler's WebSocket, the client, and what the client saw."""

    ws: WebSocket
    client: MemoryClient
    received: list[str] = field(default_factory=list)  # texts the server sent
    sent: list[str] = field(default_factory=list)  # texts whose send_text() returned
    pending: deque[str] = field(default_factory=deque)  # texts the client sent, not yet received
    client_gone: bool = False  # the client closed or vanished


async def play_client(harness: Harness) -> None:
    """The client's reader: record texts, answer pings, until the server drops the connection."""
    stream = harness.client.transport.from_server
    while True:
        try:
            event = await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return
        if isinstance(event, TextMessage):
            harness.received.append(event.data)
        elif isinstance(event, Ping):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await harness.client.send(Pong(event.data))


@contextlib.asynccontextmanager
async def connection(**overrides: Any) -> Any:
    """A connection whose handler hands its WebSocket to the test and waits until told to return."""
    app = FastrAPI(**overrides)
    sockets: list[WebSocket] = []
    started, done = anyio.Event(), anyio.Event()

    @app.websocket("/")
    async def handler(ws: WebSocket) -> None:
        sockets.append(ws)
        started.set()
        await done.wait()

    async with memory_connection(app, "/") as client:
        await started.wait()
        harness = Harness(sockets[0], client)
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(play_client, harness)
                yield harness
                done.set()
        finally:
            done.set()


Outcome = Any  # a call's result, or the exception it raised


async def attempt(awaitable: Awaitable[Any]) -> Outcome:
    """The call's result or its exception: only the three kinds a WebSocket may raise."""
    try:
        return await awaitable
    except (WebSocketStateError, WebSocketDisconnect, ValueError) as error:
        return error


def state_error(outcome: Outcome, call: str) -> str:
    assert isinstance(outcome, WebSocketStateError), f"{call} gave {outcome!r}, not a WebSocketStateError"
    assert isinstance(outcome, RuntimeError)
    message = str(outcome)
    assert call in message, f"{message!r} does not name {call}"
    return message


def disconnected(outcome: Outcome, call: str) -> None:
    assert isinstance(outcome, WebSocketDisconnect), f"{call} gave {outcome!r}, not a WebSocketDisconnect"
    assert isinstance(outcome, ConnectionError)


async def step(harness: Harness, index: int, op: tuple[str, int | None]) -> None:
    """Make one call, and check its outcome against the state before it."""
    ws, client = harness.ws, harness.client
    name, code = op
    before = ws.client_state
    gone = harness.client_gone

    if name == "accept":
        outcome = await attempt(ws.accept())
        if before is CONNECTING:
            assert outcome is None
            assert ws.handshake_status == 101
            assert isinstance(await client.wait_handshake(), Accepted)
        else:
            state_error(outcome, "accept()")

    elif name == "deny":
        outcome = await attempt(ws.deny())
        if before is CONNECTING:
            assert outcome is None
            assert ws.client_state is DISCONNECTED
            answer = await client.wait_handshake()
            assert isinstance(answer, Response) and answer.status == 403
        else:
            message = state_error(outcome, "deny()")
            if before is CONNECTED:
                assert "close(" in message, "says what to call instead"

    elif name == "send_text":
        text = f"s{index}"
        outcome = await attempt(ws.send_text(text))
        if before is CONNECTING:
            assert state_error(outcome, "send_text()") == "call accept() before send_text()"
        elif before is CONNECTED and not gone:
            assert outcome is None
        elif outcome is None:
            assert before is CONNECTED, "a send after the end must raise"
        else:
            disconnected(outcome, "send_text()")
        if outcome is None:
            harness.sent.append(text)

    elif name == "client_send":
        if before in (CONNECTING, CONNECTED) and not gone and len(harness.pending) < 8:
            text = f"c{index}"
            await client.send(TextMessage(text))
            harness.pending.append(text)

    elif name == "receive_text":
        if before is CONNECTED and not gone and not harness.pending:
            await client.send(TextMessage(f"r{index}"))
            harness.pending.append(f"r{index}")
        outcome = await attempt(ws.receive_text())
        if before is CONNECTING:
            assert state_error(outcome, "receive_text()") == "call accept() before receive_text()"
        elif before is CONNECTED and not gone:
            assert outcome == harness.pending.popleft()
        elif isinstance(outcome, str):
            assert gone, "after our own close or deny, nothing more is delivered"
            assert outcome == harness.pending.popleft()
        else:
            disconnected(outcome, "receive_text()")
            harness.pending.clear()

    elif name == "ping":
        outcome = await attempt(ws.ping())
        if before is CONNECTING:
            assert state_error(outcome, "ping()") == "call accept() before ping()"
        elif before is CONNECTED and not gone:
            assert outcome is None, "the client answers every ping"
        elif outcome is not None:
            disconnected(outcome, "ping()")
        else:
            assert before is CONNECTED

    elif name == "close":
        assert code is not None
        outcome = await attempt(ws.close(code, f"bye {index}"))
        assert outcome is None, f"close({code}) gave {outcome!r}"
        assert ws.client_state is DISCONNECTED, "close() returns once the closing handshake is done"
        if before is CONNECTING:
            answer = await client.wait_handshake()
            assert isinstance(answer, Response) and answer.status == 403
        elif before is CONNECTED and not gone:
            assert ws.close_code == code

    elif name == "close_invalid":
        assert code is not None
        outcome = await attempt(ws.close(code))
        assert isinstance(outcome, ValueError) and not isinstance(outcome, WebSocketStateError), outcome
        assert str(code) in str(outcome)
        assert ws.client_state is before, "nothing happens on an invalid code"

    elif name in ("client_close", "client_drop"):
        if before is CONNECTED and not gone:
            if name == "client_close":
                await client.close(1000)
            else:
                client.drop()
            harness.client_gone = True

    else:  # pragma: no cover
        raise AssertionError(name)

    after = ws.client_state
    assert isinstance(after, WebSocketState)
    assert after >= before, f"{name}: the state went back from {before!r} to {after!r}"
    assert (before, after) != (CONNECTING, CLOSING), "CLOSING only follows CONNECTED"
    if after >= CLOSING and not harness.client_gone:
        harness.pending.clear()  # our close or deny discards what was not read


operations = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                "accept",
                "deny",
                "send_text",
                "client_send",
                "receive_text",
                "ping",
                "client_close",
                "client_drop",
            ]
        ),
        st.none(),
    ),
    st.tuples(st.just("close"), st.sampled_from(VALID_CODES)),
    st.tuples(st.just("close_invalid"), st.sampled_from(INVALID_CODES)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(operations, max_size=14))
async def test_random_call_sequences_on_a_real_websocket(ops: list[tuple[str, int | None]]) -> None:
    with anyio.fail_after(5):
        async with connection() as harness:
            ws = harness.ws
            assert ws.client_state is CONNECTING
            states = [ws.client_state]
            for index, op in enumerate(ops):
                try:
                    with anyio.fail_after(STEP_TIMEOUT):
                        await step(harness, index, op)
                except TimeoutError:
                    raise AssertionError(
                        f"{op} in state {states[-1]!r} did not return within {STEP_TIMEOUT}s"
                    ) from None
                states.append(ws.client_state)
    # The session is over: the connection ended, whatever the handler did.
    assert ws.client_state is DISCONNECTED
    assert harness.received == harness.sent, "exactly the texts whose send_text() returned arrived"
    assert states == sorted(states)


# -- single behaviours, each on its own ------------------------------------------------


async def test_ping_returns_when_the_pong_arrives() -> None:
    app = FastrAPI()
    sockets: list[WebSocket] = []
    done = anyio.Event()

    @app.websocket("/")
    async def handler(ws: WebSocket) -> None:
        sockets.append(ws)
        await ws.accept()
        await done.wait()

    with anyio.fail_after(5):
        async with memory_connection(app, "/") as client:
            assert isinstance(await client.wait_handshake(), Accepted)
            ws = sockets[0]
            returned = anyio.Event()

            async def ping() -> None:
                await ws.ping(b"payload")
                returned.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ping)
                assert await client.receive() == Ping(b"payload")
                await anyio.sleep(0.05)
                assert not returned.is_set(), "ping() waits for the Pong"
                await client.send(Pong(b"payload"))
                await returned.wait()
            assert ws.client_state is CONNECTED
            done.set()
    assert ws.client_state is DISCONNECTED


async def test_ping_before_accept_and_after_close() -> None:
    async with connection() as harness:
        ws = harness.ws
        with pytest.raises(WebSocketStateError, match=r"^call accept\(\) before ping\(\)$"):
            await ws.ping()
        await ws.accept()
        await ws.close(1000)
        with pytest.raises(WebSocketDisconnect) as end:
            await ws.ping()
        assert end.value.code == 1000


async def test_close_after_deny_returns_at_once() -> None:
    with anyio.fail_after(STEP_TIMEOUT):
        async with connection() as harness:  # close_timeout is the default 10s
            await harness.ws.deny()
            await harness.ws.close()
            await harness.ws.close()
            assert harness.ws.client_state is DISCONNECTED


async def test_a_denied_session_ends_at_once() -> None:
    app = FastrAPI()

    @app.websocket("/")
    async def handler(ws: WebSocket) -> None:
        await ws.deny(401)

    with anyio.fail_after(STEP_TIMEOUT):
        async with memory_connection(app, "/") as client:
            answer = await client.wait_handshake()
    assert isinstance(answer, Response) and answer.status == 401


async def test_receive_after_deny_raises_disconnect() -> None:
    async with connection() as harness:
        await harness.ws.deny()
        with anyio.fail_after(STEP_TIMEOUT), pytest.raises(WebSocketDisconnect):
            await harness.ws.receive_text()


async def test_close_after_the_client_vanished() -> None:
    async with connection() as harness:
        ws = harness.ws
        await ws.accept()
        harness.client.drop()
        with anyio.fail_after(STEP_TIMEOUT):
            await ws.close(1000)
        assert ws.client_state is DISCONNECTED
        with pytest.raises(WebSocketDisconnect):
            await ws.send_text("late")
