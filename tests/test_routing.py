"""The router on its own: templates, typed parameters and handler signatures, no sockets."""

from __future__ import annotations

import keyword
import math
import string
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi import FastrAPI, WebSocket
from fastrapi.core.routing import Route, RouteError, Router

# -- helpers ------------------------------------------------------------------


def run(awaitable: Awaitable[Any]) -> Any:
    """Run a handler coroutine that never suspends, and return its result."""
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the handler suspended; these test handlers never await")


def same_values(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Equal keys, equal values of the same type; floats compared bit for bit (-0.0 != 0.0)."""
    if got.keys() != expected.keys():
        return False
    for name, value in expected.items():
        other = got[name]
        if type(other) is not type(value):
            return False
        if isinstance(value, float):
            if repr(other) != repr(value):
                return False
        elif other != value:
            return False
    return True


# -- strategies -----------------------------------------------------------------

TYPES = ("str", "int", "float", "uuid", "path")
ANNOTATION_SOURCE = {"str": "str", "int": "int", "float": "float", "uuid": "uuid.UUID", "path": "str"}

URL_SAFE = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
NON_ASCII = "éüßñжд漢字語🙂"
# Static text: URL-safe and non-ASCII characters, and a few that must be
# percent-encoded; never "/" (it separates segments here) nor braces.
STATIC_ALPHABET = URL_SAFE + NON_ASCII + " %?#"
static_text = st.text(STATIC_ALPHABET, min_size=1, max_size=8)
affix_text = st.text(STATIC_ALPHABET, max_size=4)

parameter_names = (
    st.text(string.ascii_lowercase + "_" + string.digits + "éñ名", min_size=1, max_size=8)
    .filter(str.isidentifier)
    .filter(lambda name: not keyword.iskeyword(name) and name != "ws")
    # The handler is compiled from source, which NFKC-normalizes identifiers.
    .filter(lambda name: unicodedata.normalize("NFKC", name) == name)
)

any_character = st.characters(exclude_categories=["Cs"])  # surrogates cannot be UTF-8 encoded
tricky_character = st.sampled_from("/%?# é漢🙂+&=")
value_text = st.text(st.one_of(tricky_character, any_character), min_size=1, max_size=12)

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": value_text,
    "int": st.integers(min_value=-(10**30), max_value=10**30),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "uuid": st.uuids(),
    "path": st.text(st.one_of(tricky_character, any_character), max_size=16),
}


@dataclass
class RouteSpec:
    """A generated template with the handler that fits it."""

    segments: list[str]  # each without its leading "/"
    params: list[tuple[str, str]]  # (name, type) in template order
    handler: Callable[..., Awaitable[Any]]
    source: str  # the handler's source, for failure reports

    @property
    def template(self) -> str:
        return "".join("/" + segment for segment in self.segments)


@st.composite
def route_specs(draw: st.DrawFn) -> RouteSpec:
    """A template of whole segments, each static or one parameter with optional static affixes.

    One parameter per segment keeps every template unambiguous, so a built
    path has exactly one way to match. A ``path`` parameter may only be last.
    """
    count = draw(st.integers(min_value=1, max_value=5))
    names = draw(st.lists(parameter_names, min_size=count, max_size=count, unique=True))
    segments: list[str] = []
    params: list[tuple[str, str]] = []
    arguments: list[str] = []
    for index, name in enumerate(names):
        if draw(st.booleans()):
            segments.append(draw(static_text))
        last = index == count - 1
        kind = draw(st.sampled_from(TYPES if last else TYPES[:-1]))
        # Where the type is declared: in the template, by annotation, or (str) nowhere.
        styles = ["template"] if kind == "path" else ["template", "annotation"]
        if kind == "str":
            styles.append("bare")
        style = draw(st.sampled_from(styles))
        placeholder = f"{{{name}:{kind}}}" if style == "template" else f"{{{name}}}"
        prefix = draw(affix_text)
        suffix = "" if kind == "path" else draw(affix_text)
        segments.append(prefix + placeholder + suffix)
        params.append((name, kind))
        annotate = style == "annotation" or (style == "template" and draw(st.booleans()))
        arguments.append(f"{name}: {ANNOTATION_SOURCE[kind]}" if annotate else name)
    if draw(st.booleans()):
        segments.append(draw(static_text))
    # The WebSocket parameter goes anywhere: by annotation, or as the first
    # positional parameter that is not a path parameter.
    connection = "ws: WebSocket" if draw(st.booleans()) else "ws"
    arguments.insert(draw(st.integers(min_value=0, max_value=len(arguments))), connection)
    source = f"async def handler({', '.join(arguments)}):\n    return dict(locals())\n"
    namespace: dict[str, Any] = {"uuid": uuid, "WebSocket": WebSocket}
    exec(source, namespace)
    return RouteSpec(segments, params, namespace["handler"], source)


@st.composite
def values_for(draw: st.DrawFn, spec: RouteSpec) -> dict[str, Any]:
    return {name: draw(VALUES[kind], label=name) for name, kind in spec.params}


# -- the round trip -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_path_for_then_match_gives_back_the_same_typed_values(data: st.DataObject) -> None:
    spec = data.draw(route_specs(), label="spec")
    route = Route(spec.template, spec.handler, WebSocket)
    values = data.draw(values_for(spec), label="values")

    path = route.path_for(**values)
    assert path.startswith("/")
    assert path.isascii(), "a built path is percent-encoded"
    matched = route.match(path)
    assert matched is not None, f"{path!r} does not match {spec.template!r}\n{spec.source}"
    assert same_values(matched, values), (matched, values)

    # The handler gets the WebSocket and the typed values by name.
    assert route.signature.connection_param == "ws"
    connection = object()
    received = run(route.call(connection, matched))
    assert received.pop("ws") is connection
    assert same_values(received, values), (received, values)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_path_does_not_match_a_route_with_another_static_prefix(data: st.DataObject) -> None:
    spec = data.draw(route_specs(), label="spec")
    first, other = data.draw(st.lists(static_text, min_size=2, max_size=2, unique=True), label="prefixes")
    route = Route("/" + first + spec.template, spec.handler, WebSocket)
    elsewhere = Route("/" + other + spec.template, spec.handler, WebSocket)
    path = route.path_for(**data.draw(values_for(spec), label="values"))

    assert elsewhere.match(path) is None
    router = Router()
    router.add(elsewhere)
    router.add(route)
    found = router.match(path)
    assert found is not None and found[0] is route


def test_percent_encoded_characters_stay_inside_a_str_parameter() -> None:
    async def handler(ws: WebSocket, room: str) -> None: ...

    route = Route("/chat/{room}", handler, WebSocket)
    assert route.path_for(room="a/b c%?#é") == "/chat/a%2Fb%20c%25%3F%23%C3%A9"
    assert route.match("/chat/a%2Fb%20c%25%3F%23%C3%A9") == {"room": "a/b c%?#é"}
    assert route.match("/chat/a/b") is None
    with pytest.raises(ValueError, match="room"):
        route.path_for(room="")


def test_a_path_parameter_takes_the_rest_of_the_path() -> None:
    async def handler(ws: WebSocket, rest: str) -> None: ...

    route = Route("/files/{rest:path}", handler, WebSocket)
    assert route.match("/files/a/b%20c/d") == {"rest": "a/b c/d"}
    assert route.path_for(rest="a/b c") == "/files/a/b%20c"
    assert route.match("/other/a") is None


# -- typed parameters from annotations -------------------------------------------


def test_an_int_annotation_converts_and_restricts_the_segment() -> None:
    async def handler(ws: WebSocket, n: int) -> None: ...

    route = Route("/items/{n}", handler, WebSocket)
    assert route.match("/items/42") == {"n": 42}
    assert type(route.match("/items/42")["n"]) is int  # type: ignore[index]
    assert route.match("/items/-7") == {"n": -7}
    assert route.match("/items/abc") is None
    assert route.match("/items/4.2") is None
    assert route.match("/items/") is None


def test_a_template_type_works_without_annotation() -> None:
    async def handler(ws, n):  # type: ignore[no-untyped-def]
        return n

    route = Route("/items/{n:int}", handler, WebSocket)
    assert route.match("/items/12") == {"n": 12}
    assert route.match("/items/abc") is None
    assert run(route.call(object(), {"n": 12})) == 12


def test_uuid_and_float_annotations() -> None:
    async def handler(ws: WebSocket, id: uuid.UUID, price: float) -> None: ...

    route = Route("/orders/{id}/{price}", handler, WebSocket)
    order = uuid.UUID("12345678-1234-5678-1234-567812345678")
    found = route.match(f"/orders/{order}/2.5")
    assert found == {"id": order, "price": 2.5}
    assert isinstance(found["id"], uuid.UUID) and isinstance(found["price"], float)
    assert route.match(f"/orders/{order}/1e3") == {"id": order, "price": 1000.0}
    assert route.match(f"/orders/{order}/cheap") is None
    assert route.match("/orders/not-a-uuid/2.5") is None


def test_an_unsupported_annotation_leaves_the_parameter_a_str() -> None:
    async def handler(ws: WebSocket, flag: bool) -> None: ...

    route = Route("/flags/{flag}", handler, WebSocket)
    assert route.match("/flags/yes") == {"flag": "yes"}


# -- where the WebSocket goes ------------------------------------------------------


def test_the_websocket_goes_to_the_annotated_parameter_wherever_it_is() -> None:
    async def handler(n: int, socket: WebSocket) -> tuple[int, object]:
        return n, socket

    route = Route("/items/{n}", handler, WebSocket)
    assert route.signature.connection_param == "socket"
    assert route.signature.connection_positional is False
    connection = object()
    params = route.match("/items/5")
    assert params == {"n": 5}
    assert run(route.call(connection, params)) == (5, connection)


def test_an_unannotated_first_parameter_is_the_websocket() -> None:
    async def handler(conn, room: str):  # type: ignore[no-untyped-def]
        return conn, room

    route = Route("/chat/{room}", handler, WebSocket)
    assert route.signature.connection_param == "conn"
    connection = object()
    assert run(route.call(connection, {"room": "x"})) == (connection, "x")


def test_a_positional_only_websocket_parameter_is_passed_by_position() -> None:
    async def handler(ws, /, room: str):  # type: ignore[no-untyped-def]
        return ws, room

    route = Route("/chat/{room}", handler, WebSocket)
    assert route.signature.connection_param == "ws"
    assert route.signature.connection_positional is True
    connection = object()
    assert run(route.call(connection, {"room": "lobby"})) == (connection, "lobby")


def test_a_handler_taking_keywords_gets_every_parameter() -> None:
    async def handler(ws: WebSocket, **params: Any) -> dict[str, Any]:
        return params

    route = Route("/a/{x:int}/{y}", handler, WebSocket)
    params = route.match("/a/1/two")
    assert params == {"x": 1, "y": "two"}
    assert run(route.call(object(), params)) == {"x": 1, "y": "two"}


def test_optional_extra_parameters_keep_their_default() -> None:
    async def handler(ws: WebSocket, room: str, limit: int = 10) -> tuple[str, int]:
        return room, limit

    route = Route("/chat/{room}", handler, WebSocket)
    assert run(route.call(object(), {"room": "r"})) == ("r", 10)


# -- errors at decoration time ---------------------------------------------------


async def _ws_only(ws: WebSocket) -> None: ...


async def _ws_and_x(ws: WebSocket, x: str) -> None: ...


@pytest.mark.parametrize(
    ("template", "mentions"),
    [
        ("/a/{x", "/a/{x"),
        ("/a/x}", "/a/x}"),
        ("/a/{{x}}", "/a/{{x}}"),
        ("/a/}{x}", "/a/}{x}"),
    ],
)
def test_unbalanced_braces(template: str, mentions: str) -> None:
    with pytest.raises(RouteError) as error:
        Route(template, _ws_and_x, WebSocket)
    assert mentions in str(error.value)
    assert "brace" in str(error.value)


@pytest.mark.parametrize("template", ["/a/{}", "/a/{:int}", "/a/{ }"])
def test_empty_parameter_name(template: str) -> None:
    with pytest.raises(RouteError) as error:
        Route(template, _ws_only, WebSocket)
    assert template in str(error.value)
    assert "name" in str(error.value)


@pytest.mark.parametrize("placeholder", ["{1abc}", "{a-b}", "{a b}", "{x.y:int}"])
def test_invalid_parameter_name(placeholder: str) -> None:
    template = f"/a/{placeholder}"
    with pytest.raises(RouteError) as error:
        Route(template, _ws_only, WebSocket)
    assert placeholder in str(error.value)


def test_unknown_parameter_type() -> None:
    with pytest.raises(RouteError) as error:
        Route("/a/{x:bool}", _ws_and_x, WebSocket)
    message = str(error.value)
    assert "'bool'" in message and "'x'" in message
    for known in ("str", "int", "float", "uuid", "path"):
        assert known in message


def test_duplicate_parameter_name() -> None:
    async def handler(ws: WebSocket, dup: str) -> None: ...

    with pytest.raises(RouteError) as error:
        Route("/a/{dup}/{dup:int}", handler, WebSocket)
    assert "'dup'" in str(error.value)
    assert "twice" in str(error.value)


@pytest.mark.parametrize("template", ["chat/{x}", "", "ws://host/chat"])
def test_template_must_start_with_a_slash(template: str) -> None:
    with pytest.raises(RouteError) as error:
        Route(template, _ws_and_x, WebSocket)
    assert repr(template) in str(error.value)


def test_handler_must_be_async() -> None:
    def sync_handler(ws: WebSocket) -> None: ...

    with pytest.raises(RouteError) as error:
        Route("/a", sync_handler, WebSocket)  # type: ignore[arg-type]
    assert "sync_handler" in str(error.value)
    assert "async def" in str(error.value)


def test_an_async_generator_is_not_a_handler() -> None:
    async def generator_handler(ws: WebSocket):  # type: ignore[no-untyped-def]
        yield

    with pytest.raises(RouteError) as error:
        Route("/a", generator_handler, WebSocket)
    assert "generator_handler" in str(error.value)


def test_handler_missing_a_path_parameter() -> None:
    async def lacks_room(ws: WebSocket) -> None: ...

    with pytest.raises(RouteError) as error:
        Route("/chat/{room}", lacks_room, WebSocket)
    message = str(error.value)
    assert "lacks_room" in message and "room" in message and "/chat/{room}" in message


def test_handler_with_an_extra_required_parameter() -> None:
    async def extra_handler(ws: WebSocket, room: str, token: str) -> None: ...

    with pytest.raises(RouteError) as error:
        Route("/chat/{room}", extra_handler, WebSocket)
    message = str(error.value)
    assert "'token'" in message and "/chat/{room}" in message


def test_handler_without_a_websocket_parameter() -> None:
    async def no_socket() -> None: ...

    async def only_path(room: str) -> None: ...

    for handler, template in ((no_socket, "/a"), (only_path, "/chat/{room}")):
        with pytest.raises(RouteError) as error:
            Route(template, handler, WebSocket)
        assert handler.__name__ in str(error.value)
        assert "WebSocket" in str(error.value)


def test_a_parameter_annotated_with_another_type_is_not_the_websocket() -> None:
    async def typed_handler(count: int) -> None: ...

    with pytest.raises(RouteError) as error:
        Route("/a", typed_handler, WebSocket)
    assert "'count'" in str(error.value)


def test_route_error_is_a_value_error() -> None:
    assert issubclass(RouteError, ValueError)


def test_duplicate_templates_fail_at_the_second_decoration() -> None:
    app = FastrAPI()

    @app.websocket("/chat/{room}")
    async def first(ws: WebSocket, room: str) -> None: ...

    with pytest.raises(RouteError) as error:

        @app.websocket("/chat/{name}")
        async def second(ws: WebSocket, name: str) -> None: ...

    message = str(error.value)
    assert "/chat/{name}" in message and "/chat/{room}" in message
    # The first registration is untouched, and routes of other shapes still register.
    assert [route.endpoint for route in app.websocket_router.routes] == [first]

    @app.websocket("/chat/{n:int}")
    async def third(ws: WebSocket, n: int) -> None: ...

    assert len(app.websocket_router.routes) == 2


def test_decoration_errors_come_from_the_app_decorator_too() -> None:
    app = FastrAPI()
    with pytest.raises(RouteError, match="needs_room"):

        @app.websocket("/chat/{room}")
        async def needs_room(ws: WebSocket) -> None: ...

    assert app.websocket_router.routes == []


# -- the router ----------------------------------------------------------------


def test_the_first_registered_match_wins() -> None:
    async def by_number(ws: WebSocket, key: int) -> None: ...

    async def by_name(ws: WebSocket, key: str) -> None: ...

    numbers_first = Router()
    numbers_first.add(Route("/items/{key:int}", by_number, WebSocket))
    numbers_first.add(Route("/items/{key}", by_name, WebSocket))
    found = numbers_first.match("/items/5")
    assert found is not None and found[0].endpoint is by_number and found[1] == {"key": 5}
    found = numbers_first.match("/items/five")
    assert found is not None and found[0].endpoint is by_name and found[1] == {"key": "five"}

    names_first = Router()
    names_first.add(Route("/items/{key}", by_name, WebSocket))
    names_first.add(Route("/items/{key:int}", by_number, WebSocket))
    found = names_first.match("/items/5")
    assert found is not None and found[0].endpoint is by_name and found[1] == {"key": "5"}


def test_no_match_is_none() -> None:
    router = Router()
    assert router.match("/anything") is None
    router.add(Route("/chat/{room}", _ws_only_room, WebSocket))
    assert router.match("/chat") is None
    assert router.match("/chat/") is None
    assert router.match("/chat/a/b") is None
    assert router.match("/chatroom/a") is None
    assert router.match("") is None


async def _ws_only_room(ws: WebSocket, room: str) -> None: ...


def _fixed_router() -> Router:
    async def handler(ws: WebSocket, **params: Any) -> None: ...

    router = Router()
    for template in (
        "/",
        "/chat/{room}",
        "/items/{n:int}",
        "/prices/{p:float}/x{q:float}y",
        "/orders/{id:uuid}",
        "/files/{rest:path}",
        "/café/{a}-{b:int}",
        "/{anything:path}",
    ):
        router.add(Route(template, handler, WebSocket))
    return router


FIXED_ROUTER = _fixed_router()
path_characters = st.one_of(
    st.sampled_from("/%-.eE+0123456789abcdefABCDEF?#xy{}"),
    st.characters(),  # surrogates included: a lenient decoder may hand them over
)


@settings(max_examples=300, deadline=None)
@given(path=st.one_of(st.text(path_characters), st.text()))
def test_random_paths_never_make_the_router_raise(path: str) -> None:
    found = FIXED_ROUTER.match(path)
    if found is not None:
        route, params = found
        assert route in FIXED_ROUTER.routes
        assert set(params) == set(route.template.parameter_names)


@settings(max_examples=100, deadline=None)
@given(spec=route_specs(), path=st.text(path_characters))
def test_random_paths_against_random_routes_never_raise(spec: RouteSpec, path: str) -> None:
    router = Router()
    route = Route(spec.template, spec.handler, WebSocket)
    router.add(route)
    found = router.match(path)
    assert found is None or found[0] is route


def test_huge_integers_do_not_make_matching_raise() -> None:
    async def handler(ws: WebSocket, n: int) -> None: ...

    router = Router()
    router.add(Route("/items/{n}", handler, WebSocket))
    found = router.match("/items/" + "9" * 5000)  # past int()'s digit limit
    assert found is None or isinstance(found[1]["n"], int)
    found = router.match("/items/" + "9" * 100)
    assert found is not None and found[1] == {"n": int("9" * 100)}


def test_floats_round_trip_exactly() -> None:
    async def handler(ws: WebSocket, x: float) -> None: ...

    route = Route("/v/{x}", handler, WebSocket)
    for value in (0.1, -0.0, 1e16, 5e-324, -1.7976931348623157e308, 123456789.125):
        found = route.match(route.path_for(x=value))
        assert found is not None
        assert repr(found["x"]) == repr(value)
        assert math.copysign(1.0, found["x"]) == math.copysign(1.0, value)
