"""The catalogue and similar products."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query

from nextoffer.api.deps import ServicesDep, Viewer
from nextoffer.api.schemas import ProductPageOut, SimilarOut
from nextoffer.domain.vocabulary import ID_PATTERN
from nextoffer.serving import insights
from nextoffer.store.reads import catalogue

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get("", response_model=ProductPageOut, summary="The catalogue")
def list_products(
    services: ServicesDep,
    _caller: Viewer,
    category: Annotated[str | None, Query(max_length=32)] = None,
    active: Annotated[bool | None, Query(description="only active (or inactive) ones")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ProductPageOut:
    """Products with price, margin and eligibility rules, by product id."""
    total, items = catalogue.list_products(
        services.read_engine, category=category, active=active, limit=limit, offset=offset
    )
    return ProductPageOut(
        total=total,
        limit=limit,
        offset=offset,
        items=items,
    )


@router.get("/{product_id}/similar", response_model=SimilarOut, summary="Similar products")
def get_similar_products(
    product_id: Annotated[str, Path(pattern=ID_PATTERN)],
    services: ServicesDep,
    _caller: Viewer,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> SimilarOut:
    """Products most often taken by the holders of this one (from the champion model)."""
    method, items = insights.similar_products(services.read_engine, services.state, product_id, k)
    champion = services.state.offers
    return SimilarOut.model_validate(
        {
            "product_id": product_id,
            "method": method,
            "model_version": champion.label if champion else "",
            "similar": [dataclasses.asdict(i) for i in items],
        }
    )
