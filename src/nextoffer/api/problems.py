"""RFC 9457 problem details for every error the API returns, each with the request id."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nextoffer.domain.errors import (
    BackendUnavailableError,
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


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response: type, title, status, detail, instance, request_id."""
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def install_problem_handlers(app: FastAPI) -> None:
    """Map every exception the app can raise to a problem document."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(
            request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers, extra=exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

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
        return problem(request, 422, detail, kind="validation-error", extra={"errors": errors})

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return problem(request, 404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return problem(request, 409, str(exc), kind="conflict")

    @app.exception_handler(InvalidRequestError)
    async def _unprocessable(request: Request, exc: InvalidRequestError) -> JSONResponse:
        return problem(request, 422, str(exc), kind=exc.kind, extra=exc.extra)

    @app.exception_handler(RateLimitedError)
    async def _limited(request: Request, exc: RateLimitedError) -> JSONResponse:
        return problem(
            request,
            429,
            str(exc),
            kind="rate-limited",
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(RegistryError)
    async def _registry(request: Request, exc: RegistryError) -> JSONResponse:
        return problem(request, 409, str(exc), kind="registry")

    @app.exception_handler(BackendUnavailableError)
    async def _backend(request: Request, exc: BackendUnavailableError) -> JSONResponse:
        return problem(
            request, 503, str(exc), kind="backend-unavailable", headers={"Retry-After": "5"}
        )

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        return problem(request, 400, str(exc), kind="bad-request")

    @app.exception_handler(NextOfferError)
    async def _domain(request: Request, exc: NextOfferError) -> JSONResponse:
        return problem(request, 400, str(exc), kind="bad-request")

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return problem(request, 422, str(exc), kind="validation-error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(request, 500, "internal error; the request id is in the logs")
