"""Injected dependencies: the caller (by API key), role checks, the served model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.errors import Forbidden, NoModelLoaded, NotAuthenticated
from serving.model_source import Serving
from serving.store import Principal

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise NotAuthenticated("missing API key: send Authorization: Bearer <key>")
    principal = request.app.state.keys.authenticate(credentials.credentials)
    if principal is None:
        raise NotAuthenticated("unknown or revoked API key")
    return principal


def require(*roles: str, admin: bool = True) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting these roles (and admin, unless ``admin=False``)."""
    allowed = (*roles, "admin") if admin else roles

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role!r} may not do this (needs one of: {', '.join(allowed)})")
        return principal

    return check


async def get_serving(request: Request) -> Serving:
    current = request.app.state.holder.current
    if current is None:
        raise NoModelLoaded("no model is loaded yet (is a version aliased as champion?)")
    return current


AnyRole = Annotated[Principal, Depends(get_principal)]
Scorer = Annotated[Principal, Depends(require("crm"))]
Admin = Annotated[Principal, Depends(require())]
Served = Annotated[Serving, Depends(get_serving)]
