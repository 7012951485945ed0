"""Domain errors and the one place they become HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger("leadscore.serving")


class ServingError(Exception):
    status_code = 400

    def __init__(self, detail: str, field: list[str | int] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidLeadData(ServingError):
    """422. ``field``/``detail`` name the first offending field; ``more`` lists the others (path, message)."""

    status_code = 422
    MAX_LISTED = 50  # offending fields listed in one answer; finders may stop once they have one more

    def __init__(
        self, detail: str, field: list[str | int] | None = None, more: Sequence[tuple[list[str | int], str]] = ()
    ) -> None:
        super().__init__(detail, field)
        self.more = list(more)

    @classmethod
    def listing(cls, problems: list[tuple[list[str | int], str]]) -> InvalidLeadData:
        """The error for every offending field found, as (path, message) pairs, the first one first; past
        :attr:`MAX_LISTED` one last item says there are more."""
        listed = problems[: cls.MAX_LISTED] or [(["body"], "invalid input")]
        if len(problems) > cls.MAX_LISTED:
            listed.append((["body"], f"more offending fields: {cls.MAX_LISTED} are listed"))
        (field, detail), *more = listed
        return cls(detail, field=field, more=more)


class TargetUnreachable(InvalidLeadData):
    """422: no cut-off reaches the requested figure; ``ctx`` carries the best reachable value (and its cut-off)."""

    def __init__(self, detail: str, field: list[str | int], best_reachable: float, cutoff: float | None) -> None:
        super().__init__(detail, field=field)
        self.ctx = {"best_reachable": best_reachable, "cutoff": cutoff}


class PayloadTooLarge(ServingError):
    status_code = 413


class NoModelLoaded(ServingError):
    status_code = 503


class NotAuthenticated(ServingError):
    status_code = 401


class Forbidden(ServingError):
    status_code = 403


class NotFound(ServingError):
    status_code = 404


class Conflict(ServingError):
    status_code = 409


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors to status + JSON once; never leak a traceback as a 500 body."""

    @app.exception_handler(ServingError)
    async def _domain(_: Request, exc: ServingError) -> JSONResponse:
        body: dict[str, object] = {"detail": exc.detail}
        if exc.field is not None:
            problems = [(exc.field, exc.detail), *getattr(exc, "more", ())]
            items: list[dict[str, object]] = [
                {"loc": loc, "msg": msg, "type": type(exc).__name__} for loc, msg in problems
            ]
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                items[0]["ctx"] = ctx
            body = {"detail": items}
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    from sqlalchemy.exc import OperationalError

    @app.exception_handler(OperationalError)
    async def _store_busy(request: Request, exc: OperationalError) -> JSONResponse:
        # The store is locked for longer than its busy timeout (SQLite under a burst of writes) or unreachable:
        # a condition to retry, not a server error; the client is told when.
        log.warning("store busy or unreachable on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": "the store is busy or unreachable; nothing was changed, retry in a moment"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)
