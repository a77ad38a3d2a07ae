"""`nextoffer train` and `models`: train, register, list, promote and roll back models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nextoffer.cli.common import (
    console,
    err_console,
    handles_errors,
    load_settings,
    metrics_table,
    open_platform,
    open_registry,
    print_json,
)
from nextoffer.domain.audit import Action
from nextoffer.domain.errors import ConfigError
from nextoffer.serving.audit import command_actor
from nextoffer.store.engine import wait_for_database

models_app = typer.Typer(help="Registered model versions: list, promote, roll back.")


def _decision_line(decision: Any) -> str:
    verb = "promoted to champion" if decision.promoted else "registered, champion unchanged"
    return f"{decision.kind} v{decision.version}: {verb} — {decision.reason}"


@handles_errors
def train(
    models: Annotated[
        str, typer.Option(help="comma-separated kinds: offers, churn, uplift")
    ] = "offers,churn,uplift",
    params: Annotated[
        Path | None,
        typer.Option(help="JSON file of pinned settings (skips the search for those models)"),
    ] = None,
    score: Annotated[bool, typer.Option(help="score churn for every customer afterwards")] = True,
) -> None:
    """Train, evaluate on held-out data, register in MLflow, promote only if better.

    Offers: recommenders + LightGBM propensity ranker, tested on the latest time window.
    Churn: calibrated LightGBM, tested on held-out customers, with a drift report. A new
    version becomes champion only if it beats the champion's primary metric (nDCG@10 for
    offers, ROC-AUC for churn) by NEXTOFFER_PROMOTION_MARGIN; otherwise the reason is
    recorded. Uplift: who a retention offer keeps, learnt from randomised exposures (Qini
    AUC on the test group); skipped, with the reason, until there are enough of them. Then
    every customer's churn risk is scored with the champion.
    """
    import json

    from nextoffer.jobs.calls import run_training
    from nextoffer.jobs.context import Progress
    from nextoffer.pipelines.train import TrainOverrides

    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    overrides = None
    if params is not None:
        try:
            overrides = TrainOverrides.from_dict(json.loads(params.read_text()))
        except (OSError, json.JSONDecodeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"--params {params}: {exc}") from None
    kinds = [k.strip() for k in models.split(",") if k.strip()]
    registry = open_registry(settings)
    with err_console.status("training") as status:
        try:
            result = run_training(
                engine,
                settings,
                registry,
                kinds=kinds,
                overrides=overrides,
                score=score,
                progress=Progress(say=lambda m: status.update(m)),
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if result.offers is not None:
        k = settings.offer_metric_k
        columns = [
            "hit_rate_at_1",
            "hit_rate_at_3",
            "ndcg_at_3",
            *([f"ndcg_at_{k}", f"hit_rate_at_{k}"] if k not in (1, 3) else []),
            "mrr",
        ]
        console.print(f"offers: {result.offers.learned_from}", highlight=False, soft_wrap=True)
        if result.offers.dropped:
            console.print(
                "offers: dropped inputs that alone gave the labels away: "
                + ", ".join(result.offers.dropped),
                highlight=False,
                soft_wrap=True,
            )
        console.print(metrics_table("offers, test group", result.offers.table, columns))
        for name, chosen in result.offers.chosen.items():
            console.print(f"  chosen {name}: {chosen or 'no settings'}", highlight=False)
    if result.churn is not None:
        c = result.churn
        if c.dropped:
            console.print(
                "churn: dropped inputs that alone gave the label away: " + ", ".join(c.dropped),
                highlight=False,
                soft_wrap=True,
            )
        rows = {"lightgbm (calibrated)": c.metrics, "logistic baseline": c.baseline}
        console.print(
            metrics_table(
                f"churn, {c.rows['test']:,} held-out customers (labels of {c.label_as_of[:10]})",
                rows,
                ["roc_auc", "pr_auc", "brier", "lift_top_decile"],
            )
        )
        console.print(
            f"  uncalibrated brier {c.metrics['brier_uncalibrated']:.4f} · chosen {c.chosen} · "
            f"drift: max PSI {c.drift.max_psi:.3f} ({c.drift.worst_feature})"
            f"{' [red]DRIFT[/red]' if c.drift.flagged else ''}",
            highlight=False,
            soft_wrap=True,
        )
    if result.uplift is not None:
        u = result.uplift
        console.print(
            metrics_table(
                f"uplift on retention, {u.rows['test']:,} test-group customers "
                f"({u.window_days}-day window)",
                {u.chosen: u.metrics, "random ranking": {"qini_auc": 0.0, "uplift_auc": 0.0}},
                ["qini_auc", "uplift_auc", "uplift_at_30"],
            )
        )
    for kind, reason in result.skipped.items():
        console.print(f"{kind}: skipped — {reason}", highlight=False, soft_wrap=True)
    for decision in result.decisions.values():
        console.print(_decision_line(decision), highlight=False, soft_wrap=True)
    if result.churn_scored:
        bands = " · ".join(f"{n:,} {b}" for b, n in sorted(result.churn_scored.items()))
        console.print(
            f"churn scores (model v{result.churn_model_version}): {bands}", highlight=False
        )
    console.print(f"train: done in {result.seconds:.1f} s", highlight=False)


@models_app.command("list")
@handles_errors
def models_list(
    kind: Annotated[
        str | None, typer.Argument(help="offers, churn or uplift (default: all)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every registered version, newest first: metrics, decision, champion, artifacts."""
    from nextoffer.domain.fingerprint import mismatches, parse_fingerprint
    from nextoffer.registry.mlflow_registry import MODEL_KINDS
    from nextoffer.registry.protocol import TAG_DATA_FINGERPRINT, TAG_PRIMARY_METRIC
    from nextoffer.store.reads.fingerprint import data_fingerprint

    settings = load_settings()
    registry = open_registry(settings)
    kinds = [kind] if kind else list(MODEL_KINDS)
    current = data_fingerprint(open_platform(settings).engine)
    everything: dict[str, list[dict[str, Any]]] = {}
    for name in kinds:
        if name not in MODEL_KINDS:
            raise ConfigError(f"unknown model kind {name!r}; known: {', '.join(MODEL_KINDS)}")
        everything[name] = [
            {
                "version": v.version,
                "primary_metric": v.tags.get(TAG_PRIMARY_METRIC, ""),
                "data_mismatches": mismatches(
                    parse_fingerprint(v.tags.get(TAG_DATA_FINGERPRINT)), current
                ),
                "created_at": v.created_at.isoformat(),
                "champion": v.is_champion,
                "metrics": v.metrics,
                "decision": v.tags.get("nextoffer.decision", ""),
                "reason": v.tags.get("nextoffer.reason", ""),
                "artifacts_deleted": v.artifacts_deleted,
            }
            for v in registry.versions(name)
        ]
    if as_json:
        print_json(everything)
        return
    for name, versions in everything.items():
        table = Table(title=f"nextoffer-{name}", box=None, title_justify="left")
        for column in ("version", "created (UTC)", "primary metric", "champion", "decision"):
            table.add_column(column)
        for v in versions:
            value = v["metrics"].get(v["primary_metric"])
            table.add_row(
                str(v["version"]),
                v["created_at"][:19].replace("T", " "),
                "—" if value is None else f"{v['primary_metric']} {value:.4f}",
                "★" if v["champion"] else "",
                f"{v['reason']}{' (artifacts pruned)' if v['artifacts_deleted'] else ''}",
            )
        console.print(table if versions else f"nextoffer-{name}: no versions yet")
        champion = next((v for v in versions if v["champion"]), None)
        if champion is not None and champion["data_mismatches"]:
            console.print(
                f"[yellow]nextoffer-{name} champion v{champion['version']} was trained on data "
                f"that no longer matches: {'; '.join(champion['data_mismatches'])}[/yellow]",
                soft_wrap=True,
            )


@models_app.command("promote")
@handles_errors
def models_promote(
    kind: Annotated[str, typer.Argument(help="offers, churn or uplift")],
    version: Annotated[int, typer.Argument(help="version to make champion")],
    reason: Annotated[str, typer.Option(help="why (kept in the registry)")] = "promoted by hand",
) -> None:
    """Make VERSION the champion of KIND by hand, whatever its metrics."""
    from nextoffer.usecases.models import audit_decision

    platform = open_platform(load_settings())
    decision = platform.registry.promote(kind, version, reason)
    audit_decision(platform.audit, command_actor(), Action.MODEL_PROMOTE, decision, at_once=True)
    console.print(_decision_line(decision), highlight=False, soft_wrap=True)


@models_app.command("rollback")
@handles_errors
def models_rollback(
    kind: Annotated[str, typer.Argument(help="offers, churn or uplift")],
) -> None:
    """Point KIND's champion back at the previous champion."""
    from nextoffer.usecases.models import audit_decision

    platform = open_platform(load_settings())
    decision = platform.registry.rollback(kind)
    audit_decision(platform.audit, command_actor(), Action.MODEL_ROLLBACK, decision, at_once=True)
    console.print(_decision_line(decision), highlight=False, soft_wrap=True)


@models_app.command("sync")
@handles_errors
def models_sync() -> None:
    """Record every champion for serving (its files copied, its database row written).

    Registering, promoting and rolling back do this themselves; run it once on a database
    from before serving copies (migration 0011), or after moving an alias in MLflow's UI.
    """
    from nextoffer.registry.protocol import MODEL_KINDS

    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    for kind in MODEL_KINDS:
        version = platform.registry.sync_serving(kind)
        shown = "no champion" if version is None else f"champion v{version}"
        console.print(f"{kind}: {shown} recorded for serving", highlight=False)
