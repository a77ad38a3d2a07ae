"""A typed Python client of the nextoffer API (sync and async, on httpx).

Needs only httpx and pydantic (`pip install 'nextoffer[client]'`); importing it loads no
server code. docs/client.md shows it at work.
"""

from nextoffer.client.aio import AsyncClient
from nextoffer.client.errors import (
    AuthError,
    ClientError,
    NotFoundError,
    ProblemError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)
from nextoffer.client.models import (
    ChurnRisk,
    ChurnRiskItem,
    EventsResult,
    Experiment,
    Health,
    ItemProblem,
    Models,
    Offer,
    OffersAnswer,
    OffersItem,
    Product,
    ProductPage,
    Segment,
)
from nextoffer.client.retry import RetryPolicy
from nextoffer.client.sync import Client

__all__ = [
    "AsyncClient",
    "AuthError",
    "ChurnRisk",
    "ChurnRiskItem",
    "Client",
    "ClientError",
    "EventsResult",
    "Experiment",
    "Health",
    "ItemProblem",
    "Models",
    "NotFoundError",
    "Offer",
    "OffersAnswer",
    "OffersItem",
    "ProblemError",
    "Product",
    "ProductPage",
    "RateLimitedError",
    "RetryPolicy",
    "Segment",
    "UnavailableError",
    "ValidationError",
]
