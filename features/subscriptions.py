"""Subscription features: the part of the one feature definition that reads the
optional subscriptions table (`build_features` calls it when the spec asks).

Semantics, for a cutoff `c` (a midnight). A row is a term in force over
`[start_time, end_time)` (end_time null: open); a customer's terms do not overlap
(the contract checks it). Only terms with `start_time < c` are known at `c`; their
`end_time` is read as stored (the paid-through date the term was sold with).

Each known term is classified against the customer's previous term (by start):
- `renewal`: it starts exactly when the previous one ends, on the same plan;
- `plan change`: it starts exactly when the previous one ends, on another plan; an
  `upgrade` when its daily price (price / billing_period_days) is higher than the
  previous term's, a `downgrade` when lower;
- `gap`: it starts after the previous one ended (a return after a lapse);
- the customer's first term is none of these.

At `c`:
- the current term is the known term with `end_time >= c` or open (at most one): the
  one in force just before `c`, so a term ending exactly at `c` is current, with 0
  days to its end;
- `sub_active`: 1 with a current term, else 0;
- `sub_days_to_term_end`: whole days from `c` to the current term's end, floored;
  null without a current term or when it is open;
- `sub_billing_period_days`, `sub_price`, `sub_discount`, `sub_quantity`,
  `sub_auto_renew` (1.0/0.0), `sub_plan` (categorical): the current term's values,
  null without one (or where the column is absent);
- `sub_tenure_days`: whole days since the first known term started;
- `sub_terms_total`, `sub_renewals_total`, `sub_plan_changes_total`,
  `sub_gaps_total`: known terms, and those of each kind;
- per window `w` (features.windows_days): `sub_renewals_{w}d`, `sub_upgrades_{w}d`,
  `sub_downgrades_{w}d`: terms of the kind starting in `[c - w days, c)`;
- `sub_days_since_plan_change`: whole days since the latest known plan change
  started; null without one;
- per window `w`: `sub_price_per_activity_{w}d` = `sub_price / activity_count_{w}d`,
  null without a current term or without activity in the window.

Counts, `sub_active` and the "days" figures are int64 (days may be null); the rest
are float64, `sub_plan` a string. Customers without any known term get 0 counts and
nulls elsewhere. Under the `contract` churn definition a (customer, cutoff) pair
is eligible only with `sub_active` = 1.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.columns import (
    ACTIVITY,
    AUTO_RENEW,
    BILLING_PERIOD_DAYS,
    CUSTOMER_ID,
    CUTOFF,
    DISCOUNT,
    END_TIME,
    PLAN,
    PRICE,
    QUANTITY,
    START_TIME,
)
from features.definition import Feature, FeatureSpec, days_between, only

ACTIVE = "sub_active"
DAYS_TO_TERM_END = "sub_days_to_term_end"
BILLING_PERIOD = "sub_billing_period_days"
CURRENT_PLAN = "sub_plan"
RENEWALS = "sub_renewals_total"
# the current term's values: feature name -> contract column
CURRENT = {
    BILLING_PERIOD: BILLING_PERIOD_DAYS,
    "sub_price": PRICE,
    "sub_discount": DISCOUNT,
    "sub_quantity": QUANTITY,
    "sub_auto_renew": AUTO_RENEW,
}
# per-term kinds counted over all history, and per window
TOTALS = {
    "sub_terms_total": "_term",
    RENEWALS: "_renewal",
    "sub_plan_changes_total": "_change",
    "sub_gaps_total": "_gap",
}
WINDOWED = {"renewals": "_renewal", "upgrades": "_up", "downgrades": "_down"}


def subscription_features(spec: FeatureSpec) -> list[Feature]:
    """The subscription features, in order, as the module docstring defines them."""
    if not spec.subscriptions:
        return []
    out: list[Feature] = []

    def add(name: str, window: int | None, text: str, **kw) -> None:
        out.append(Feature(name, None, window, text, **kw))

    add(ACTIVE, None, "a subscription term in force at the cutoff")
    add(DAYS_TO_TERM_END, None, "whole days to the end of the current term")
    add(BILLING_PERIOD, None, "billing period of the current term, in days")
    add("sub_price", None, "price of the current term")
    add("sub_discount", None, "discount of the current term")
    add("sub_quantity", None, "quantity (seats, units) of the current term")
    add("sub_auto_renew", None, "the current term renews automatically")
    add(CURRENT_PLAN, None, "plan of the current term", categorical=True)
    add(
        "sub_tenure_days",
        None,
        "whole days since the first subscription started",
        calendar=True,
    )
    add("sub_terms_total", None, "subscription terms ever")
    add(RENEWALS, None, "renewals on the same plan ever")
    add("sub_plan_changes_total", None, "plan changes ever")
    add("sub_gaps_total", None, "returns after a lapse in the subscription")
    for w in spec.windows_days:
        for kind in WINDOWED:
            add(f"sub_{kind}_{w}d", w, f"subscription {kind} in the last {w} days")
    add("sub_days_since_plan_change", None, "whole days since the last plan change")
    for w in spec.windows_days:
        add(
            f"sub_price_per_activity_{w}d",
            w,
            f"current price per activity event in the last {w} days",
        )
    return out


def classified_terms(subscriptions: ir.Table) -> ir.Table:
    """Every term with 0/1 flags for its kind against the customer's previous term
    (a term's previous one starts earlier, so it is known whenever the term is)."""
    s = subscriptions
    by_start = ibis.window(group_by=s[CUSTOMER_ID], order_by=s[START_TIME])
    daily = s[PRICE] / s[BILLING_PERIOD_DAYS]
    previous_end = s[END_TIME].lag().over(by_start)
    contiguous = (s[START_TIME] == previous_end).fill_null(False)
    changed = contiguous & (s[PLAN] != s[PLAN].lag().over(by_start)).fill_null(False)
    previous_daily = daily.lag().over(by_start)

    def flag(condition: ir.BooleanValue) -> ir.Value:
        return condition.fill_null(False).cast("int64")

    return s.select(
        _scid=s[CUSTOMER_ID],
        _start=s[START_TIME],
        _end=s[END_TIME],
        _plan=s[PLAN],
        _term=ibis.literal(1, "int64"),
        _renewal=flag(contiguous & ~changed),
        _change=flag(changed),
        _up=flag(changed & (daily > previous_daily)),
        _down=flag(changed & (daily < previous_daily)),
        _gap=flag(s[START_TIME] > previous_end),
        **{f"_{col}": s[col].cast("float64") for col in CURRENT.values()},
    )


def _aggregated(keys: ir.Table, terms: ir.Table, spec: FeatureSpec) -> ir.Table:
    """Per (customer, cutoff) with a known term: counts, current values, times."""
    j = keys.join(
        terms, [keys[CUSTOMER_ID] == terms._scid, terms._start < keys[CUTOFF]]
    )
    cut = j[CUTOFF]
    current = j._end.isnull() | (j._end >= cut)
    m: dict[str, ir.Value] = {
        "_active": only(current, j._term).sum(),
        "_current_end": only(current, j._end).max(),
        CURRENT_PLAN: only(current, j._plan).max(),
        "_first_start": j._start.min(),
        "_last_change": only(j._change == 1, j._start).max(),
    }
    for name, col in CURRENT.items():
        m[name] = only(current, j[f"_{col}"]).max()
    for name, flag in TOTALS.items():
        m[name] = j[flag].sum()
    for w in spec.windows_days:
        recent = j._start >= cut - ibis.interval(days=w)
        for kind, flag in WINDOWED.items():
            m[f"sub_{kind}_{w}d"] = only(recent, j[flag]).sum()
    return j.group_by([CUSTOMER_ID, CUTOFF]).aggregate(**m)


def with_subscription_features(
    out: ir.Table, subscriptions: ir.Table, spec: FeatureSpec
) -> ir.Table:
    """`out` (one row per customer and cutoff, with the event features) with the
    subscription features added (see the module docstring)."""
    agg = _aggregated(
        out.select(CUSTOMER_ID, CUTOFF), classified_terms(subscriptions), spec
    )
    agg = agg.rename({"_acid": CUSTOMER_ID, "_acut": CUTOFF})
    j = out.left_join(
        agg, [out[CUSTOMER_ID] == agg._acid, out[CUTOFF] == agg._acut]
    ).drop("_acid", "_acut")
    cut = j[CUTOFF]
    counts = [ACTIVE, *TOTALS] + [
        f"sub_{kind}_{w}d" for w in spec.windows_days for kind in WINDOWED
    ]
    d: dict[str, ir.Value] = {
        name: j[name if name != ACTIVE else "_active"].fill_null(0).cast("int64")
        for name in counts
    }
    d[DAYS_TO_TERM_END] = days_between(j._current_end, cut)
    d["sub_tenure_days"] = days_between(cut, j._first_start)
    d["sub_days_since_plan_change"] = days_between(cut, j._last_change)
    for w in spec.windows_days:
        activity = j[f"{ACTIVITY}_count_{w}d"].nullif(0).cast("float64")
        d[f"sub_price_per_activity_{w}d"] = j.sub_price / activity
    return j.mutate(**d).drop("_active", "_current_end", "_first_start", "_last_change")


__all__ = [
    "ACTIVE",
    "classified_terms",
    "subscription_features",
    "with_subscription_features",
]
