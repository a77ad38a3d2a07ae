"""What the API answers, as typed models of the client's own (no server code imported).

Each model reads the API's JSON as it is documented in its OpenAPI document; fields the
server adds later are ignored, so an older client keeps working against a newer server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """An answer of the API: read-only, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Offer(Model):
    """One offer, best first in its answer."""

    product_id: str
    name: str
    category: str
    score: float
    propensity: float
    expected_value: float
    reasons: list[str]
    model_version: str


class ExperimentTag(Model):
    """The experiment and variant that shaped an answer."""

    experiment_id: str
    variant: str
    strategy: str


class OffersAnswer(Model):
    """A customer's next-best offers (`GET /v1/customers/{id}/offers`)."""

    customer_id: str
    offers: list[Offer]
    source: str
    model_version: str | None
    degraded: bool
    notes: list[str]
    experiment: ExperimentTag | None
    control: bool = False
    withheld_reason: str | None = None


class RiskReason(Model):
    """One reason of a churn score."""

    feature: str
    value: Any
    contribution: float
    text: str


class RiskPoint(Model):
    """One past churn score."""

    scored_at: datetime
    score: float
    band: str
    model_version: str


class ChurnRisk(Model):
    """A customer's churn risk (`GET /v1/customers/{id}/churn-risk`)."""

    customer_id: str
    score: float
    band: str
    scored_at: datetime
    model_version: str
    top_reasons: list[RiskReason]
    history: list[RiskPoint]


class Segment(Model):
    """A customer's segment (`GET /v1/customers/{id}/segment`)."""

    customer_id: str
    segment_id: int
    name: str
    description: str
    size: int
    features_as_of: datetime


class ItemProblem(Model):
    """Why one id of a batch has no answer: the problem its single call answers."""

    type: str
    title: str
    status: int
    detail: str


class OffersItem(Model):
    """One customer of `offers_batch`: its answer, or its problem (`status` says which)."""

    customer_id: str
    status: int
    answer: OffersAnswer | None
    problem: ItemProblem | None = None


class ChurnRiskItem(Model):
    """One customer of `churn_risk_batch`: its answer, or its problem."""

    customer_id: str
    status: int
    answer: ChurnRisk | None
    problem: ItemProblem | None = None


class Product(Model):
    """A catalogue entry with its eligibility rules."""

    product_id: str
    name: str
    category: str
    price: float
    margin: float
    upfront_price: float
    contract_types: list[str]
    min_tenure_months: int
    regions: list[str]
    channels: list[str]
    requires_category: str | None
    is_retention_offer: bool
    active: bool


class ProductPage(Model):
    """One page of the catalogue (`GET /v1/products`)."""

    total: int
    limit: int
    offset: int
    items: list[Product]


class EventsResult(Model):
    """What `POST /v1/events` did with the events sent."""

    accepted: int
    stored: int
    duplicates: int
    spooled: int
    event_ids: list[str]
    rejected: list[dict[str, str]] = Field(default_factory=list)


class Variant(Model):
    """One arm of an experiment."""

    name: str
    strategy: str
    weight: float
    model_version: int | None = None


class Experiment(Model):
    """An experiment's design and status."""

    experiment_id: str
    name: str
    unit: str
    status: str
    variants: list[Variant]
    created_at: datetime
    stopped_at: datetime | None
    created_by: str | None


class ModelVersion(Model):
    """One registered model version."""

    kind: str
    version: int
    created_at: datetime
    is_champion: bool
    artifacts_deleted: bool
    metrics: dict[str, float]
    tags: dict[str, str]
    data_mismatches: list[str] = Field(default_factory=list)


class Models(Model):
    """Registered models, champions and what the API process serves (`GET /v1/models`)."""

    champions: dict[str, int | None]
    serving: dict[str, str | None]
    versions: list[ModelVersion]


class Health(Model):
    """The API's liveness (`GET /health`)."""

    status: str
