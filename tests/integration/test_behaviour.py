"""Behavioural tests of the trained champions on demo data whose structure we know.

The generator makes support tickets more likely for customers with recent problems
and makes churn more likely after tickets and when activity drops. A model that
learned the data must move in those directions (on average: trees are not
monotone by construction, so single rows may not).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from serving.scoring import Champions
from tests.helpers import Project, eligible_features

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setting(trained: Project) -> tuple[Champions, pd.DataFrame]:
    config, frame = eligible_features(trained, datetime(2025, 12, 1))
    return Champions.load(config, trained.tracking_uri), frame


def with_recent_ticket(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for w in (7, 30, 90, 180):
        out[f"service_request_count_{w}d"] += 1
    out["days_since_last_service_request"] = 2
    out["days_since_last_event"] = np.minimum(out["days_since_last_event"], 2)
    return out


def test_a_recent_ticket_raises_service_request_likelihood(setting) -> None:
    champions, frame = setting
    calm = frame[frame.service_request_count_180d == 0]
    assert len(calm) > 100
    before = champions.predict_frame(calm)["service_request"]
    after = champions.predict_frame(with_recent_ticket(calm))["service_request"]
    assert after.mean() > before.mean()
    assert (after >= before).mean() > 0.8


def test_a_recent_ticket_raises_churn_likelihood(setting) -> None:
    champions, frame = setting
    calm = frame[frame.service_request_count_180d == 0]
    before = champions.predict_frame(calm)["churn"]
    after = champions.predict_frame(with_recent_ticket(calm))["churn"]
    assert after.mean() > before.mean()


def test_going_quiet_raises_churn_likelihood(setting) -> None:
    champions, frame = setting
    busy = frame[frame.activity_count_30d >= 5].copy()
    assert len(busy) > 100
    quiet = busy.copy()
    for role in ("activity", "purchase", "service_request", "cancel"):
        quiet[f"{role}_count_7d"] = 0
    quiet["active_days_7d"] = 0
    quiet["days_since_last_event"] = np.maximum(quiet["days_since_last_event"], 8)
    quiet["days_since_last_activity"] = np.maximum(quiet["days_since_last_activity"], 8)
    before = champions.predict_frame(busy)["churn"]
    after = champions.predict_frame(quiet)["churn"]
    assert after.mean() > before.mean()
