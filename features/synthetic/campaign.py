"""A retention campaign with a known, heterogeneous effect inside the demo data.

Why: a campaign readout (serving.outreach.readout) and an uplift model can only
be checked against the truth on data whose truth is known. On one day of the
simulation (`campaign_day`) the customers at the highest churn risk are
selected and split by a keyed hash into treatment and control (a control share
of one half, so the readout has power); contacting the treatment group
multiplies each one's churn hazard for `EFFECT_DAYS` by a ratio that depends on
traits the features can see:

- recent support tickets (a count decaying by e each 30 days of at least 0.3):
  0.2 (contact helps most where there is a problem to solve);
- no such tickets and younger than 26 ("sleeping dogs"): 2.5 (a reminder that
  the contract exists makes them leave);
- otherwise on the basic plan: 0.85; the rest: 0.5.

At 20,000 customers (seed 42) about 4,300 are selected; the effect on the
churn label averages about -1.3 points (-3.6 among the troubled, +0.7 among the
sleeping dogs): churning by hazard is rare within 30 days next to churn by
inactivity, which contact does not change.

The campaign leaves every other customer's events as they were without it (and
the control group's, and the treatment group's before the campaign): the two
worlds, contacted and not, are coupled. The simulation's own random stream
draws the uncontacted world for everyone, as it always did; the campaign's own
stream decides, per selected customer, where the contacted world departs from
it: a churn of the uncontacted world that contact prevented (kept with
probability = the hazard ratio), or an extra churn contact caused (probability
1 - exp(-hazard x (ratio - 1)) a day). The two worlds are identical while a
customer is alive in both; once they part, the customer is alive in only one of
them. A customer retained by contact (dead in the uncontacted world) then lives
on in the campaign's stream; a sleeping dog that left early stops emitting. So
the written events are the uncontacted world's for everyone outside the
treatment group, and the contacted world's inside it.

Both worlds are followed for every selected customer (treatment and control)
over the outcome window, so the truth holds each one's two potential outcomes:
churn by the readout's label (no non-cancel event in the window, or a cancel)
and revenue (purchase amounts), untreated and treated. Their difference,
averaged over the selected, is the effect a difference in means estimates.
Beside it, the expected effect on churning by hazard alone from each one's
state at selection: `churn_prob_treated - churn_prob_untreated`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from features.columns import CUSTOMER_ID

CAMPAIGN_ID = "demo-retention"
CAMPAIGN_TARGET = "churn"
CONTROL_SHARE = 0.5
HORIZON_DAYS = (
    30  # the outcome window the truth is counted over (the demo's churn horizon)
)
EFFECT_DAYS = 30  # how long contact changes the hazard
BEFORE_END_DAYS = 91  # the campaign day: this many days before the data ends
SELECTED_SHARE = 0.3  # of the living customers, the riskiest are selected
TREATMENT, CONTROL = "treatment", "control"
# segments by the traits driving the effect, and their hazard ratios
TROUBLED, SLEEPING_DOG, BASIC, OTHER = "troubled", "sleeping_dog", "basic", "other"
HAZARD_RATIO = {TROUBLED: 0.2, SLEEPING_DOG: 2.5, BASIC: 0.85, OTHER: 0.5}
_TICKETS_TROUBLED, _YOUNG = 0.3, 26

TRUTH_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        ("campaign_id", pa.string()),
        ("contact_group", pa.string()),
        ("confirmed_at", pa.timestamp("us")),
        ("segment", pa.string()),
        ("hazard_ratio", pa.float64()),
        ("churn_prob_untreated", pa.float64()),
        ("churn_prob_treated", pa.float64()),
        ("churn_effect", pa.float64()),
        ("outcome_untreated", pa.int8()),
        ("outcome_treated", pa.int8()),
        ("outcome_effect", pa.int8()),
        ("revenue_untreated", pa.float64()),
        ("revenue_treated", pa.float64()),
    ]
)

# (customer index, second of day, type code, amount, quantity)
Events = tuple[np.ndarray, ...]
# emit(rng, alive over the signed-up customers, cancelling customers) -> Events
Emit = Callable[[np.random.Generator, np.ndarray, np.ndarray], Events]


def campaign_day(days: int) -> int | None:
    """The day of the simulation the campaign is confirmed on (its window ends
    well before the data does), or None when the history is too short."""
    day = days - BEFORE_END_DAYS
    return day if day >= HORIZON_DAYS else None


def control_draw(key: bytes, customer_ids: list[str]) -> np.ndarray:
    """A uniform number in [0, 1) per customer, fixed by the key (the keyed hash
    outreach draws its control group with, here with BLAKE2b)."""
    out = np.empty(len(customer_ids))
    for i, cid in enumerate(customer_ids):
        digest = hashlib.blake2b(cid.encode(), key=key, digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2**64
    return out


class DemoCampaign:
    """The selected customers (indices `members`, sorted), their groups, hazard
    ratios and both worlds' state and outcomes (see the module docstring)."""

    def __init__(
        self,
        seed: int,
        day: int,
        members: np.ndarray,
        n_customers: int,
        control: np.ndarray,
        segment: np.ndarray,
        hazard: np.ndarray,
    ) -> None:
        self.rng = np.random.default_rng([seed, 0xCA4])
        self.day = day
        self.members = members
        self.pos = np.full(n_customers, -1, dtype=np.int64)
        self.pos[members] = np.arange(len(members))
        self.control = control
        self.segment = segment
        self.ratio = np.array([HAZARD_RATIO[s] for s in segment])
        self.prob0 = -np.expm1(-hazard * HORIZON_DAYS)
        self.prob1 = -np.expm1(-hazard * self.ratio * HORIZON_DAYS)
        m = len(members)
        self.alive1 = np.ones(m, dtype=bool)  # alive in the contacted world
        self.active = np.zeros((2, m), dtype=bool)  # a non-cancel event in the window
        self.cancel = np.zeros((2, m), dtype=bool)  # a cancel event in the window
        self.revenue = np.zeros((2, m))

    @classmethod
    def select(
        cls,
        seed: int,
        day: int,
        ids: pa.Array,
        alive: np.ndarray,
        signup_day: np.ndarray,
        hazard: np.ndarray,
        tickets: np.ndarray,
        plan_basic: np.ndarray,
        age: np.ndarray,
        age_null: np.ndarray,
    ) -> DemoCampaign:
        """Select the riskiest SELECTED_SHARE of the customers alive and signed up
        before `day` (arrays over the signed-up customers), split them and give
        each a hazard ratio by its traits."""
        n = len(alive)
        living = np.flatnonzero((alive > 0) & (signup_day[:n] < day))
        cut = np.quantile(hazard[living], 1 - SELECTED_SHARE) if len(living) else 0.0
        members = living[hazard[living] >= cut]
        key = f"propensity-demo-campaign-{seed}".encode()
        chosen = ids.take(pa.array(members)).to_pylist()
        control = control_draw(key, chosen) < CONTROL_SHARE
        troubled = tickets[members] >= _TICKETS_TROUBLED
        young = ~age_null[members] & (age[members] < _YOUNG)
        segment = np.where(
            troubled,
            TROUBLED,
            np.where(young, SLEEPING_DOG, np.where(plan_basic[members], BASIC, OTHER)),
        )
        return cls(seed, day, members, len(ids), control, segment, hazard[members])

    def churn(
        self,
        d: int,
        alive_before: np.ndarray,
        alive_after: np.ndarray,
        cancelled: np.ndarray,
        hazard: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The contacted world's churn on day d, coupled with the uncontacted
        world's (alive before and after its churn, whether it emitted a cancel,
        the hazard; per member). Returns (member churned in both worlds with a
        shared cancel, members cancelling in the contacted world alone)."""
        rng, m = self.rng, len(self.members)
        ratio = self.ratio if d < self.day + EFFECT_DAYS else np.ones(m)
        both = alive_before & self.alive1
        churned0 = both & ~alive_after
        kept = churned0 & ((ratio >= 1) | (rng.random(m) < ratio))
        extra_p = -np.expm1(-hazard * np.maximum(ratio - 1, 0))
        extra = both & ~churned0 & (rng.random(m) < extra_p)
        alone = self.alive1 & ~alive_before  # retained earlier: the campaign's stream
        later = alone & (rng.random(m) < -np.expm1(-hazard * ratio))
        self.alive1 &= ~(kept | extra | later)
        own_cancel = (extra | later) & (rng.random(m) < 0.5)
        return kept & cancelled, own_cancel

    def day_events(
        self,
        d: int,
        base: Events,
        alive_before: np.ndarray,
        alive_after: np.ndarray,
        hazard: np.ndarray,
        emit: Emit,
        n: int,
        cancel_code: int,
        purchase_code: int,
    ) -> Events:
        """Day d's written events from the uncontacted world's `base`: members of
        the treatment group get their contacted world's (see the module
        docstring); `emit` simulates the customers alive in the contacted world
        alone with the campaign's stream."""
        cust, code = base[0], base[2]
        p = self.pos[cust]
        is_cancel = code == cancel_code
        cancelled = np.zeros(len(self.members), dtype=bool)
        cancelled[p[(p >= 0) & is_cancel]] = True
        shared_cancel, own_cancel = self.churn(
            d, alive_before, alive_after, cancelled, hazard
        )
        member = p >= 0
        pm = np.where(member, p, 0)
        in_world1 = member & np.where(is_cancel, shared_cancel[pm], self.alive1[pm])
        window = d < self.day + HORIZON_DAYS
        alone = self.alive1 & ~alive_after
        if not window:  # the control's contacted world is needed for the truth only
            alone &= ~self.control
            own_cancel &= ~self.control
        extra: Events | None = None
        if alone.any() or own_cancel.any():
            vec = np.zeros(n)
            vec[self.members[alone]] = 1.0
            extra = emit(self.rng, vec, self.members[own_cancel])
        if window:
            self._count(0, base, member, p, cancel_code, purchase_code)
            self._count(1, base, in_world1, p, cancel_code, purchase_code)
            if extra is not None:
                pe = self.pos[extra[0]]
                self._count(1, extra, pe >= 0, pe, cancel_code, purchase_code)
        treated = member & ~self.control[pm]
        keep = ~treated | in_world1
        out = tuple(a[keep] for a in base)
        if extra is not None:
            pe = self.pos[extra[0]]
            mine = ~self.control[pe]
            both = [
                np.concatenate([a, b[mine]]) for a, b in zip(out, extra, strict=True)
            ]
            order = np.argsort(both[1], kind="stable")
            out = tuple(a[order] for a in both)
        return out

    def _count(
        self,
        world: int,
        ev: Events,
        rows: np.ndarray,
        p: np.ndarray,
        cancel_code: int,
        purchase_code: int,
    ) -> None:
        """Add `rows` of `ev` to the world's window tallies."""
        code, amount = ev[2][rows], ev[3][rows]
        who = p[rows]
        self.active[world, who[code != cancel_code]] = True
        self.cancel[world, who[code == cancel_code]] = True
        buy = code == purchase_code
        np.add.at(self.revenue[world], who[buy], amount[buy])

    def table(self, ids: pa.Array, t0: datetime) -> pa.Table:
        """The truth: one row per selected customer (see TRUTH_SCHEMA)."""
        outcome = (~self.active | self.cancel).astype(np.int8)
        confirmed = (t0 + timedelta(days=self.day)).replace(tzinfo=None)
        m = len(self.members)
        return pa.Table.from_arrays(
            [
                ids.take(pa.array(self.members)),
                pa.array([CAMPAIGN_ID] * m, pa.string()),
                pa.array(np.where(self.control, CONTROL, TREATMENT), pa.string()),
                pa.array([confirmed] * m, pa.timestamp("us")),
                pa.array(self.segment, pa.string()),
                pa.array(self.ratio),
                pa.array(self.prob0),
                pa.array(self.prob1),
                pa.array(self.prob1 - self.prob0),
                pa.array(outcome[0]),
                pa.array(outcome[1]),
                pa.array(outcome[1] - outcome[0]),
                pa.array(np.round(self.revenue[0], 2)),
                pa.array(np.round(self.revenue[1], 2)),
            ],
            schema=TRUTH_SCHEMA,
        )


def confirmed_at(truth: pa.Table) -> datetime:
    """The campaign's confirmation instant (aware UTC) from its truth table."""
    at = truth.column("confirmed_at")[0].as_py()
    return at.replace(tzinfo=UTC)
