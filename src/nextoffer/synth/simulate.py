"""Month-by-month simulation of one chunk's holdings, purchases, plan changes and churn."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nextoffer.domain.vocabulary import Channel, ContractType, TransactionType
from nextoffer.synth.arrays import F32, F64, I64, BoolA, codes
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import CHANNELS, CONTRACTS, REGIONS
from nextoffer.synth.population import Population
from nextoffer.synth.segments import SEGMENTS, affinity_matrix
from nextoffer.synth.world import (
    CHURN,
    DAYS_PER_MONTH,
    PRICE_PENALTY,
    PURCHASE_SCALE,
    Timeline,
    effect_vectors,
)

NEVER = np.int64(1 << 40)
TXN_TYPES: tuple[TransactionType, ...] = tuple(TransactionType)
ACTIVATION, UPGRADE, DOWNGRADE, PURCHASE, CANCELLATION = codes(
    TXN_TYPES,
    TransactionType.ACTIVATION,
    TransactionType.UPGRADE,
    TransactionType.DOWNGRADE,
    TransactionType.PURCHASE,
    TransactionType.CANCELLATION,
)
PREPAID, MONTH_TO_MONTH = codes(CONTRACTS, ContractType.PREPAID, ContractType.MONTH_TO_MONTH)
# Customers cancel mostly by phone, never through outbound telesales.
CANCEL_CHANNEL_WEIGHT = np.array(
    [
        {Channel.RETAIL: 0.5, Channel.CALL_CENTER: 2.0, Channel.TELESALES: 0.0}.get(c, 1.0)
        for c in CHANNELS
    ]
)

SEGMENT_CHANNELS = np.array([s.channels for s in SEGMENTS])
ARPU_NORM = np.array([s.arpu_norm for s in SEGMENTS])
NEW_CUSTOMER_DAYS = 183
INSTALMENT_MONTHS = 24
INSTALMENT_MIN_PRICE = 10000
INSTALMENT_SHARE = 0.55


@dataclass
class Records:
    """Rows produced by the simulation, as column chunks to concatenate."""

    txn: dict[str, list[I64]] = field(
        default_factory=lambda: {k: [] for k in ("cust", "prod", "day", "type", "amount", "chan")}
    )
    sub: dict[str, list[I64]] = field(
        default_factory=lambda: {k: [] for k in ("cust", "prod", "start", "end", "price")}
    )

    def add_txn(
        self, cust: I64, prod: I64, day: I64, kind: int | I64, amount: I64, chan: I64
    ) -> None:
        """Append transactions."""
        n = len(cust)
        if n == 0:
            return
        cols = (cust, prod, day, np.broadcast_to(np.int64(kind), (n,)), amount, chan)
        for key, values in zip(self.txn, cols, strict=True):
            self.txn[key].append(np.asarray(values, dtype=np.int64).copy())

    def add_sub(self, cust: I64, prod: I64, start: I64, end: I64, price: I64) -> None:
        """Append subscription rows (end = -1: still held)."""
        if len(cust) == 0:
            return
        for key, values in zip(self.sub, (cust, prod, start, end, price), strict=True):
            self.sub[key].append(np.asarray(values, dtype=np.int64).copy())

    @staticmethod
    def _cat(parts: dict[str, list[I64]]) -> dict[str, I64]:
        return {
            k: np.concatenate(v) if v else np.empty(0, dtype=np.int64) for k, v in parts.items()
        }

    def transactions(self) -> dict[str, I64]:
        """All transactions as columns."""
        return self._cat(self.txn)

    def subscriptions(self) -> dict[str, I64]:
        """All subscription rows as columns."""
        return self._cat(self.sub)


@dataclass(frozen=True)
class ChurnOutcome:
    """The churn draw at label_as_of, plus the snapshot the customers file shows."""

    labelled: BoolA
    probability: F64
    churned: BoolA
    churn_day: I64
    arpu_cents: I64
    plan: I64


@dataclass(frozen=True)
class Plants:
    """Campaign outcomes the simulation must honour after label_as_of.

    `cust` were offered `prod` on label_as_of; `day` is the day each acquires it (-1: not
    in the window). Organic purchases of the offered product on days [label_as_of,
    `window_end`] are dropped, so within the window only the planted draw acquires it.
    """

    cust: I64
    prod: I64
    day: I64
    window_end: int


class ChunkSimulation:
    """Holdings of one chunk of customers, advanced step by step through the history window."""

    def __init__(
        self,
        rng: np.random.Generator,
        pop: Population,
        catalog: Catalog,
        timeline: Timeline,
    ) -> None:
        self.rng = rng
        self.pop = pop
        self.cat = catalog
        self.tl = timeline
        n, p = len(pop), catalog.n
        self.n = n
        self.held = np.zeros((n, p), np.bool_)
        self.sub_start = np.full((n, p), -1, np.int64)
        self.sub_price = np.zeros((n, p), np.int64)
        self.expire = np.full((n, p), NEVER, np.int64)
        self.churn_day = np.full(n, NEVER, np.int64)
        self.mobile = pop.mobile.copy()
        self.broadband = pop.broadband.copy()
        self.records = Records()
        self.effects = effect_vectors(catalog)
        self.affinity = affinity_matrix(catalog)
        self.static_logit = self._static_logit()
        self.static_ok = (
            catalog.contract_ok[:, pop.contract].T
            & catalog.region_ok[:, pop.region].T
            & catalog.buyable[None, :]
        )
        self.block_pairs = [
            (int(k), int(j))
            for k, j in zip(*np.nonzero(catalog.blocks > 0), strict=True)
            if not catalog.blocks[j, k] or k < j
        ]
        self.fibre = np.array([r.fibre for r in REGIONS])[pop.region]
        self.wireless = np.array([r.fixed_wireless for r in REGIONS])[pop.region]
        self.arpu_at_signup = np.zeros(n, np.int64)
        # Usage charges and discounts make billed ARPU scatter a little around list prices.
        self.arpu_noise = rng.lognormal(0.0, 0.05, n)
        self.churn_draw = np.ones(n)
        self.churn_offset = np.ones(n, np.int64)
        self.offered = np.full(n, -1, np.int64)
        self.plant_day = np.full(n, -1, np.int64)
        self.window_end = -1

    # -- propensity -------------------------------------------------------------------------

    def _static_logit(self) -> F32:
        """Log purchase hazard parts fixed for the whole window: segment, traits, price."""
        pop, cat, eff = self.pop, self.cat, self.effects
        usage = np.log(np.maximum(pop.data_gb, 0.1) / 10.0)
        voice = np.log(np.maximum(pop.voice_min, 1.0) / 200.0)
        logit = (
            np.log(np.maximum(cat.base_rate * PURCHASE_SCALE, 1e-12))[None, :]
            + (self.affinity[pop.segment])
        )
        for signal, values in (
            ("age", pop.age_z),
            ("urban", pop.urbanity),
            ("usage", usage),
            ("voice", voice),
        ):
            cols = np.flatnonzero(eff[signal])
            logit[:, cols] += values[:, None] * eff[signal][cols]
        logit -= PRICE_PENALTY * pop.price_sensitivity[:, None] * cat.price_level[None, :]
        logit += np.log(pop.shopper)[:, None]
        # Agents offer retention deals to customers who look likely to leave.
        risk = (
            0.9 * (pop.contract == MONTH_TO_MONTH)
            + 0.5 * (pop.contract == PREPAID)
            + 0.4 * np.minimum(pop.service_issues, 3.0)
        )
        logit[:, cat.retention] += risk[:, None]
        return np.asarray(logit, dtype=np.float32)

    def _over(self) -> F64:
        """log(data used / plan allowance), clipped; -2 without a mobile plan."""
        allowance = self.cat.allowance[np.maximum(self.mobile, 0)]
        ratio = np.log(np.maximum(self.pop.data_gb, 0.1) / np.maximum(allowance, 0.1))
        return np.where(self.mobile >= 0, np.clip(ratio, -2.0, 2.0), -2.0)

    def _logit(self, day: int) -> F32:
        """Log purchase hazard on `day`, given current holdings."""
        eff = self.effects
        logit = self.held.astype(np.float32) @ self.cat.complement
        logit += self.static_logit
        tenure_days = day - self.pop.signup
        dynamic = (
            ("over", self._over()),
            ("new", ((tenure_days >= 0) & (tenure_days < NEW_CUSTOMER_DAYS)).astype(np.float64)),
            ("tenure", np.clip(tenure_days / 365.0, 0.0, 8.0)),
        )
        for signal, values in dynamic:
            cols = np.flatnonzero(eff[signal])
            logit[:, cols] += (values[:, None] * eff[signal][cols]).astype(np.float32)
        return logit

    def _eligible(self, day: int) -> BoolA:
        """Products each customer may buy on `day` (catalogue rules, holdings, exclusions)."""
        cat = self.cat
        held_f = self.held.astype(np.float32)
        held_cat = (held_f @ cat.cat_onehot) > 0
        req = cat.requires
        req_ok = np.where(req[None, :] < 0, True, held_cat[:, np.maximum(req, 0)])
        ok = self.static_ok & ~self.held & req_ok & ((held_f @ cat.blocks) < 0.5)
        cols = np.flatnonzero(cat.min_tenure_days > 0)
        tenure_days = day - self.pop.signup
        ok[:, cols] &= tenure_days[:, None] >= cat.min_tenure_days[cols][None, :]
        return np.asarray(ok)

    def offer_weights(self, day: int) -> F64:
        """Relative purchase propensity of every eligible product on `day` (0 elsewhere)."""
        return np.where(self._eligible(day), np.exp(self._logit(day).astype(np.float64)), 0.0)

    def _resolve_conflicts(self, chosen: BoolA) -> None:
        """Of products that exclude each other, keep one when several are chosen at once."""
        for k, j in self.block_pairs:
            chosen[:, j] &= ~chosen[:, k]

    # -- state changes ---------------------------------------------------------------------

    def _channels(self, cust: I64, prod: I64, cancel: bool = False) -> I64:
        """A sales or service channel per transaction: segment habits within product rules."""
        weights = SEGMENT_CHANNELS[self.pop.segment[cust]]
        if cancel:
            weights = weights * CANCEL_CHANNEL_WEIGHT[None, :]
        else:
            weights = weights * self.cat.channel_ok[prod]
            # Products sold only where the segment never goes fall back to any allowed channel.
            weights = np.where(
                weights.sum(axis=1, keepdims=True) > 0, weights, self.cat.channel_ok[prod]
            )
        cum = np.cumsum(weights, axis=1)
        u = self.rng.random(len(cust)) * cum[:, -1]
        return np.asarray(np.minimum((u[:, None] >= cum).sum(axis=1), len(CHANNELS) - 1), np.int64)

    def _open(self, cust: I64, prod: I64, day: I64, price: I64, with_sub: BoolA) -> None:
        self.held[cust, prod] = True
        self.sub_start[cust, prod] = np.where(with_sub, day, -1)
        self.sub_price[cust, prod] = np.where(with_sub, price, 0)
        term = self.cat.term_days[prod]
        self.expire[cust, prod] = np.where(term > 0, day + term - 1, NEVER)

    def _cancel(self, cust: I64, prod: I64, day: I64) -> None:
        """The customers cancel these holdings on `day`: a free cancellation, then the end."""
        self.records.add_txn(
            cust,
            prod,
            day,
            CANCELLATION,
            np.zeros(len(cust), np.int64),
            self._channels(cust, prod, cancel=True),
        )
        self._close(cust, prod, day)

    def _close(self, cust: I64, prod: I64, day: I64) -> None:
        start = self.sub_start[cust, prod]
        has = start >= 0
        self.records.add_sub(
            cust[has], prod[has], start[has], day[has], self.sub_price[cust, prod][has]
        )
        self.held[cust, prod] = False
        self.sub_start[cust, prod] = -1
        self.sub_price[cust, prod] = 0
        self.expire[cust, prod] = NEVER

    def _buy(self, cust: I64, prod: I64, day: I64, record: bool = True) -> None:
        """Start holding products; devices may come with an instalment subscription."""
        cat = self.cat
        price = cat.price[prod]
        device = cat.is_device[prod]
        instalment = (
            device
            & (self.pop.contract[cust] != PREPAID)
            & (price >= INSTALMENT_MIN_PRICE)
            & (self.rng.random(len(cust)) < INSTALMENT_SHARE)
        )
        down = np.round(price * 0.1 / 100.0).astype(np.int64) * 100
        monthly = np.where(
            instalment, np.round((price - down) / INSTALMENT_MONTHS).astype(np.int64), price
        )
        self._open(cust, prod, day, monthly, ~device | instalment)
        if record:
            amount = np.where(instalment, down, price)
            kind = np.where(cat.is_broadband[prod] | cat.is_mobile[prod], ACTIVATION, PURCHASE)
            self.records.add_txn(cust, prod, day, kind, amount, self._channels(cust, prod))

    def _process_expiries(self, before: int) -> None:
        """Fixed terms that ran out before `before` end by themselves (no transaction)."""
        due = self.held & (self.expire < before) & (self.expire < self.churn_day[:, None])
        cust, prod = np.nonzero(due)
        self._close(cust, prod, self.expire[cust, prod])

    # -- initial state ---------------------------------------------------------------------

    def initialise(self) -> None:
        """Holdings at the start of the window; joiners get theirs (with transactions) at signup."""
        pop, cat, tl, rng = self.pop, self.cat, self.tl, self.rng
        start = tl.history_start
        joiner = pop.signup >= start
        before_span = np.maximum(start - pop.signup, 1)
        for plans in (self.mobile, self.broadband):
            cust = np.flatnonzero(plans >= 0)
            prod = plans[cust]
            # Pre-window customers may have changed plan since signing up (legacy never did).
            offset = np.floor(rng.random(len(cust)) * before_span[cust]).astype(np.int64)
            legacy = prod == cat.index["MOB-LEGACY"]
            day = np.where(joiner[cust] | legacy, pop.signup[cust], pop.signup[cust] + offset)
            self._buy(cust, prod, day, record=False)
            new = joiner[cust]
            self.records.add_txn(
                cust[new],
                prod[new],
                day[new],
                ACTIVATION,
                cat.price[prod[new]],
                self._channels(cust[new], prod[new]),
            )
        cust = np.flatnonzero(pop.phone >= 0)
        self._buy_phone(cust, joiner[cust])
        self._initial_addons(~joiner)
        self.arpu_at_signup = self._arpu()

    def _buy_phone(self, cust: I64, in_window: BoolA) -> None:
        pop, cat = self.pop, self.cat
        prod = pop.phone[cust]
        day = pop.phone_day[cust]
        price = cat.price[prod]
        inst = pop.phone_instalment[cust]
        down = np.round(price * 0.1 / 100.0).astype(np.int64) * 100
        monthly = np.round((price - down) / INSTALMENT_MONTHS).astype(np.int64)
        self._open(cust, prod, day, monthly, inst)
        rec = in_window
        self.records.add_txn(
            cust[rec],
            prod[rec],
            day[rec],
            PURCHASE,
            np.where(inst, down, price)[rec],
            self._channels(cust[rec], prod[rec]),
        )

    def _initial_addons(self, existing: BoolA) -> None:
        """Add-ons and bundles already held at window start, near their steady state."""
        cat, pop, rng = self.cat, self.pop, self.rng
        start = self.tl.history_start
        hazard = np.exp(self._logit(start).astype(np.float64))
        ok = self._eligible(start) & ~cat.retention & ~cat.is_device & ~cat.is_broadband
        ok &= existing[:, None]
        cancel = np.maximum(cat.cancel_rate, 0.01)[None, :]
        months = np.maximum(start - pop.signup, 0)[:, None] / DAYS_PER_MONTH
        # Two-state chain (not held <-> held) started empty at signup.
        prob = hazard / (hazard + cancel) * -np.expm1(-(hazard + cancel) * months)
        chosen = ok & (rng.random(ok.shape) < prob)
        self._resolve_conflicts(chosen)
        cust, prod = np.nonzero(chosen)
        span = np.minimum(start - pop.signup[cust], (DAYS_PER_MONTH / cancel[0, prod]).astype(int))
        day = start - 1 - np.floor(rng.random(len(cust)) * np.maximum(span, 1)).astype(np.int64)
        self._open(cust, prod, day, cat.price[prod], np.ones(len(cust), np.bool_))

    # -- one step --------------------------------------------------------------------------

    def _days(self, a: int, b: int, cust: I64) -> tuple[I64, BoolA]:
        """A day in [a, b) per action, and whether the customer was there to act on it."""
        day = a + np.floor(self.rng.random(len(cust)) * (b - a)).astype(np.int64)
        valid = (day > self.pop.signup[cust]) & (day < self.churn_day[cust])
        return day, valid

    def step(self, a: int, b: int, plan_changes: bool) -> None:
        """Advance holdings through days [a, b)."""
        cat, rng, pop = self.cat, self.rng, self.pop
        self._process_expiries(a)
        dt = (b - a) / DAYS_PER_MONTH
        exists = (pop.signup < b - 1) & (self.churn_day > a)

        # Purchases, drawn only where eligible (about half the matrix) to save time.
        eligible = self._eligible(a)
        eligible &= exists[:, None]
        flat = np.flatnonzero(eligible)
        hazard = np.exp(self._logit(a).ravel()[flat]) * np.float32(dt)
        hit = flat[rng.random(len(flat), np.float32) < -np.expm1(-hazard)]
        buy = np.zeros_like(eligible)
        buy.ravel()[hit] = True
        self._resolve_conflicts(buy)
        b_cust, b_prod = np.nonzero(buy)
        b_day, valid = self._days(a, b, b_cust)
        b_cust, b_prod, b_day = b_cust[valid], b_prod[valid], b_day[valid]
        if self.window_end >= 0:
            b_cust, b_prod, b_day = self._with_plants(a, b, b_cust, b_prod, b_day)

        # Cancellations of add-ons and bundles; bundles also end what they contain.
        cols = np.flatnonzero(cat.cancel_rate > 0)
        c_cust, c_idx = np.nonzero((self.sub_start[:, cols] >= 0) & exists[:, None])
        c_prod = cols[c_idx]
        rate = cat.cancel_rate[c_prod] * dt * np.sqrt(pop.price_sensitivity[c_cust])
        drop = rng.random(len(c_cust)) < -np.expm1(-rate)
        c_cust, c_prod = c_cust[drop], c_prod[drop]
        c_day, valid = self._days(a, b, c_cust)
        c_cust, c_prod, c_day = c_cust[valid], c_prod[valid], c_day[valid]
        parts = [(c_cust, c_prod, c_day)]
        for j in np.flatnonzero(cat.replaces.any(axis=1)):
            sel = b_prod == j
            for k in np.flatnonzero(cat.replaces[j]):
                hit = sel & self.held[b_cust, k]
                parts.append((b_cust[hit], np.full(hit.sum(), k, np.int64), b_day[hit]))
        x_cust = np.concatenate([p[0] for p in parts])
        x_prod = np.concatenate([p[1] for p in parts])
        x_day = np.concatenate([p[2] for p in parts])
        if len(x_cust):
            order = np.lexsort((x_day, x_prod, x_cust))
            x_cust, x_prod, x_day = x_cust[order], x_prod[order], x_day[order]
            first = np.ones(len(x_cust), np.bool_)
            first[1:] = (x_cust[1:] != x_cust[:-1]) | (x_prod[1:] != x_prod[:-1])
            x_cust, x_prod, x_day = x_cust[first], x_prod[first], x_day[first]
            self._cancel(x_cust, x_prod, x_day)

        if plan_changes:
            self._plan_changes(a, b, dt, exists)
        if len(b_cust):
            self._buy(b_cust, b_prod, b_day)

    def plant(self, plants: Plants) -> None:
        """Acquisitions the campaign decided: made on their day, organic ones held back."""
        self.offered[plants.cust] = plants.prod
        self.plant_day[plants.cust] = plants.day
        self.window_end = plants.window_end

    def _with_plants(self, a: int, b: int, cust: I64, prod: I64, day: I64) -> tuple[I64, I64, I64]:
        """Organic buys of step [a, b) less the campaign's window, plus the planted buys due."""
        offered = self.offered[cust]
        exposed = offered >= 0
        # The offered product is acquired in its window by the planted draw only; until a
        # planted purchase is made, nothing that excludes it is bought either.
        in_window = (
            exposed & (prod == offered) & (day >= self.tl.label_day) & (day <= self.window_end)
        )
        pending = exposed & (self.plant_day[cust] >= a)
        blocked = pending & self.cat.conflicts[np.maximum(offered, 0), prod]
        keep = ~(in_window | blocked)
        due = np.flatnonzero((self.plant_day >= a) & (self.plant_day < b))
        return (
            np.concatenate([cust[keep], due]),
            np.concatenate([prod[keep], self.offered[due]]),
            np.concatenate([day[keep], self.plant_day[due]]),
        )

    def _allowed(self, target: I64, has: BoolA) -> BoolA:
        """Whether each customer may move to `target` (-1 = nowhere to go)."""
        cat, pop = self.cat, self.pop
        t = np.maximum(target, 0)
        return np.asarray(
            has
            & (target >= 0)
            & cat.contract_ok[t, pop.contract]
            & cat.region_ok[t, pop.region]
            & cat.active[t]
        )

    def _plan_changes(self, a: int, b: int, dt: float, exists: BoolA) -> None:
        """Mobile and broadband up/downgrades: one subscription closes, the next one opens."""
        cat, pop, rng = self.cat, self.pop, self.rng
        over = self._over()
        ps = pop.price_sensitivity
        idx = cat.index
        for plans, mobile in ((self.mobile, True), (self.broadband, False)):
            has = (plans >= 0) & exists
            cur = np.maximum(plans, 0)
            up = cat.up[cur]
            if not mobile:
                dsl = cur == idx["BB-DSL-50"]
                dsl_up = np.where(
                    self.fibre, idx["BB-FIB-300"], np.where(self.wireless, idx["BB-5G-HOME"], -1)
                )
                up = np.where(dsl, dsl_up, up)
            down = cat.down[cur]

            aff_up = self.affinity[pop.segment, np.maximum(up, 0)]
            if mobile:
                legacy = cur == idx["MOB-LEGACY"]
                up_rate = 0.008 * np.exp(1.1 * over + 0.5 * aff_up + 1.5 * legacy - 0.3 * (ps - 1))
                down_rate = 0.004 * np.exp(1.0 * (ps - 1) - 0.7 * over + 1.0 * legacy)
            else:
                usage = np.log(np.maximum(pop.data_gb, 0.1) / 10.0)
                up_rate = 0.004 * np.exp(0.8 * pop.urbanity + aff_up + 0.3 * usage - 0.3 * (ps - 1))
                down_rate = 0.002 * np.exp(ps - 1)
            u = rng.random((2, self.n))
            go_up = self._allowed(up, has) & (u[0] < -np.expm1(-up_rate * dt))
            go_down = self._allowed(down, has) & ~go_up & (u[1] < -np.expm1(-down_rate * dt))
            for moving, target, kind in ((go_up, up, UPGRADE), (go_down, down, DOWNGRADE)):
                cust = np.flatnonzero(moving)
                day, valid = self._days(a, b, cust)
                cust, day = cust[valid], day[valid]
                old, new = plans[cust], target[cust]
                self._close(cust, old, day)
                self._open(cust, new, day, cat.price[new], np.ones(len(cust), np.bool_))
                plans[cust] = new
                self.records.add_txn(
                    cust, new, day, kind, cat.price[new], self._channels(cust, new)
                )

    # -- churn and the end of the window ---------------------------------------------------

    def _arpu(self) -> I64:
        """Monthly revenue of current holdings plus postpaid out-of-bundle usage, in cents."""
        pop = self.pop
        held = np.where(self.sub_start >= 0, self.sub_price, 0).sum(axis=1)
        allowance = self.cat.allowance[np.maximum(self.mobile, 0)]
        extra_gb = np.where(self.mobile >= 0, np.maximum(pop.data_gb - allowance, 0.0), 0.0)
        overage = np.where(pop.postpaid, np.minimum(extra_gb * 40.0, 1500.0), 0.0)
        return np.asarray(np.round((held + overage) * self.arpu_noise), dtype=np.int64)

    def decide_churn(self, service_before_label: tuple[I64, I64]) -> ChurnOutcome:
        """Draw who leaves in (label_as_of, end] from the true model, on label_as_of's state."""
        pop, tl, cat, rng = self.pop, self.tl, self.cat, self.rng
        self._process_expiries(tl.label_day)
        support, complaints = service_before_label
        has_sub = self.sub_start >= 0
        n_subs = has_sub.sum(axis=1)
        bundle = (has_sub & cat.is_bundle[None, :]).any(axis=1)
        retention = (has_sub & cat.retention[None, :]).any(axis=1)
        labelled = pop.signup < tl.label_day
        arpu = np.where(labelled, self._arpu(), self.arpu_at_signup)
        plan = np.where(self.mobile >= 0, self.mobile, self.broadband)
        tenure_months = (tl.label_day - pop.signup) / DAYS_PER_MONTH
        ratio = np.log(np.maximum(arpu, 100) / 100.0 / ARPU_NORM[pop.segment])
        m = CHURN
        logit = (
            m.intercept
            + np.array(m.contract)[pop.contract]
            + np.array(m.payment)[pop.payment]
            + m.tenure * np.exp(-np.maximum(tenure_months, 0) / m.tenure_scale_months)
            + m.price * np.clip(ratio, -1.0, 1.5)
            + m.support * np.minimum(support, 4)
            + m.complaint * np.minimum(complaints, 4)
            + m.products * np.clip(n_subs - 1, 0, 5)
            + m.bundle * bundle
            + m.retention * retention
            + m.noise * pop.churn_noise
        )
        probability = 1.0 / (1.0 + np.exp(-logit))
        # The uniform draw and the day are kept so a campaign can move a customer's churn
        # probability and redraw (redraw_churn) without touching anyone else's outcome.
        self.churn_draw = rng.random(self.n)
        self.churn_offset = rng.integers(1, tl.end_day - tl.label_day, self.n)
        churned = labelled & (self.churn_draw < probability)
        self.churn_day = np.where(churned, tl.label_day + self.churn_offset, NEVER)
        return ChurnOutcome(
            labelled=labelled,
            probability=np.where(labelled, probability, np.nan),
            churned=churned,
            churn_day=self.churn_day.copy(),
            arpu_cents=arpu,
            plan=plan,
        )

    def redraw_churn(self, outcome: ChurnOutcome, cust: I64, probability: F64) -> ChurnOutcome:
        """Churn of `cust` drawn again with a new `probability` (the same uniform draw).

        Where the probability is unchanged, so is the outcome; a churner keeps the day
        decide_churn drew for them.
        """
        churned = outcome.churned.copy()
        churned[cust] = outcome.labelled[cust] & (self.churn_draw[cust] < probability)
        day = np.where(churned, self.tl.label_day + self.churn_offset, NEVER)
        self.churn_day = day
        return replace(outcome, churned=churned, churn_day=day.copy())

    def finish(self) -> None:
        """Close what ended by the world's end; churners cancel everything on churn day."""
        last_day = self.tl.end_day - 1
        churn = self.churn_day[:, None]
        expired = self.held & (self.expire <= np.minimum(churn - 1, last_day))
        cust, prod = np.nonzero(expired)
        self._close(cust, prod, self.expire[cust, prod])
        leaving = (self.sub_start >= 0) & (churn < NEVER)
        cust, prod = np.nonzero(leaving)
        self._cancel(cust, prod, self.churn_day[cust])
        self.held[self.churn_day < NEVER] = False
        cust, prod = np.nonzero(self.sub_start >= 0)
        self.records.add_sub(
            cust,
            prod,
            self.sub_start[cust, prod],
            np.full(len(cust), -1, np.int64),
            self.sub_price[cust, prod],
        )
