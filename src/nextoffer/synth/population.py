"""Draw one chunk of customers: latent traits, demographics, usage, contract and base plans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextoffer.domain.vocabulary import ContractType
from nextoffer.synth.arrays import F64, I64, BoolA, codes
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import CONTRACTS, REGIONS
from nextoffer.synth.names import FIRST_NAMES, LAST_NAMES
from nextoffer.synth.segments import PREPAID_PAYMENTS, SEGMENTS, region_table
from nextoffer.synth.world import DAYS_PER_MONTH, MAX_TENURE_DAYS, Timeline

PREPAID, ONE_YEAR, TWO_YEAR = codes(
    CONTRACTS, ContractType.PREPAID, ContractType.ONE_YEAR, ContractType.TWO_YEAR
)


def pick(rng: np.random.Generator, probs: F64) -> I64:
    """One categorical draw per row of `probs` (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    idx = (u[:, None] >= cum).sum(axis=1)
    return np.asarray(np.minimum(idx, probs.shape[1] - 1), dtype=np.int64)


@dataclass
class Population:
    """One chunk of customers, as parallel arrays (one entry per customer)."""

    number: I64
    segment: I64
    age: I64
    region: I64
    signup: I64
    contract: I64
    payment: I64
    data_gb: F64
    voice_min: F64
    price_sensitivity: F64
    service_issues: F64
    shopper: F64
    digital: F64
    app_share: F64
    churn_noise: F64
    first_name: I64
    last_name: I64
    mobile: I64
    broadband: I64
    phone: I64
    phone_day: I64
    phone_instalment: BoolA

    def __len__(self) -> int:
        return len(self.number)

    @property
    def age_z(self) -> F64:
        """Age band standardised to roughly mean 0, sd 1."""
        return np.asarray((self.age - 2.5) / 1.7, dtype=np.float64)

    @property
    def urbanity(self) -> F64:
        """How urban the customer's region is (0..1)."""
        return np.array([r.urbanity for r in REGIONS])[self.region]

    @property
    def postpaid(self) -> BoolA:
        """Customers on a postpaid contract."""
        return np.asarray(self.contract != PREPAID)


def draw_population(
    rng: np.random.Generator,
    first_number: int,
    n: int,
    catalog: Catalog,
    timeline: Timeline,
) -> Population:
    """Draw `n` customers numbered from `first_number`."""
    segs = SEGMENTS
    segment = rng.choice(len(segs), size=n, p=np.array([s.share for s in segs])).astype(np.int64)
    age = pick(rng, np.array([s.ages for s in segs])[segment])
    region = pick(rng, region_table()[segment])
    contract = pick(rng, np.array([s.contracts for s in segs])[segment])
    postpaid = contract != PREPAID
    pay_post = pick(rng, np.array([s.payments for s in segs])[segment])
    pay_pre = pick(rng, np.tile(np.array(PREPAID_PAYMENTS), (n, 1)))
    payment = np.where(postpaid, pay_post, pay_pre)

    # Tenure: truncated exponential, so recent joiners are common and a tail reaches 10 years.
    mean_days = np.array([s.tenure_months for s in segs])[segment] * DAYS_PER_MONTH
    u = rng.random(n)
    tenure = -mean_days * np.log1p(-u * (1.0 - np.exp(-MAX_TENURE_DAYS / mean_days)))
    tenure_days = np.clip(np.floor(tenure).astype(np.int64) + 1, 1, MAX_TENURE_DAYS)
    signup = timeline.end_day - tenure_days

    age_z = (age - 2.5) / 1.7
    data_med = np.array([s.data_gb for s in segs])[segment] * np.exp(-0.25 * age_z)
    data_gb = data_med * rng.lognormal(0.0, 0.7, n)
    voice_min = np.array([s.voice_min for s in segs])[segment] * rng.lognormal(0.0, 0.6, n)

    price_sensitivity = np.array([s.price_sensitivity for s in segs])[segment] * rng.lognormal(
        0.0, 0.3, n
    )
    network = np.array([r.network_issues for r in REGIONS])[region]
    service_issues = (
        np.array([s.service_issues for s in segs])[segment] * network * rng.gamma(0.7, 1 / 0.7, n)
    )
    shopper = rng.lognormal(-0.125, 0.5, n)
    digital = np.array([s.digital for s in segs])[segment] * rng.lognormal(-0.08, 0.4, n)
    app_share = np.clip(
        np.array([s.app_share for s in segs])[segment] + rng.normal(0, 0.1, n), 0.05, 0.95
    )
    churn_noise = rng.standard_normal(n)

    # Base plans. Broadband-only households have no mobile line (and no mobile data).
    idx = catalog.index
    broadband_only = postpaid & (
        rng.random(n) < np.array([s.broadband_only for s in segs])[segment]
    )
    # Price-sensitive customers pick a smaller plan for the same usage (so the latent trait
    # leaves an observable trace: usage above the plan allowance).
    need = data_gb * rng.lognormal(0.0, 0.5, n) * price_sensitivity**-0.4
    post_tier = np.select(
        [need <= 10, need <= 40, need <= 100],
        [idx["MOB-S"], idx["MOB-M"], idx["MOB-L"]],
        idx["MOB-UNL"],
    )
    committed = (contract == ONE_YEAR) | (contract == TWO_YEAR)
    biz = committed & (rng.random(n) < np.array([s.business_plan for s in segs])[segment])
    post_tier = np.where(biz, idx["MOB-BIZ"], post_tier)
    # Long-standing customers may still sit on the discontinued plan.
    legacy = (
        (signup < timeline.history_start - 3 * 365)
        & np.isin(post_tier, [idx["MOB-S"], idx["MOB-M"]])
        & (rng.random(n) < 0.35)
    )
    post_tier = np.where(legacy, idx["MOB-LEGACY"], post_tier)
    pre_tier = np.where(need > 7, idx["MOB-PRE-L"], idx["MOB-PRE-S"])
    mobile = np.where(postpaid, post_tier, pre_tier)
    mobile = np.where(broadband_only, -1, mobile).astype(np.int64)
    data_gb = np.where(broadband_only, 0.0, data_gb)
    voice_min = np.where(broadband_only, 0.0, voice_min)

    fibre = np.array([r.fibre for r in REGIONS])[region]
    wireless = np.array([r.fixed_wireless for r in REGIONS])[region]
    has_bb = broadband_only | (
        postpaid & (rng.random(n) < np.array([s.broadband for s in segs])[segment])
    )
    u_bb = rng.random(n)
    gig = np.array([s.fibre_1g for s in segs])[segment]
    bb_fibre = np.where(
        u_bb < gig,
        idx["BB-FIB-1G"],
        np.where(u_bb < gig + 0.55, idx["BB-FIB-300"], idx["BB-DSL-50"]),
    )
    bb_other = np.where(wireless & (u_bb < 0.35), idx["BB-5G-HOME"], idx["BB-DSL-50"])
    broadband = np.where(has_bb, np.where(fibre, bb_fibre, bb_other), -1).astype(np.int64)

    # A phone bought with the line (window joiners) or in the two years before the window.
    phone_table = np.array([s.phones for s in segs])[segment]
    phone = catalog.indices(["DEV-PHONE-BUDGET", "DEV-PHONE-MID", "DEV-PHONE-FLAG"])[
        pick(rng, phone_table)
    ]
    joins_in_window = signup >= timeline.history_start
    p_phone = np.where(
        joins_in_window, np.where(postpaid, 0.35, 0.15), np.where(postpaid, 0.45, 0.25)
    )
    has_phone = (rng.random(n) < p_phone) & (mobile >= 0)
    lo = np.maximum(signup, timeline.history_start - 729)
    span = np.maximum(timeline.history_start - lo, 1)
    earlier = lo + np.floor(rng.random(n) * span).astype(np.int64)
    has_phone &= joins_in_window | (lo < timeline.history_start)
    phone_day = np.where(joins_in_window, signup, earlier)
    phone_instalment = has_phone & postpaid & (rng.random(n) < 0.6)

    return Population(
        number=np.arange(first_number, first_number + n, dtype=np.int64),
        segment=segment,
        age=age,
        region=region,
        signup=signup,
        contract=contract,
        payment=payment,
        data_gb=data_gb,
        voice_min=voice_min,
        price_sensitivity=price_sensitivity,
        service_issues=service_issues,
        shopper=shopper,
        digital=digital,
        app_share=app_share,
        churn_noise=churn_noise,
        first_name=rng.integers(0, len(FIRST_NAMES), n),
        last_name=rng.integers(0, len(LAST_NAMES), n),
        mobile=mobile,
        broadband=broadband,
        phone=np.where(has_phone, phone, -1).astype(np.int64),
        phone_day=phone_day.astype(np.int64),
        phone_instalment=phone_instalment,
    )
