"""What the client raises: the API's problem documents, typed."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Anything the nextoffer client raises."""


class ProblemError(ClientError):
    """The API answered with an error (an RFC 9457 problem document, or a bare status).

    `status`, `title`, `detail` and `request_id` (quote it to the operator: it is in the
    server's logs) come from the document; `body` is the whole of it.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        problem_type: str = "about:blank",
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" + (f" [{request_id}]" if request_id else ""))
        self.status = status
        self.title = title
        self.detail = detail
        self.type = problem_type
        """The problem document's `type` URI."""
        self.request_id = request_id
        self.body = body or {}
        self.retry_after_s = retry_after_s
        """The server's Retry-After, in seconds, on a 429 or 503."""


class RateLimitedError(ProblemError):
    """429: over the key's requests per minute, still so after the client's retries."""


class UnavailableError(ProblemError):
    """503: the API or a backend it needs is unavailable, still so after the retries."""


class NotFoundError(ProblemError):
    """404: no such customer, product, experiment..."""


class ValidationError(ProblemError):
    """422: the request is invalid; `body["errors"]` lists what, when the API says."""


class AuthError(ProblemError):
    """401 (no or bad credentials) or 403 (a role too low)."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    422: ValidationError,
    429: RateLimitedError,
    503: UnavailableError,
}


def problem_class(status: int) -> type[ProblemError]:
    """The ProblemError subclass raised for `status`."""
    return _BY_STATUS.get(status, ProblemError)
