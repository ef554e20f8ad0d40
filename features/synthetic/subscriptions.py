"""Subscription terms for the demo generator: churn happens at the end of a term.

With subscriptions on, `features.synthetic.demo` keeps its engagement and
support-problem
model but reads its churn hazard as a customer's *decision* to leave: a customer
who has decided uses the product less and, in most cases, stays subscribed until
the current term ends, then does not renew. A small share cancel mid-term (a
cancel event and no further use; the term stays paid through its end, so a term's
end is always the one it was sold with and features never see a re-dated end).
Customers without auto-renew sometimes lapse at a term end without having decided,
more often when strained (low engagement or recent tickets).
At each renewal, engaged customers sometimes upgrade and strained ones (low
engagement or recent tickets) downgrade. Billing is monthly (30 days) or annual
(365 days, priced at ten months); some terms carry a discount.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.sources.contract import SUBSCRIPTIONS_SCHEMA

_DAY = 86_400
MONTHLY_PRICE = np.array([10.0, 25.0, 50.0])  # per plan, as demo.PLANS
ANNUAL_MONTHS = 10.0  # an annual term costs ten monthly ones
PERIODS = np.array([30, 365])  # monthly, annual
_ANNUAL_P, _AUTO_RENEW_P = 0.3, 0.75
_FIRST_DISCOUNT_P, _RENEWAL_DISCOUNT_P, _DISCOUNT = 0.3, 0.1, 0.2
MIDTERM_P = 0.1  # share of decided churners who cancel before the term ends
LEAVING_USAGE = 0.3  # activity multiplier of a customer who has decided to leave
# a renewal without auto-renew that does not happen: strained customers, others
_LAPSE_P = (0.3, 0.05)
_CHANGE_P, _CHANGE_EDGE = 0.1, 0.25  # plan change chance; engagement threshold


class Terms:
    """Every customer's current term and the terms closed so far."""

    def __init__(
        self, rng: np.random.Generator, signup_s: np.ndarray, plan: np.ndarray
    ) -> None:
        n = len(signup_s)
        self.rng = rng
        self.period = PERIODS[(rng.random(n) < _ANNUAL_P).astype(int)]
        self.auto_renew = rng.random(n) < _AUTO_RENEW_P
        self.plan = plan.copy()
        self.start_s = signup_s.copy()
        self.discount = np.where(rng.random(n) < _FIRST_DISCOUNT_P, _DISCOUNT, 0.0)
        self.open = np.ones(n, dtype=bool)
        self.leaving = np.zeros(n, dtype=bool)
        self.closed: list[tuple[np.ndarray, ...]] = []
        # customers who signed up before the simulation renewed until day 0
        while True:
            past = self.open & (self.end_s() <= 0)
            if not past.any():
                break
            self._close(np.flatnonzero(past))
            self._renew(np.flatnonzero(past), np.zeros(int(past.sum())))

    def end_s(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return self.start_s[idx] + self.period[idx] * _DAY

    def price(self, idx: np.ndarray) -> np.ndarray:
        months = np.where(self.period[idx] == 365, ANNUAL_MONTHS, 1.0)
        return MONTHLY_PRICE[self.plan[idx]] * months

    def _close(self, idx: np.ndarray) -> None:
        """Record the current terms of `idx` as ended at their scheduled end."""
        self.closed.append(
            (
                idx.copy(),
                self.plan[idx].copy(),
                self.start_s[idx].copy(),
                self.end_s(idx),
                self.price(idx),
                self.period[idx].copy(),
                self.discount[idx].copy(),
                self.auto_renew[idx].copy(),
            )
        )

    def _renew(self, idx: np.ndarray, engagement: np.ndarray) -> None:
        """New terms from the end of the current ones, some on another plan."""
        rng = self.rng
        self.start_s[idx] = self.end_s(idx)
        change = rng.random(len(idx)) < _CHANGE_P
        up = change & (engagement > _CHANGE_EDGE) & (self.plan[idx] < 2)
        down = change & (engagement < -_CHANGE_EDGE) & (self.plan[idx] > 0)
        self.plan[idx] += up.astype(int) - down.astype(int)
        self.discount[idx] = np.where(
            rng.random(len(idx)) < _RENEWAL_DISCOUNT_P, _DISCOUNT, 0.0
        )

    def decide(self, churners: np.ndarray) -> np.ndarray:
        """Mark decided churners; return those who cancel mid-term now."""
        self.leaving[churners] = True
        return churners[self.rng.random(len(churners)) < MIDTERM_P]

    def term_ends(self, day_end_s: int, n: int, strain: np.ndarray) -> np.ndarray:
        """Close the terms of the first `n` customers that end before `day_end_s`
        and renew the stayers (by `strain`: engagement minus recent problems);
        return who leaves now (decided churners, and lapses without auto-renew)."""
        ends = np.flatnonzero(self.open[:n] & (self.end_s(slice(0, n)) < day_end_s))
        if not len(ends):
            return ends
        self._close(ends)
        chance = np.where(strain[ends] < 0, *_LAPSE_P)
        lapse = ~self.auto_renew[ends] & (self.rng.random(len(ends)) < chance)
        gone = self.leaving[ends] | lapse
        self.open[ends[gone]] = False
        stay = ends[~gone]
        self._renew(stay, strain[stay])
        return ends[gone]

    def table(
        self, ids: pa.Array, plans: tuple[str, ...], t0_s: int, end_s: int
    ) -> pa.Table:
        """Every term (closed ones, then the open ones, which end as scheduled
        even past the end of the simulation), as the contract's schema; times
        are seconds from `t0_s` (epoch seconds of the simulation's start)."""
        open_idx = np.flatnonzero(self.open)
        parts = [*self.closed]
        if len(open_idx):
            self._close(open_idx)
            parts.append(self.closed.pop())
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        cust, plan, start, end, price, period, discount, auto = cols
        keep = start < end_s  # terms that began within the simulated period
        order = np.lexsort((start[keep], cust[keep]))

        def pick(a: np.ndarray) -> np.ndarray:
            return a[keep][order]

        return pa.Table.from_arrays(
            [
                ids.take(pa.array(pick(cust))),
                pa.array(np.array(plans)[pick(plan)], pa.string()),
                pa.array((t0_s + pick(start)) * 1_000_000, pa.timestamp("us")),
                pa.array((t0_s + pick(end)) * 1_000_000, pa.timestamp("us")),
                pa.array(pick(price), pa.float64()),
                pa.array(pick(period).astype(np.float64), pa.float64()),
                pa.array(pick(discount), pa.float64()),
                pa.array(pick(auto), pa.bool_()),
                pa.nulls(int(keep.sum()), pa.float64()),
            ],
            schema=SUBSCRIPTIONS_SCHEMA,
        )
