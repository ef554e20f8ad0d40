"""Behavioural tests of the trained champions on demo data whose structure we know.

The generator makes support tickets more likely for customers with recent problems
and makes churn more likely after tickets and when activity drops. A model that
learned the data must move in those directions (on average: trees are not
monotone by construction, so single rows may not).

The changed customers are made by changing their event log (a ticket two days
before the cutoff; a busy customer's last week of events removed) and building
their features through the one definition, as the nightly job would: every
feature the change touches moves together (counts, days with events, recency,
gaps, overdue ratios). Editing a few feature columns by hand instead gives rows
the definition never produces (a ticket counted on no day with a ticket), on which
a served blend's logistic part extrapolates along its correlated features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.config import ProjectConfig, load_config
from features.columns import CUSTOMER_ID, EVENT_TIME, EVENT_TYPE
from features.definition import FeatureSpec, features_at
from features.sources.load import load
from serving.scoring import Champions
from tests.helpers import Project

pytestmark = pytest.mark.integration

CUTOFF = datetime(2025, 12, 1)


def features_of(
    config: ProjectConfig, events: pd.DataFrame | Path, folder: Path | None = None
) -> pd.DataFrame:
    """The features at `CUTOFF` of every customer in some target's population,
    built by the definition from the contract's events (a changed log is written
    to `folder` first), indexed by customer."""
    if isinstance(events, pd.DataFrame):
        path = folder / "events.parquet"
        events.to_parquet(path, index=False)
        events = path
    ds = load(events, config.data.customers)
    frame = features_at(
        ds.events, [CUTOFF], FeatureSpec.from_config(config), ds.customers
    ).to_pandas()
    return frame.set_index(CUSTOMER_ID)


@dataclass(frozen=True)
class Setting:
    config: ProjectConfig
    champions: Champions
    events: pd.DataFrame
    # every customer's features at the cutoff (indexed by customer)
    frame: pd.DataFrame
    # the customers without a ticket in 180 days, and the same customers after
    # one ticket two days before the cutoff (same order)
    calm: pd.DataFrame
    with_ticket: pd.DataFrame


@pytest.fixture(scope="module")
def setting(trained: Project, tmp_path_factory: pytest.TempPathFactory) -> Setting:
    config = load_config(trained.config)
    events = pd.read_parquet(trained.events)
    frame = features_of(config, trained.events)
    calm = frame[frame.service_request_count_180d == 0]
    ticket = pd.DataFrame(
        {
            CUSTOMER_ID: calm.index.to_numpy(),
            EVENT_TIME: CUTOFF - timedelta(days=2),
            EVENT_TYPE: "support_ticket",
        }
    )
    changed = pd.concat([events, ticket], ignore_index=True)
    with_ticket = features_of(config, changed, tmp_path_factory.mktemp("ticket"))
    return Setting(
        config,
        Champions.load(config, trained.tracking_uri),
        events,
        frame,
        calm,
        with_ticket.loc[calm.index],
    )


def test_a_recent_ticket_raises_service_request_likelihood(setting: Setting) -> None:
    calm, with_ticket = setting.calm, setting.with_ticket
    assert len(calm) > 100
    # the definition moved every ticket feature, not only the counts
    assert (with_ticket.service_request_count_7d == 1).all()
    assert (with_ticket.service_request_days_7d == 1).all()
    assert (with_ticket.days_since_last_service_request <= 2).all()
    before = setting.champions.predict_frame(calm)["service_request"]
    after = setting.champions.predict_frame(with_ticket)["service_request"]
    assert after.mean() > before.mean()
    assert (after >= before).mean() > 0.8


def test_a_recent_ticket_raises_churn_likelihood(setting: Setting) -> None:
    before = setting.champions.predict_frame(setting.calm)["churn"]
    after = setting.champions.predict_frame(setting.with_ticket)["churn"]
    assert after.mean() > before.mean()


def test_going_quiet_raises_churn_likelihood(setting: Setting, tmp_path: Path) -> None:
    events, frame = setting.events, setting.frame
    busy = frame[frame.activity_count_30d >= 5]
    assert len(busy) > 100
    last_week = (
        events[CUSTOMER_ID].isin(busy.index)
        & (events[EVENT_TIME] >= CUTOFF - timedelta(days=7))
        & (events[EVENT_TIME] < CUTOFF)
    )
    assert last_week.any()
    quiet = features_of(setting.config, events[~last_week], tmp_path).loc[busy.index]
    assert (quiet.active_days_7d == 0).all()
    assert (quiet.days_since_last_event >= 7).all()
    before = setting.champions.predict_frame(busy)["churn"]
    after = setting.champions.predict_frame(quiet)["churn"]
    assert after.mean() > before.mean()
