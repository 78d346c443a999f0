"""Request and response over one WebSocket, JSON-RPC style, with typed messages.

A client sends calls and gets one reply to each, matched by ``id``::

    -> {"id": 1, "method": "add", "params": {"a": 2, "b": 3}}
    <- {"id": 1, "result": 5.0}
    -> {"id": 2, "method": "divide", "params": {"a": 1, "b": 0}}
    <- {"id": 2, "error": {"code": -32000, "message": "float division by zero", "data": null}}

Calls and each method's parameters are pydantic models: a message that does
not fit gets an error reply with pydantic's details, and the connection stays
open. The error codes are JSON-RPC 2.0's.

Run ``python examples/json_rpc.py`` (needs ``pip install 'fastrapi[pydantic]'``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from fastrapi import FastrAPI, InvalidJSON, InvalidMessage, WebSocket

# JSON-RPC 2.0's codes (section 5.1), and one of the range it leaves to servers.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_ERROR = -32000


# --8<-- [start:models]
class Call(BaseModel):
    id: int | str
    method: str
    params: dict[str, Any] = {}


class Error(BaseModel):
    code: int
    message: str
    data: Any = None


class Result(BaseModel):
    id: int | str
    result: Any


class Failure(BaseModel):
    id: int | str | None  # None when the call was unreadable: no id to answer to
    error: Error


# --8<-- [end:models]


# --8<-- [start:methods]
class Operands(BaseModel):
    a: float
    b: float


class Text(BaseModel):
    text: str


async def add(params: Operands) -> float:
    return params.a + params.b


async def divide(params: Operands) -> float:
    return params.a / params.b


async def upper(params: Text) -> str:
    return params.text.upper()


# name -> (the model of its params, the method)
METHODS: dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[Any]]]] = {
    "add": (Operands, add),
    "divide": (Operands, divide),
    "upper": (Text, upper),
}
# --8<-- [end:methods]


# --8<-- [start:answer]
async def answer(call: Call) -> Result | Failure:
    """Run one call; every way it can fail is a Failure, never an exception."""
    if call.method not in METHODS:
        return Failure(id=call.id, error=Error(code=METHOD_NOT_FOUND, message=f"no method {call.method!r}"))
    model, method = METHODS[call.method]
    try:
        params = model.model_validate(call.params)
    except ValidationError as invalid:
        errors = invalid.errors(include_url=False, include_context=False)
        return Failure(id=call.id, error=Error(code=INVALID_PARAMS, message="invalid params", data=errors))
    try:
        return Result(id=call.id, result=await method(params))
    except ArithmeticError as error:  # the methods' own, expected failures
        return Failure(id=call.id, error=Error(code=SERVER_ERROR, message=str(error)))


# --8<-- [end:answer]

app = FastrAPI()


# --8<-- [start:endpoint]
@app.websocket("/rpc")
async def rpc(ws: WebSocket) -> None:
    await ws.accept()
    while True:  # until the client leaves: receive_json raises WebSocketDisconnect
        try:
            call = await ws.receive_json(model=Call)
        except InvalidJSON:
            await ws.send_json(Failure(id=None, error=Error(code=PARSE_ERROR, message="not JSON")))
            continue
        except InvalidMessage as invalid:  # JSON, but not a Call: pydantic's details go back
            error = Error(code=INVALID_REQUEST, message="not a call", data=invalid.errors)
            await ws.send_json(Failure(id=None, error=error))
            continue
        await ws.send_json(await answer(call))


# --8<-- [end:endpoint]


if __name__ == "__main__":
    app.serve()
