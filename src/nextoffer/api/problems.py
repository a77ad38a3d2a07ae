"""RFC 9457 problem details for every error the API returns, each with the request id."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from nextoffer.domain.errors import (
    BackendUnavailableError,
    BusyError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NextOfferError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
)
from nextoffer.store import DatabaseError
from nextoffer.store.engine import is_database_down

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://nextoffer.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
RFC_9110_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
"""Titles as RFC 9110 names them (the middleware's 413 and the input guard's 422 do too);
Python before 3.13 still has the older phrases."""
BACKEND_RETRY_AFTER_S = 5
"""Retry-After of a 503 while a backend (the database, the broker...) cannot be reached."""


class ValidationItem(BaseModel):
    """One invalid value of a request: where it is, what is wrong, pydantic's error type."""

    loc: list[str] = Field(description="where: body, query, path or header, then the field")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document: every 4xx and 5xx answer of the API is one."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://nextoffer.dev/problems/validation-error",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "query.k: Input should be less than or equal to 50",
                    "instance": "/v1/customers/C00000042/offers",
                    "request_id": "3f1c2a9d8b7e4f60a1b2c3d4e5f60718",
                    "errors": [
                        {
                            "loc": ["query", "k"],
                            "msg": "Input should be less than or equal to 50",
                            "type": "less_than_equal",
                        }
                    ],
                }
            ]
        },
    )

    type: str = Field(description="a URI naming the kind of problem (stable: branch on it)")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong, for a person")
    instance: str = Field(description="the request's path")
    request_id: str | None = Field(
        description="the X-Request-ID of the request: quote it when asking about an error"
    )
    errors: list[ValidationItem] | None = Field(
        None, description="validation problems only: every invalid value of the request"
    )


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self, request: Request) -> JSONResponse:
        """The problem+json response: type, title, status, detail, instance, request_id."""
        title = RFC_9110_TITLES.get(self.status) or HTTPStatus(self.status).phrase
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + (self.kind or title.lower().replace(" ", "-")),
            "title": title,
            "status": self.status,
            "detail": self.detail,
            "instance": request.url.path,
            "request_id": getattr(request.state, "request_id", None),
        }
        body.update(self.extra)
        return JSONResponse(
            body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE
        )


def unauthorized(detail: str) -> ProblemError:
    """A 401 that names the bearer scheme (an API key is the other way in)."""
    return ProblemError(
        401,
        detail,
        kind="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="nextoffer"'},
    )


# What each error the routes and use cases raise answers with. Starlette picks the handler
# of the most specific class listed, so a NextOfferError not listed is a 400.
_ANSWERS: dict[type[Exception], Callable[[Any], ProblemError]] = {
    NotFoundError: lambda exc: ProblemError(404, str(exc)),
    ConflictError: lambda exc: ProblemError(409, str(exc), kind="conflict"),
    InvalidRequestError: lambda exc: ProblemError(422, str(exc), kind=exc.kind, extra=exc.extra),
    RateLimitedError: lambda exc: ProblemError(
        429, str(exc), kind="rate-limited", headers={"Retry-After": str(exc.retry_after_s)}
    ),
    RegistryError: lambda exc: ProblemError(409, str(exc), kind="registry"),
    BusyError: lambda exc: ProblemError(
        503, str(exc), kind="busy", headers={"Retry-After": str(exc.retry_after_s)}
    ),
    BackendUnavailableError: lambda exc: ProblemError(
        503,
        str(exc),
        kind="backend-unavailable",
        headers={"Retry-After": str(BACKEND_RETRY_AFTER_S)},
    ),
    ConfigError: lambda exc: ProblemError(400, str(exc), kind="bad-request"),
    NextOfferError: lambda exc: ProblemError(400, str(exc), kind="bad-request"),
    ValueError: lambda exc: ProblemError(422, str(exc), kind="validation-error"),
}


def _answer_with(
    answer: Callable[[Any], ProblemError],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return answer(exc).response(request)

    return handler


def install_problem_handlers(app: FastAPI) -> None:
    """Map every exception the app can raise to a problem document."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return exc.response(request)

    for error, answer in _ANSWERS.items():
        app.add_exception_handler(error, _answer_with(answer))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return ProblemError(
            422, detail, kind="validation-error", extra={"errors": errors}
        ).response(request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only (POST of
            # /v1/experiments, not its GET); RFC 9110 wants every method the path has.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return ProblemError(exc.status_code, str(exc.detail), headers=headers).response(request)

    @app.exception_handler(DatabaseError)
    async def _database(request: Request, exc: DatabaseError) -> JSONResponse:
        return _database_problem(request, exc).response(request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_database_down(exc):
            return _database_problem(request, exc).response(request)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ProblemError(500, "internal error; the request id is in the logs").response(request)


def _database_problem(request: Request, exc: Exception) -> ProblemError:
    """A 503 while the database cannot be used (retry later), else the 500 of any bug."""
    if is_database_down(exc):
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return ProblemError(
            503,
            "the database cannot be reached; retry after Retry-After",
            kind="backend-unavailable",
            headers={"Retry-After": str(BACKEND_RETRY_AFTER_S)},
        )
    log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return ProblemError(500, "internal error; the request id is in the logs")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path."""
    path = request.url.path
    found: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        methods = getattr(route, "methods", None)
        if regex is not None and methods and regex.match(path):
            found.update(methods)
    return sorted(found)
