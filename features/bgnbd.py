"""BG/NBD: the "buy till you die" baseline for the purchase target.

Fader, Hardie & Lee (2005), "'Counting Your Customers' the Easy Way: An Alternative
to the Pareto/NBD Model", Marketing Science 24(2) (FHL 2005 below). While alive, a
customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); right after
each repeat purchase they drop out for good with probability p ~ Beta(a, b). A
customer's history up to the end of calibration is (x, t_x, T): x repeat purchases,
the last at t_x, observed for T, all measured from their first purchase.

The model is fitted by maximum likelihood here with numpy/scipy alone; on the CDNOW
sample it reproduces the published estimates (tests/integration/test_bgnbd_cdnow.py).
`purchase_baseline` turns a project events table and a cutoff into P(any purchase in
the horizon) per customer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1

from features.columns import CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, PURCHASE

log = logging.getLogger(__name__)

Unit = Literal["days", "weeks"]
DAYS_PER_UNIT: dict[str, int] = {"days": 1, "weeks": 7}
RFM_COLUMNS = ("x", "t_x", "T")
P_PURCHASE = "p_purchase"
EXPECTED_PURCHASES = "expected_purchases"
# Log-parameters stay in [-BOUND, BOUND]; near the edge the fit has run away.
BOUND = 15.0
# Fewer customers do not identify the four parameters: the likelihood of one
# customer has no maximum, and where the optimiser then stops varies by platform.
MIN_CUSTOMERS = 10


class ConvergenceError(RuntimeError):
    """The likelihood maximisation did not converge."""


def _days(unit: Unit) -> int:
    if unit not in DAYS_PER_UNIT:
        raise ValueError(f"unit must be one of {sorted(DAYS_PER_UNIT)}, got {unit!r}")
    return DAYS_PER_UNIT[unit]


def rfm_summary(
    purchases: pd.DataFrame,
    cutoff: datetime,
    unit: Unit = "weeks",
    *,
    customer_id: str = CUSTOMER_ID,
    event_time: str = EVENT_TIME,
) -> pd.DataFrame:
    """(x, t_x, T) per customer with a purchase before `cutoff`, indexed by customer.

    Times are purchase days, as in the CDNOW literature: x is the number of distinct
    purchase days minus one (several orders on one day are one transaction), t_x
    the days from the first to the last purchase day and T the days from the first
    purchase day to the last day before the cutoff, in `unit`. A purchase on that
    last day has t_x = T. This is the convention that reproduces FHL 2005 on CDNOW
    (T = 38.86 weeks for a customer born on 1997-01-01, calibration ending
    1997-09-30). `cutoff` is a midnight, excluded, as everywhere in the project.
    """
    cutoff = pd.Timestamp(cutoff)
    if cutoff != cutoff.normalize():
        raise ValueError(f"cutoff must be a midnight (a date), got {cutoff}")
    days = _days(unit)
    before = purchases.loc[purchases[event_time] < cutoff, [customer_id, event_time]]
    day = before[event_time].dt.floor("D").rename("_day")
    by = day.groupby(before[customer_id])
    first, last = by.min(), by.max()
    last_day = cutoff - pd.Timedelta(days=1)
    return pd.DataFrame(
        {
            "x": (by.nunique() - 1).astype("int64"),
            "t_x": (last - first).dt.days / days,
            "T": (last_day - first).dt.days / days,
        }
    ).rename_axis(customer_id)


def _history(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[NDArray, NDArray, NDArray]:
    """Float arrays of one shape, checked: x whole >= 0, 0 <= t_x <= T, t_x = 0 if
    x = 0."""
    x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, t_x, T)))
    bad = (
        ~np.isfinite(x + t_x + T)
        | (x < 0)
        | (x != np.floor(x))
        | (t_x < 0)
        | (t_x > T)
        | ((x == 0) & (t_x != 0))
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} invalid histories, e.g. x={x.flat[i]}, "
            f"t_x={t_x.flat[i]}, T={T.flat[i]}: need whole x >= 0, 0 <= t_x <= T "
            "and t_x = 0 when x = 0"
        )
    return x, t_x, T


@dataclass(frozen=True)
class BGNBD:
    """BG/NBD parameters (time in the unit of the histories it was fitted on) and
    the maximised log-likelihood (NaN when the parameters were given, not fitted)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")

    @classmethod
    def fit(
        cls,
        x: ArrayLike,
        t_x: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BGNBD:
        """Maximum-likelihood parameters for customers with histories (x, t_x, T),
        each counted `weights` times (default once: a weight is the number of
        customers sharing that history, which makes the fit on distinct histories
        the fit on every customer).

        L-BFGS-B on the log-parameters from a fixed start (deterministic). Raises
        ValueError when no customer has a repeat purchase (a and b are then not
        identified and r/alpha run to a boundary) and ConvergenceError when the
        optimiser fails or a parameter runs away (for instance a single customer).
        """
        x, t_x, T = _history(x, t_x, T)
        w = np.ones(x.shape) if weights is None else np.asarray(weights, dtype=float)
        if x.size == 0 or not (x > 0).any():
            raise ValueError(
                f"BG/NBD needs customers with repeat purchases to fit; got {x.size} "
                "customers and none with x > 0"
            )
        n = float(w.sum())
        if n < MIN_CUSTOMERS:
            raise ConvergenceError(
                f"BG/NBD fit on {n:.0f} customers: at least {MIN_CUSTOMERS} are needed "
                "to identify its four parameters"
            )

        def loss(theta: NDArray) -> float:
            ll = cls(*np.exp(theta)).log_likelihoods(x, t_x, T)
            return -float((w * ll).sum()) / n

        # r = a = b = 1 and alpha matching the mean repeat rate: r / alpha = x / T.
        start = np.log([1.0, max((w * T).sum(), 1.0) / (w * x).sum(), 1.0, 1.0])
        result = minimize(loss, start, method="L-BFGS-B", bounds=[(-BOUND, BOUND)] * 4)
        fitted = cls(
            *map(float, np.exp(result.x)), log_likelihood=float(-result.fun * n)
        )
        if not result.success or not np.isfinite(result.fun):
            raise ConvergenceError(
                f"BG/NBD fit on {n:.0f} customers did not converge ({result.message}), "
                f"stopped at {fitted}"
            )
        if np.any(np.abs(result.x) > BOUND - 1):
            raise ConvergenceError(
                f"BG/NBD fit on {n:.0f} customers ran to a boundary, {fitted}: the "
                "data do not identify the parameters"
            )
        log.debug("BG/NBD fit on %d customers: %s", n, fitted)
        return fitted

    def log_likelihoods(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray:
        """ln L(r, alpha, a, b | x, t_x, T) per customer, FHL 2005's likelihood of a
        randomly chosen customer with that history:

        L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
            + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))

        The first term is the chance of the history for a customer still alive at T,
        the second for one who dropped out right after the purchase at t_x.
        """
        x, t_x, T = _history(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x)
        alive = -(r + x) * np.log(alpha + T)
        dead_odds = self._log_dead_odds(x, t_x, T)
        return common - betaln(a, b) + alive + np.logaddexp(0.0, dead_odds)

    def _log_dead_odds(self, x: NDArray, t_x: NDArray, T: NDArray) -> NDArray:
        """ln of P(dropped out at t_x) / P(alive at T) given the history; -inf at
        x = 0, where the customer cannot have dropped out."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        repeat = x > 0
        out = np.full(x.shape, -np.inf)
        xr = x[repeat]
        out[repeat] = (
            np.log(a)
            - np.log(b + xr - 1)
            + (r + xr) * (np.log(alpha + T[repeat]) - np.log(alpha + t_x[repeat]))
        )
        return out

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray:
        """P(alive at T | x, t_x, T) (Fader, Hardie & Lee 2008, "Computing P(alive)
        using the BG/NBD model"):

        1 / (1 + [x > 0] a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x))
        """
        x, t_x, T = _history(x, t_x, T)
        return expit(-self._log_dead_odds(x, t_x, T))

    def expected_purchases(
        self, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> NDArray:
        """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10):

        (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x)
            * 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))] * P(alive at T)

        Undefined at exactly a = 1 (a removable singularity the formula does not
        handle); fitted values never land there.
        """
        x, t_x, T = _history(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        later = alpha + T + t
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / later)
        bracket = 1 - np.exp((r + x) * (np.log(alpha + T) - np.log(later))) * hyp
        return (a + b + x - 1) / (a - 1) * bracket * self.p_alive(x, t_x, T)

    def prob_any_purchase(
        self, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> NDArray:
        """P(at least one purchase in (T, T+t] | x, t_x, T).

        Bayes on the individual likelihood: given the history, the customer is
        alive at T with probability `p_alive`, and then lambda ~ Gamma(r+x,
        alpha+T) (p ~ Beta(a, b+x), which does not matter here). An alive customer
        can only drop out right after a purchase, so they make no purchase in the
        next t with probability exp(-lambda t); averaged over lambda that is
        ((alpha+T)/(alpha+T+t))^(r+x). A customer who dropped out buys nothing:

        P = P(alive at T) * [1 - ((alpha+T)/(alpha+T+t))^(r+x)]
        """
        x, t_x, T = _history(x, t_x, T)
        r, alpha = self.r, self.alpha
        none = (r + x) * (np.log(alpha + T) - np.log(alpha + T + t))
        return self.p_alive(x, t_x, T) * -np.expm1(none)


def purchase_baseline(
    events: pd.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    role_of: Mapping[str, str],
    unit: Unit = "weeks",
) -> tuple[BGNBD, pd.DataFrame]:
    """BG/NBD fitted on the purchases before `cutoff`, and per customer P(any
    purchase in [cutoff, cutoff + horizon_days)) and the expected number of
    purchase days in it.

    `events` has customer_id, event_time and event_type; `role_of` maps event types
    to roles (`FeatureSpec.role_of`), and the types mapped to `purchase` are
    purchases. Rows: every customer with any event before the cutoff (the
    project's eligible customers), indexed by customer_id, with x, t_x, T,
    `p_purchase` and `expected_purchases`. A customer with events but no purchase
    before the cutoff has not started the BG/NBD purchase process: their
    prediction is NaN (the model says nothing about them; rank or fill them as the
    caller sees fit).
    """
    purchase_types = [k for k, role in role_of.items() if role == PURCHASE]
    seen = events.loc[events[EVENT_TIME] < pd.Timestamp(cutoff), CUSTOMER_ID].unique()
    purchases = events[events[EVENT_TYPE].isin(purchase_types)]
    history = rfm_summary(purchases, cutoff, unit)
    model = BGNBD.fit(*(history[c] for c in RFM_COLUMNS))
    t = horizon_days / _days(unit)
    args = [history[c].to_numpy() for c in RFM_COLUMNS]
    history[P_PURCHASE] = model.prob_any_purchase(t, *args)
    history[EXPECTED_PURCHASES] = model.expected_purchases(t, *args)
    return model, history.reindex(pd.Index(np.sort(seen), name=CUSTOMER_ID))
