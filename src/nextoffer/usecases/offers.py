"""Answer offers, for one customer or many: the only path by which anything gets offers.

The answer is shaped by an explicit, ordered list of steps (`STEPS`). The order is the
business's: customers who must not be contacted at all are dropped before anything else,
then the universal control group holds its customers out (of experiments too), then a
running experiment picks the strategy, then the answer chain (cache → precomputed → live →
popular) ranks only eligible products under the product rules, and contact caps and
accepted products are filtered out of every source. A held-out customer's answer is still
computed through the whole chain, then withheld (`control: true`, no offers) and logged
in its exposure, so both arms are measured on the same offers. Later capabilities
add their steps to this list, in place.

The contact policy (docs/consent.md) comes first: a customer who may not be contacted in
the asked channel now (no consent, do not contact, do not call, quiet hours) gets an
empty answer saying why (`withheld_reason`), computed by nothing and exposed to nothing;
without a channel, only offers allowed in a channel the customer is open to are kept; a
customer who objects to profiling is answered with segment-free popular products only,
and is in no experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nextoffer.cache import keys
from nextoffer.cache.prefetch import prefetched
from nextoffer.domain.contact import ContactDecision
from nextoffer.domain.control_group import in_control_group
from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.experiments import Variant
from nextoffer.domain.exposures import Arm, ExposureRecord, ExposureSource, new_exposure
from nextoffer.serving.offers import ExperimentTag, OffersAnswer, Source, offers_key
from nextoffer.store.experiments import ExperimentRecord
from nextoffer.usecases.consent import cache_contact_facts, contact_decision
from nextoffer.usecases.context import Services


@dataclass(frozen=True)
class OfferRequest:
    """Who is asking for offers, how many, and where they will be shown.

    `record_exposure`: whether serving this answer counts as exposing the customer (the
    API's answers do; the console's customer page, which shows an operator what the API
    would answer, and campaign exports, which record their own, do not).
    """

    customer_id: str
    k: int | None = None
    channel: str | None = None
    session_id: str | None = None
    record_exposure: bool = True


@dataclass
class OfferDecision:
    """What the steps before the answer chain decided for one request."""

    request: OfferRequest
    control: bool = False
    """In the universal control group: the answer is computed, then withheld."""
    experiment: ExperimentRecord | None = None
    variant: Variant | None = None
    contact: ContactDecision | None = None
    """What the contact policy allows now (None: the step did not run)."""
    notes: list[str] = field(default_factory=list)
    """What the steps could not read (the answer is then `degraded`)."""


Step = Callable[[Services, OfferDecision], OfferDecision]


def apply_contact_policy(services: Services, decision: OfferDecision) -> OfferDecision:
    """Consent, do not contact, do not call and quiet hours: which channels are open now."""
    request = decision.request
    decision.contact, notes = contact_decision(services, request.customer_id, request.channel)
    decision.notes.extend(notes)
    return decision


def hold_out_control_group(services: Services, decision: OfferDecision) -> OfferDecision:
    """Customers of the universal control group are held out of every offer and experiment."""
    settings = services.settings
    decision.control = in_control_group(
        decision.request.customer_id, settings.control_group_share, settings.control_group_salt
    )
    return decision


def assign_experiment(services: Services, decision: OfferDecision) -> OfferDecision:
    """The running experiment's sticky variant of the customer (or session), if any."""
    if decision.control:
        return decision  # the control group is in no experiment: its arms stay clean
    if decision.contact is not None and decision.contact.popular_only:
        return decision  # objects to profiling: popular products only, in no experiment
    request = decision.request
    assignment = services.experiments.variant_for(request.customer_id, request.session_id)
    if assignment is not None:
        decision.experiment, decision.variant = assignment
    return decision


STEPS: tuple[tuple[str, Step], ...] = (
    ("consent and contact policy", apply_contact_policy),
    ("universal control group", hold_out_control_group),
    ("experiment assignment", assign_experiment),
)
"""Steps run before the answer chain, in order. The chain itself then applies, to every
source alike: eligibility and product rules (only eligible products are ranked), and
contact caps with products accepted since (re-checked on stored answers)."""

CHAIN_STEPS = ("eligibility and product rules", "contact caps")
"""Steps the answer chain applies itself (named here so the whole order reads in one place)."""


def assignment_for(
    services: Services, customer_id: str, session_id: str | None
) -> tuple[ExperimentRecord, Variant] | None:
    """The experiment and variant that answers this customer (or session) get, if any.

    The same decision as `STEPS`: the universal control group is in no experiment.
    """
    decision = OfferDecision(OfferRequest(customer_id, session_id=session_id))
    for _name, step in STEPS:
        decision = step(services, decision)
    if decision.experiment is None or decision.variant is None:
        return None
    return decision.experiment, decision.variant


def answer_offers(services: Services, request: OfferRequest) -> OffersAnswer:
    """The customer's next-best offers after every step, best first.

    Raises NotFoundError for an unknown customer; a backend that is down makes the answer
    `degraded` (with a note saying why) rather than failing it. With `record_exposure`, an
    answer that offers something (shown, or withheld from a held-out customer) is queued
    as the customer's exposure of the day; the write happens off the request path.
    """
    decision = OfferDecision(request)
    for _name, step in STEPS:
        decision = step(services, decision)
    contact = decision.contact
    if contact is not None and contact.reason is not None:
        # Not computed at all: nothing may be offered, so nothing is scored or exposed.
        answer = OffersAnswer(
            request.customer_id,
            [],
            Source.CONTACT_POLICY,
            None,
            degraded=bool(decision.notes),
            notes=list(decision.notes),
            withheld_reason=contact.reason.value,
        )
        if decision.experiment is not None and decision.variant is not None:
            # Still assigned (assignment is sticky); not exposed, so not counted in it.
            answer.experiment = ExperimentTag(
                decision.experiment.experiment_id,
                decision.variant.name,
                decision.variant.strategy.value,
            )
        services.metrics.offers_served.labels(answer.source.value).inc()
        return answer
    answer = services.offers.offers(
        request.customer_id,
        k=request.k or services.settings.default_offers_k,
        channel=request.channel,
        variant=decision.variant,
        experiment_id=decision.experiment.experiment_id if decision.experiment else None,
        withhold=decision.control,
        channels=None if contact is None or contact.open_everywhere else contact.allowed,
        popular_only=contact is not None and contact.popular_only,
    )
    if decision.notes:
        answer.notes = [*decision.notes, *(n for n in answer.notes if n not in decision.notes)]
        answer.degraded = True
    for note in answer.notes:
        services.metrics.degraded_answers.labels(note).inc()
    if request.record_exposure:
        experiment = decision.experiment
        session_unit = experiment is not None and experiment.unit == "session"
        unit_id = request.session_id if session_unit and request.session_id else None
        exposure = exposure_of(services, request, answer, unit_id=unit_id)
        if exposure is not None:
            services.exposures.record(exposure)
    return answer


def exposure_of(
    services: Services,
    request: OfferRequest,
    answer: OffersAnswer,
    *,
    unit_id: str | None = None,
    source: ExposureSource = ExposureSource.API,
) -> ExposureRecord | None:
    """The exposure an answer makes: treated with what was shown, control with what was not.

    `unit_id` is the experiment's unit when it is not the customer (a session). None when
    the answer offers nothing, shown or withheld: a customer the contact rules (or the
    contact policy) leave nothing for is not exposed, in either arm alike.
    """
    products = [o.product_id for o in (answer.withheld if answer.control else answer.offers)]
    if not products or answer.withheld_reason is not None:
        return None
    tag = answer.experiment
    return new_exposure(
        request.customer_id,
        services.clock(),
        Arm.CONTROL if answer.control else Arm.TREATED,
        products,
        unit_id=unit_id,
        experiment_id=tag.experiment_id if tag else None,
        variant=tag.variant if tag else None,
        channel=request.channel,
        source=source,
        model_version=answer.model_version,
    )


def answer_offers_batch(services: Services, requests: Sequence[OfferRequest]) -> list[OffersAnswer]:
    """`answer_offers` for each request, in order (one customer's failure fails the batch).

    The cached entries every answer reads are fetched first in one round trip.
    """
    with prefetched(services.cache, cached_keys(services, requests)):
        cache_contact_facts(services, [r.customer_id for r in requests])
        return [answer_offers(services, request) for request in requests]


def answer_offers_each(
    services: Services, requests: Sequence[OfferRequest]
) -> list[OffersAnswer | NotFoundError]:
    """`answer_offers` for each request, in order; an unknown customer's error in its place.

    Each answer is the single answer's, step for step (exposures, experiments, contact
    policy alike); only the cached entries they read are fetched first in one round trip.
    Any other error fails the whole call, as it would fail a single answer.
    """
    out: list[OffersAnswer | NotFoundError] = []
    with prefetched(services.cache, cached_keys(services, requests)):
        # Contact facts not cached yet are read in one block (and cached, as one by one).
        cache_contact_facts(services, [r.customer_id for r in requests])
        for request in requests:
            try:
                out.append(answer_offers(services, request))
            except NotFoundError as exc:
                out.append(exc)
    return out


def cached_keys(services: Services, requests: Sequence[OfferRequest]) -> list[str]:
    """The cache keys the answers to `requests` read first: contact facts, champion answers.

    A key missed here (a variant pinning another model, a stamp that moves meanwhile) is
    simply read on its own when its answer asks for it.
    """
    stamp = services.state.stamp
    champion = services.state.offers
    label = champion.label if champion else None
    found: list[str] = []
    for request in requests:
        found.append(keys.contact_facts(request.customer_id, stamp))
        found.append(offers_key(request.customer_id, stamp, label))
    return found
