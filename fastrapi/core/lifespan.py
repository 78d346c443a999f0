"""Start-up and shutdown around serving: ``FastrAPI(lifespan=...)`` and ``app.state``.

The lifespan is an async context manager factory, as in Starlette: it gets
the app, runs up to its ``yield`` before the first connection is accepted,
and after it once the last connection has closed. What it yields (a mapping,
or None) becomes attributes of ``app.state``, where handlers find it::

    @asynccontextmanager
    async def lifespan(app):
        async with open_pool() as pool:
            yield {"pool": pool}

    app = FastrAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def handler(ws):
        pool = app.state.pool
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class LifespanStartupError(RuntimeError):
    """The lifespan raised before its ``yield``: nothing was served.

    The lifespan's own exception is the ``__cause__``.
    """


class State:
    """Attributes shared by every handler: set by the lifespan or by assignment."""

    def __getattr__(self, name: str) -> Any:
        # Only called for a missing attribute: say where it should have come from.
        raise AttributeError(
            f"app.state has no {name!r}; yield {{{name!r}: ...}} from the lifespan, "
            f"or assign app.state.{name} before serving"
        )

    def __setattr__(self, name: str, value: Any) -> None:  # declared so that any name may be set
        super().__setattr__(name, value)

    def update(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"State({', '.join(sorted(vars(self)))})"


@asynccontextmanager
async def run_lifespan(app: Any, lifespan: Lifespan | None, state: State) -> AsyncIterator[None]:
    """Run ``lifespan(app)`` around the block; its start-up's failure is a `LifespanStartupError`."""
    if lifespan is None:
        yield
        return
    context = lifespan(app)
    try:
        values = await context.__aenter__()
    except Exception as error:
        raise LifespanStartupError(f"lifespan start-up failed: {type(error).__name__}: {error}") from error
    if values is not None:
        state.update(values)
    try:
        yield
    except BaseException as error:
        if not await context.__aexit__(type(error), error, error.__traceback__):
            raise
    else:
        await context.__aexit__(None, None, None)
