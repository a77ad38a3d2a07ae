"""The low rate limit of the `limited` server (tests/e2e/conftest.py) and helpers for it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

LOW_LIMIT = 5
"""Requests per minute per key on the `limited` server."""


def fresh_window(min_left_s: float = 12.0) -> None:
    """Wait, if need be, until the current one-minute window has `min_left_s` to run."""
    left = 60.0 - time.time() % 60.0
    if left < min_left_s:
        time.sleep(left + 0.2)


def use_up(api: Api, customer_id: str, key: str) -> httpx.Response:
    """Single calls with `key` until its window is used up; the first refusal (429)."""
    for _ in range(LOW_LIMIT + 1):
        answer = api.client.get(f"/v1/customers/{customer_id}/offers", headers={"X-API-Key": key})
        if answer.status_code == 429:
            return answer
    raise AssertionError(f"no 429 after {LOW_LIMIT + 1} requests")
