"""The scoring routes' fast lane in FastAPI: msgspec bodies, direct routes, and their OpenAPI entries.

The scoring routes decode and encode their bodies with msgspec (see serving/schemas.py for why) and are
served as :class:`DirectRoute`: FastAPI documents them but does not solve parameters for them per
request. This module is the glue: :func:`json_body` decodes a request body that :func:`read_body` reads (a
422 listing each offending field on bad input), :func:`query_flag` reads a boolean query parameter as
FastAPI would, :func:`json_response` encodes an answer, and :func:`document_structs` /
:func:`request_body` / :func:`response_body` / :func:`flag_parameter` document them in ``/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar, get_args, get_origin

import msgspec
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from serving.errors import InvalidLeadData

REF = "#/components/schemas/{name}"
_ENCODER = msgspec.json.Encoder()
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
    """A reader of the request body as ``struct`` (422 listing the offending fields on bad input)."""
    decoder = msgspec.json.Decoder(struct)

    async def body(request: Request) -> T:
        raw = await read_body(request.receive)
        try:
            return decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            refused = str(exc)  # msgspec stops at the first problem: list them all, off the event loop
        problems = await run_in_threadpool(body_problems, raw, struct, refused)
        raise InvalidLeadData.listing([(["body", *loc], message) for loc, message in problems])

    return body


async def read_body(receive: Receive) -> bytes:
    """The whole request body, read from the ASGI channel: what ``Request.body()`` gives, without the async
    generator it reads through (~5 us of a scoring request)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def json_response(value: object, status_code: int = 200) -> Response:
    """An ``application/json`` response encoded by msgspec."""
    return Response(_ENCODER.encode(value), status_code=status_code, media_type="application/json")


Problem = tuple[list[str | int], str]  # a field's path and what is wrong with it
MAX_LISTED = InvalidLeadData.MAX_LISTED  # the walk stops once it has found one more than are listed
NON_FINITE = "NaN and infinity are not allowed; send a finite number or null"


def body_problems(raw: bytes, struct: type, refused: str) -> list[Problem]:
    """The offending fields of a JSON body that msgspec ``refused`` (its message) as ``struct``, in document
    order (missing fields of an object after its other problems), at most one more than :data:`MAX_LISTED`.
    Malformed JSON is one problem at the body.

    The body is walked field by field against ``struct``'s own field types, so each problem's location is the
    walk's path, never parsed out of a library's message."""
    non_finite: list[float] = []

    def number(text: str) -> float:
        value = float(text)  # 1e400 reads as infinity
        if not math.isfinite(value):
            non_finite.append(value)
        return value

    def integer(text: str) -> int | float:
        if len(text) > sys.get_int_max_str_digits():  # beyond any float, and beyond what int() reads: infinite
            return number("-inf" if text.startswith("-") else "inf")
        return int(text)

    try:
        doc = json.loads(raw, parse_float=number, parse_int=integer, parse_constant=number)
    except ValueError as exc:
        return [([], f"malformed JSON: {exc}")]
    except RecursionError:
        return [([], "malformed JSON: nested too deeply")]
    found: list[Problem] = []
    _collect(doc, struct, [], found, bool(non_finite))
    if not found:  # msgspec refused what this walk accepts: its own message, at the body
        found.append(([], refused))
    return found


def _collect(doc: Any, kind: Any, path: list[str | int], found: list[Problem], non_finite: bool) -> None:
    """Append the problems of ``doc`` read as ``kind``; objects, maps and lists are searched field by field
    (skipping any part msgspec accepts whole), anything else reports msgspec's own message."""
    if len(found) > MAX_LISTED:
        return
    if _not_finite(doc):
        found.append((path, NON_FINITE))
        return
    base = get_args(kind)[0] if get_origin(kind) is Annotated else kind
    if isinstance(doc, dict) and isinstance(base, type) and issubclass(base, msgspec.Struct):
        parts: list[tuple[Any, Any, list[str | int]]] = []
        fields = _fields(base)
        for key, value in doc.items():
            if key in fields:
                parts.append((value, fields[key].type, [*path, key]))
            elif base.__struct_config__.forbid_unknown_fields:
                parts.append((None, None, [*path, key]))  # an unknown field
        missing = [name for name, field in fields.items() if field.required and name not in doc]
    elif isinstance(doc, dict) and get_origin(base) is dict:
        key_kind, value_kind = get_args(base)
        parts = [
            p for key, value in doc.items() for p in ((key, key_kind, [*path, key]), (value, value_kind, [*path, key]))
        ]
        missing = []
    elif isinstance(doc, list) and get_origin(base) is list:
        parts, missing = [(item, get_args(base)[0], [*path, i]) for i, item in enumerate(doc)], []
    else:
        _convert_problem(doc, kind, path, found)
        return
    if not missing and _convert_error(doc, kind) is None and not (non_finite and _has_non_finite(doc)):
        return  # all of it is fine
    before = len(found)
    for value, value_kind, where in parts:
        if value_kind is None:
            found.append((where, f"Object contains unknown field `{where[-1]}`"))
        else:
            _collect(value, value_kind, where, found, non_finite)
    found.extend(([*path, name], f"Object missing required field `{name}`") for name in missing)
    if len(found) == before:  # the parts are fine; the whole is not (e.g. too many of them)
        _convert_problem(doc, kind, path, found)


@functools.cache
def _fields(struct: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {field.encode_name: field for field in msgspec.structs.fields(struct)}


def _convert_error(doc: object, kind: Any) -> str | None:
    """msgspec's message when ``doc`` does not convert to ``kind`` (None when it does)."""
    try:
        msgspec.convert(doc, kind)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def _convert_problem(doc: object, kind: Any, path: list[str | int], found: list[Problem]) -> None:
    """msgspec's message for a part the walk does not split further (a scalar, or a whole that is wrong as a
    whole, such as a list that is too long). The walk knows where the part is, and a part converted on its own
    has no location in msgspec's message: nothing is read out of the message's text."""
    error = _convert_error(doc, kind)
    if error is not None:
        found.append((path, error))


def _not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _has_non_finite(doc: object) -> bool:
    if isinstance(doc, dict):
        return any(_has_non_finite(value) for value in doc.values())
    if isinstance(doc, list):
        return any(_has_non_finite(value) for value in doc)
    return _not_finite(doc)


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
