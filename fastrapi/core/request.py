"""The opening HTTP request, as a backend hands it to the core.

A backend fills in the raw parts (method, target, headers, client, and the
body of a plain HTTP request); everything derived from them (path, query
parameters, requested subprotocols) is parsed here, once, the same way for
every backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, overload
from urllib.parse import parse_qsl, unquote

from fastrapi.core import json

# scheme "://" authority, the start of a target in absolute form (RFC 9112 section 3.2.2)
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


T = TypeVar("T")


class cached_property(Generic[T]):
    """``functools.cached_property`` without its lock (which Python 3.11
    takes on every first access): a request is only ever read by the task
    that handles it."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | cached_property[T]:
        if instance is None:
            return self
        value = self._compute(instance)
        instance.__dict__[self._name] = value  # read from there from now on
        return value


def has_token(values: Iterable[str], token: str) -> bool:
    """Whether comma-separated header ``values`` hold ``token`` (lower-case), in any case."""
    for value in values:
        for part in value.lower().split(","):
            if part.strip() == token:
                return True
    return False


class Address(NamedTuple):
    host: str
    port: int


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only HTTP headers that keep repeated fields.

    ``headers["x"]`` is the first value of ``x``; ``get_all("x")`` gives every one.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = [(name.lower(), value) for name, value in items]

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        for item_name, value in self._items:
            if item_name == key:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            if name not in seen:
                seen.add(name)
                yield name

    def __len__(self) -> int:
        return len({name for name, _ in self._items})

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [value for item_name, value in self._items if item_name == key]

    def fields(self) -> Sequence[tuple[str, str]]:
        """Every (lower-case name, value) pair, in order, without a copy: for
        reading them all in one pass (the handshake's checks)."""
        return self._items

    def raw(self) -> list[tuple[str, str]]:
        """Every (lower-case name, value) pair, in order."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class QueryParams(Mapping[str, str]):
    """Read-only query parameters; ``params["k"]`` is the last value of ``k``."""

    __slots__ = ("_items",)

    def __init__(self, query_string: str) -> None:
        self._items = parse_qsl(query_string, keep_blank_values=True)

    def __getitem__(self, key: str) -> str:
        for name, value in reversed(self._items):
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._items))

    def __len__(self) -> int:
        return len(dict.fromkeys(name for name, _ in self._items))

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self._items if name == key]

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


@dataclass(frozen=True, init=False)
class Request:
    """An HTTP request as received: ``target`` is the raw request-target.

    ``body`` is the whole body of a plain HTTP request, read before the
    handler runs and bounded by ``max_body_size`` (413 beyond it); an
    upgrade request has none.
    """

    method: str
    target: str
    headers: Headers
    client: Address | None = None
    scheme: str = "ws"
    body: bytes = b""

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        client: Address | None = None,
        scheme: str = "ws",
        body: bytes = b"",
    ) -> None:
        # Frozen to its readers; filled in one step here, where the
        # dataclass's own __init__ would go through object.__setattr__ per field.
        self.__dict__.update(
            method=method, target=target, headers=headers, client=client, scheme=scheme, body=body
        )

    def json(self) -> Any:
        """The body parsed as JSON (orjson).

        Raises:
            InvalidJSON: the body is not JSON (a ValueError; uncaught, the
                client gets 500 as for any handler error: catch it to answer 400).
        """
        return json.loads(self.body)

    @cached_property
    def origin_target(self) -> str:
        """The target as path and query: a target in absolute form
        (``http://host/path?query``, RFC 9112 section 3.2.2) loses its scheme and host."""
        target = self.target
        if target.startswith("/"):
            return target
        absolute = _ABSOLUTE_FORM.match(target)
        return target[absolute.end() :] if absolute else target

    @cached_property
    def raw_path(self) -> str:
        """The path as sent, percent-encoding intact (what routes match against)."""
        return self.origin_target.partition("?")[0] or "/"

    @cached_property
    def path(self) -> str:
        return unquote(self.raw_path)

    @cached_property
    def query_string(self) -> str:
        return self.origin_target.partition("?")[2]

    @cached_property
    def query_params(self) -> QueryParams:
        return QueryParams(self.query_string)

    @cached_property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered, in its order of preference (4.1)."""
        offered = ",".join(self.headers.get_all("sec-websocket-protocol"))
        return [token.strip() for token in offered.split(",") if token.strip()]

    @property
    def is_upgrade(self) -> bool:
        """Whether this asks for a WebSocket upgrade (RFC 6455 section 4.2.1)."""
        return has_token(self.headers.get_all("upgrade"), "websocket")
