"""`Client`: the nextoffer API from Python, blocking (httpx)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from pydantic import TypeAdapter

from nextoffer.client import calls
from nextoffer.client.calls import Call
from nextoffer.client.errors import ClientError
from nextoffer.client.models import (
    ChurnRisk,
    ChurnRiskItem,
    EventsResult,
    Experiment,
    Health,
    Models,
    OffersAnswer,
    OffersItem,
    Product,
    ProductPage,
    Segment,
)
from nextoffer.client.retry import RETRY_STATUSES, RetryPolicy

_EXPERIMENTS = TypeAdapter(list[Experiment])
_OFFERS_ITEMS = TypeAdapter(list[OffersItem])
_CHURN_ITEMS = TypeAdapter(list[ChurnRiskItem])


class Client:
    """The nextoffer API over HTTP: typed answers, retries, pagination.

    Give `api_key` (a machine's key) or `token` (a login's bearer token). 429 and 503 are
    retried after the server's Retry-After (else with jittered exponential backoff), up
    to `retry.max_attempts`; connection errors are retried for repeatable calls only.
    An error answer raises a typed `ProblemError` (status, title, detail, request_id).
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            headers=calls.auth_headers(api_key, token),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # -- customers -------------------------------------------------------------------------

    def offers(
        self,
        customer_id: str,
        *,
        k: int | None = None,
        channel: str | None = None,
        session_id: str | None = None,
    ) -> OffersAnswer:
        """The customer's next-best offers, best first."""
        call = calls.offers(customer_id, k, channel, session_id)
        return OffersAnswer.model_validate(self.send(call))

    def offers_batch(
        self,
        customer_ids: Sequence[str],
        *,
        k: int | None = None,
        channel: str | None = None,
        session_id: str | None = None,
    ) -> list[OffersItem]:
        """One item per id, in order: each the single call's answer, or its problem.

        More than 1,000 ids go in several requests; each id counts against the rate limit.
        """
        items: list[OffersItem] = []
        for part in calls.chunks(customer_ids):
            body = self.send(calls.offers_batch(part, k, channel, session_id))
            items.extend(_OFFERS_ITEMS.validate_python(body["items"]))
        return items

    def churn_risk(self, customer_id: str, *, history: int | None = None) -> ChurnRisk:
        """The customer's latest churn score, reasons and history."""
        return ChurnRisk.model_validate(self.send(calls.churn_risk(customer_id, history)))

    def churn_risk_batch(
        self, customer_ids: Sequence[str], *, history: int | None = None
    ) -> list[ChurnRiskItem]:
        """One item per id, in order: each the single call's answer, or its problem."""
        items: list[ChurnRiskItem] = []
        for part in calls.chunks(customer_ids):
            body = self.send(calls.churn_risk_batch(part, history))
            items.extend(_CHURN_ITEMS.validate_python(body["items"]))
        return items

    def segment(self, customer_id: str) -> Segment:
        """The customer's segment."""
        return Segment.model_validate(self.send(calls.segment(customer_id)))

    # -- catalogue, events, experiments, models ------------------------------------------

    def products(
        self,
        *,
        category: str | None = None,
        active: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ProductPage:
        """One page of the catalogue, by product id."""
        return ProductPage.model_validate(
            self.send(calls.products(category, active, limit, offset))
        )

    def iter_products(
        self, *, category: str | None = None, active: bool | None = None, page_size: int = 100
    ) -> Iterator[Product]:
        """Every product, page after page, until the catalogue's total is reached."""
        offset = 0
        while True:
            page = self.products(category=category, active=active, limit=page_size, offset=offset)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def post_events(self, events: Iterable[Mapping[str, Any]]) -> EventsResult:
        """Record offer events (impressions, clicks, accepts, declines); ids are set if absent."""
        return EventsResult.model_validate(self.send(calls.events(events)))

    def experiments(self, *, status: str | None = None) -> list[Experiment]:
        """Experiments, newest first (`running` or `stopped` only, if given)."""
        return _EXPERIMENTS.validate_python(self.send(calls.experiments(status)))

    def models(self) -> Models:
        """Registered model versions and champions (operator role)."""
        return Models.model_validate(self.send(calls.models()))

    def health(self) -> Health:
        """Liveness of the API process."""
        return Health.model_validate(self.send(calls.health()))

    # -- the transport ---------------------------------------------------------------------

    def send(self, call: Call) -> Any:
        """Make `call`, retrying as the policy says; its JSON, or a typed ProblemError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json
                )
            except httpx.TransportError as exc:
                wait = self.retry.wait_s(attempt, None) if call.idempotent else None
                if wait is None:
                    raise ClientError(f"{call.method} {call.path}: {exc!r}") from exc
                self._sleep(wait)
                continue
            if response.status_code in RETRY_STATUSES:
                wait = self.retry.wait_s(attempt, calls.retry_after_s(response))
                if wait is not None:
                    self._sleep(wait)
                    continue
            return calls.answer_of(response)
