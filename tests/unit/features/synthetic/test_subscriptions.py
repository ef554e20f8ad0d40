"""The demo generator's subscriptions: a valid contract table whose churn happens
at term ends, driven by usage and service problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.columns import (
    BILLING_PERIOD_DAYS,
    CUSTOMER_ID,
    DISCOUNT,
    END_TIME,
    EVENT_TIME,
    EVENT_TYPE,
    PLAN,
    PRICE,
    START_TIME,
)
from features.sources.contract import SUBSCRIPTIONS_SCHEMA
from features.sources.load import load
from features.synthetic.demo import DemoSummary, generate

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate(
        tmp_path_factory.mktemp("subs"), customers=3000, seed=5, subscriptions=True
    )


@pytest.fixture(scope="module")
def terms(demo: DemoSummary) -> pd.DataFrame:
    return pq.read_table(demo.subscriptions_path).to_pandas()


@pytest.fixture(scope="module")
def events(demo: DemoSummary) -> pd.DataFrame:
    return pq.read_table(demo.events_path).to_pandas()


def test_without_subscriptions_nothing_changes(tmp_path: Path) -> None:
    plain = generate(tmp_path / "a", customers=300, seed=1, days=120)
    again = generate(tmp_path / "b", customers=300, seed=1, days=120)
    assert plain.subscriptions_path is None
    assert not (tmp_path / "a" / "subscriptions.parquet").exists()
    assert pq.read_table(plain.events_path).equals(pq.read_table(again.events_path))


def test_terms_follow_the_contract_and_load(demo: DemoSummary) -> None:
    table = pq.read_table(demo.subscriptions_path)
    assert table.schema.equals(SUBSCRIPTIONS_SCHEMA)
    ds = load(demo.events_path, subscriptions=demo.subscriptions_path)  # validated
    assert ds.subscriptions.count().execute() == table.num_rows


def test_plans_periods_discounts_and_changes(terms: pd.DataFrame) -> None:
    assert set(terms[BILLING_PERIOD_DAYS]) == {30.0, 365.0}
    assert (terms[DISCOUNT] > 0).mean() > 0.02
    ordered = terms.sort_values([CUSTOMER_ID, START_TIME])
    previous = ordered.groupby(CUSTOMER_ID)
    changed = ordered[PLAN] != previous[PLAN].shift()
    contiguous = ordered[START_TIME] == previous[END_TIME].shift()
    daily = ordered[PRICE] / ordered[BILLING_PERIOD_DAYS]
    before = previous[PRICE].shift() / previous[BILLING_PERIOD_DAYS].shift()
    assert (contiguous & changed & (daily > before)).sum() > 20  # upgrades
    assert (contiguous & changed & (daily < before)).sum() > 20  # downgrades
    assert (contiguous & ~changed).sum() > 10 * (contiguous & changed).sum()


def _churned(demo: DemoSummary, terms: pd.DataFrame) -> pd.DataFrame:
    """Each customer's last term, with whether it ended within the simulation."""
    last = terms.sort_values(START_TIME).groupby(CUSTOMER_ID).tail(1)
    return last.assign(churned=last[END_TIME] < pd.Timestamp(demo.end))


def test_churn_mostly_at_term_end(
    demo: DemoSummary, terms: pd.DataFrame, events: pd.DataFrame
) -> None:
    last = _churned(demo, terms)
    churned = last[last.churned].set_index(CUSTOMER_ID)
    assert 0.05 < len(churned) / len(last) < 0.6
    last_use = events[events[EVENT_TYPE] != "cancel"].groupby(CUSTOMER_ID)[EVENT_TIME]
    quiet = churned[END_TIME] - last_use.max().reindex(churned.index)
    # mid-term cancellers stop using the product long before the paid-up end
    early = (quiet > 45 * DAY).mean()
    assert early < 0.35
    assert (quiet.dropna() >= pd.Timedelta(0)).all()  # no use after the end


def test_usage_and_problems_drive_term_end_churn(
    demo: DemoSummary, terms: pd.DataFrame, events: pd.DataFrame
) -> None:
    """Over the 60 days before a term ends (within the simulation, a year after its
    start), customers who then leave used the product less and filed more tickets
    per use than those who renewed."""
    ended = terms[
        (terms[END_TIME] < pd.Timestamp(demo.end))
        & (terms[END_TIME] >= pd.Timestamp(demo.start) + 365 * DAY)
    ]
    starts = set(zip(terms[CUSTOMER_ID], terms[START_TIME], strict=True))
    left = [
        (c, e) not in starts
        for c, e in zip(ended[CUSTOMER_ID], ended[END_TIME], strict=True)
    ]
    ended = ended.assign(left=left, term=np.arange(len(ended)))
    joined = events.merge(ended[[CUSTOMER_ID, END_TIME, "term"]], on=CUSTOMER_ID)
    t, end = joined[EVENT_TIME], joined[END_TIME]
    joined = joined[(t < end) & (t >= end - 60 * DAY)]
    kind = joined[EVENT_TYPE]
    counts = pd.DataFrame(
        {
            "usage": joined[kind.isin(["login", "page_view"])].groupby("term").size(),
            "tickets": joined[kind == "support_ticket"].groupby("term").size(),
        }
    )
    frame = ended.set_index("term").join(counts).fillna({"usage": 0, "tickets": 0})
    leave, stay = frame[frame.left], frame[~frame.left]
    assert len(leave) > 50 and len(stay) > 500
    assert leave.usage.mean() < 0.75 * stay.usage.mean()
    assert leave.tickets.sum() / leave.usage.sum() > (
        stay.tickets.sum() / stay.usage.sum()
    )
