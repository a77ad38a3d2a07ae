"""The overview: size, offer acceptance and CTR over time, churn risk, job ages, open alerts."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from nextoffer.store.reads import churn as churn_reads
from nextoffer.store.reads import jobs, kpis, offers
from nextoffer.store.runs import SUCCEEDED, utcnow
from nextoffer.web.alerts import open_alerts
from nextoffer.web.charts import Series, line_chart, percent, plain
from nextoffer.web.console import PageDep

router = APIRouter(include_in_schema=False)

RATE_DAYS = 30
CHURN_TTL_S = 3600.0
JOBS = (
    ("ETL", jobs.ETL_JOBS),
    ("training", jobs.TRAINING_JOBS),
    ("backup", jobs.BACKUP_JOBS),
)


@router.get("/")
def overview(page: PageDep) -> Response:
    """The overview page."""
    console = page.console
    engine = console.services.engine
    now = utcnow()
    # Read live on every load: an accept recorded a moment ago moves the rate at once.
    rates = offers.offer_rates(engine, now, RATE_DAYS)
    totals = console.memo.get("totals", lambda: kpis.totals(engine))
    # Revenue at risk joins every high-band customer: computed once per scoring (and label
    # window), not once per page load.
    marks = churn_reads.churn_marks(engine)
    churn = console.memo.get(
        f"churn:{marks}", lambda: churn_reads.churn_summary(engine), ttl_s=CHURN_TTL_S
    )
    alerts = console.memo.get("alerts", lambda: open_alerts(console.settings.alertmanager_url))
    # Each group's last success and last run (the store module `jobs` reads them).
    job_runs = [
        (label, jobs.latest_run(engine, names, SUCCEEDED), jobs.latest_run(engine, names))
        for label, names in JOBS
    ]
    labels = [d.day.strftime("%d %b") for d in rates.days]
    rate_chart = line_chart(
        labels,
        [
            Series("CTR (clicks / impressions)", [d.ctr for d in rates.days]),
            Series("acceptance (accepts / impressions)", [d.acceptance for d in rates.days]),
        ],
        title=f"Offer CTR and acceptance per day, last {RATE_DAYS} days",
        y_format=percent,
    )
    volume_chart = line_chart(
        labels,
        [
            Series("impressions", [float(d.impressions) for d in rates.days]),
            Series("accepts", [float(d.accepts) for d in rates.days]),
        ],
        title=f"Offer impressions and accepts per day, last {RATE_DAYS} days",
        y_format=plain,
        height=200,
    )
    return page.render(
        "overview.html",
        {
            "title": "Overview",
            "rates": rates,
            "rate_days": RATE_DAYS,
            "totals": totals,
            "churn": churn,
            "jobs": job_runs,
            "alerts": alerts,
            "rate_chart": rate_chart,
            "volume_chart": volume_chart,
            "serving": console.services.state,
        },
    )
