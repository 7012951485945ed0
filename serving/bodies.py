"""The scoring routes' fast lane in FastAPI: msgspec bodies, direct routes, and their OpenAPI entries.

The scoring routes decode and encode their bodies with msgspec (see serving/schemas.py for why) and are
served as :class:`DirectRoute`: FastAPI documents them but does not solve parameters for them per
request. This module is the glue: :func:`json_body` decodes a request body (a 422 naming the offending
field on bad input), :func:`query_flag` reads a boolean query parameter as FastAPI would,
:func:`json_response` encodes an answer, and :func:`document_structs` / :func:`request_body` /
:func:`response_body` / :func:`flag_parameter` document them in ``/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from serving.errors import InvalidLeadData
from serving.schemas import AttributeKey, AttributeValue

REF = "#/components/schemas/{name}"
_ENCODER = msgspec.json.Encoder()
_SEGMENT = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]|\[(\.\.\.)\]")
_MESSAGE = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`(?: in `(?P<parent>[^`]*)`)?)?$", re.S)
_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]*)`")
_BOOL = TypeAdapter(bool)
T = TypeVar("T")


class DirectRoute(APIRoute):
    """A route whose endpoint takes the request and returns the response itself.

    FastAPI documents it like any route (give the parameters and bodies in ``openapi_extra`` and
    ``responses``, since the endpoint's signature declares none), but serves it as a plain ASGI call of
    the endpoint: no parameters or dependencies solved per request (~30 us a call, measured in-process) and
    no per-request exit stacks (a few us; it has no dependencies to close). The endpoint checks its own
    inputs, with :func:`json_body` and :func:`query_flag`; errors it raises go to the app's exception
    handlers (the app's exception middleware), as from any route.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await endpoint(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # (never served: ``app`` above is)


def query_flag(request: Request, name: str, default: bool) -> bool:
    """A boolean query parameter read as FastAPI reads one (``true``/``1``/``yes``/``on``...); 422 otherwise."""
    query = request.scope["query_string"]
    if not query:
        return default
    value = _flag_of(query, name, default)
    if isinstance(value, str):
        raise InvalidLeadData(value, field=["query", name])
    return value


@functools.lru_cache(maxsize=256)
def _flag_of(query: bytes, name: str, default: bool) -> bool | str:
    """The flag's value in a raw query string, or the message for a bad one (callers send the same few)."""
    raw = QueryParams(query).get(name)
    if raw is None:
        return default
    try:
        return _BOOL.validate_python(raw)
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"])


def json_body(struct: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A reader of the request body as ``struct`` (422 with the field's path on bad input)."""
    decoder = msgspec.json.Decoder(struct)

    async def body(request: Request) -> T:
        raw = await request.body()
        try:
            return decoder.decode(raw)
        except msgspec.ValidationError as exc:
            message, loc = error_location(str(exc), raw)
        except msgspec.DecodeError as exc:
            message, loc = _syntax_error_location(str(exc), raw)
        raise InvalidLeadData(message, field=["body", *loc])

    return body


def json_response(value: object, status_code: int = 200) -> Response:
    """An ``application/json`` response encoded by msgspec."""
    return Response(_ENCODER.encode(value), status_code=status_code, media_type="application/json")


def error_location(message: str, raw: bytes) -> tuple[str, list[str | int]]:
    """The message and field path of a msgspec validation error (``$.leads[3].as_of`` -> leads, 3, as_of)."""
    match = _MESSAGE.match(message)
    assert match is not None  # the pattern matches any text
    text = match["msg"]
    where = match["parent"] if match["path"] == "key" else match["path"]
    loc: list[str | int] = _parse_path(where or "$")
    if match["path"] == "key":
        loc.append("...")
    field = _FIELD.search(text)
    if field:
        loc.append(field[1])
    if "..." in loc:
        loc = _name_dict_key(loc, raw)
    return text, loc


def _parse_path(path: str) -> list[str | int]:
    loc: list[str | int] = []
    for name, index, dots in _SEGMENT.findall(path[1:]):
        loc.append(name or (int(index) if index else dots))
    return loc


def _name_dict_key(loc: list[str | int], raw: bytes) -> list[str | int]:
    """Replace msgspec's ``[...]`` (an unnamed dict key) by the first offending key of that dict."""
    at = loc.index("...")
    try:
        node: Any = json.loads(raw)
        for part in loc[:at]:
            node = node[part]
    except (ValueError, KeyError, IndexError, TypeError):
        return loc
    if not isinstance(node, dict):
        return loc
    for key, value in node.items():
        if not (_valid(key, AttributeKey) and _valid(value, AttributeValue)) or _not_finite(value):
            return [*loc[:at], key, *loc[at + 1 :]]
    return loc


def _valid(value: object, kind: object) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def _not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _syntax_error_location(message: str, raw: bytes) -> tuple[str, list[str | int]]:
    """Malformed JSON: NaN and Infinity are named by field (Python's parser reads them); else the position."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        return f"malformed JSON: {exc}", []
    except RecursionError:
        return "malformed JSON: nested too deeply", []
    path = _first_non_finite(doc, [])
    if path is None:
        return f"malformed JSON: {message}", []
    return "NaN and infinity are not allowed; send a finite number or null", path


def _first_non_finite(node: object, path: list[str | int]) -> list[str | int] | None:
    if _not_finite(node):
        return path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _first_non_finite(value, [*path, key])
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------------
# OpenAPI
# ---------------------------------------------------------------------------------------------
def document_structs(app: FastAPI, *structs: type) -> None:
    """Add the JSON schemas of ``structs`` (and what they refer to) to the app's ``/openapi.json``.

    FastAPI only documents pydantic models; routes refer to these with :func:`request_body` and
    :func:`response_body`.
    """
    _, components = msgspec.json.schema_components(structs, ref_template=REF)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def request_body(struct: type) -> dict[str, Any]:
    """``openapi_extra`` documenting ``struct`` as the JSON request body."""
    schema = {"$ref": REF.format(name=struct.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def flag_parameter(name: str, default: bool, description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting an optional boolean query parameter (see :func:`query_flag`)."""
    schema = {"type": "boolean", "default": default, "title": name.title()}
    return {
        "parameters": [{"name": name, "in": "query", "required": False, "schema": schema, "description": description}]
    }


def response_body(struct: type, description: str) -> dict[int | str, dict[str, Any]]:
    """A ``responses`` entry documenting ``struct`` as the 200 answer."""
    schema = {"$ref": REF.format(name=struct.__name__)}
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}
