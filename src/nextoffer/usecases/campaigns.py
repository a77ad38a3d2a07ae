"""Campaign export: the customers to contact and their offer, chosen by the API's own answers.

Every candidate's offers come from `answer_offers_batch`, the path of
`GET /v1/customers/{id}/offers`: experiment steps, eligibility and product rules, holdings,
contact caps and accepts since are applied exactly as there. The export then keeps the N
best customers by the chosen offer's score. `commit` records each exported offer as an
impression through `record_responses` (the path of `POST /v1/events`), so it lands in
`contact_history` and counts against the contact cap from then on.

Held-out customers (the universal control group, an experiment's control variant) are
never exported. Those whose would-have-been offer scores at least as high as the last
exported row's — the rule the exported customers passed — are counted in the summary and,
on commit, recorded as control exposures (source `campaign`) with that offer, next to the
exported customers' treated exposures, so a campaign is measured like the API.

A campaign is made in one channel (`channel` is required): the contact policy of the
answer path leaves out every customer without consent for it, asked not to be contacted,
on the do-not-call list (telesales) or in the channel's quiet hours at export time; they
are counted in `withheld` and never exported, recorded or exposed.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Final

from nextoffer.domain.contact import CHANNELS
from nextoffer.domain.errors import InvalidRequestError, NotFoundError
from nextoffer.domain.exposures import ExposureSource
from nextoffer.domain.vocabulary import EventType
from nextoffer.serving.offers import OffersAnswer
from nextoffer.store.reads import campaigns as audience_reads
from nextoffer.store.reads import catalogue as catalogue_reads
from nextoffer.usecases.context import Services
from nextoffer.usecases.exports import output_format, write_table
from nextoffer.usecases.offers import OfferRequest, answer_offers_batch, exposure_of
from nextoffer.usecases.responses import OfferResponse, record_responses

if TYPE_CHECKING:
    import pandas as pd

CHURN_BANDS: Final = ("low", "medium", "high")
BATCH: Final = 500
"""Customers per `answer_offers_batch` call, and events per `record_responses` call."""
# Event ids of a campaign's impressions: the same campaign, customer and offer, the same id.
_EVENT_NAMESPACE: Final = uuid.UUID("5b0c3f4e-6a8e-4f0e-9b59-6e6578746f66")


@dataclass(frozen=True)
class CampaignRequest:
    """Who to export: one offer's takers, a segment or a churn band (or everyone), top N."""

    top: int
    offer: str | None = None
    segment: str | None = None
    churn_band: str | None = None
    channel: str | None = None
    """The campaign's channel: required (the contact policy is per channel)."""
    k: int | None = None
    """Offers asked of the answer per customer (default: the API's default k)."""
    commit: bool = False


@dataclass(frozen=True)
class CampaignRow:
    """One exported customer and the offer to make them (one row of the file)."""

    customer_id: str
    product_id: str
    product_name: str
    category: str
    score: float
    propensity: float
    expected_value: float
    reasons: str
    rank: int
    """The offer's position in the customer's answer (1 = best)."""
    source: str
    model_version: str | None
    segment_id: int | None
    segment: str | None
    churn_band: str | None
    churn_risk: float | None
    channel: str | None
    campaign_id: str


COLUMNS: Final = tuple(CampaignRow.__dataclass_fields__)
"""The export's columns, in file order."""


@dataclass
class CampaignExport:
    """What an export chose and did."""

    campaign_id: str
    request: CampaignRequest
    out: str
    audience: int = 0
    """Customers asked for offers (after the segment or churn-band filter)."""
    eligible: int = 0
    """Of those, customers whose answer had an offer (or the chosen offer)."""
    rows: list[CampaignRow] = field(default_factory=list)
    contacts_recorded: int = 0
    held_out: list[CampaignRow] = field(default_factory=list)
    """Held-out customers (control group, experiment control) who would have been exported:
    their would-have-been offer scores at least as high as the last exported row's."""
    exposures_recorded: int = 0
    withheld: int = 0
    """Customers the contact policy leaves out (no consent for the channel, do not contact,
    do not call, quiet hours)."""

    def frame(self) -> pd.DataFrame:
        """The rows as a table with `COLUMNS` (also when empty)."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(COLUMNS))

    def summary(self) -> str:
        """One line for the CLI."""
        r = self.request
        chosen = (
            f"offer {r.offer}"
            if r.offer
            else f"segment {r.segment}"
            if r.segment
            else f"churn band {r.churn_band}"
            if r.churn_band
            else "all customers"
        )
        done = (
            f"{self.contacts_recorded:,} contacts recorded"
            if r.commit
            else "dry run: no contact recorded (--commit records them)"
        )
        return (
            f"campaign {self.campaign_id}: {chosen} · {self.audience:,} customers asked · "
            f"{self.eligible:,} with {'it' if r.offer else 'an offer'} · "
            f"{len(self.rows):,} exported (top {r.top:,}) · "
            f"{len(self.held_out):,} held out (control group, not exported) · "
            f"{self.withheld:,} withheld by consent and contact policy → "
            f"{self.out} · {done}"
        )


def export_campaign(
    services: Services,
    request: CampaignRequest,
    out: str,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> CampaignExport:
    """Choose the campaign's customers and offers, write them to `out`, commit if asked.

    The file is written before any contact is recorded, so a failed write records nothing.
    Raises InvalidRequestError for contradictory or unknown filters, NotFoundError for an
    unknown product.
    """
    _check(services, request)
    output_format(out)  # a bad ending fails before any work
    services.state.refresh()  # the champions and catalogue the API serves now
    members = audience_reads.audience(
        services.engine, segment=request.segment, churn_band=request.churn_band
    )
    result = CampaignExport(uuid.uuid4().hex[:12], request, out, audience=len(members))
    # A min-heap of the top N: (score, -position, row). Members come in id order, so of two
    # equal scores the smaller customer id is kept and comes first.
    best: list[Entry] = []
    # Held-out customers whose would-have-been row could still make the cut (a min-heap,
    # pruned below the running cutoff, which only rises).
    held: list[Entry] = []
    answered: dict[str, OffersAnswer] = {}
    for start in range(0, len(members), BATCH):
        part = members[start : start + BATCH]
        requests = [
            # Not the API's exposure: the export records its own, for the customers it picks.
            OfferRequest(m.customer_id, k=request.k, channel=request.channel, record_exposure=False)
            for m in part
        ]
        answers = answer_offers_batch(services, requests)
        for position, (member, answer) in enumerate(zip(part, answers, strict=True), start):
            if answer.withheld_reason is not None:
                result.withheld += 1
                continue
            row = _row(result.campaign_id, request, member, answer)
            if row is None:
                continue
            entry = (row.score, -position, row)
            if answer.control:
                heapq.heappush(held, entry)
                answered[member.customer_id] = answer
                continue
            result.eligible += 1
            if len(best) < request.top:
                heapq.heappush(best, entry)
            elif entry[:2] > best[0][:2]:
                heapq.heapreplace(best, entry)
            answered[member.customer_id] = answer
        _prune(held, best, request.top, answered)
        if progress is not None:
            progress(min(start + BATCH, len(members)), len(members))
    _prune(held, best, request.top, answered)
    result.rows = [e[2] for e in sorted(best, key=lambda e: e[:2], reverse=True)]
    result.held_out = [e[2] for e in sorted(held, key=lambda e: e[:2], reverse=True)]
    write_table(result.frame(), out, services.settings)
    if request.commit:
        result.contacts_recorded = _record_contacts(services, result)
        result.exposures_recorded = _record_exposures(services, result, answered)
    return result


Entry = tuple[float, int, CampaignRow]


def _prune(
    held: list[Entry], best: list[Entry], top: int, answered: dict[str, OffersAnswer]
) -> None:
    """Drop held-out entries below the cutoff, and answers no row needs any more."""
    if len(best) >= top:
        while held and held[0][:2] < best[0][:2]:
            heapq.heappop(held)
    keep = {e[2].customer_id for e in best} | {e[2].customer_id for e in held}
    for customer_id in [c for c in answered if c not in keep]:
        del answered[customer_id]


def _record_exposures(
    services: Services, result: CampaignExport, answered: dict[str, OffersAnswer]
) -> int:
    """Treated exposures of the exported offers, control ones of the held-out customers'.

    Each records the one offer the campaign makes (or would have made). Written before
    returning: a CLI process has no background flusher.
    """
    exposures = []
    for row in [*result.rows, *result.held_out]:
        answer = answered[row.customer_id]
        chosen = answer.withheld if answer.control else answer.offers
        picked = [o for o in chosen if o.product_id == row.product_id][:1]
        made = replace(
            answer,
            offers=[] if answer.control else picked,
            withheld=picked if answer.control else [],
        )
        exposure = exposure_of(
            services,
            OfferRequest(row.customer_id, channel=result.request.channel),
            made,
            source=ExposureSource.CAMPAIGN,
        )
        if exposure is not None:
            exposures.append(exposure)
    queued = services.exposures.record_many(exposures)
    services.exposures.flush()
    return queued


def _check(services: Services, request: CampaignRequest) -> None:
    if request.channel is None:
        raise InvalidRequestError(
            "--channel is required: a campaign reaches customers in one channel, and only "
            "those open to it (consent, do not contact, do not call, quiet hours)"
        )
    if request.channel not in CHANNELS:
        raise InvalidRequestError(f"--channel must be one of {', '.join(CHANNELS)}")
    chosen = [x for x in (request.offer, request.segment, request.churn_band) if x]
    if len(chosen) > 1:
        raise InvalidRequestError("choose at most one of --offer, --segment and --churn-band")
    if request.top < 1:
        raise InvalidRequestError("--top must be at least 1")
    if request.k is not None and request.k < 1:
        raise InvalidRequestError("--k must be at least 1")
    if request.churn_band is not None and request.churn_band not in CHURN_BANDS:
        raise InvalidRequestError(f"--churn-band must be one of {', '.join(CHURN_BANDS)}")
    if request.offer is not None and not catalogue_reads.product_exists(
        services.engine, request.offer
    ):
        raise NotFoundError(f"no product {request.offer!r}")
    if request.segment is not None and not audience_reads.known_segment(
        services.engine, request.segment
    ):
        raise InvalidRequestError(f"no segment {request.segment!r} (give its id or name)")


def _row(
    campaign_id: str,
    request: CampaignRequest,
    member: audience_reads.AudienceMember,
    answer: OffersAnswer,
) -> CampaignRow | None:
    """The customer's row: the chosen offer in their answer, or their first offer.

    For a held-out customer, the offer they would have had.
    """
    offers = answer.withheld if answer.control else answer.offers
    position = next(
        (i for i, o in enumerate(offers) if request.offer is None or o.product_id == request.offer),
        None,
    )
    if position is None:
        return None
    offer = offers[position]
    return CampaignRow(
        customer_id=member.customer_id,
        product_id=offer.product_id,
        product_name=offer.name,
        category=offer.category,
        score=offer.score,
        propensity=offer.propensity,
        expected_value=offer.expected_value,
        reasons="; ".join(offer.reasons),
        rank=position + 1,
        source=answer.source.value,
        model_version=offer.model_version or answer.model_version,
        segment_id=member.segment_id,
        segment=member.segment,
        churn_band=member.churn_band,
        churn_risk=member.churn_risk,
        channel=request.channel,
        campaign_id=campaign_id,
    )


def _record_contacts(services: Services, result: CampaignExport) -> int:
    """Each exported offer as an impression: events and `contact_history`, as the API does."""
    now = services.clock()
    stored = 0
    rows: Sequence[CampaignRow] = result.rows
    for start in range(0, len(rows), BATCH):
        responses = [
            OfferResponse(
                customer_id=row.customer_id,
                event_type=EventType.OFFER_IMPRESSION,
                product_id=row.product_id,
                event_id=str(
                    uuid.uuid5(
                        _EVENT_NAMESPACE, f"{result.campaign_id}/{row.customer_id}/{row.product_id}"
                    )
                ),
                ts=now,
                channel=row.channel,
            )
            for row in rows[start : start + BATCH]
        ]
        stored += record_responses(services, responses).result.stored
    return stored
