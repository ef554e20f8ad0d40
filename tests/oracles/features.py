"""A slow, obvious reference for features and labels, in plain pandas and numpy.

Written from the documented semantics (the module docstring of
`features/definition.py`, and `features/labels.py`), not from the Ibis code: for each
(customer, cutoff) pair it looks at that customer's raw events before the cutoff
directly, with no daily roll-up, so the property tests in
`tests/unit/test_properties.py` can compare the two. Each feature is a selection of
those events (`Events`: one numpy array per column, as selecting rows of a pandas
frame costs a tenth of a millisecond and a pair takes hundreds of selections) and a
count, a distinct count, a sum, a mean, a maximum or a min/max of times.

Semantics, for a cutoff `c` (a midnight) and one customer's events strictly before
it (`past`):

- the role of an event is `spec.role_of.get(event_type, "activity")`; its day is its
  calendar date; a missing amount or quantity column is all null;
- a window of `w` days holds the events with `c - w days <= t < c`;
- whole days from `t` to `c` are `floor((c - t) seconds / 86400)`;
- `d` is the number of days from the day of the first event to `c` (at least 1).

Per window `w` (in `spec.windows_days` order):

- `{role}_count_{w}d`: events of the role in the window, for every role;
- `{role}_days_{w}d`: distinct days with an event of the role in the window;
- `active_days_{w}d`: distinct days with any event in the window;
- `active_day_share_{w}d`: `active_days_{w}d / min(w, d)`;
- per role in `spec.amount_roles`, over the role's events in the window that have
  an amount (a null is left out, not a zero): `{role}_amount_sum_{w}d` (0.0 when
  there is none), `{role}_amount_mean_{w}d` and `{role}_amount_max_{w}d` (null when
  there is none); `{role}_quantity_sum_{w}d` likewise over the events with a
  quantity (0.0 when there is none).

Over all of `past`:

- `days_since_last_{role}`, `days_since_last_event`, `days_since_first_purchase`,
  `tenure_days`: whole days from the last event of the role / the last event / the
  first purchase / the first event to `c`; null when there is no such event;
- `{role}_count_total`: events of the role;
- `reactivations`: the days with a cancel on which some event of another role
  follows on a later day (a non-cancel event the same day does not count);
- `service_requests_per_purchase`: service requests / purchases, null without
  purchases;
- `active_day_gap_mean`, `active_day_gap_std`: mean and population standard
  deviation (ddof 0) of the gaps in days between consecutive distinct active days;
  null with fewer than two active days.

Per trend `t` (in `spec.trend_days` order), the last `t` days `[c - t, c)` against
the `t` days before them `[c - 2t, c - t)`:

- `event_count_ratio_{t}d` = (events in the last + 1) / (events in the prior + 1),
  `event_count_diff_{t}d` = events in the last - events in the prior;
- `purchase_count_ratio_{t}d`, `purchase_count_diff_{t}d`: the same for purchases.

Then:

- one flag per listed target (`in_<target>`): churn's population is not already
  churned at `c` under the churn definition (see `reference_eligible`);
  purchase's and service_request's is every customer seen before `c`, or, with
  `lookback_days`, with an event (any role) at or after `c - N days`;
- `eligible`: in some listed target's population;
- customer attributes: numbers and booleans as they are, strings as they are,
  timestamps and dates as `days_since_<name>` (whole days, floored) when before `c`,
  else null.

Labels look at `[c, c + horizon)` per target (see `reference_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
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
    QUANTITY,
    ROLE,
    ROLES,
    SERVICE_REQUEST,
    population_column,
)
from features.definition import ELIGIBLE, FeatureSpec
from features.labels import LabelSpec

DAY = pd.Timedelta(days=1)
DATE = "_date"  # an event's day: its timestamp floored to midnight
# what the features read of an event
COLUMNS = [EVENT_TIME, DATE, ROLE, AMOUNT, QUANTITY]


def with_roles(events: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Events with a `role` and a day column; amount and quantity as floats with
    their nulls kept (a missing column is all null)."""
    out = events.copy()
    out[EVENT_TIME] = pd.to_datetime(out[EVENT_TIME])
    roles = [spec.role_of.get(t, ACTIVITY) for t in out[EVENT_TYPE]]
    out[ROLE] = pd.Series(roles, index=out.index, dtype=object)
    out[DATE] = out[EVENT_TIME].dt.normalize()
    for column, per_unit in ((AMOUNT, 100), (QUANTITY, 1000)):
        if column not in out:
            out[column] = None
        value = pd.to_numeric(out[column]).astype("float64").to_numpy() * per_unit
        # money to the cent, quantities to the thousandth, half away from zero
        out[column] = np.sign(value) * np.floor(np.abs(value) + 0.5) / per_unit
    return out


def whole_days(later: pd.Timestamp, earlier: object) -> int | None:
    """floor((later - earlier) in seconds / 86400); None when `earlier` is missing."""
    if earlier is None or pd.isna(earlier):
        return None
    return math.floor((later - pd.Timestamp(earlier)).total_seconds() / 86400)


@dataclass(frozen=True)
class Events:
    """Some events of one customer, one array entry per event: time, day (its
    midnight), role, amount and quantity (NaN where null). A small frame of numpy
    arrays, so the hundreds of selections per (customer, cutoff) stay cheap."""

    time: np.ndarray
    day: np.ndarray
    role: np.ndarray
    amount: np.ndarray
    quantity: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Events:
        return cls(*(frame[c].to_numpy() for c in COLUMNS))

    def __len__(self) -> int:
        return len(self.time)

    def where(self, mask: np.ndarray) -> Events:
        return Events(*(getattr(self, f.name)[mask] for f in fields(self)))

    def of_role(self, role: str) -> Events:
        return self.where(self.role == role)

    def not_of_role(self, role: str) -> Events:
        return self.where(self.role != role)

    def between(self, start: pd.Timestamp, end: pd.Timestamp) -> Events:
        """The events with start <= time < end."""
        return self.where((self.time >= start) & (self.time < end))

    def days(self) -> np.ndarray:
        """The distinct days, ascending."""
        return np.unique(self.day)

    def last(self) -> object:
        return self.time.max() if len(self) else None

    def first(self) -> object:
        return self.time.min() if len(self) else None


def reference_eligible(past: Events, cutoff: pd.Timestamp, spec: FeatureSpec) -> bool:
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
    if not len(past):
        return False
    cancels, others = past.of_role(CANCEL), past.not_of_role(CANCEL)
    cancelled = len(cancels) > 0 and (
        len(others) == 0 or cancels.last() >= others.last()
    )
    horizon_start = cutoff - spec.churn_horizon_days * DAY
    recently_active = len(others) > 0 and others.last() >= horizon_start
    rule = {
        "cancel": not cancelled,
        "inactivity": recently_active,
        "inactivity_or_cancel": recently_active and not cancelled,
        # seen; narrowed to active subscribers (tests/oracles/subscriptions.py)
        "contract": True,
    }
    return rule[spec.churn_definition]


def reference_populations(
    past: Events, cutoff: pd.Timestamp, spec: FeatureSpec
) -> dict[str, bool]:
    """`in_<target>` per listed target, then `eligible` (any of them)."""
    out = {}
    for target in spec.targets:
        if target == "churn":
            flag = reference_eligible(past, cutoff, spec)
        elif target in spec.lookback_days:
            since = cutoff - spec.lookback_days[target] * DAY
            flag = len(past) > 0 and past.last() >= since
        else:
            flag = len(past) > 0
        out[population_column(target)] = bool(flag)
    out[ELIGIBLE] = any(out.values())
    return out


def amount_features(events: Events, role: str, w: int) -> dict[str, object]:
    """Amount sum/mean/max and quantity sum of `events` (one role, one window);
    null amounts and quantities are left out."""
    amounts = events.amount[~np.isnan(events.amount)]
    quantities = events.quantity[~np.isnan(events.quantity)]
    some = len(amounts) > 0
    return {
        f"{role}_amount_sum_{w}d": float(amounts.sum()) if some else 0.0,
        f"{role}_amount_mean_{w}d": float(amounts.mean()) if some else None,
        f"{role}_amount_max_{w}d": float(amounts.max()) if some else None,
        f"{role}_quantity_sum_{w}d": float(quantities.sum())
        if len(quantities)
        else 0.0,
    }


def reactivations(past: Events) -> int:
    """Days with a cancel followed, on a later day, by an event of another role."""
    other_days = past.not_of_role(CANCEL).days()
    return sum(bool((other_days > day).any()) for day in past.of_role(CANCEL).days())


def active_day_gaps(past: Events) -> tuple[float | None, float | None]:
    """Mean and population std of the days between consecutive active days."""
    days = past.days()
    if len(days) < 2:
        return None, None
    gaps = np.diff(days) / np.timedelta64(1, "D")
    return float(gaps.mean()), float(gaps.std(ddof=0))


def event_features(
    past: Events, cutoff: pd.Timestamp, spec: FeatureSpec
) -> dict[str, object]:
    """The event features of one customer from their events before `cutoff`."""
    assert len(past) and (past.time < cutoff).all()
    out: dict[str, object] = {}

    def in_last(events: Events, days: int, until_days_ago: int = 0) -> Events:
        """The events with cutoff - days <= t < cutoff - until_days_ago days."""
        return events.between(cutoff - days * DAY, cutoff - until_days_ago * DAY)

    # days the customer could have been active: from their first day to the cutoff
    possible_days = max(1, (cutoff - pd.Timestamp(past.day.min())).days)
    for w in spec.windows_days:
        window = in_last(past, w)
        for role in ROLES:
            out[f"{role}_count_{w}d"] = len(window.of_role(role))
        for role in ROLES:
            out[f"{role}_days_{w}d"] = len(window.of_role(role).days())
        active_days = len(window.days())
        out[f"active_days_{w}d"] = active_days
        out[f"active_day_share_{w}d"] = active_days / min(w, possible_days)
        for role in spec.amount_roles:
            out.update(amount_features(window.of_role(role), role, w))

    for role in ROLES:
        out[f"days_since_last_{role}"] = whole_days(cutoff, past.of_role(role).last())
    out["days_since_last_event"] = whole_days(cutoff, past.last())
    purchases = past.of_role(PURCHASE)
    out["days_since_first_purchase"] = whole_days(cutoff, purchases.first())
    out["tenure_days"] = whole_days(cutoff, past.first())
    for role in ROLES:
        out[f"{role}_count_total"] = len(past.of_role(role))
    out["reactivations"] = reactivations(past)
    requests = len(past.of_role(SERVICE_REQUEST))
    out["service_requests_per_purchase"] = (
        requests / len(purchases) if len(purchases) else None
    )
    out["active_day_gap_mean"], out["active_day_gap_std"] = active_day_gaps(past)

    for t in spec.trend_days:
        for name, events in (("event", past), ("purchase", purchases)):
            recent, prior = len(in_last(events, t)), len(in_last(events, 2 * t, t))
            out[f"{name}_count_ratio_{t}d"] = (recent + 1) / (prior + 1)
            out[f"{name}_count_diff_{t}d"] = recent - prior
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
        for cid, frame in before.groupby(CUSTOMER_ID):
            past = Events.of(frame)
            row = {CUSTOMER_ID: cid, CUTOFF: cutoff}
            row.update(event_features(past, cutoff, spec))
            row.update(attribute_values(by_id.get(cid), list(kinds), kinds, cutoff))
            row.update(reference_populations(past, cutoff, spec))
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
    """The listed targets' labels (0/1) per pair from `[c, c + horizon)`.

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

        row = {CUSTOMER_ID: cid, CUTOFF: cutoff}
        if CHURN in labels.horizons:
            churn_roles = window(CHURN)
            inactive = not (churn_roles != CANCEL).any()
            cancelled = bool((churn_roles == CANCEL).any())
            churn = {
                "inactivity": inactive,
                "cancel": cancelled,
                "inactivity_or_cancel": inactive or cancelled,
            }[labels.churn_definition]
            row[CHURN] = int(churn)
        for target in (PURCHASE, SERVICE_REQUEST):
            if target in labels.horizons:
                row[target] = int((window(target) == target).any())
        rows.append(row)
    return pd.DataFrame(rows, columns=[CUSTOMER_ID, CUTOFF, *labels.horizons])
