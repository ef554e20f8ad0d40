"""Tests of the synthetic data generator: contract, determinism, calibration
and the behavioural structure models are expected to find."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.columns import (
    AMOUNT,
    CUSTOMER_ID,
    EVENT_TIME,
    EVENT_TYPE,
    QUANTITY,
    SIGNUP_TIME,
)
from features.synthetic.demo import (
    DEFAULT_EVENT_TYPES,
    EVENT_TYPES,
    DemoSummary,
    generate,
)

START = datetime(2024, 1, 1)
DAYS = 730


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate(tmp_path_factory.mktemp("small"), customers=800, seed=7)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate(tmp_path_factory.mktemp("large"), customers=3000, seed=11)


@pytest.fixture(scope="module")
def large_events(large: DemoSummary) -> pd.DataFrame:
    return pq.read_table(large.events_path).to_pandas()


def test_schemas_exactly(small: DemoSummary) -> None:
    events = pq.read_table(small.events_path)
    assert events.schema.equals(
        pa.schema(
            [
                (CUSTOMER_ID, pa.string()),
                (EVENT_TIME, pa.timestamp("us")),
                (EVENT_TYPE, pa.string()),
                (AMOUNT, pa.float64()),
                (QUANTITY, pa.float64()),
            ]
        )
    )
    customers = pq.read_table(small.customers_path)
    assert customers.column_names == [CUSTOMER_ID, SIGNUP_TIME, "plan", "region", "age"]
    assert customers.schema.field(SIGNUP_TIME).type == pa.timestamp("us")
    assert customers.schema.field("age").type == pa.float64()
    assert len(customers) == small.customers == 800
    assert len(events) == small.events
    ids = customers.column(CUSTOMER_ID).to_pylist()
    assert ids[:2] == ["C0000000", "C0000001"] and ids == sorted(ids)
    assert set(customers.column("plan").to_pylist()) == {"basic", "plus", "pro"}
    assert 0.01 < customers.column("age").null_count / len(customers) < 0.1


def test_event_values(small: DemoSummary) -> None:
    ev = pq.read_table(small.events_path).to_pandas()
    assert set(ev[EVENT_TYPE]) == set(EVENT_TYPES)
    buy = ev[EVENT_TYPE] == "purchase"
    assert ev.loc[buy, AMOUNT].notna().all() and (ev.loc[buy, AMOUNT] > 0).all()
    assert ev.loc[~buy, AMOUNT].isna().all()
    qty = ev.loc[buy, QUANTITY]
    assert qty.notna().all() and (qty >= 1).all() and (qty == qty.round()).all()
    assert ev.loc[~buy, QUANTITY].isna().all()
    t = ev[EVENT_TIME]
    assert t.min() >= pd.Timestamp(START)
    assert t.max() < pd.Timestamp(START + timedelta(days=DAYS))
    assert (t.dt.microsecond == 0).all() and (t.dt.nanosecond == 0).all()
    assert t.dt.hour.nunique() == 24  # random time of day


def test_each_row_group_sorted_by_time(small: DemoSummary) -> None:
    pf = pq.ParquetFile(small.events_path)
    for i in range(pf.num_row_groups):
        t = pf.read_row_group(i, columns=[EVENT_TIME]).column(0).to_numpy()
        assert (np.diff(t.astype("int64")) >= 0).all()


def test_no_events_before_signup_or_after_cancel(large: DemoSummary) -> None:
    ev = pq.read_table(large.events_path).to_pandas()
    cu = pq.read_table(large.customers_path).to_pandas()
    merged = ev.merge(cu[[CUSTOMER_ID, SIGNUP_TIME]], on=CUSTOMER_ID)
    assert len(merged) == len(ev)
    assert (merged[EVENT_TIME] >= merged[SIGNUP_TIME]).all()
    cancels = ev[ev[EVENT_TYPE] == "cancel"]
    assert not cancels[CUSTOMER_ID].duplicated().any()
    cancel_time = cancels.set_index(CUSTOMER_ID)[EVENT_TIME]
    after = ev[CUSTOMER_ID].map(cancel_time)
    assert len(cancels) > 0
    assert not (ev[EVENT_TIME] > after).any()
    # Signups are staggered: ~40% before start, the rest spread over the period.
    before = (cu[SIGNUP_TIME] < pd.Timestamp(START)).mean()
    assert 0.35 < before < 0.45
    assert cu[SIGNUP_TIME].min() >= pd.Timestamp(START - timedelta(days=365))


def test_same_seed_same_data_other_seed_differs(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", customers=300, seed=3, days=120)
    b = generate(tmp_path / "b", customers=300, seed=3, days=120)
    c = generate(tmp_path / "c", customers=300, seed=4, days=120)
    assert pq.read_table(a.events_path).equals(pq.read_table(b.events_path))
    assert pq.read_table(a.customers_path).equals(pq.read_table(b.customers_path))
    assert not pq.read_table(a.events_path).equals(pq.read_table(c.events_path))
    assert not pq.read_table(a.customers_path).equals(pq.read_table(c.customers_path))
    assert a.end == datetime(2024, 4, 30)


def test_written_atomically_without_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    summary = generate(out, customers=200, days=60)
    assert sorted(p.name for p in out.iterdir()) == [
        "customers.parquet",
        "events.parquet",
    ]
    assert summary.events_path == out / "events.parquet"
    assert summary.customers_path == out / "customers.parquet"
    # Rewriting replaces the files in place, still without temp files.
    generate(out, customers=100, days=60)
    assert len(list(out.iterdir())) == 2
    assert len(pq.read_table(out / "customers.parquet")) == 100


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, customers=0)


def test_calibration(large: DemoSummary, large_events: pd.DataFrame) -> None:
    ev = large_events
    assert 70 <= large.events / large.customers <= 130
    share = ev[EVENT_TYPE].value_counts(normalize=True)
    assert 0.10 <= share["purchase"] <= 0.20
    assert 0.01 <= share["support_ticket"] <= 0.03
    assert share["product_issue"] < share["support_ticket"]
    # Churned: silent for the last 60 days, or cancelled explicitly.
    end = pd.Timestamp(large.end)
    last = ev.groupby(CUSTOMER_ID)[EVENT_TIME].max()
    cancelled = last.index.isin(ev.loc[ev[EVENT_TYPE] == "cancel", CUSTOMER_ID])
    churned = (last < end - pd.Timedelta(days=60)) | cancelled
    assert 0.10 <= churned.mean() <= 0.50
    # About half the churners cancel explicitly.
    assert 0.25 <= cancelled.sum() / churned.sum() <= 0.75


def test_weekends_busier(large_events: pd.DataFrame) -> None:
    dow = large_events[EVENT_TIME].dt.day_of_week
    per_weekend_day = (dow >= 5).sum() / 2
    per_weekday = (dow < 5).sum() / 5
    assert per_weekend_day > 1.15 * per_weekday


def test_plan_drives_engagement_and_spend(
    large: DemoSummary, large_events: pd.DataFrame
) -> None:
    cu = pq.read_table(large.customers_path).to_pandas().set_index(CUSTOMER_ID)
    ev = large_events.join(cu["plan"], on=CUSTOMER_ID)
    per_customer = ev.groupby("plan").size() / cu["plan"].value_counts()
    assert per_customer["pro"] > per_customer["plus"] > per_customer["basic"]
    spend = ev[ev[EVENT_TYPE] == "purchase"].groupby("plan")[AMOUNT].mean()
    assert spend["pro"] > spend["plus"] > spend["basic"]


def test_tickets_precede_churn(large_events: pd.DataFrame) -> None:
    ev = large_events
    cutoff = pd.Timestamp(START + timedelta(days=365))
    window = ev[
        (ev[EVENT_TIME] >= cutoff - pd.Timedelta(days=30)) & (ev[EVENT_TIME] < cutoff)
    ]
    nxt = ev[
        (ev[EVENT_TIME] >= cutoff) & (ev[EVENT_TIME] < cutoff + pd.Timedelta(days=30))
    ]
    active = pd.Index(window[CUSTOMER_ID].unique())
    ticket = active.isin(
        window.loc[window[EVENT_TYPE] == "support_ticket", CUSTOMER_ID]
    )
    silent = ~active.isin(nxt[CUSTOMER_ID])
    assert ticket.sum() >= 50 and (~ticket).sum() >= 500
    assert silent[ticket].mean() > 1.5 * silent[~ticket].mean()


def test_issues_trigger_tickets(large_events: pd.DataFrame) -> None:
    """Tickets cluster in the 14 days after a product issue."""
    ev = large_events.sort_values(EVENT_TIME)
    issues = ev[ev[EVENT_TYPE] == "product_issue"][[CUSTOMER_ID, EVENT_TIME]]
    tickets = ev[ev[EVENT_TYPE] == "support_ticket"][[CUSTOMER_ID, EVENT_TIME]]
    prev = pd.merge_asof(
        tickets.rename(columns={EVENT_TIME: "t"}),
        issues.rename(columns={EVENT_TIME: "issue"}),
        left_on="t",
        right_on="issue",
        by=CUSTOMER_ID,
    )
    recent = (prev["t"] - prev["issue"]) <= pd.Timedelta(days=14)
    # Without the link, tickets would fall in the 14 days after an issue about
    # as often as those days occur in customers' lifetimes.
    span = ev.groupby(CUSTOMER_ID)[EVENT_TIME].agg(lambda t: t.max() - t.min())
    baseline = 14 * len(issues) / (span.dt.days + 1).sum()
    assert baseline < 0.05
    assert recent.mean() > 4 * baseline


def test_purchases_follow_activity(large_events: pd.DataFrame) -> None:
    ev = large_events
    counts = ev.groupby([CUSTOMER_ID, EVENT_TYPE]).size().unstack(fill_value=0)
    activity = counts["login"] + counts["page_view"]
    assert np.corrcoef(counts["purchase"], activity)[0, 1] > 0.5
    # Also as daily rates, so the shared exposure time alone cannot explain it.
    t = ev.groupby(CUSTOMER_ID)[EVENT_TIME]
    days = (t.max() - t.min()).dt.days + 1
    long = days >= 60
    rates = np.corrcoef(
        counts["purchase"][long] / days[long], activity[long] / days[long]
    )
    assert rates[0, 1] > 0.5


def test_default_event_types_cover_generated_types() -> None:
    mapped = {t for types in DEFAULT_EVENT_TYPES.values() for t in types}
    assert mapped == {"purchase", "support_ticket", "cancel"}
    assert mapped <= set(EVENT_TYPES)
