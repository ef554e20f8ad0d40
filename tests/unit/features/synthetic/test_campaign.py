"""The demo campaign: it changes the treatment group's events after the campaign
and nobody else's, splits its customers by a keyed hash, and its truth holds
the documented effects (features.synthetic.campaign)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.columns import CUSTOMER_ID, EVENT_TIME
from features.synthetic.campaign import (
    BEFORE_END_DAYS,
    CAMPAIGN_ID,
    HAZARD_RATIO,
    SLEEPING_DOG,
    TROUBLED,
    campaign_day,
    confirmed_at,
    control_draw,
)
from features.synthetic.demo import DemoSummary, generate

DAYS = 400


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSummary, DemoSummary]:
    root = tmp_path_factory.mktemp("campaign")
    with_it = generate(root / "with", customers=1200, seed=5, days=DAYS)
    without = generate(
        root / "without", customers=1200, seed=5, days=DAYS, campaign=False
    )
    return with_it, without


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_only_the_treatment_groups_later_events_change(
    both: tuple[DemoSummary, DemoSummary],
) -> None:
    with_it, without = both
    assert without.campaign_path is None
    assert with_it.campaign_path is not None
    truth = pq.read_table(with_it.campaign_path).to_pandas()
    a = pq.read_table(with_it.events_path).to_pandas()
    b = pq.read_table(without.events_path).to_pandas()
    treated = set(truth.loc[truth.contact_group == "treatment", CUSTOMER_ID])
    at = pd.Timestamp(confirmed_at(pq.read_table(with_it.campaign_path))).tz_localize(
        None
    )
    assert at == pd.Timestamp(
        datetime(2024, 1, 1) + timedelta(days=DAYS - BEFORE_END_DAYS)
    )
    outside_a, outside_b = (
        (~a[CUSTOMER_ID].isin(treated)),
        (~b[CUSTOMER_ID].isin(treated)),
    )
    pd.testing.assert_frame_equal(_sorted(a[outside_a]), _sorted(b[outside_b]))
    early_a = a[~outside_a & (a[EVENT_TIME] < at)]
    early_b = b[~outside_b & (b[EVENT_TIME] < at)]
    pd.testing.assert_frame_equal(_sorted(early_a), _sorted(early_b))
    # ... and the treatment group's later events do change (contact works)
    late_a = a[~outside_a & (a[EVENT_TIME] >= at)]
    late_b = b[~outside_b & (b[EVENT_TIME] >= at)]
    assert not _sorted(late_a).equals(_sorted(late_b))
    # the customers table is the same
    assert pq.read_table(with_it.customers_path).equals(
        pq.read_table(without.customers_path)
    )


def test_truth_holds_the_split_and_the_documented_effects(
    both: tuple[DemoSummary, DemoSummary],
) -> None:
    truth = pq.read_table(both[0].campaign_path).to_pandas()
    assert (truth.campaign_id == CAMPAIGN_ID).all()
    assert truth[CUSTOMER_ID].is_unique
    share = (truth.contact_group == "control").mean()
    assert 0.4 < share < 0.6
    # each segment's hazard ratio is the documented one
    for segment, ratio in HAZARD_RATIO.items():
        assert (truth.loc[truth.segment == segment, "hazard_ratio"] == ratio).all()
    assert set(truth.segment) == set(HAZARD_RATIO)
    # contact lowers the expected churn of the troubled most, raises the dogs'
    by = truth.groupby("segment").churn_effect.mean()
    assert by[TROUBLED] == by.min() < 0 < by[SLEEPING_DOG] == by.max()
    effect = truth.outcome_treated - truth.outcome_untreated
    assert (truth.outcome_effect == effect).all()
    assert truth.outcome_effect.mean() < 0  # on average, customers retained
    # the control group's written outcome is its untreated one (seen through
    # the treatment's: both potential outcomes are known for everyone)
    assert truth[["outcome_untreated", "outcome_treated"]].isin([0, 1]).all().all()


def test_the_split_is_a_keyed_hash_and_short_histories_have_no_campaign(
    tmp_path: Path,
) -> None:
    ids = [f"C{i:07d}" for i in range(2000)]
    draws = control_draw(b"k1", ids)
    assert np.array_equal(draws, control_draw(b"k1", ids))
    assert not np.array_equal(draws, control_draw(b"k2", ids))
    assert 0.45 < (draws < 0.5).mean() < 0.55
    assert campaign_day(730) == 730 - BEFORE_END_DAYS
    assert campaign_day(100) is None
    assert generate(tmp_path, customers=100, days=100).campaign_path is None
