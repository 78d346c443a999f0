"""Path templates with typed parameters, and matching requests to handlers.

A template is a path with ``{name}`` or ``{name:type}`` parameters::

    /chat/{room}        room is a str: one path segment, percent-decoded
    /items/{id:int}     id is an int (the handler's annotation ``id: int`` does the same)
    /files/{rest:path}  rest is the remainder of the path, slashes included

Routes match the raw (still percent-encoded) path, so ``%2F`` inside a ``str``
parameter stays part of the value instead of splitting it. Everything that can
be wrong with a template or a handler's signature is an error when the handler
is decorated, not when a client first connects.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_type_hints
from urllib.parse import quote, unquote


@dataclass(frozen=True, slots=True)
class Converter:
    """How one parameter type looks in a path, and how it becomes a value."""

    name: str
    regex: str
    convert: Callable[[str], Any]
    to_string: Callable[[Any], str]
    safe: str = ""  # characters left unencoded when a value is put into a path


def _float_to_string(value: float) -> str:
    return repr(float(value))


CONVERTERS: dict[str, Converter] = {
    "str": Converter("str", r"[^/]+", str, str),
    "int": Converter("int", r"-?[0-9]+", int, lambda value: str(int(value))),
    "float": Converter(
        "float",
        r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?",
        float,
        _float_to_string,
        safe="+",  # repr(1e16) is "1e+16"
    ),
    "uuid": Converter(
        "uuid",
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        uuid.UUID,
        str,
    ),
    "path": Converter("path", r".*", str, str, safe="/"),
}

# A parameter without ``:type`` in the template takes its type from the
# handler's annotation when it is one of these.
ANNOTATION_CONVERTERS: dict[object, str] = {str: "str", int: "int", float: "float", uuid.UUID: "uuid"}

_PARAMETER = re.compile(r"\{([^{}]*)\}")
_SAFE_SEGMENT = ":@!$&'()*+,;=-._~"  # RFC 3986 pchar: kept as written
_SAFE_STATIC = _SAFE_SEGMENT + "/"


class RouteError(ValueError):
    """A template or handler signature that cannot work; raised at decoration time."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed path template: static text and typed parameters, in order."""

    source: str
    parts: tuple[str | tuple[str, str | None], ...]  # static text, or (name, declared type)

    @property
    def parameter_names(self) -> list[str]:
        return [part[0] for part in self.parts if isinstance(part, tuple)]


def parse_template(source: str) -> Template:
    """Split ``source`` into static text and parameters.

    Raises:
        RouteError: the template is malformed; the message says where.
    """
    if not isinstance(source, str) or not source.startswith("/"):
        raise RouteError(f"path template {source!r} must be a str starting with '/'")
    parts: list[str | tuple[str, str | None]] = []
    names: set[str] = set()
    position = 0
    for found in _PARAMETER.finditer(source):
        parts.append(_static(source, source[position : found.start()]))
        name, _, declared = found.group(1).partition(":")
        name, declared = name.strip(), declared.strip()
        if not name.isidentifier():
            raise RouteError(f"path template {source!r}: {found.group(0)} needs a parameter name")
        if name in names:
            raise RouteError(f"path template {source!r}: parameter {name!r} appears twice")
        if declared and declared not in CONVERTERS:
            known = ", ".join(CONVERTERS)
            raise RouteError(
                f"path template {source!r}: unknown type {declared!r} for {name!r}; use one of {known}"
            )
        names.add(name)
        parts.append((name, declared or None))
        position = found.end()
    parts.append(_static(source, source[position:]))
    return Template(source, tuple(part for part in parts if part != ""))


def _static(source: str, text: str) -> str:
    if "{" in text or "}" in text:
        raise RouteError(f"path template {source!r} has an unbalanced brace")
    return text


@dataclass(frozen=True, slots=True)
class Signature:
    """How to call a handler: where the WebSocket goes and which path params it takes."""

    connection_param: str | None  # parameter that receives the WebSocket (or Request)
    connection_positional: bool  # that parameter is positional-only
    annotations: dict[str, object]  # path parameter name -> annotation


def inspect_handler(
    endpoint: Callable[..., Awaitable[Any]],
    template: Template,
    connection_type: type,
    *,
    connection_required: bool,
) -> Signature:
    """Work out how to call ``endpoint`` with a connection object and path params.

    The connection (a `WebSocket`) goes to the parameter annotated with its type,
    or else to the first positional parameter that is not a path parameter.

    Raises:
        RouteError: the handler is not async, or its parameters do not fit the template.
    """
    name = getattr(endpoint, "__qualname__", repr(endpoint))
    if not inspect.iscoroutinefunction(endpoint):
        raise RouteError(f"handler {name} must be an async function (async def)")
    try:
        hints = get_type_hints(endpoint)
    except Exception:  # unresolvable forward references: fall back to no hints
        hints = {}
    parameters = inspect.signature(endpoint).parameters
    path_names = set(template.parameter_names)
    connection: str | None = None
    positional = False
    annotations: dict[str, object] = {}
    takes_any_keyword = False
    for parameter in parameters.values():
        hint = hints.get(parameter.name)
        if parameter.kind is parameter.VAR_KEYWORD:
            takes_any_keyword = True
        elif parameter.kind is parameter.VAR_POSITIONAL:
            continue
        elif isinstance(hint, type) and issubclass(hint, connection_type):
            connection, positional = parameter.name, parameter.kind is parameter.POSITIONAL_ONLY
        elif parameter.name in path_names:
            annotations[parameter.name] = hint
        elif connection is None and connection_required and not _annotated_other(hint):
            connection, positional = parameter.name, parameter.kind is parameter.POSITIONAL_ONLY
        elif parameter.default is parameter.empty:
            raise RouteError(
                f"handler {name} parameter {parameter.name!r} is not a parameter of the "
                f"path {template.source!r}; add {{{parameter.name}}} to the path or give it a default"
            )
    missing = path_names - annotations.keys()
    if missing and not takes_any_keyword:
        raise RouteError(
            f"handler {name} does not take the path parameter(s) {sorted(missing)} of "
            f"{template.source!r}; add them to its signature"
        )
    if connection is None and connection_required:
        raise RouteError(f"handler {name} must take the WebSocket as a parameter")
    return Signature(connection, positional, annotations)


def _annotated_other(hint: object) -> bool:
    return hint is not None and hint is not Any and isinstance(hint, type)


class Route:
    """One template bound to one handler."""

    def __init__(
        self,
        template: str,
        endpoint: Callable[..., Awaitable[Any]],
        connection_type: type,
        *,
        connection_required: bool = True,
    ) -> None:
        self.template = parse_template(template)
        self.endpoint = endpoint
        self.signature = inspect_handler(
            endpoint, self.template, connection_type, connection_required=connection_required
        )
        self.converters: dict[str, Converter] = {}
        pattern = ["^"]
        shape = []
        for part in self.template.parts:
            if isinstance(part, str):
                encoded = quote(part, safe=_SAFE_STATIC)
                pattern.append(re.escape(encoded))
                shape.append(encoded)
                continue
            name, declared = part
            converter = CONVERTERS[declared or self._type_from_annotation(name)]
            self.converters[name] = converter
            pattern.append(f"(?P<{name}>{converter.regex})")
            shape.append("{" + converter.name + "}")
        pattern.append("$")
        self.regex = re.compile("".join(pattern))
        self.shape = "".join(shape)  # two routes with one shape can never both match

    def _type_from_annotation(self, name: str) -> str:
        return ANNOTATION_CONVERTERS.get(self.signature.annotations.get(name), "str")

    def match(self, raw_path: str) -> dict[str, Any] | None:
        """The typed path parameters if ``raw_path`` fits this route, else None."""
        found = self.regex.match(raw_path)
        if found is None:
            return None
        params: dict[str, Any] = {}
        for name, text in found.groupdict().items():
            try:
                params[name] = self.converters[name].convert(unquote(text))
            except ValueError:
                return None
        return params

    def path_for(self, **values: Any) -> str:
        """Build the raw path that matches this route with ``values``."""
        pieces = []
        for part in self.template.parts:
            if isinstance(part, str):
                pieces.append(quote(part, safe=_SAFE_STATIC))
                continue
            converter = self.converters[part[0]]
            text = converter.to_string(values[part[0]])
            if converter.name != "path" and text == "":
                raise ValueError(f"parameter {part[0]!r} cannot be empty")
            pieces.append(quote(text, safe=converter.safe))
        return "".join(pieces)

    def call(self, connection: object, params: dict[str, Any]) -> Awaitable[Any]:
        signature = self.signature
        if signature.connection_param is None:
            return self.endpoint(**params)
        if signature.connection_positional:
            return self.endpoint(connection, **params)
        return self.endpoint(**{signature.connection_param: connection}, **params)


class Router:
    """Routes in the order they were added; the first that matches wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        """Raises `RouteError` if a route of the same shape is already there."""
        for existing in self.routes:
            if existing.shape == route.shape:
                raise RouteError(f"path {route.template.source!r} duplicates {existing.template.source!r}")
        self.routes.append(route)

    def match(self, raw_path: str) -> tuple[Route, dict[str, Any]] | None:
        path = normalize(raw_path)
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                return route, params
        return None


def normalize(raw_path: str) -> str:
    """One spelling per path: ``/caf%c3%a9`` and ``/%61bc`` as ``/caf%C3%A9`` and ``/abc``.

    Each segment is decoded and re-encoded the way templates are, so an
    encoded "/" (``%2F``) stays inside its segment (RFC 3986 section 6.2.2).
    """
    if "%" not in raw_path:
        return raw_path
    return "/".join(quote(unquote(segment), safe=_SAFE_SEGMENT) for segment in raw_path.split("/"))
