"""Customer 360: search by id or name; profile, holdings, history, churn risk, offers, responses."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Path, Query
from starlette.responses import RedirectResponse, Response

from nextoffer.domain.contact import CHANNELS
from nextoffer.domain.errors import InvalidRequestError, NotFoundError
from nextoffer.domain.roles import Role
from nextoffer.domain.vocabulary import ID_PATTERN, EventType
from nextoffer.store.reads import customers
from nextoffer.usecases.customers import customer_360
from nextoffer.usecases.responses import OfferResponse, record_responses
from nextoffer.web.charts import Series, line_chart, percent
from nextoffer.web.console import FormDep, PageDep, PageError

router = APIRouter(include_in_schema=False)

PAGE = 25
HISTORY = 52
RECENT = 10
RESPONSES = {
    EventType.OFFER_ACCEPT.value: "accept",
    EventType.OFFER_DECLINE.value: "decline",
}

CustomerId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.get("/customers")
def search(
    page: PageDep,
    q: Annotated[str, Query(max_length=100)] = "",
    after_name: Annotated[str | None, Query(max_length=200)] = None,
    after_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Search: an exact id opens the customer; other text is a name prefix, paged by name."""
    engine = page.services.read_engine
    text = q.strip()
    if text and customers.customer_exists(engine, text):
        return RedirectResponse(f"/customers/{quote(text, safe='')}", status_code=303)
    after = (after_name, after_id) if after_name is not None and after_id is not None else None
    hits = customers.search_customers(engine, text, after=after, limit=PAGE + 1) if text else []
    more = None
    if len(hits) > PAGE:
        hits = hits[:PAGE]
        last = hits[-1]
        more = "?" + urlencode(
            {"q": text, "after_name": last.display_name, "after_id": last.customer_id}
        )
    return page.render(
        "customers.html",
        {"title": "Customers", "q": text, "hits": hits, "more": more, "paged": after is not None},
    )


@router.get("/customers/{customer_id}")
def customer(page: PageDep, customer_id: CustomerId) -> Response:
    """Everything about one customer, with the offers exactly as the API answers them."""
    try:
        view = customer_360(page.services, customer_id, history=HISTORY, recent=RECENT)
    except NotFoundError:
        raise PageError(
            404, "No such customer", f"There is no customer with id {customer_id}."
        ) from None
    risk = view.risk
    risk_chart = None
    if risk is not None and risk.history:
        points = risk.history
        # Scorings within a day or two are told apart by their time, not their date.
        short = (points[-1].scored_at - points[0].scored_at).days < 2
        risk_chart = line_chart(
            [p.scored_at.strftime("%H:%M" if short else "%d %b") for p in points],
            [Series("churn probability", [p.score for p in risk.history])],
            title="Churn risk history",
            y_format=percent,
            width=380,
            height=170,
        )
    return page.render(
        "customer.html",
        {
            "title": view.profile.name,
            "profile": view.profile,
            "segment": view.segment,
            "risk": risk,
            "risk_chart": risk_chart,
            "answer": view.offers,
            "holdings": view.holdings,
            "transactions": view.transactions,
            "events": view.events,
            "attributes": view.attributes,
            "consent": view.consent,
            "channels": CHANNELS,
            "can_respond": page.session.can(Role.WRITER),
        },
    )


@router.post("/customers/{customer_id}/events")
def respond(
    post: FormDep,
    customer_id: CustomerId,
    product_id: Annotated[str, Form(max_length=64)] = "",
    event_type: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Record the customer's accept or decline of an offer, through the API's events path."""
    post.needs(Role.WRITER, "Recording an accept or decline")
    back = f"/customers/{quote(customer_id, safe='')}"
    if event_type not in RESPONSES:
        raise PageError(422, "Unknown response", "Choose accept or decline.")
    # The same use case as POST /v1/events: tagged with the customer's variant, counted,
    # and the customer's cached answer dropped, so an accepted product leaves at once.
    try:
        recorded = record_responses(
            post.console.services,
            [OfferResponse(customer_id=customer_id, event_type=event_type, product_id=product_id)],
        )
    except InvalidRequestError as exc:
        rejected = exc.extra.get("rejected")
        if rejected:  # an unknown product or customer: say why on the customer's page
            return post.redirect(back, f"Not recorded: {rejected[0]['reason']}", "error")
        raise PageError(422, "Not recorded", str(exc)) from None
    result = recorded.result
    how = "kept in the spool until the database is back" if result.spooled else "recorded"
    return post.redirect(back, f"{RESPONSES[event_type].capitalize()} of {product_id} {how}.")
