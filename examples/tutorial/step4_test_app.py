"""Tutorial step 4: tests for step 3's chat, with fastrapi's test client.

Run them with ``pytest step4_test_app.py`` next to ``step3_names.py``. The
client runs the app in the test's process with no sockets, through the same
core a server uses; every wait is bounded (5 s by default), so a test that
expects a message the app never sends fails with a TimeoutError instead of
hanging.
"""

import pytest
from fastrapi import WebSocketDisconnect
from fastrapi.testing import AsyncTestClient, TestClient, WebSocketDenied

from step3_names import app


# --8<-- [start:room]
def test_a_message_reaches_everyone_in_the_room() -> None:
    with TestClient(app) as client:
        with client.websocket_connect("/chat/lobby?name=Ada") as ada:
            assert ada.receive_json() == {
                "type": "welcome",
                "room": "lobby",
                "members": 1,
            }
            with client.websocket_connect("/chat/lobby?name=Bob") as bob:
                assert bob.receive_json()["members"] == 2
                assert ada.receive_json() == {
                    "type": "user_joined",
                    "username": "Bob",
                    "room": "lobby",
                }
                bob.send_text("hi Ada")
                said = {"type": "message", "username": "Bob", "message": "hi Ada"}
                assert ada.receive_json() == said
                assert bob.receive_json() == said
            assert ada.receive_json() == {"type": "user_left", "username": "Bob"}
            # --8<-- [end:room]


def test_rooms_are_separate() -> None:
    with TestClient(app) as client:
        with (
            client.websocket_connect("/chat/lobby?name=Ada") as ada,
            client.websocket_connect("/chat/kitchen?name=Cy") as cy,
        ):
            assert ada.receive_json()["type"] == cy.receive_json()["type"] == "welcome"
            cy.send_text("anyone hungry?")
            assert cy.receive_json()["message"] == "anyone hungry?"
            ada.send_text("hello lobby")
            # The kitchen's message never reached the lobby: Ada's own comes first.
            assert ada.receive_json()["message"] == "hello lobby"


# --8<-- [start:refused]
@pytest.mark.parametrize("query", ["", "?name=", "?name=%20%20", "?name=" + "x" * 33])
def test_a_name_is_required(query: str) -> None:
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect(f"/chat/lobby{query}"):
            pass
    assert denied.value.status == 400
    assert b"name=Ada" in denied.value.body


def test_a_binary_message_closes_the_connection_with_1003() -> None:
    with (
        TestClient(app) as client,
        client.websocket_connect("/chat/lobby?name=Ada") as ada,
    ):
        ada.receive_json()  # the welcome
        ada.send_bytes(b"\x00\x01")
        with pytest.raises(WebSocketDisconnect) as closed:
            ada.receive_json()
        assert (closed.value.code, closed.value.reason) == (1003, "text messages only")
        # --8<-- [end:refused]


# --8<-- [start:async]
@pytest.mark.anyio
async def test_the_same_with_the_async_client() -> None:
    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/chat/lobby?name=Ada") as ada:
            assert (await ada.receive_json())["type"] == "welcome"
            await ada.send_text("alone here")
            assert await ada.receive_json(timeout=1) == {
                "type": "message",
                "username": "Ada",
                "message": "alone here",
            }
            # --8<-- [end:async]
