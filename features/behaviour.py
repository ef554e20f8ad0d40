"""Behaviour features the window counts miss (`features.behaviour: true`), computed
from the stage-two aggregates (the bucket rows), so the incremental state
(features.state) produces them with no state of its own:

- `overdue_event`: `days_since_last_event / active_day_gap_mean`, the days since the
  last event relative to the customer's own mean gap between active days (null
  with fewer than two active days);
- `purchase_gap_mean`: whole days from the first to the last purchase day over the
  purchase days minus one (null with fewer than two purchase days);
- `overdue_purchase`: `days_since_last_purchase / purchase_gap_mean`;
- per amount role `r` and trend `t`: `{r}_amount_diff_{t}d`, the role's amount in
  the last `t` days minus the `t` days before them (0.0 without amounts);

and with `features.trends: true` as well (off by default: on the demo they moved no
backtest figure beyond noise and lowered the demo campaign's uplift learner below
ranking by churn probability, docs/features.md):

- `active_day_gap_last`: whole days between the last two active days (null with
  fewer than two);
- for events of any role (`event`), purchases and service requests:
  `{what}_dow_concentration`, the sum over the seven weekdays of the squared share
  of the events on that weekday (1/7: spread evenly, 1: always the same weekday;
  null without events), over all history;
- for events of any role and purchases, per `k` in `SLOPE_WEEKS` (8, 26):
  `{what}_count_slope_{k}w`, the least-squares slope of the daily counts against
  the day over the `7k` days before the cutoff (days without events count 0),
  times 49: weekly counts per week.

Each is a function of sums over stage one's rows (the slope: of the counts and of
day number times count over the window, whose edges `edges` adds to the
buckets), or, for the last gap, of a maximum over all history (day number times
`GAP_KEY` plus the gap: the latest day's gap), so the incremental state advances
them as it advances the others.

Tests check each against a plain-pandas reference (tests/unit/features/
test_behaviour.py).
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

from features.columns import CUTOFF, PURCHASE, ROLES, SERVICE_REQUEST

# the slope windows, in weeks
SLOPE_WEEKS = (8, 26)
# what the weekday concentration and the slopes count ("event": every role)
EVENT = "event"
DOW_OF = (EVENT, PURCHASE, SERVICE_REQUEST)
SLOPE_OF = (EVENT, PURCHASE)
# the last gap's key: day number * GAP_KEY + gap (a gap is below it), so the
# maximum key is the latest active day's; exact in a double (about 2e9 today)
GAP_KEY = 100_000
LAST_GAP = "_bh_last_gap"
# stage-one and stage-two columns combined by a maximum (the others add up)
MAXIMA = (LAST_GAP,)


def behaviour_features(spec) -> list:
    """The behaviour features, in order (`features.definition.Feature`s)."""
    from features.definition import Feature

    out = [
        Feature(
            "overdue_event",
            None,
            None,
            "days since the last event over the mean gap between active days",
        ),
        Feature(
            "purchase_gap_mean",
            PURCHASE,
            None,
            "mean whole days between purchase days",
        ),
        Feature(
            "overdue_purchase",
            PURCHASE,
            None,
            "days since the last purchase over the mean gap between purchase days",
        ),
    ]
    for r in spec.amount_roles:
        for t in spec.trend_days:
            out.append(
                Feature(
                    f"{r}_amount_diff_{t}d",
                    r,
                    t,
                    f"{r} amount in the last {t} days minus the {t} days before",
                )
            )
    if not trends(spec):
        return out
    out.append(
        Feature(
            "active_day_gap_last",
            None,
            None,
            "whole days between the last two active days",
        )
    )
    for what in DOW_OF:
        out.append(
            Feature(
                f"{what}_dow_concentration",
                None if what == EVENT else what,
                None,
                f"sum of the squared weekday shares of {_events(what)}",
            )
        )
    for what in SLOPE_OF:
        for k in SLOPE_WEEKS:
            out.append(
                Feature(
                    f"{what}_count_slope_{k}w",
                    None if what == EVENT else what,
                    7 * k,
                    f"least-squares slope of weekly {_events(what)} over the last "
                    f"{k} weeks (per week)",
                )
            )
    return out


def _events(what: str) -> str:
    return "events" if what == EVENT else f"{what} events"


def trends(spec) -> bool:
    """Whether the spec asks for the trend features (`features.trends`, a part of
    the behaviour group)."""
    return bool(spec.behaviour and spec.trends)


def edges(spec) -> set[int]:
    """The window edges (days) the slopes need among stage one's buckets."""
    return {7 * k for k in SLOPE_WEEKS} if trends(spec) else set()


def _day_number(day: ir.TimestampValue) -> ir.NumericValue:
    from features.definition import SECONDS_PER_DAY

    return (day.epoch_seconds() / SECONDS_PER_DAY).floor().cast("float64")


def _counts(rows: ir.Table) -> dict[str, ir.Value]:
    every = sum((rows[f"_n_{r}"] for r in ROLES), ibis.literal(0.0))
    return {EVENT: every, **{r: rows[f"_n_{r}"] for r in DOW_OF if r != EVENT}}


def stage_one(joined: ir.Table, spec) -> dict[str, ir.Value]:
    """Stage one's extra aggregates per (customer, cutoff, bucket), from the
    tiles joined to the cutoff (`_day`, `_n_<role>`, `_gap`)."""
    if not trends(spec):
        return {}
    day = joined._day
    number, weekday = _day_number(day), day.day_of_week.index()
    counts = _counts(joined)
    m: dict[str, ir.Value] = {}
    for what in DOW_OF:
        for k in range(7):
            m[f"_bh_dow{k}_{what}"] = ibis.ifelse(weekday == k, counts[what], 0.0).sum()
    for what in SLOPE_OF:
        m[f"_bh_dayn_{what}"] = (number * counts[what]).sum()
    m[LAST_GAP] = (number * GAP_KEY + joined._gap.cast("float64")).max()
    return m


def stage_one_merge(spec) -> dict[str, str]:
    """How `stage_one`'s columns combine (`features.definition.bucket_merge`)."""
    if not trends(spec):
        return {}
    names = [f"_bh_dow{k}_{what}" for what in DOW_OF for k in range(7)]
    names += [f"_bh_dayn_{what}" for what in SLOPE_OF]
    return {n: "max" if n in MAXIMA else "sum" for n in [*names, LAST_GAP]}


def stage_two_sums(
    b: ir.Table, spec, total: Callable[..., ir.Value]
) -> dict[str, ir.Value]:
    """The aggregates the behaviour features read, beside stage two's others."""
    m = {"_bh_purchase_days": total(f"_d_{PURCHASE}")}
    for r in spec.amount_roles:
        for t in spec.trend_days:
            m[f"_bh_{r}_last_{t}"] = total(f"_amount_{r}", t)
            m[f"_bh_{r}_prior_{t}"] = total(f"_amount_{r}", 2 * t, after=t)
    if not trends(spec):
        return m
    for what in DOW_OF:
        for k in range(7):
            m[f"_bh_dow{k}_{what}"] = total(f"_bh_dow{k}_{what}")
    for what in SLOPE_OF:
        n = "_n" if what == EVENT else f"_n_{what}"
        for k in SLOPE_WEEKS:
            m[f"_bh_n_{what}_{k}w"] = total(n, 7 * k)
            m[f"_bh_dayn_{what}_{k}w"] = total(f"_bh_dayn_{what}", 7 * k)
    m[LAST_GAP] = None if b is None else b[LAST_GAP].max()
    return m


def behaviour_values(agg: ir.Table, spec) -> dict[str, ir.Value]:
    """The behaviour features of the stage-two aggregate (with the catalogue's
    "days since" and gap features already computed)."""
    from features.definition import CENTS, days_between

    first = agg._first_purchase.truncate("D")
    last = agg[f"_last_{PURCHASE}"].truncate("D")
    gaps = (agg._bh_purchase_days - 1).nullif(0).cast("float64")
    gap_mean = days_between(last, first).cast("float64") / gaps
    d: dict[str, ir.Value] = {
        "overdue_event": agg.days_since_last_event.cast("float64")
        / agg.active_day_gap_mean,
        "purchase_gap_mean": gap_mean,
        "overdue_purchase": agg[f"days_since_last_{PURCHASE}"].cast("float64")
        / gap_mean,
    }
    for r in spec.amount_roles:
        for t in spec.trend_days:
            diff = agg[f"_bh_{r}_last_{t}"] - agg[f"_bh_{r}_prior_{t}"]
            d[f"{r}_amount_diff_{t}d"] = diff.cast("float64") / CENTS
    if not trends(spec):
        return d
    key = agg[LAST_GAP]
    d["active_day_gap_last"] = (key - (key / GAP_KEY).floor() * GAP_KEY).cast("float64")
    for what in DOW_OF:
        shares = [agg[f"_bh_dow{k}_{what}"] for k in range(7)]
        n = sum(shares, ibis.literal(0.0)).nullif(0)
        d[f"{what}_dow_concentration"] = sum(
            (s * s for s in shares), ibis.literal(0.0)
        ) / (n * n)
    cutoff = _day_number(agg[CUTOFF])
    for what in SLOPE_OF:
        for k in SLOPE_WEEKS:
            days = 7 * k
            n, dn = agg[f"_bh_n_{what}_{k}w"], agg[f"_bh_dayn_{what}_{k}w"]
            # sum (d - mean d) y, the days of the window cutoff - days .. cutoff - 1
            # (mean cutoff - (days + 1) / 2): whole numbers and halves, exact
            centred = (dn - cutoff * n) + (days + 1) / 2 * n
            spread = days * (days * days - 1) / 12
            d[f"{what}_count_slope_{k}w"] = (centred / spread * 49).cast("float64")
    return d


__all__ = [
    "MAXIMA",
    "behaviour_features",
    "behaviour_values",
    "edges",
    "trends",
    "stage_one",
    "stage_one_merge",
    "stage_two_sums",
]
