"""Injected dependencies: the caller (by API key), role checks, the served model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from serving.bodies import json_body
from serving.errors import Forbidden, NoModelLoaded, NotAuthenticated
from serving.model_source import ModelHolder, Serving
from serving.score_log import ScoreLog
from serving.store import KeyStore, Principal
from serving.thresholds import ThresholdService

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    return await _principal(request.app.state.keys, credentials)


async def _principal(keys: KeyStore, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller of a request with these credentials (401 without a known key): the one check of every route."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise NotAuthenticated("missing API key: send Authorization: Bearer <key>")
    return await _authenticate(keys, credentials.credentials)


async def _authenticate(keys: KeyStore, key: str) -> Principal:
    """The key's principal: from the cache on the event loop, else from the database in a worker thread."""
    known, principal = keys.cached(key)
    if not known:
        principal = await run_in_threadpool(keys.authenticate, key)
    if principal is None:
        raise NotAuthenticated("unknown or revoked API key")
    return principal


def _check_role(principal: Principal, allowed: tuple[str, ...]) -> Principal:
    if principal.role not in allowed:
        raise Forbidden(f"role {principal.role!r} may not do this (needs one of: {', '.join(allowed)})")
    return principal


def require(*roles: str, admin: bool = True) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting these roles (and admin, unless ``admin=False``)."""
    allowed = (*roles, "admin") if admin else roles

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        return _check_role(principal, allowed)

    return check


async def get_serving(request: Request, _: Annotated[Principal, Depends(get_principal)]) -> Serving:
    """The served model, for a caller with a key: authentication comes first on every route (no key and no
    model is a 401, not a 503); FastAPI resolves the principal once per request."""
    return _serving(request.app.state.holder)


def _serving(holder: ModelHolder) -> Serving:
    current = holder.current
    if current is None:
        raise NoModelLoaded("no model is loaded yet (is a version aliased as champion?)")
    return current


class Services:
    """What the app loads at start-up (in ``lifespan``) for the scoring path, which reads it from here.

    The other routes find the same objects in ``app.state``; the hot path does not, since a Starlette
    ``State`` finds each attribute only after a failed ordinary lookup (an ``AttributeError`` built and
    dropped, ~1 us each).
    """

    keys: KeyStore
    holder: ModelHolder
    thresholds: ThresholdService
    score_log: ScoreLog | None = None


@dataclass(slots=True)  # built per request: plain slots (a frozen init costs twice as much)
class ScoringCall(Generic[T]):
    """A scoring request: who calls, the model that serves it, and the decoded body."""

    principal: Principal
    serving: Serving
    body: T


def scoring_call(struct: type[T], services: Services) -> Callable[[Request], Awaitable[ScoringCall[T]]]:
    """The scoring routes' checks in one step: key (401), role crm or admin (403), model (503), body (422).

    The scoring routes are the hot path and are served as direct routes (serving/bodies.py), without
    FastAPI's dependency resolution, which cost about as much per dependency as a cheap check itself; they
    call this instead: the same functions the dependencies of the other routes call (``bearer``,
    ``_principal``, ``_check_role``, ``_serving``), in the same order, with no copy of any check.
    """
    decode = json_body(struct)
    allowed = ("crm", "admin")

    async def call(request: Request) -> ScoringCall[T]:
        principal = _check_role(await _principal(services.keys, await bearer(request)), allowed)
        return ScoringCall(principal, _serving(services.holder), await decode(request))

    return call


# What scoring_call checks, for /docs:
SCORING_SECURITY: dict[str, object] = {"security": [{bearer.scheme_name: []}]}


AnyRole = Annotated[Principal, Depends(get_principal)]
Admin = Annotated[Principal, Depends(require())]
Served = Annotated[Serving, Depends(get_serving)]
