"""Erasure on request: `DELETE /v1/customers/{customer_id}` (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from nextoffer.api.deps import Admin, ServicesDep
from nextoffer.domain.vocabulary import ID_PATTERN
from nextoffer.usecases.privacy import forget_customers

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="the customer's id")]


class ErasedOut(BaseModel):
    """What an erasure removed; it names no customer."""

    rows: dict[str, int] = Field(description="rows deleted, per table")
    cached_answers: int = Field(description="cache entries dropped")
    file_lines: int = Field(description="spooled events and quarantined rows removed")
    notes: list[str] = Field(description="anything left to expire on its own")


@router.delete(
    "/{customer_id}",
    response_model=ErasedOut,
    summary="Erase a customer",
    responses={404: {"description": "no customer with this id is stored"}},
)
def erase_customer(customer_id: CustomerId, services: ServicesDep, _caller: Admin) -> ErasedOut:
    """Erase the customer everywhere (right to erasure).

    Every table, cached answers, the spool and quarantine files; events are deleted, not
    pseudonymised. A keyed digest of
    the id goes to the erasure ledger, which restores and imports honour. The audit trail
    records who asked.
    """
    result = forget_customers(services, [customer_id])
    return ErasedOut(
        rows=result.rows,
        cached_answers=result.cache_keys,
        file_lines=result.file_lines,
        notes=result.notes,
    )
