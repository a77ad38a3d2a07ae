"""Data and jobs: runs, freshness, quarantined rows and CSV, and the data-quality profile."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from starlette.responses import Response, StreamingResponse

from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.roles import Role
from nextoffer.ingest.entities import BY_NAME as ENTITY_NAMES
from nextoffer.registry.protocol import MODEL_KINDS as KINDS
from nextoffer.store.reads import churn, jobs, quarantine
from nextoffer.store.runs import SUCCEEDED
from nextoffer.usecases import jobs as job_usecases
from nextoffer.usecases.data_profile import data_profile, share, to_markdown, top_text
from nextoffer.web.console import FormDep, PageDep, PageError

router = APIRouter(include_in_schema=False)

RUNS_PAGE = 20
QUARANTINE_PAGE = 25
# A cell starting with one of these is a formula to a spreadsheet; quarantined rows are
# untrusted input, so such cells get a leading apostrophe in the CSV (OWASP's advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# What an entity's name may put into a download's file name.
_FILE_NAME_PART = re.compile(r"[a-z][a-z0-9_]{0,31}")


@router.get("/data")
def data(
    page: PageDep,
    job: Annotated[str, Query(max_length=32)] = "",
    runs_before: Annotated[str, Query(max_length=100)] = "",
    entity: Annotated[str, Query(max_length=32)] = "",
    rows_before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Job runs and quarantined rows, each paged by key, with freshness at the top."""
    console = page.console
    engine = console.services.engine
    before = _run_key(runs_before)
    runs = jobs.runs_page(engine, job=job or None, before=before, limit=RUNS_PAGE + 1)
    more_runs = None
    if len(runs) > RUNS_PAGE:
        runs = runs[:RUNS_PAGE]
        key = f"{runs[-1].started_at.isoformat()}|{runs[-1].run_id}"
        more_runs = "?" + urlencode({"job": job, "runs_before": key, "entity": entity})
    rows = quarantine.quarantine_page(
        engine, entity=entity or None, before_id=rows_before, limit=QUARANTINE_PAGE + 1
    )
    more_rows = None
    if len(rows) > QUARANTINE_PAGE:
        rows = rows[:QUARANTINE_PAGE]
        more_rows = "?" + urlencode({"job": job, "entity": entity, "rows_before": rows[-1].id})
    freshness = [
        (label, jobs.latest_run(engine, names, SUCCEEDED), jobs.latest_run(engine, names))
        for label, names in jobs.FRESHNESS_JOBS
    ]
    return page.render(
        "data.html",
        {
            "title": "Data and jobs",
            "runs": runs,
            "more_runs": more_runs,
            "job": job,
            "jobs": console.memo.get("job_names", lambda: jobs.job_names(engine)),
            "rows": rows,
            "more_rows": more_rows,
            "entity": entity,
            "counts": console.memo.get(
                "quarantine_counts", lambda: quarantine.quarantine_counts(engine)
            ),
            "freshness": freshness,
            "churn_scored_at": churn.latest_scored_at(engine),
            "can_start": page.session.can(Role.OPERATOR),
            "job_kinds": job_usecases.CONSOLE_JOBS,
            "model_kinds": KINDS,
            "ingest_source": bool(console.settings.ingest_source),
            "csv_link": "/data/quarantine.csv"
            + (f"?{urlencode({'entity': entity})}" if entity else ""),
        },
    )


def _run_key(text: str) -> tuple[datetime, str] | None:
    started, _, run_id = text.partition("|")
    if not started or not run_id:
        return None
    try:
        return datetime.fromisoformat(started), run_id
    except ValueError:
        return None


@router.get("/data/quarantine.csv")
def quarantine_csv(
    page: PageDep,
    entity: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Every quarantined row (of `entity`, when given) as CSV, streamed in chunks.

    `entity` must name an entity (an import file's, or a spool's); only such a name goes
    into the download's file name, never the caller's text.
    """
    engine = page.services.engine
    if entity:
        known = sorted(set(ENTITY_NAMES) | set(quarantine.quarantine_counts(engine)))
        if entity not in known:
            raise PageError(
                422, "Unknown entity", f"Choose one of the entities: {', '.join(known)}."
            )

    def lines() -> Iterator[bytes]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(quarantine.QUARANTINE_COLUMNS)
        for count, row in enumerate(quarantine.quarantine_rows(engine, entity=entity or None), 1):
            out.writerow(
                [
                    row.id,
                    row.entity,
                    _cell(row.source),
                    row.line,
                    _cell(row.reason),
                    _cell(row.raw),
                    row.run_id,
                    row.quarantined_at.isoformat(),
                ]
            )
            if count % 500 == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    name = f"quarantine-{entity}.csv" if _FILE_NAME_PART.fullmatch(entity) else "quarantine.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


@router.get("/data/profile")
def profile(page: PageDep) -> Response:
    """The data-quality profile: the numbers of `nextoffer data profile`, as tables.

    Computed on each visit (the page is opened on purpose, after a load, and must show it).
    """
    found = data_profile(page.services.engine)
    return page.render(
        "data_profile.html",
        {"title": "Data profile", "profile": found, "share": share, "top_text": top_text},
    )


@router.get("/data/profile.md")
def profile_markdown(page: PageDep) -> Response:
    """The same profile as the Markdown `nextoffer data profile` prints."""
    text = to_markdown(data_profile(page.services.engine))
    return Response(
        text,
        media_type="text/markdown; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="data-profile.md"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/data/jobs")
def start_job(
    post: FormDep,
    kind: Annotated[str, Form(max_length=32)] = "",
    models: Annotated[list[str] | None, Form(max_length=16)] = None,
) -> Response:
    """Start ETL, training or precompute in the background, as `POST /v1/jobs` does."""
    post.needs(Role.OPERATOR, "Starting a job")
    params: dict[str, object] = {}
    source = post.console.settings.ingest_source
    if kind == "etl":
        if not source:
            return post.redirect(
                "/data", "ETL needs NEXTOFFER_INGEST_SOURCE: the folder to load", "error"
            )
        params["path"] = source
    elif kind == "training":
        chosen = [m for m in (models or []) if m in KINDS]
        params["models"] = chosen or list(KINDS)
    try:
        run_id = job_usecases.start_job(post.console.services, kind, params, post.by).run_id
    except NextOfferError as exc:
        return post.redirect("/data", f"Not started: {exc}", "error")
    return post.redirect("/data", f"Started {kind} job {run_id}.")
