"""A chat demo: a page at http://127.0.0.1:8000/ and chat rooms at /chat/{room}.

Run ``python examples/demo.py`` and open http://127.0.0.1:8000/ in two browser
tabs. Everyone in a room sees that room's messages and nobody else's; the name
comes from the ``name`` query parameter (``/chat/lobby?name=Ada``). The events
are the ones of the guide's chat.py: ``user_joined``, ``message`` and
``user_left``, as JSON.
"""

from __future__ import annotations

from typing import Any

from fastrapi import CloseCode, FastrAPI, MessageTypeError, Response, Settings, WebSocket, WebSocketDisconnect

app = FastrAPI()
rooms: dict[str, set[WebSocket]] = {}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fastrapi chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: 0.5rem; margin-bottom: 0.5rem; }
  input { flex: 1; padding: 0.3rem; }
  #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: 0.5rem; }
  #log p { margin: 0.2rem 0; }
  #log .event { color: #666; font-style: italic; }
</style>
</head>
<body>
<h1>fastrapi chat</h1>
<form id="join">
  <input id="room" value="lobby" placeholder="room" aria-label="room">
  <input id="name" placeholder="your name" aria-label="name">
  <button>Connect</button>
</form>
<form id="send">
  <input id="message" placeholder="message" aria-label="message" autocomplete="off" disabled>
  <button disabled>Send</button>
</form>
<div id="log"></div>
<script>
const byId = (id) => document.getElementById(id);
let ws = null;

// Everything shown goes through textContent, so no message can inject markup.
function log(text, kind) {
  const line = document.createElement("p");
  line.textContent = text;
  if (kind) line.className = kind;
  byId("log").append(line);
  byId("log").scrollTop = byId("log").scrollHeight;
}

function setConnected(connected) {
  for (const element of byId("send").elements) element.disabled = !connected;
}

byId("join").addEventListener("submit", (event) => {
  event.preventDefault();
  if (ws) ws.close();
  const room = byId("room").value.trim() || "lobby";
  const name = byId("name").value.trim() || "Anonymous";
  const query = `?name=${encodeURIComponent(name)}`;
  const socket = new WebSocket(`ws://${location.host}/chat/${encodeURIComponent(room)}${query}`);
  ws = socket;
  socket.onopen = () => {
    setConnected(true);
    log(`Connected to room ${room} as ${name}`, "event");
  };
  socket.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "message") log(`${data.username}: ${data.message}`);
    else if (data.type === "user_joined") log(`${data.username} joined`, "event");
    else if (data.type === "user_left") log(`${data.username} left`, "event");
  };
  socket.onclose = () => {
    if (ws === socket) {
      ws = null;
      setConnected(false);
    }
    log(`Disconnected from room ${room}`, "event");
  };
});

byId("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = byId("message").value;
  if (ws && text) {
    ws.send(text);
    byId("message").value = "";
  }
});
</script>
</body>
</html>
"""


@app.get("/")
async def index() -> Response:
    return Response.html(PAGE)


async def broadcast(room: str, event: dict[str, Any], skip: WebSocket | None = None) -> None:
    """Send ``event`` to everyone in ``room`` (but ``skip``); drop those who left."""
    members = rooms.get(room, set())
    for member in list(members):  # a copy: members may leave while we send
        if member is skip:
            continue
        try:
            await member.send_json(event)
        except ConnectionError:
            members.discard(member)


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "Anonymous")
    await ws.accept()
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        await broadcast(room, {"type": "user_joined", "username": name, "room": room}, skip=ws)
        while True:
            text = await ws.receive_text()
            await broadcast(room, {"type": "message", "username": name, "message": text})
    except WebSocketDisconnect:
        pass  # the client left
    except MessageTypeError:
        await ws.close(CloseCode.UNSUPPORTED_DATA, "text messages only")
    finally:
        members.discard(ws)
        if not members and rooms.get(room) is members:
            del rooms[room]
        await broadcast(room, {"type": "user_left", "username": name})


# Browsers send cookies with a WebSocket handshake from any site, and CORS does
# not cover WebSockets: name the pages that may open the chat, or any site a
# visitor has open could (cross-site WebSocket hijacking).
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

if __name__ == "__main__":
    app.serve("127.0.0.1", 8000, settings=Settings(allowed_origins=ORIGINS))
