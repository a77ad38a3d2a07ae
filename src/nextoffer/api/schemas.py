"""Request and response bodies of the API, with the examples the OpenAPI document shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar, Unpack

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from nextoffer.domain.limits import MAX_TEXT_LEN, check_text
from nextoffer.domain.vocabulary import ID_PATTERN, Channel
from nextoffer.serving.insights import SegmentAnswer
from nextoffer.store.reads.catalogue import ProductView

Schema = TypeVar("Schema", bound=BaseModel)


def from_record(schema: type[Schema], record: object, **fields: Any) -> Schema:
    """`schema` filled from `record`'s attributes of the same names; `fields` give the rest."""
    found = {name: getattr(record, name) for name in schema.model_fields if name not in fields}
    return schema(**found, **fields)


def example(body: dict[str, Any], **config: Unpack[ConfigDict]) -> ConfigDict:
    """A model's config with `body` as the example the OpenAPI document shows."""
    return ConfigDict(**config, json_schema_extra={"examples": [body]})


MAX_VERSION = 2**31 - 1
"""The largest model version a request may name (the registry's versions are 32-bit)."""


class InputModel(BaseModel):
    """A request body: no text in it holds NUL, a control character or invalid Unicode.

    Nor runs past MAX_TEXT_LEN, however deep (fields set tighter limits of their own).
    Every request body model derives from it, so the check cannot be forgotten per field;
    PostgreSQL refuses NUL in text with an error, not a row.
    """

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        _check_strings(value)
        return value


def _check_strings(value: Any, where: str = "") -> None:
    """ValueError for the first string in `value` that no text may be, naming its key."""
    if isinstance(value, str):
        try:
            check_text(value, MAX_TEXT_LEN)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, f"{where} key" if where else "key")
            _check_strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _check_strings(item, f"{where}[{index}]")


class OfferOut(BaseModel):
    """One offer, after business rules."""

    # Validated straight from `domain.offers.Offer` (and `OffersAnswer`): no dict in between.
    model_config = ConfigDict(from_attributes=True)

    product_id: str
    name: str
    category: str
    score: float = Field(description="ranking score: propensity × value weight (× retention)")
    propensity: float = Field(description="predicted probability the customer takes it")
    expected_value: float = Field(description="propensity × margin, in currency units")
    reasons: list[str] = Field(description="at most three short human-readable reasons")
    model_version: str = Field(description="the offers model version, or 'popular'")


class ExperimentTagOut(BaseModel):
    """The experiment variant that served this answer."""

    model_config = ConfigDict(from_attributes=True)

    experiment_id: str
    variant: str
    strategy: str


class OffersOut(BaseModel):
    """A customer's next-best offers."""

    model_config = example(
        {
            "customer_id": "C00000042",
            "offers": [
                {
                    "product_id": "ADD-ROAM-EU",
                    "name": "Roaming Pass Europe",
                    "category": "addon",
                    "score": 0.0421,
                    "propensity": 0.0634,
                    "expected_value": 0.3487,
                    "reasons": [
                        "high predicted interest (top 10 % of this customer's scores)",
                        "complements your mobile plan",
                    ],
                    "model_version": "v3",
                }
            ],
            "source": "precomputed",
            "model_version": "v3",
            "degraded": False,
            "notes": [],
            "experiment": None,
            "control": False,
        },
        from_attributes=True,
    )

    customer_id: str
    offers: list[OfferOut]
    source: Literal[
        "cache", "precomputed", "live", "fallback", "popular", "control", "contact_policy"
    ] = Field(description="where the answer came from (`contact_policy`: nothing may be offered)")
    model_version: str | None
    degraded: bool = Field(description="true when a backend was down and a fallback answered")
    notes: list[str] = Field(description="what was unavailable, when degraded")
    experiment: ExperimentTagOut | None
    control: bool = Field(
        False,
        description="true when the customer is held out (the universal control group, or an "
        "experiment's control variant): no offer is shown; the answer the offers would have "
        "been is logged as the customer's exposure, never returned",
    )
    withheld_reason: (
        Literal["do_not_contact", "no_consent", "do_not_call", "quiet_hours", "policy_unavailable"]
        | None
    ) = Field(
        None,
        description="why the contact policy leaves nothing to offer now (docs/consent.md): "
        "the customer asked not to be contacted, gave no consent for the channel (or any), "
        "is on the do-not-call list, or it is the channel's quiet hours; null otherwise",
    )


class RiskReasonOut(BaseModel):
    """A feature that pushes the churn risk up."""

    feature: str
    value: Any
    contribution: float
    text: str


class RiskPointOut(BaseModel):
    """One past churn score."""

    scored_at: datetime
    score: float
    band: str
    model_version: str


class ChurnRiskOut(BaseModel):
    """A customer's churn risk."""

    model_config = example(
        {
            "customer_id": "C00000042",
            "score": 0.47,
            "band": "high",
            "scored_at": "2026-11-22T03:10:00Z",
            "model_version": "v2",
            "top_reasons": [
                {
                    "feature": "contract_type",
                    "value": "month_to_month",
                    "contribution": 0.61,
                    "text": "contract: month_to_month",
                }
            ],
            "history": [
                {
                    "scored_at": "2026-11-15T03:10:00Z",
                    "score": 0.39,
                    "band": "medium",
                    "model_version": "v2",
                }
            ],
        }
    )

    customer_id: str
    score: float = Field(description="calibrated probability of leaving within the horizon")
    band: str = Field(description="low, medium or high")
    scored_at: datetime
    model_version: str
    top_reasons: list[RiskReasonOut]
    history: list[RiskPointOut]


@pydantic_dataclass(
    frozen=True,
    config=example(
        {
            "customer_id": "C00000042",
            "segment_id": 3,
            "name": "young · heavy-data",
            "description": "stands out as young, heavy-data, app-active",
            "size": 10234,
            "features_as_of": "2026-11-01T00:00:00Z",
        }
    ),
)
class SegmentOut(SegmentAnswer):
    """The segment a customer belongs to."""


class ProductPageOut(BaseModel):
    """One page of the catalogue."""

    total: int
    limit: int
    offset: int
    items: list[ProductView] = Field(
        description="catalogue entries with their eligibility rules (empty list: no restriction)"
    )


class SimilarOut(BaseModel):
    """Products often taken together with a product."""

    model_config = example(
        {
            "product_id": "MOB-M",
            "method": "item_knn",
            "model_version": "v3",
            "similar": [
                {
                    "product_id": "ADD-ROAM-EU",
                    "name": "Roaming Pass Europe",
                    "category": "addon",
                    "similarity": 1.0,
                },
                {
                    "product_id": "ADD-DATA-10",
                    "name": "Extra Data 10 GB",
                    "category": "addon",
                    "similarity": 0.74,
                },
            ],
        }
    )

    product_id: str
    method: str = Field(description="the champion's recommender used (item_knn, ease, als)")
    model_version: str
    similar: list[SimilarItemOut]


class SimilarItemOut(BaseModel):
    """A similar product; similarity is relative to the best (1.0)."""

    product_id: str
    name: str
    category: str
    similarity: float


class EventIn(InputModel):
    """An offer response: impression, click, accept or decline."""

    model_config = example(
        {
            "event_id": "c1d0f6a2-8d43-4a35-9f0e-6a1b7d9e0f11",
            "customer_id": "C00000042",
            "event_type": "offer_impression",
            "product_id": "ADD-ROAM-EU",
            "channel": "app",
            "session_id": "s-8f2a91",
        },
        extra="forbid",
    )

    event_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="idempotency key; assigned on receipt when absent",
    )
    customer_id: str = Field(pattern=ID_PATTERN)
    event_type: Literal["offer_impression", "offer_click", "offer_accept", "offer_decline"]
    product_id: str = Field(pattern=ID_PATTERN)
    ts: datetime | None = Field(None, description="when it happened; default: on receipt")
    channel: Channel | None = Field(None, description="as in the import files' channel column")
    session_id: str | None = Field(None, max_length=128)
    experiment_id: str | None = Field(
        None,
        max_length=36,
        description="best left out: the server tags the event with the running experiment's "
        "variant of the customer (or session); a value that differs is refused (422)",
    )
    variant: str | None = Field(
        None,
        max_length=64,
        description="best left out (see experiment_id); must match the assignment when given",
    )


class EventBatchIn(InputModel):
    """Up to 1 000 events in one request."""

    model_config = example(
        {
            "events": [
                {
                    "event_id": "5b0e7c1e-2f4a-4c8e-9d61-0a7f3e2b9c44",
                    "customer_id": "C00000042",
                    "event_type": "offer_impression",
                    "product_id": "ADD-ROAM-EU",
                    "channel": "app",
                    "ts": "2026-11-23T10:00:00Z",
                },
                {
                    "event_id": "9a4d2f60-1c3b-4e7a-8f05-6d2c1b0e9a73",
                    "customer_id": "C00000042",
                    "event_type": "offer_click",
                    "product_id": "ADD-ROAM-EU",
                    "channel": "app",
                    "ts": "2026-11-23T10:00:12Z",
                },
            ]
        },
        extra="forbid",
    )

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsOut(BaseModel):
    """What happened to posted events."""

    model_config = example(
        {
            "accepted": 2,
            "stored": 2,
            "duplicates": 0,
            "spooled": 0,
            "event_ids": [
                "5b0e7c1e-2f4a-4c8e-9d61-0a7f3e2b9c44",
                "9a4d2f60-1c3b-4e7a-8f05-6d2c1b0e9a73",
            ],
            "rejected": [],
        }
    )

    accepted: int = Field(description="events that will not be lost (stored or spooled)")
    stored: int
    duplicates: int = Field(description="event ids already stored: not counted twice")
    spooled: int = Field(description="kept on local disk while the database is down")
    event_ids: list[str] = Field(description="ids of the accepted events")
    rejected: list[dict[str, str]] = Field(
        default_factory=list, description="events refused (unknown customer or product)"
    )


class VariantIn(InputModel):
    """One arm of an experiment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    strategy: Literal["champion", "model_version", "segment_popular", "popular", "control"]
    weight: float = Field(1.0, gt=0, le=1000)
    model_version: int | None = Field(None, ge=1, le=MAX_VERSION)


class ExperimentIn(InputModel):
    """A new experiment: 2 to 10 variants and the unit that is randomised."""

    model_config = example(
        {
            "name": "ranker vs segment popular",
            "unit": "customer",
            "variants": [
                {"name": "control", "strategy": "segment_popular", "weight": 1},
                {"name": "ranker", "strategy": "champion", "weight": 1},
            ],
        },
        extra="forbid",
    )

    name: str = Field(min_length=1, max_length=200)
    unit: Literal["customer", "session"] = "customer"
    variants: list[VariantIn] = Field(min_length=2, max_length=10)


class ExperimentOut(BaseModel):
    """An experiment."""

    model_config = example(
        {
            "experiment_id": "0f8e4a52-6b1d-4c39-a7e2-5d9b3c1f8a60",
            "name": "ranker vs segment popular",
            "unit": "customer",
            "status": "running",
            "variants": [
                {"name": "control", "strategy": "segment_popular", "weight": 1.0},
                {"name": "ranker", "strategy": "champion", "weight": 1.0},
            ],
            "created_at": "2026-11-20T09:00:00Z",
            "stopped_at": None,
            "created_by": "key:k3f9a1",
        }
    )

    experiment_id: str
    name: str
    unit: str
    status: str
    variants: list[VariantIn]
    created_at: datetime
    stopped_at: datetime | None
    created_by: str | None


class ExperimentMetricOut(BaseModel):
    """One metric of a variant against the control, per unit, always-valid and Holm-adjusted."""

    metric: Literal["conversion", "ctr", "churn", "complaints"] = Field(
        description="conversion: share of units that accepted or acquired an offered product "
        "in the window; ctr: clicks per impression (delta method over units); churn and "
        "complaints (per unit): guardrails, where higher is harm"
    )
    guardrail: bool
    enough_data: bool = Field(
        description="false: 'not enough data yet' (too few units, or units with the "
        "outcome, in an arm); the estimate, interval and p-values are then null"
    )
    control_value: float | None
    variant_value: float | None
    difference: float | None = Field(description="variant - control")
    lift: float | None = Field(description="(variant - control) / control")
    std_error: float | None
    ci_low: float | None = Field(
        description="confidence sequence of the difference, valid at any time (mSPRT)"
    )
    ci_high: float | None
    p_value: float | None = Field(description="always-valid p-value, before Holm")
    adjusted_p: float | None = Field(description="Holm-adjusted over every variant x metric")
    significant: bool = Field(description="adjusted_p < alpha")
    verdict: str


class ExperimentVariantOut(BaseModel):
    """A variant's units and what they did, with its metrics against the control."""

    variant: str
    strategy: str
    is_control: bool
    units: int = Field(description="customers (or sessions) served an answer of this variant")
    designed_share: float = Field(description="the share of units the weights send here")
    observed_share: float | None
    converted: int
    conversion_rate: float | None
    impressions: int
    clicks: int
    ctr: float | None = Field(description="clicks / impressions of the variant's units")
    churned: int
    churn_rate: float | None
    complaints: int
    complaints_per_unit: float | None
    metrics: list[ExperimentMetricOut] = Field(
        description="against the control; empty for the control itself"
    )
    verdict: str


class SampleRatioOut(BaseModel):
    """Chi-square test of the units per variant against the design's weights."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi_square: float | None
    p_value: float | None = Field(description="null while a variant expects fewer than 5 units")
    threshold: float = Field(description="flagged below this p-value")
    flagged: bool = Field(
        description="the split is not what the design says: assignment or logging is broken "
        "and no result of the experiment can be trusted"
    )
    verdict: str


class ExperimentResultsOut(BaseModel):
    """An experiment's results per randomisation unit, safe to read at any time."""

    experiment_id: str
    name: str
    status: str
    unit: str = Field(description="what is randomised and counted: customer or session")
    control: str = Field(description="the variant the others are compared with")
    window_days: int = Field(
        description="acquisitions, churn and complaints count this many days after a unit's "
        "first exposure (NEXTOFFER_IMPACT_WINDOW_DAYS)"
    )
    alpha: float
    detectable_lift: float = Field(description="the relative lift the mSPRT is tuned for")
    min_units_per_arm: int
    min_events_per_arm: int
    ctr_compared: bool = Field(
        description="false when the control shows nothing (no impressions): CTR is reported "
        "per variant but not tested"
    )
    method: str
    sample_ratio: SampleRatioOut
    variants: list[ExperimentVariantOut]


class ModelVersionOut(BaseModel):
    """A registered model version."""

    kind: str
    version: int
    created_at: datetime
    is_champion: bool
    artifacts_deleted: bool
    metrics: dict[str, float]
    tags: dict[str, str]
    data_mismatches: list[str] = Field(
        default_factory=list,
        description="how the data this version was trained on differs from today's "
        "(empty: it matches)",
    )


class ModelsOut(BaseModel):
    """Registered versions of every model kind, newest first, and the champions."""

    champions: dict[str, int | None]
    serving: dict[str, str | None] = Field(description="versions this API process has loaded")
    versions: list[ModelVersionOut]


class PromoteIn(InputModel):
    """Move the champion alias."""

    model_config = example(
        {"version": 2, "reason": "beats v1 on the holdout (AUC 0.81 vs 0.78)"}, extra="forbid"
    )

    version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="omit together with rollback=true"
    )
    # Strict: `0` or `"yes"` is not a boolean, as the schema says.
    rollback: StrictBool = False
    reason: str = Field("promoted through the API", max_length=500)


class DecisionOut(BaseModel):
    """What happened to the champion alias."""

    model_config = example(
        {
            "kind": "churn",
            "version": 2,
            "promoted": True,
            "reason": "beats v1 on the holdout (AUC 0.81 vs 0.78)",
        }
    )

    kind: str
    version: int
    promoted: bool
    reason: str


class JobIn(InputModel):
    """Start a job."""

    model_config = example({"kind": "precompute", "params": {}}, extra="forbid")

    kind: Literal[
        "etl",
        "ingest",
        "features",
        "training",
        "precompute",
        "cache_rebuild",
        "fallback_refresh",
        "kpi_refresh",
        "backup",
        "backup_prune",
        "backup_verify",
        "dr_drill",
        "impact",
        "control_group",
        "retention",
    ] = Field(description="one of the jobs of docs/jobs.md (nextoffer.jobs.catalogue)")
    params: dict[str, str | int | float | bool | list[str]] = Field(
        default_factory=dict,
        description="etl: path (default NEXTOFFER_INGEST_SOURCE, new files only); "
        "ingest: path, new_only; features: as_of; training: models; "
        "backup_verify and dr_drill: backup_id; impact: as_of; retention: dry_run",
    )


class JobOut(BaseModel):
    """A job run."""

    model_config = example(
        {
            "job_id": "7c2b9e14-3a5f-4d80-b6e1-2f9a0c4d7e35",
            "kind": "precompute",
            "status": "running",
            "started_at": "2026-11-23T02:00:00Z",
            "finished_at": None,
            "counts": {},
            "message": None,
        }
    )

    job_id: str
    kind: str
    status: str = Field(description="queued (for a worker), running, succeeded or failed")
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    message: str | None


class TokenIn(InputModel):
    """A user's credentials."""

    model_config = example(
        {"username": "analyst1", "password": "a-long-passphrase-of-12+"}, extra="forbid"
    )

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    """A short-lived bearer token."""

    model_config = example(
        {
            "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyOmFuYWx5c3QxIn0.c2lnbmF0dXJl",
            "token_type": "bearer",
            "expires_in": 3600,
            "role": "viewer",
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int
    role: str


class ComponentOut(BaseModel):
    """One backend's state."""

    status: Literal["ok", "degraded", "down", "absent"]
    detail: str = ""


class ReadyOut(BaseModel):
    """Whether offers can be served, and each component's state."""

    model_config = example(
        {
            "status": "ready",
            "components": {
                "database": {"status": "ok", "detail": ""},
                "cache": {"status": "ok", "detail": "redis"},
                "registry": {"status": "ok", "detail": ""},
                "offers_model": {"status": "ok", "detail": "v3"},
                "event_spool": {"status": "ok", "detail": "0 events waiting"},
            },
        }
    )

    status: Literal["ready", "degraded", "unavailable"]
    components: dict[str, ComponentOut]


# --- impact (the universal control group; docs/impact.md) --------------------------------


class ImpactArmOut(BaseModel):
    """One arm of a group: customers, acquisition, margin and churn in the window."""

    customers: int
    acquired: int
    acquisition_rate: float | None
    margin_total: float = Field(
        description="margin of offered products acquired, net of offer cost"
    )
    margin_per_customer: float | None
    churned: int
    churn_rate: float | None


class ImpactDifferenceOut(BaseModel):
    """Treated minus control for one metric, with its 95 % interval and a verdict in words."""

    metric: Literal["acquisition_rate", "margin_per_customer", "churn_rate"]
    estimate: float | None = Field(description="null while an arm has too few customers")
    ci_low: float | None
    ci_high: float | None
    method: str = Field(description="newcomb (two proportions) or welch (two means)")
    verdict: str


class ImpactGroupOut(BaseModel):
    """Treated vs control within all customers (segment_id null) or one segment."""

    label: str
    segment_id: int | None = Field(description="null: everyone; -1: customers with no segment")
    treated: ImpactArmOut
    control: ImpactArmOut
    enough_data: bool = Field(description="both arms have at least min_per_arm customers")
    acquisition: ImpactDifferenceOut
    margin: ImpactDifferenceOut
    churn: ImpactDifferenceOut


class ImpactMethodsOut(BaseModel):
    """How each interval is computed (statsmodels' method names)."""

    acquisition: str
    margin: str
    churn: str


class ImpactOut(BaseModel):
    """The latest impact run: treated vs control over first exposures whose window closed."""

    run_id: str
    as_of: datetime = Field(description="the data's clock: every window compared ends by then")
    exposed_from: datetime = Field(description="earliest first exposure compared")
    exposed_to: datetime = Field(description="latest first exposure compared (as_of - window)")
    window_days: int
    period_days: int
    computed_at: datetime
    confidence: float
    min_per_arm: int
    pending_customers: int = Field(description="customers exposed since, window still open")
    overall: ImpactGroupOut
    segments: list[ImpactGroupOut]
    methods: ImpactMethodsOut


SimilarOut.model_rebuild()
