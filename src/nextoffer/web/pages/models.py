"""Registered model versions: metrics, champions, comparison, promotion, importance, drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query
from markupsafe import Markup
from starlette.responses import Response

from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.roles import Role
from nextoffer.registry.mlflow_registry import (
    TAG_DECISION,
    TAG_PRIMARY_METRIC,
    TAG_REASON,
    ModelVersionInfo,
)
from nextoffer.registry.protocol import MODEL_KINDS as KINDS
from nextoffer.usecases.models import data_mismatches, promote_model, roll_back_model
from nextoffer.web.charts import Bar, bar_chart, plain
from nextoffer.web.console import FormDep, PageDep

router = APIRouter(include_in_schema=False)

# The columns of each kind's version table; every metric is in the comparison.
SHOWN = {
    "offers": ("hit_rate_at_1", "hit_rate_at_3", "ndcg_at_3", "ndcg_at_10", "mrr"),
    "churn": ("roc_auc", "pr_auc", "brier", "lift_top_decile", "max_psi"),
    "uplift": ("qini_auc", "uplift_auc", "uplift_at_30", "ate_retained"),
}
TOP_FEATURES = 15
Kind = Annotated[str, Path(pattern="^(offers|churn|uplift)$")]


@dataclass(frozen=True)
class KindView:
    """One model kind's versions, newest first, and what is known about them."""

    kind: str
    versions: list[ModelVersionInfo]
    columns: tuple[str, ...]
    primary: str
    serving: str | None
    stale: dict[int, list[str]]

    @property
    def champion(self) -> ModelVersionInfo | None:
        """The version holding the champion alias."""
        return next((v for v in self.versions if v.is_champion), None)


@dataclass(frozen=True)
class MetricRow:
    """One metric of two versions side by side."""

    name: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """B minus A, when both have it."""
        return None if self.a is None or self.b is None else self.b - self.a


def _decision(info: ModelVersionInfo) -> str:
    decision = info.tags.get(TAG_DECISION, "")
    reason = info.tags.get(TAG_REASON, "")
    return f"{decision}: {reason}" if decision and reason else decision or reason


@router.get("/models")
def models(
    page: PageDep,
    kind: Annotated[str, Query(pattern="^(|offers|churn|uplift)$")] = "",
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Every kind's versions; with `kind`, `a` and `b`, those two versions compared."""
    services = page.services
    state = services.state
    serving = {
        "offers": state.offers.label if state.offers else None,
        "churn": state.churn.label if state.churn else None,
        "uplift": state.uplift.label if state.uplift else None,
    }
    error = ""
    views = []
    for name in KINDS:
        try:
            versions = services.registry.versions(name)
        except NextOfferError as exc:
            error, versions = str(exc), []
        primary = next(
            (v.tags[TAG_PRIMARY_METRIC] for v in versions if TAG_PRIMARY_METRIC in v.tags), ""
        )
        stale = data_mismatches(services, versions) if versions else {}
        views.append(
            KindView(name, versions, SHOWN.get(name, ()), primary, serving.get(name), stale)
        )
    comparison: list[MetricRow] = []
    compared: tuple[ModelVersionInfo, ModelVersionInfo] | None = None
    if kind and a is not None and b is not None:
        found = {v.version: v for view in views if view.kind == kind for v in view.versions}
        if a in found and b in found:
            compared = (found[a], found[b])
            names = sorted(set(found[a].metrics) | set(found[b].metrics))
            comparison = [
                MetricRow(n, found[a].metrics.get(n), found[b].metrics.get(n)) for n in names
            ]
    importance: dict[str, Markup] = {}
    if state.offers is not None:
        importance["offers"] = _importance_chart("offers", state.offers.model.importance())
    if state.churn is not None:
        importance["churn"] = _importance_chart("churn", state.churn.model.importance())
    drift = _drift(state.churn.model.info if state.churn is not None else {})
    return page.render(
        "models.html",
        {
            "title": "Models",
            "views": views,
            "error": error,
            "decision": _decision,
            "kind": kind,
            "a": a,
            "b": b,
            "compared": compared,
            "comparison": comparison,
            "importance": importance,
            "drift": drift,
            "can_promote": page.session.can(Role.ADMIN),
        },
    )


def _importance_chart(kind: str, importance: dict[str, float]) -> Markup:
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:TOP_FEATURES]
    return bar_chart(
        [Bar(name, share) for name, share in top],
        title=f"{kind} champion: feature importance (share of total gain)",
        value_format=lambda v: f"{v * 100:.1f} %",
        width=560,
    )


def _drift(info: dict[str, Any]) -> dict[str, Any] | None:
    """The churn champion's drift report (PSI per feature, training data vs today)."""
    report = info.get("drift")
    if not isinstance(report, dict) or not isinstance(report.get("psi"), dict):
        return None
    psi = {str(k): float(v) for k, v in report["psi"].items()}
    threshold = float(report.get("threshold", 0.2))
    worst = sorted(psi.items(), key=lambda kv: -kv[1])[:TOP_FEATURES]
    chart = bar_chart(
        [Bar(name, value) for name, value in worst],
        title="churn champion: population stability index per feature",
        value_format=plain,
        threshold=threshold,
        threshold_label=f"threshold {threshold:g}",
    )
    return {
        "chart": chart,
        "threshold": threshold,
        "max_psi": max(psi.values(), default=0.0),
        "worst": report.get("worst_feature"),
        "flagged": bool(report.get("flagged")),
    }


@router.post("/models/{kind}/promote")
def promote(
    post: FormDep,
    kind: Kind,
    version: Annotated[str, Form(max_length=12)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Point the champion alias at a version (admin), as `POST /v1/models/{kind}/champion`."""
    post.needs(Role.ADMIN, "Promoting a model")
    try:
        number = int(version)
        why = reason.strip() or "promoted in the console"
        decision = promote_model(
            post.console.services, kind, number, why, by=post.by, actor=post.actor
        )
    except (ValueError, NextOfferError) as exc:
        return post.redirect("/models", f"Not promoted: {exc}", "error")
    return post.redirect(
        "/models",
        f"{kind} v{decision.version}: {decision.reason}",
        "ok" if decision.promoted else "error",
    )


@router.post("/models/{kind}/rollback")
def rollback(post: FormDep, kind: Kind) -> Response:
    """Point the champion alias back at the previous champion (admin)."""
    post.needs(Role.ADMIN, "Rolling back a model")
    try:
        decision = roll_back_model(post.console.services, kind, actor=post.actor)
    except NextOfferError as exc:
        return post.redirect("/models", f"Not rolled back: {exc}", "error")
    return post.redirect("/models", f"{kind}: {decision.reason}")
