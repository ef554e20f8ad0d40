"""The classic customer-base models as features: BG/NBD and Gamma-Gamma, fitted at
each cutoff on the history before it (`features.classic: true`).

At a cutoff `c`, every customer seen before it has two BG/NBD histories (FHL 2005,
features/bgnbd.py), in weeks and counted in whole days as the project's BG/NBD
baseline counts them (`rfm_summary`):

- purchases: x = distinct purchase days - 1, t_x = days from the first to the last
  purchase day, T = days from the first purchase day to the last day before `c`
  (no purchase: no history, the purchase features are null);
- active days (any role): the same over the days with any event.

One BG/NBD is fitted per cutoff and process by maximum likelihood on the histories
of *every* customer seen before the cutoff (grouped: each distinct history
weighted by how many customers share it, in a fixed order, so the fit does not
depend on row order or on which customers a caller asks features for). Then, per
customer and per horizon `h` in `FeatureSpec.horizons` (the listed targets'):

- `bgnbd_p_alive`, `bgnbd_active_p_alive`: P(alive at c | history);
- `bgnbd_p_purchase_{h}d`, `bgnbd_p_active_{h}d`: P(at least one purchase (active
  day) in [c, c + h days)), the BG/NBD baseline's own prediction;
- `bgnbd_expected_purchases_{h}d`, `bgnbd_expected_active_{h}d`: P(alive) times the
  posterior mean rate (r + x) / (alpha + T) times h: the expected count in the
  horizon for a customer who does not drop out during it (the exact BG/NBD
  expectation needs the Gauss hypergeometric function, which SQL engines lack;
  this one orders customers almost the same and is exact at the horizon's start).

With purchase amounts (`purchase` in features.amount_roles): a Gamma-Gamma spend
model (Fader, Hardie & Lee 2005, "RFM and CLV") fitted per cutoff on every
customer's mean purchase amount m over their n purchases with an amount (m > 0),
and `gg_expected_spend`: E[mean spend | m, n] = (v p + p n m) / (p n + q - 1).

A fit that fails (too few customers, no repeat purchases, no convergence) leaves
that cutoff's features null; a model treats them as missing.

The fits need the whole population at the cutoff, so a caller that builds features
in customer chunks fits first on all events (`fit_from_events`) and passes the
parameters (`build_features(..., classic=...)`); the incremental state fits on its
bucket rows, which hold every customer (`fit_from_rows`). Both read the same whole
numbers (day counts, days, cents), so they fit the same parameters, bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.optimize import minimize
from scipy.special import gammaln
from threadpoolctl import threadpool_limits

from features.bgnbd import BGNBD, ConvergenceError
from features.columns import CUSTOMER_ID, CUTOFF, EVENT_TIME, PURCHASE, ROLE

log = logging.getLogger(__name__)

DAYS_PER_WEEK = 7
CENTS = 100
# the two BG/NBD processes: name -> (days column, first day, last day) in the
# stage-two aggregate (features.definition._features)
PROCESSES = {
    "purchase": ("_cl_purchase_days", "_first_purchase", f"_last_{PURCHASE}"),
    "active": ("_cl_active_days", "_first_day", "_last_event"),
}
BG_PARAMS = ("r", "alpha", "a", "b")
GG_PARAMS = ("p", "q", "v")
GG_MIN_CUSTOMERS = 10
GG_BOUND = 12.0


def _gamma_gamma(spec) -> bool:
    return PURCHASE in spec.amount_roles


def classic_features(spec) -> list:
    """The classic features, in order (`features.definition.Feature`s)."""
    from features.definition import Feature

    out = [
        Feature("bgnbd_p_alive", PURCHASE, None, "BG/NBD P(alive) on purchase days"),
        Feature("bgnbd_active_p_alive", None, None, "BG/NBD P(alive) on active days"),
    ]
    for h in spec.horizons:
        out += [
            Feature(
                f"bgnbd_p_purchase_{h}d",
                PURCHASE,
                h,
                f"BG/NBD P(a purchase in the next {h} days)",
            ),
            Feature(
                f"bgnbd_expected_purchases_{h}d",
                PURCHASE,
                h,
                f"BG/NBD expected purchase days in the next {h} days",
            ),
            Feature(
                f"bgnbd_p_active_{h}d",
                None,
                h,
                f"BG/NBD P(an active day in the next {h} days)",
            ),
            Feature(
                f"bgnbd_expected_active_{h}d",
                None,
                h,
                f"BG/NBD expected active days in the next {h} days",
            ),
        ]
    if _gamma_gamma(spec):
        out.append(
            Feature(
                "gg_expected_spend",
                PURCHASE,
                None,
                "Gamma-Gamma expected mean purchase amount",
            )
        )
    return out


def stage_two_sums(
    b: ir.Table, spec, total: Callable[[str], ir.Value]
) -> dict[str, ir.Value]:
    """The all-history totals the classic features read, beside the other
    stage-two aggregates: purchase days, active days, purchase cents and amounts."""
    m = {
        "_cl_purchase_days": total(f"_d_{PURCHASE}"),
        "_cl_active_days": total("_d"),
    }
    if _gamma_gamma(spec):
        m["_cl_cents"] = total(f"_amount_{PURCHASE}")
        m["_cl_amounts"] = total(f"_amounts_{PURCHASE}")
    return m


def _histories(agg: ir.Table, spec) -> dict[str, ir.Value]:
    """Per (customer, cutoff): each process's x, t_x, T in whole days (null
    without a history), and the Gamma-Gamma (n, cents)."""
    from features.definition import days_between

    last_day = agg[CUTOFF] - ibis.interval(days=1)
    out: dict[str, ir.Value] = {}
    for name, (days, first, last) in PROCESSES.items():
        first_day = agg[first].truncate("D")
        out[f"_cl_{name}_x"] = (agg[days].nullif(0) - 1).cast("int64")
        out[f"_cl_{name}_tx"] = days_between(agg[last].truncate("D"), first_day).cast(
            "int64"
        )
        out[f"_cl_{name}_T"] = days_between(last_day, first_day).cast("int64")
    if _gamma_gamma(spec):
        out["_cl_n"] = agg._cl_amounts.cast("int64")
        out["_cl_cents"] = agg._cl_cents
    return out


# ---------------------------------------------------------------- the fits


def fit_from_rows(agg: ir.Table, spec) -> pd.DataFrame:
    """The parameters per cutoff, fitted on every (customer, cutoff) row of the
    stage-two aggregate `agg` (one row per customer seen before the cutoff)."""
    hist = agg.select(CUTOFF, **_histories(agg, spec))
    return _fit(hist, spec)


def fit_from_events(
    events: ir.Table, cutoffs: Sequence[datetime] | ir.Table, spec
) -> pd.DataFrame:
    """The parameters per cutoff from the events (every customer with an event
    before it): for callers that build features in customer chunks or for a
    subset of customers. Reads only what the histories need."""
    from features.definition import (
        CENTS as DEF_CENTS,
    )
    from features.definition import (
        cutoff_table,
        only,
        whole_units,
        with_roles,
    )

    cuts = cutoffs if isinstance(cutoffs, ir.Table) else cutoff_table(cutoffs)
    cuts = cuts.select(CUTOFF).distinct()
    ev = with_roles(events, spec)
    t, role = ev[EVENT_TIME], ev[ROLE]
    buy = role == PURCHASE
    m: dict[str, ir.Value] = {
        "_np": only(buy, t).count().cast("float64"),
        "_first_event": t.min(),
        "_last_event": t.max(),
        "_first_purchase": only(buy, t).min(),
        f"_last_{PURCHASE}": only(buy, t).max(),
    }
    if _gamma_gamma(spec):
        from features.columns import AMOUNT

        amount = only(buy, whole_units(ev[AMOUNT], DEF_CENTS))
        m["_cents"] = amount.sum()
        m["_amounts"] = amount.count().cast("float64")
    tiles = ev.group_by(_cid=ev[CUSTOMER_ID], _day=t.truncate("D")).aggregate(**m)
    joined = tiles.join(cuts, tiles._day < cuts[CUTOFF])
    s: dict[str, ir.Value] = {
        "_cl_purchase_days": only(joined._np > 0, joined._day).count(),
        "_cl_active_days": joined._day.count(),
        "_first_day": joined._day.min(),
        "_last_event": joined._last_event.max(),
        "_first_purchase": joined._first_purchase.min(),
        f"_last_{PURCHASE}": joined[f"_last_{PURCHASE}"].max(),
    }
    if _gamma_gamma(spec):
        s["_cl_cents"] = joined._cents.sum().fill_null(0)
        s["_cl_amounts"] = joined._amounts.sum().fill_null(0)
    agg = joined.group_by([joined._cid, joined[CUTOFF]]).aggregate(**s)
    return fit_from_rows(agg, spec)


def _fit(hist: ir.Table, spec) -> pd.DataFrame:
    """Execute the histories once, group them (distinct values with their
    counts) and fit each cutoff's models (on one BLAS thread: the optimiser's
    small vector steps only wait for each other on more)."""
    frame = hist.to_pandas()
    grouped = {}
    for name in PROCESSES:
        cols = [f"_cl_{name}_x", f"_cl_{name}_tx", f"_cl_{name}_T"]
        h = frame[frame[cols[0]].notna()]
        grouped[name] = h.groupby([CUTOFF, *cols]).size().rename("_w").reset_index()
    if _gamma_gamma(spec):
        h = frame[(frame._cl_n > 0) & (frame._cl_cents > 0)]
        grouped["gg"] = (
            h.groupby([CUTOFF, "_cl_n", "_cl_cents"]).size().rename("_w").reset_index()
        )
    cutoffs = sorted({c for g in grouped.values() for c in g[CUTOFF]})
    with threadpool_limits(1):
        rows = [_fit_cutoff(cutoff, grouped, spec) for cutoff in cutoffs]
    return params_frame(rows, spec)


def _fit_cutoff(cutoff, grouped: dict[str, pd.DataFrame], spec) -> dict:
    row: dict[str, object] = {CUTOFF: cutoff}
    for name in PROCESSES:
        g = grouped[name]
        g = g[g[CUTOFF] == cutoff].sort_values(list(g.columns[1:4]))
        x, t_x, T = (g[c].to_numpy(float) for c in g.columns[1:4])
        fitted = _fit_bgnbd(
            x,
            t_x / DAYS_PER_WEEK,
            T / DAYS_PER_WEEK,
            g._w.to_numpy(float),
            f"{name} at {cutoff:%Y-%m-%d}",
        )
        for k in BG_PARAMS:
            row[f"_cl_{name}_{k}"] = None if fitted is None else fitted[k]
    if _gamma_gamma(spec):
        g = grouped["gg"]
        g = g[g[CUTOFF] == cutoff].sort_values(["_cl_n", "_cl_cents"])
        n = g._cl_n.to_numpy(float)
        fitted = _fit_gamma_gamma(
            g._cl_cents.to_numpy(float) / CENTS / n, n, g._w.to_numpy(float)
        )
        for k in GG_PARAMS:
            row[f"_cl_gg_{k}"] = None if fitted is None else fitted[k]
    return row


def params_frame(rows: list[dict], spec) -> pd.DataFrame:
    cols = [CUTOFF] + [f"_cl_{n}_{k}" for n in PROCESSES for k in BG_PARAMS]
    if _gamma_gamma(spec):
        cols += [f"_cl_gg_{k}" for k in GG_PARAMS]
    frame = pd.DataFrame(rows, columns=cols)
    frame[CUTOFF] = pd.to_datetime(frame[CUTOFF]).astype("datetime64[us]")
    for c in cols[1:]:
        frame[c] = frame[c].astype("float64")
    return frame


def _fit_bgnbd(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray, what: str
) -> dict[str, float] | None:
    try:
        model = BGNBD.fit(x, t_x, T, weights=w)
    except (ValueError, ConvergenceError) as exc:
        log.warning("classic features: no BG/NBD for %s: %s", what, exc)
        return None
    return {k: getattr(model, k) for k in BG_PARAMS}


def gamma_gamma_log_likelihoods(
    p: float, q: float, v: float, m: np.ndarray, n: np.ndarray
) -> np.ndarray:
    """ln f(m | n; p, q, v), the density of a customer's mean amount m over n
    transactions (Fader, Hardie & Lee 2005, "RFM and CLV", eq. 3)."""
    pn = p * n
    return (
        gammaln(pn + q)
        - gammaln(pn)
        - gammaln(q)
        + q * np.log(v)
        + (pn - 1) * np.log(m)
        + pn * np.log(n)
        - (pn + q) * np.log(v + m * n)
    )


def _fit_gamma_gamma(
    m: np.ndarray, n: np.ndarray, w: np.ndarray
) -> dict[str, float] | None:
    """Maximum likelihood (p, q, v) with q > 1 (a finite expected spend), or None
    with too few customers or no convergence."""
    total = float(w.sum())
    if total < GG_MIN_CUSTOMERS:
        log.warning("classic features: Gamma-Gamma on %d customers skipped", total)
        return None

    def params(theta: np.ndarray) -> tuple[float, float, float]:
        return (
            float(np.exp(theta[0])),
            1 + float(np.exp(theta[1])),
            float(np.exp(theta[2])),
        )

    def loss(theta: np.ndarray) -> float:
        ll = gamma_gamma_log_likelihoods(*params(theta), m, n)
        return -float((w * ll).sum()) / total

    mean = float((w * m).sum() / total)
    start = np.array([0.0, np.log(2.0), np.log(max(mean, 1e-6))])
    result = minimize(
        loss, start, method="L-BFGS-B", bounds=[(-GG_BOUND, GG_BOUND)] * 3
    )
    if (
        not result.success
        or not np.isfinite(result.fun)
        or np.any(np.abs(result.x) > GG_BOUND - 1)
    ):
        log.warning(
            "classic features: Gamma-Gamma did not converge: %s", result.message
        )
        return None
    p, q, v = params(result.x)
    return {"p": p, "q": q, "v": v}


# ---------------------------------------------------------------- features


def with_classic(agg: ir.Table, params: pd.DataFrame, spec) -> ir.Table:
    """`agg` (stage two, per customer and cutoff) with the classic features, from
    the fitted `params` (one row per cutoff; a cutoff without a row gets nulls)."""
    table = ibis.memtable(pa.Table.from_pandas(params, preserve_index=False))
    table = table.rename({"_cl_cutoff": CUTOFF})
    joined = agg.left_join(table, agg[CUTOFF] == table._cl_cutoff)
    joined = joined.mutate(**_histories(joined, spec))
    d: dict[str, ir.Value] = {}
    for name in PROCESSES:
        r, alpha, a, b = (joined[f"_cl_{name}_{k}"] for k in BG_PARAMS)
        x = joined[f"_cl_{name}_x"].cast("float64")
        tx = joined[f"_cl_{name}_tx"].cast("float64") / DAYS_PER_WEEK
        T = joined[f"_cl_{name}_T"].cast("float64") / DAYS_PER_WEEK
        # ln(P(dropped out at t_x) / P(alive at T)); guarded so that no branch of
        # the CASE takes the log of a non-positive number
        odds = (
            a.ln()
            - (b + ibis.greatest(x, 1.0) - 1).ln()
            + (r + x) * ((alpha + T).ln() - (alpha + tx).ln())
        )
        alive = ibis.ifelse(x > 0, 1 / (1 + ibis.least(odds, 700.0).exp()), 1.0)
        alive = ibis.ifelse(r.isnull() | x.isnull(), ibis.null("float64"), alive)
        d["bgnbd_p_alive" if name == PURCHASE else "bgnbd_active_p_alive"] = alive
        for h in spec.horizons:
            weeks = h / DAYS_PER_WEEK
            none = (r + x) * ((alpha + T).ln() - (alpha + T + weeks).ln())
            rate = (r + x) / (alpha + T)
            if name == PURCHASE:
                p_name, e_name = (
                    f"bgnbd_p_purchase_{h}d",
                    f"bgnbd_expected_purchases_{h}d",
                )
            else:
                p_name, e_name = f"bgnbd_p_active_{h}d", f"bgnbd_expected_active_{h}d"
            d[p_name] = alive * (1 - none.exp())
            d[e_name] = alive * rate * weeks
    if _gamma_gamma(spec):
        p, q, v = (joined[f"_cl_gg_{k}"] for k in GG_PARAMS)
        n = joined._cl_n.nullif(0).cast("float64")
        m = joined._cl_cents / CENTS / n
        d["gg_expected_spend"] = (v * p + p * n * m) / (p * n + q - 1)
    return joined.mutate(**d)


__all__ = [
    "classic_features",
    "fit_from_events",
    "fit_from_rows",
    "gamma_gamma_log_likelihoods",
    "stage_two_sums",
    "with_classic",
]
