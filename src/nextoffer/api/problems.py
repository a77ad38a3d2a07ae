"""RFC 9457 problem details for every error the API returns, each with the request id."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://nextoffer.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


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
        title = HTTPStatus(self.status).phrase
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
        503, str(exc), kind="backend-unavailable", headers={"Retry-After": "5"}
    ),
    ConfigError: lambda exc: ProblemError(400, str(exc), kind="bad-request"),
    NextOfferError: lambda exc: ProblemError(400, str(exc), kind="bad-request"),
    ValueError: lambda exc: ProblemError(422, str(exc), kind="validation-error"),
    StarletteHTTPException: lambda exc: ProblemError(
        exc.status_code, str(exc.detail), headers=dict(exc.headers or {})
    ),
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ProblemError(500, "internal error; the request id is in the logs").response(request)
