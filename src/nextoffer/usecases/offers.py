"""Answer offers, for one customer or many: the only path by which anything gets offers.

The answer is shaped by an explicit, ordered list of steps (`STEPS`). The order is the
business's: customers who must not be contacted at all are dropped before anything else,
then a running experiment picks the strategy, then the answer chain (cache → precomputed →
live → popular) ranks only eligible products under the product rules, and contact caps
and accepted products are filtered out of every source. Later capabilities (erasure, a
universal control group, consent and quiet hours) add their steps to this list, in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nextoffer.domain.experiments import Variant
from nextoffer.serving.offers import OffersAnswer
from nextoffer.store.experiments import ExperimentRecord
from nextoffer.usecases.context import Services


@dataclass(frozen=True)
class OfferRequest:
    """Who is asking for offers, how many, and where they will be shown."""

    customer_id: str
    k: int | None = None
    channel: str | None = None
    session_id: str | None = None


@dataclass
class OfferDecision:
    """What the steps before the answer chain decided for one request."""

    request: OfferRequest
    experiment: ExperimentRecord | None = None
    variant: Variant | None = None


Step = Callable[[Services, OfferDecision], OfferDecision]


def assign_experiment(services: Services, decision: OfferDecision) -> OfferDecision:
    """The running experiment's sticky variant of the customer (or session), if any."""
    request = decision.request
    assignment = services.experiments.variant_for(request.customer_id, request.session_id)
    if assignment is not None:
        decision.experiment, decision.variant = assignment
    return decision


STEPS: tuple[tuple[str, Step], ...] = (("experiment assignment", assign_experiment),)
"""Steps run before the answer chain, in order. The chain itself then applies, to every
source alike: eligibility and product rules (only eligible products are ranked), and
contact caps with products accepted since (re-checked on stored answers)."""

CHAIN_STEPS = ("eligibility and product rules", "contact caps")
"""Steps the answer chain applies itself (named here so the whole order reads in one place)."""


def answer_offers(services: Services, request: OfferRequest) -> OffersAnswer:
    """The customer's next-best offers after every step, best first.

    Raises NotFoundError for an unknown customer; a backend that is down makes the answer
    `degraded` (with a note saying why) rather than failing it.
    """
    decision = OfferDecision(request)
    for _name, step in STEPS:
        decision = step(services, decision)
    answer = services.offers.offers(
        request.customer_id,
        k=request.k or services.settings.default_offers_k,
        channel=request.channel,
        variant=decision.variant,
        experiment_id=decision.experiment.experiment_id if decision.experiment else None,
    )
    for note in answer.notes:
        services.metrics.degraded_answers.labels(note).inc()
    return answer


def answer_offers_batch(services: Services, requests: Sequence[OfferRequest]) -> list[OffersAnswer]:
    """`answer_offers` for each request, in order (one customer's failure fails the batch)."""
    return [answer_offers(services, request) for request in requests]
