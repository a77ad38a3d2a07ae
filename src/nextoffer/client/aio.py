"""`AsyncClient`: the nextoffer API from Python, for asyncio (httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
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


class AsyncClient:
    """`Client`'s operations, awaited: the same answers, retries, errors and pagination."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=calls.auth_headers(api_key, token),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def offers(
        self,
        customer_id: str,
        *,
        k: int | None = None,
        channel: str | None = None,
        session_id: str | None = None,
    ) -> OffersAnswer:
        """The customer's next-best offers, best first."""
        call = calls.offers(customer_id, k, channel, session_id)
        return OffersAnswer.model_validate(await self.send(call))

    async def offers_batch(
        self,
        customer_ids: Sequence[str],
        *,
        k: int | None = None,
        channel: str | None = None,
        session_id: str | None = None,
    ) -> list[OffersItem]:
        """One item per id, in order: each the single call's answer, or its problem."""
        items: list[OffersItem] = []
        for part in calls.chunks(customer_ids):
            body = await self.send(calls.offers_batch(part, k, channel, session_id))
            items.extend(_OFFERS_ITEMS.validate_python(body["items"]))
        return items

    async def churn_risk(self, customer_id: str, *, history: int | None = None) -> ChurnRisk:
        """The customer's latest churn score, reasons and history."""
        return ChurnRisk.model_validate(await self.send(calls.churn_risk(customer_id, history)))

    async def churn_risk_batch(
        self, customer_ids: Sequence[str], *, history: int | None = None
    ) -> list[ChurnRiskItem]:
        """One item per id, in order: each the single call's answer, or its problem."""
        items: list[ChurnRiskItem] = []
        for part in calls.chunks(customer_ids):
            body = await self.send(calls.churn_risk_batch(part, history))
            items.extend(_CHURN_ITEMS.validate_python(body["items"]))
        return items

    async def segment(self, customer_id: str) -> Segment:
        """The customer's segment."""
        return Segment.model_validate(await self.send(calls.segment(customer_id)))

    async def products(
        self,
        *,
        category: str | None = None,
        active: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ProductPage:
        """One page of the catalogue, by product id."""
        call = calls.products(category, active, limit, offset)
        return ProductPage.model_validate(await self.send(call))

    async def iter_products(
        self, *, category: str | None = None, active: bool | None = None, page_size: int = 100
    ) -> AsyncIterator[Product]:
        """Every product, page after page, until the catalogue's total is reached."""
        offset = 0
        while True:
            page = await self.products(
                category=category, active=active, limit=page_size, offset=offset
            )
            for product in page.items:
                yield product
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def post_events(self, events: Iterable[Mapping[str, Any]]) -> EventsResult:
        """Record offer events (impressions, clicks, accepts, declines); ids are set if absent."""
        return EventsResult.model_validate(await self.send(calls.events(events)))

    async def experiments(self, *, status: str | None = None) -> list[Experiment]:
        """Experiments, newest first (`running` or `stopped` only, if given)."""
        return _EXPERIMENTS.validate_python(await self.send(calls.experiments(status)))

    async def models(self) -> Models:
        """Registered model versions and champions (operator role)."""
        return Models.model_validate(await self.send(calls.models()))

    async def health(self) -> Health:
        """Liveness of the API process."""
        return Health.model_validate(await self.send(calls.health()))

    async def send(self, call: Call) -> Any:
        """Make `call`, retrying as the policy says; its JSON, or a typed ProblemError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json
                )
            except httpx.TransportError as exc:
                wait = self.retry.wait_s(attempt, None) if call.idempotent else None
                if wait is None:
                    raise ClientError(f"{call.method} {call.path}: {exc!r}") from exc
                await self._sleep(wait)
                continue
            if response.status_code in RETRY_STATUSES:
                wait = self.retry.wait_s(attempt, calls.retry_after_s(response))
                if wait is not None:
                    await self._sleep(wait)
                    continue
            return calls.answer_of(response)
