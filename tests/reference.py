"""A slow, obvious reference for features and labels, in plain pandas.

Written from the documented semantics (the README and the docstrings of
`features/definition.py` and `features/labels.py`), not from the Ibis code: it looks
at each (customer, cutoff) pair's raw events directly, with no daily roll-up, so the
property tests in `tests/unit/test_properties.py` can compare the two.

Semantics, for a cutoff `c` (a midnight) and a customer's events strictly before it:

- the role of an event is `spec.role_of.get(event_type, "activity")`;
- `{role}_count_{w}d`: events of the role with `c - w days <= t < c`;
- `purchase_amount_sum_{w}d`: sum of the amounts of purchase events in that window
  (0.0 when there are none; a null amount counts as 0);
- `active_days_{w}d`: distinct calendar dates with any event in the window;
- `days_since_last_{role}`, `days_since_last_event`, `tenure_days`: whole days,
  floored, from the last event of the role / the last event / the first event to
  `c`; null when there is no such event;
- `event_trend_{t}d`: (events in `[c - t, c)` + 1) / (events in `[c - 2t, c - t)` + 1);
- `eligible`: not already churned at `c` under the churn definition (see
  `reference_eligible`);
- customer attributes: numbers and booleans as they are, strings as they are,
  timestamps and dates as `days_since_<name>` (whole days, floored) when before `c`,
  else null.

Labels look at `[c, c + horizon)` per target (see `reference_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from features.columns import (
    ACTIVITY,
    AMOUNT,
    CANCEL,
    CHURN,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
    ROLE,
    ROLES,
    SERVICE_REQUEST,
)
from features.definition import ELIGIBLE, FeatureSpec
from features.labels import LabelSpec

DAY = pd.Timedelta(days=1)


def with_roles(events: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Events with a `role` column; an amount column of floats, nulls as 0."""
    out = events.copy()
    out[EVENT_TIME] = pd.to_datetime(out[EVENT_TIME])
    out[ROLE] = [spec.role_of.get(t, ACTIVITY) for t in out[EVENT_TYPE]]
    if AMOUNT not in out:
        out[AMOUNT] = 0.0
    out[AMOUNT] = pd.to_numeric(out[AMOUNT]).astype("float64").fillna(0.0)
    return out


def whole_days(later: pd.Timestamp, earlier: pd.Timestamp | None) -> int | None:
    """floor((later - earlier) in seconds / 86400); None when `earlier` is missing."""
    if earlier is None or pd.isna(earlier):
        return None
    return math.floor((later - earlier).total_seconds() / 86400)


def last(times: pd.Series) -> pd.Timestamp | None:
    return times.max() if len(times) else None


def first(times: pd.Series) -> pd.Timestamp | None:
    return times.min() if len(times) else None


def reference_eligible(
    past: pd.DataFrame, cutoff: pd.Timestamp, spec: FeatureSpec
) -> bool:
    """Seen before the cutoff and not already churned under the churn definition.

    - cancelled: there is a cancel and no other event after the last one (a cancel
      at the same instant as the last other event still counts as cancelled);
    - recently active: the last non-cancel event is within the churn horizon,
      `t >= c - horizon days`.

    "cancel" asks not cancelled; "inactivity" asks recently active (a cancel is not
    churn under that definition, as `_eligible`'s docstring "not already churned
    under the churn definition" says; the README's sentence "no cancel since their
    last activity, and (for the inactivity definitions) activity within the churn
    horizon" could be read to ask both); "inactivity_or_cancel" asks both.
    """
    if past.empty:
        return False
    cancels = past.loc[past[ROLE] == CANCEL, EVENT_TIME]
    others = past.loc[past[ROLE] != CANCEL, EVENT_TIME]
    cancelled = len(cancels) > 0 and (others.empty or cancels.max() >= others.max())
    horizon_start = cutoff - spec.churn_horizon_days * DAY
    recently_active = len(others) > 0 and others.max() >= horizon_start
    rule = {
        "cancel": not cancelled,
        "inactivity": recently_active,
        "inactivity_or_cancel": recently_active and not cancelled,
    }
    return rule[spec.churn_definition]


def event_features(
    past: pd.DataFrame, cutoff: pd.Timestamp, spec: FeatureSpec
) -> dict[str, object]:
    """The event features of one customer from their events before `cutoff`."""
    assert (past[EVENT_TIME] < cutoff).all()
    out: dict[str, object] = {}

    def between(days_ago_from: int, days_ago_to: int) -> pd.DataFrame:
        """Events with cutoff - from days <= t < cutoff - to days."""
        t = past[EVENT_TIME]
        return past[
            (t >= cutoff - days_ago_from * DAY) & (t < cutoff - days_ago_to * DAY)
        ]

    for w in spec.windows_days:
        window = between(w, 0)
        for role in ROLES:
            out[f"{role}_count_{w}d"] = int((window[ROLE] == role).sum())
        purchases = window[window[ROLE] == PURCHASE]
        out[f"purchase_amount_sum_{w}d"] = float(purchases[AMOUNT].sum())
        out[f"active_days_{w}d"] = int(window[EVENT_TIME].dt.date.nunique())
    for role in ROLES:
        times = past.loc[past[ROLE] == role, EVENT_TIME]
        out[f"days_since_last_{role}"] = whole_days(cutoff, last(times))
    out["days_since_last_event"] = whole_days(cutoff, last(past[EVENT_TIME]))
    out["tenure_days"] = whole_days(cutoff, first(past[EVENT_TIME]))
    t = spec.trend_days
    recent, prior = len(between(t, 0)), len(between(2 * t, t))
    out[f"event_trend_{t}d"] = (recent + 1) / (prior + 1)
    return out


def attribute_values(
    customer: pd.Series | None,
    columns: Sequence[str],
    kinds: dict[str, str],
    cutoff: pd.Timestamp,
) -> dict[str, object]:
    """A customer's attributes at `cutoff`; `kinds[name]` is "time" or "value"."""
    out: dict[str, object] = {}
    for name in columns:
        value = None if customer is None else customer[name]
        if kinds[name] == "time":
            stamp = None if value is None or pd.isna(value) else pd.Timestamp(value)
            known = stamp is not None and stamp < cutoff
            out[f"days_since_{name}"] = whole_days(cutoff, stamp) if known else None
        else:
            out[name] = None if value is None or pd.isna(value) else value
    return out


def attribute_kinds(customers: pd.DataFrame, spec: FeatureSpec) -> dict[str, str]:
    """Which customer columns are features: "time" for timestamps (dates given as
    midnight timestamps), "value" for the rest."""
    names = [c for c in customers.columns if c != CUSTOMER_ID]
    if spec.attributes is not None:
        names = list(spec.attributes)
    return {
        name: "time"
        if pd.api.types.is_datetime64_any_dtype(customers[name])
        else "value"
        for name in names
    }


def reference_features(
    events: pd.DataFrame,
    cutoffs: Sequence[datetime],
    spec: FeatureSpec,
    customers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per customer with an event strictly before each cutoff."""
    ev = with_roles(events, spec)
    kinds = {} if customers is None else attribute_kinds(customers, spec)
    by_id = (
        {}
        if customers is None
        else {r[CUSTOMER_ID]: r for _, r in customers.iterrows()}
    )
    rows = []
    for cutoff in sorted({pd.Timestamp(c) for c in cutoffs}):
        assert cutoff == cutoff.normalize(), "cutoffs are midnights"
        before = ev[ev[EVENT_TIME] < cutoff]
        for cid, past in before.groupby(CUSTOMER_ID):
            row = {CUSTOMER_ID: cid, CUTOFF: cutoff}
            row.update(event_features(past, cutoff, spec))
            row.update(attribute_values(by_id.get(cid), list(kinds), kinds, cutoff))
            row[ELIGIBLE] = reference_eligible(past, cutoff, spec)
            rows.append(row)
    return pd.DataFrame(rows)


def reference_pairs(events: pd.DataFrame, cutoffs: Sequence[datetime]) -> pd.DataFrame:
    """(customer_id, cutoff) for every customer with an event before each cutoff."""
    times = pd.to_datetime(events[EVENT_TIME])
    rows = [
        {CUSTOMER_ID: cid, CUTOFF: pd.Timestamp(c)}
        for c in sorted({pd.Timestamp(c) for c in cutoffs})
        for cid in sorted(set(events.loc[times < pd.Timestamp(c), CUSTOMER_ID]))
    ]
    return pd.DataFrame(rows, columns=[CUSTOMER_ID, CUTOFF])


def reference_labels(
    events: pd.DataFrame, pairs: pd.DataFrame, spec: FeatureSpec, labels: LabelSpec
) -> pd.DataFrame:
    """churn, purchase, service_request (0/1) per pair from `[c, c + horizon)`.

    purchase: a purchase event in the window; service_request: a service-request
    event; churn by `labels.churn_definition`: "inactivity" = no non-cancel event,
    "cancel" = a cancel, "inactivity_or_cancel" = either.
    """
    ev = with_roles(events, spec)
    rows = []
    for pair in pairs.itertuples(index=False):
        cid, cutoff = getattr(pair, CUSTOMER_ID), pd.Timestamp(getattr(pair, CUTOFF))
        mine = ev[ev[CUSTOMER_ID] == cid]

        def window(target: str, mine: pd.DataFrame = mine, cutoff=cutoff) -> pd.Series:
            end = cutoff + labels.horizons[target] * DAY
            t = mine[EVENT_TIME]
            return mine.loc[(t >= cutoff) & (t < end), ROLE]

        churn_roles = window(CHURN)
        inactive = not (churn_roles != CANCEL).any()
        cancelled = bool((churn_roles == CANCEL).any())
        churn = {
            "inactivity": inactive,
            "cancel": cancelled,
            "inactivity_or_cancel": inactive or cancelled,
        }[labels.churn_definition]
        rows.append(
            {
                CUSTOMER_ID: cid,
                CUTOFF: cutoff,
                CHURN: int(churn),
                PURCHASE: int((window(PURCHASE) == PURCHASE).any()),
                SERVICE_REQUEST: int(
                    (window(SERVICE_REQUEST) == SERVICE_REQUEST).any()
                ),
            }
        )
    return pd.DataFrame(
        rows, columns=[CUSTOMER_ID, CUTOFF, CHURN, PURCHASE, SERVICE_REQUEST]
    )
