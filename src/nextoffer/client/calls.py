"""The requests the client makes and how their answers read: shared by Client and AsyncClient.

No input/output here: a `Call` says what to send, `answer_of` turns a response into JSON
or a typed ProblemError, so the sync and async clients differ only in how they wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from nextoffer import __version__
from nextoffer.client.errors import ProblemError, problem_class
from nextoffer.client.retry import parse_retry_after

MAX_BATCH = 1000
"""Customer ids per batch request (the API's limit); longer lists go in several requests."""
USER_AGENT = f"nextoffer-client/{__version__}"


@dataclass(frozen=True)
class Call:
    """One request: method, path, query, JSON body, and whether repeating it is harmless."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    idempotent: bool = True
    """Repeatable after a connection error (the request may have reached the server)."""


def auth_headers(api_key: str | None, token: str | None) -> dict[str, str]:
    """The credentials header: X-API-Key for a machine's key, else a bearer token."""
    if (api_key is None) == (token is None):
        raise ValueError("give exactly one of api_key or token")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key is not None:
        headers["X-API-Key"] = api_key
    else:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _query(**params: Any) -> dict[str, Any]:
    """Query parameters without the ones left out (None)."""
    return {k: v for k, v in params.items() if v is not None}


def _customer(customer_id: str) -> str:
    return quote(customer_id, safe="")


def offers(customer_id: str, k: int | None, channel: str | None, session_id: str | None) -> Call:
    """`GET /v1/customers/{id}/offers`."""
    return Call(
        "GET",
        f"/v1/customers/{_customer(customer_id)}/offers",
        _query(k=k, channel=channel, session_id=session_id),
    )


def offers_batch(
    customer_ids: Sequence[str], k: int | None, channel: str | None, session_id: str | None
) -> Call:
    """`POST /v1/offers:batch` (a read: repeatable)."""
    body = _query(customer_ids=list(customer_ids), k=k, channel=channel, session_id=session_id)
    return Call("POST", "/v1/offers:batch", json=body)


def churn_risk(customer_id: str, history: int | None) -> Call:
    """`GET /v1/customers/{id}/churn-risk`."""
    return Call(
        "GET", f"/v1/customers/{_customer(customer_id)}/churn-risk", _query(history=history)
    )


def churn_risk_batch(customer_ids: Sequence[str], history: int | None) -> Call:
    """`POST /v1/churn-risk:batch` (a read: repeatable)."""
    return Call(
        "POST",
        "/v1/churn-risk:batch",
        json=_query(customer_ids=list(customer_ids), history=history),
    )


def segment(customer_id: str) -> Call:
    """`GET /v1/customers/{id}/segment`."""
    return Call("GET", f"/v1/customers/{_customer(customer_id)}/segment")


def products(category: str | None, active: bool | None, limit: int, offset: int) -> Call:
    """`GET /v1/products`: one page."""
    return Call(
        "GET",
        "/v1/products",
        _query(
            category=category,
            active=None if active is None else str(active).lower(),
            limit=limit,
            offset=offset,
        ),
    )


def events(items: Iterable[Mapping[str, Any]]) -> Call:
    """`POST /v1/events` as a batch; events without an id get one here.

    The API stores each event id once, so with every id set by the client a repeat after
    a connection error cannot count an event twice: the call is repeatable.
    """
    body = [{**item, "event_id": item.get("event_id") or str(uuid.uuid4())} for item in items]
    if not body:
        raise ValueError("no events to post")
    return Call("POST", "/v1/events", json={"events": body}, idempotent=True)


def experiments(status: str | None) -> Call:
    """`GET /v1/experiments`."""
    return Call("GET", "/v1/experiments", _query(status=status))


def models() -> Call:
    """`GET /v1/models` (operator role)."""
    return Call("GET", "/v1/models")


def health() -> Call:
    """`GET /health`."""
    return Call("GET", "/health")


def chunks(customer_ids: Sequence[str], size: int = MAX_BATCH) -> list[Sequence[str]]:
    """`customer_ids` in slices of at most `size` (at least one slice, to get the API's 422)."""
    ids = list(customer_ids)
    return [ids[i : i + size] for i in range(0, len(ids), size)] or [ids]


def retry_after_s(response: httpx.Response) -> float | None:
    """The response's Retry-After in seconds (delta-seconds or HTTP date), if any."""
    return parse_retry_after(response.headers.get("Retry-After"))


def answer_of(response: httpx.Response) -> Any:
    """The response's JSON; a typed ProblemError for any status from 400 on."""
    if response.status_code < 400:
        return response.json()
    raise problem_of(response)


def problem_of(response: httpx.Response) -> ProblemError:
    """The ProblemError a failed response stands for (its problem document when it has one)."""
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    phrase = response.reason_phrase or "error"
    return problem_class(status)(
        status,
        str(body.get("title") or phrase),
        str(body.get("detail") or response.text[:500] or phrase),
        problem_type=str(body.get("type") or "about:blank"),
        request_id=body.get("request_id") or response.headers.get("X-Request-ID"),
        body=body,
        retry_after_s=retry_after_s(response),
    )
