"""The behaviour features (features.behaviour) against a plain-pandas reference
written from their docstring, on a seeded log."""

from __future__ import annotations

import math
from dataclasses import replace

import ibis
import numpy as np
import pandas as pd

from features.behaviour import SLOPE_WEEKS, behaviour_features
from features.columns import CUSTOMER_ID, CUTOFF, EVENT_TIME, EVENT_TYPE
from features.definition import FeatureSpec, build_features
from tests.strategies import ROLE_OF, differences
from tests.unit.features.test_classic import CUTS, EVENTS

SPEC = FeatureSpec(
    role_of=ROLE_OF,
    windows_days=(30,),
    trend_days=(7, 30),
    behaviour=True,
    trends=True,
)
NAMES = [f.name for f in behaviour_features(SPEC)]


def with_tickets(events: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """The log with service requests: a ticket an hour after some events."""
    picked = events.sample(frac=0.2, random_state=seed).copy()
    picked[EVENT_TIME] += pd.Timedelta(hours=1)
    picked[EVENT_TYPE] = "ticket"
    picked["amount"] = np.nan
    return pd.concat([events, picked], ignore_index=True)


LOG = with_tickets(EVENTS)


def concentration(times: pd.Series) -> float:
    """Sum over the weekdays of the squared share of the events on that day."""
    if times.empty:
        return np.nan
    shares = times.dt.dayofweek.value_counts(normalize=True)
    return float((shares**2).sum())


def slope(times: pd.Series, cutoff: pd.Timestamp, weeks: int) -> float:
    """np.polyfit's slope of the daily counts over the 7 * weeks days before the
    cutoff, times 49 (weekly counts per week)."""
    days = pd.date_range(cutoff - pd.Timedelta(days=7 * weeks), periods=7 * weeks)
    counts = times.dt.floor("D").value_counts().reindex(days, fill_value=0)
    return float(np.polyfit(np.arange(len(days)), counts.to_numpy(), 1)[0] * 49)


def reference(events: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per customer seen before `cutoff`, the behaviour features, from the events."""
    rows = []
    before = events[events[EVENT_TIME] < cutoff]
    for cid, ev in before.groupby(CUSTOMER_ID):
        days = np.sort(ev[EVENT_TIME].dt.floor("D").unique())
        gaps = np.diff(days) / pd.Timedelta(days=1)
        since = math.floor((cutoff - ev[EVENT_TIME].max()) / pd.Timedelta(days=1))
        row = {
            CUSTOMER_ID: cid,
            CUTOFF: cutoff,
            "overdue_event": since / gaps.mean() if len(gaps) else np.nan,
        }
        buys = ev[ev[EVENT_TYPE] == "buy"]
        buy_days = np.sort(buys[EVENT_TIME].dt.floor("D").unique())
        if len(buy_days) > 1:
            gap = (buy_days[-1] - buy_days[0]) / pd.Timedelta(days=1)
            gap /= len(buy_days) - 1
            last = math.floor((cutoff - buys[EVENT_TIME].max()) / pd.Timedelta(days=1))
            row["purchase_gap_mean"], row["overdue_purchase"] = gap, last / gap
        else:
            row["purchase_gap_mean"] = row["overdue_purchase"] = np.nan
        for t in SPEC.trend_days:
            age = cutoff - buys[EVENT_TIME]
            cents = (buys["amount"] * 100).round().fillna(0)
            last_t = cents[age <= pd.Timedelta(days=t)].sum()
            prior = cents[
                (age > pd.Timedelta(days=t)) & (age <= pd.Timedelta(days=2 * t))
            ]
            row[f"purchase_amount_diff_{t}d"] = (last_t - prior.sum()) / 100
        row["active_day_gap_last"] = gaps[-1] if len(gaps) else np.nan
        tickets = ev[ev[EVENT_TYPE] == "ticket"][EVENT_TIME]
        for what, times in (
            ("event", ev[EVENT_TIME]),
            ("purchase", buys[EVENT_TIME]),
            ("service_request", tickets),
        ):
            row[f"{what}_dow_concentration"] = concentration(times)
        for what, times in (("event", ev[EVENT_TIME]), ("purchase", buys[EVENT_TIME])):
            for k in SLOPE_WEEKS:
                row[f"{what}_count_slope_{k}w"] = slope(times, cutoff, k)
        rows.append(row)
    return pd.DataFrame(rows)


def test_behaviour_features_match_the_pandas_reference() -> None:
    got = build_features(ibis.memtable(LOG), CUTS, SPEC).to_pandas()
    want = pd.concat([reference(LOG, pd.Timestamp(c)) for c in CUTS])
    assert got[NAMES].notna().any().all()
    assert not differences(got, want, NAMES)


def test_the_trend_features_come_only_with_their_flag() -> None:
    """`features.trends` off (the default) drops the trend features and leaves
    the rest of the behaviour group as it was."""
    plain = replace(SPEC, trends=False)
    names = [f.name for f in behaviour_features(plain)]
    trend = {"active_day_gap_last", "event_dow_concentration"}
    trend |= {f"purchase_count_slope_{k}w" for k in SLOPE_WEEKS}
    assert trend <= set(NAMES)
    assert not trend & set(names)
    assert set(names) < set(NAMES)
    events = ibis.memtable(LOG)
    got = build_features(events, CUTS, plain).to_pandas()
    both = build_features(events, CUTS, SPEC).to_pandas()
    assert not trend & set(got.columns)
    keys = [CUSTOMER_ID, CUTOFF]
    got, both = (f.sort_values(keys).reset_index(drop=True) for f in (got, both))
    pd.testing.assert_frame_equal(got, both[got.columns])
