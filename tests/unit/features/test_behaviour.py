"""The behaviour features (features.behaviour) against a plain-pandas reference
written from their docstring, on a seeded log."""

from __future__ import annotations

import math

import ibis
import numpy as np
import pandas as pd

from features.behaviour import behaviour_features
from features.columns import CUSTOMER_ID, CUTOFF, EVENT_TIME, EVENT_TYPE
from features.definition import FeatureSpec, build_features
from tests.strategies import ROLE_OF, differences
from tests.unit.features.test_classic import CUTS, EVENTS

SPEC = FeatureSpec(
    role_of=ROLE_OF, windows_days=(30,), trend_days=(7, 30), behaviour=True
)
NAMES = [f.name for f in behaviour_features(SPEC)]


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
        rows.append(row)
    return pd.DataFrame(rows)


def test_behaviour_features_match_the_pandas_reference() -> None:
    got = build_features(ibis.memtable(EVENTS), CUTS, SPEC).to_pandas()
    want = pd.concat([reference(EVENTS, pd.Timestamp(c)) for c in CUTS])
    assert got[NAMES].notna().any().all()
    assert not differences(got, want, NAMES)
