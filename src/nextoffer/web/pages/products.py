"""The catalogue: eligibility rules, uptake, and the products taken together with each one."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.vocabulary import ID_PATTERN
from nextoffer.serving import insights
from nextoffer.store.reads import catalogue as catalogue_reads
from nextoffer.store.runs import utcnow
from nextoffer.web.charts import Bar, bar_chart, plain
from nextoffer.web.console import PageDep, PageError

router = APIRouter(include_in_schema=False)

PAGE = 25
SIMILAR = 5
UPTAKE_TTL_S = 300.0


@router.get("/products")
def catalogue(
    view: PageDep,
    category: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(pattern="^(|active|inactive)$")] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """One page of the catalogue (the API's listing) with each product's holders today."""
    console = view.console
    engine = console.services.read_engine
    active = {"active": True, "inactive": False}.get(status)
    total, items = catalogue_reads.list_products(
        engine, category=category or None, active=active, limit=PAGE, offset=(page - 1) * PAGE
    )
    ids = [p.product_id for p in items]
    today = utcnow().date()
    # Counting holders reads one index entry per holder: kept for minutes, not recounted
    # on every page turn.
    uptake = console.memo.get(
        f"uptake:{today}:{','.join(ids)}",
        lambda: catalogue_reads.product_uptake(engine, ids, today),
        ttl_s=UPTAKE_TTL_S,
    )
    categories = console.memo.get("categories", lambda: catalogue_reads.product_categories(engine))
    pages = max(1, -(-total // PAGE))

    def link(number: int) -> str:
        return "?" + urlencode({"category": category, "status": status, "page": number})

    chart = (
        bar_chart(
            [Bar(p.name, float(uptake.get(p.product_id, 0))) for p in items],
            title="Customers holding each product today",
            value_format=plain,
        )
        if items
        else None
    )
    return view.render(
        "products.html",
        {
            "title": "Products",
            "items": items,
            "uptake": uptake,
            "total": total,
            "category": category,
            "status": status,
            "categories": categories,
            "page": page,
            "pages": pages,
            "prev_link": link(page - 1) if page > 1 else None,
            "next_link": link(page + 1) if page < pages else None,
            "chart": chart,
        },
    )


@router.get("/products/{product_id}")
def product(page: PageDep, product_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response:
    """A product: its rules, its holders, and what its holders are recommended next."""
    services = page.services
    view = catalogue_reads.product(services.read_engine, product_id)
    if view is None:
        raise PageError(404, "No such product", f"There is no product with id {product_id}.")
    today = utcnow().date()
    uptake = catalogue_reads.product_uptake(services.read_engine, [product_id], today)[product_id]
    similar_error = ""
    method = ""
    similar: list[insights.SimilarProduct] = []
    try:
        method, similar = insights.similar_products(
            services.read_engine, services.state, product_id, SIMILAR
        )
    except NotFoundError as exc:
        similar_error = str(exc)
    return page.render(
        "product.html",
        {
            "title": view.name,
            "product": view,
            "uptake": uptake,
            "similar": similar,
            "method": method,
            "similar_error": similar_error,
        },
    )
