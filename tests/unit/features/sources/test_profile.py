"""Profiling a new log in its own column names, and the mapping and roles proposed
from its names, types and frequencies (`propensity init`)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.sources.contract import ContractError
from features.sources.profile import (
    Column,
    EventType,
    fairness_segments,
    profile_events,
    propose_events_columns,
    propose_roles,
    propose_subscriptions_columns,
)


def purchases_csv(
    path: Path, households: int = 40, days: int = 200, missing_ids: int = 0
) -> Path:
    """A purchases table as a retailer exports it: no event type, its own names,
    a store id beside the household id, the last purchase at 23:56."""
    rng = np.random.default_rng(0)
    n = households * 10
    start = pd.Timestamp("2017-01-01")
    frame = pd.DataFrame(
        {
            "store_id": rng.integers(1, 30, n),
            "household_id": rng.integers(1, households + 1, n),
            "day": start + pd.to_timedelta(rng.integers(0, days - 1, n), unit="D"),
            "sales_value": rng.gamma(2, 10, n).round(2),
            "units": rng.integers(1, 5, n),
            "basket_id": rng.integers(10**6, 10**7, n),
        }
    )
    last = start + pd.Timedelta(days=days - 1, hours=23, minutes=56)
    frame.loc[len(frame)] = [3, 1, last, 9.99, 1, 1]
    if missing_ids:
        frame["household_id"] = frame["household_id"].astype("Int64")
        frame.loc[: missing_ids - 1, "household_id"] = pd.NA
    frame.to_csv(path, index=False)
    return path


def test_a_purchases_table_without_event_type_is_mapped_by_its_own_names(
    tmp_path: Path,
) -> None:
    events = purchases_csv(tmp_path / "transactions.csv")
    profile = profile_events(events)
    assert profile.mapping.columns == {
        "customer_id": "household_id",  # not store_id, not basket_id
        "event_time": "day",
        "amount": "sales_value",
        "quantity": "units",
    }
    assert profile.mapping.constant_event_type == "purchase"
    assert profile.rows == 401
    assert profile.customers == 40
    assert profile.first.date() == date(2017, 1, 1)
    # the last event at 23:56: that whole day is in the data
    assert profile.last == datetime(2017, 7, 19, 23, 56)
    assert profile.last_complete_day == date(2017, 7, 19)
    assert profile.data_end == datetime(2017, 7, 20)
    assert [(t.name, t.events) for t in profile.event_types] == [("purchase", 401)]
    assert profile.amount_columns == ["sales_value"]
    assert profile.quantity_columns == ["units"]
    text = profile.text()
    assert "customer_id <- household_id" in text
    assert "no event-type column: every row is 'purchase'" in text


def test_rows_the_contract_refuses_are_counted_and_named(tmp_path: Path) -> None:
    """Exports often hold rows without a customer (Online Retail: a quarter)."""
    profile = profile_events(purchases_csv(tmp_path / "sales.csv", missing_ids=40))
    assert profile.missing_ids == 40 and profile.bad_times == 0
    assert (
        "warning: household_id is empty in 40 rows (10.0%): the data contract "
        "refuses them" in profile.text()
    )


def test_a_table_without_amounts_or_a_purchase_name_is_generic_events(
    tmp_path: Path,
) -> None:
    columns = [Column("user_id", "VARCHAR"), Column("logged_at", "TIMESTAMP")]
    mapping = propose_events_columns(columns, tmp_path / "logins.csv")
    assert mapping.columns == {"customer_id": "user_id", "event_time": "logged_at"}
    assert mapping.constant_event_type == "event"


def test_no_id_column_is_an_error_naming_the_columns(tmp_path: Path) -> None:
    columns = [Column("store_id", "BIGINT"), Column("day", "DATE")]
    with pytest.raises(
        ContractError, match="found no customer id column .* among: store_id"
    ):
        propose_events_columns(columns, tmp_path / "x.csv")


def tickets_log(path: Path) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for c in range(60):
        for k in range(int(rng.integers(5, 30))):
            kind = rng.choice(["login", "order_placed", "support_ticket", "close_tab"])
            rows.append((f"C{c}", f"2024-0{1 + k % 6}-{1 + k % 27:02d} 10:00", kind))
        if c % 10 == 0:
            rows.append((f"C{c}", "2024-06-28 09:00", "account_cancelled"))
    frame = pd.DataFrame(rows, columns=["customer_id", "event_time", "event_type"])
    frame.to_parquet(path)
    return path


def test_roles_come_from_the_type_names_and_their_frequencies(tmp_path: Path) -> None:
    profile = profile_events(tickets_log(tmp_path / "events.parquet"))
    assert profile.mapping.columns == {
        "customer_id": "customer_id",
        "event_time": "event_time",
        "event_type": "event_type",
    }
    assert profile.mapping.renamed() == {}
    assert profile.mapping.constant_event_type is None
    counts = {t.name: t for t in profile.event_types}
    assert counts["account_cancelled"].events == 6
    assert counts["account_cancelled"].per_customer == 1
    proposal = propose_roles(profile.event_types)
    assert proposal.roles == {
        "purchase": ["order_placed"],
        "service_request": ["support_ticket"],
        # close_tab sounds like a cancel, but customers close tabs often
        "cancel": ["account_cancelled"],
    }
    assert any("'close_tab'" in note for note in proposal.notes)


def test_a_cancel_like_type_seen_once_per_customer_is_a_cancel() -> None:
    types = [
        EventType("unsubscribe", 50, 50),
        EventType("phone_call", 10, 9),
        EventType("order_cancelled", 40, 35),
    ]
    proposal = propose_roles(types)
    assert proposal.roles == {
        "purchase": [],
        "service_request": ["phone_call"],
        "cancel": ["unsubscribe"],
    }
    assert proposal.notes == [
        "'order_cancelled' sounds like a cancelled order, not a customer leaving: "
        "left as activity"
    ]


def test_customers_attributes_become_segments_only_when_categorical(
    tmp_path: Path,
) -> None:
    events = purchases_csv(tmp_path / "orders.csv")
    customers = tmp_path / "households.parquet"
    pd.DataFrame(
        {
            "household_id": range(1, 41),
            "income_band": ["low", "mid", "high", "mid"] * 10,
            "age": np.arange(40) + 20,
            "postcode": [f"P{i}" for i in range(40)],
        }
    ).to_parquet(customers)
    profile = profile_events(events, customers)
    table = profile.customers_table
    assert table is not None and table.mapping == {"customer_id": "household_id"}
    # age is numeric (needs bands), postcode has 40 values
    assert fairness_segments(table) == ["income_band"]
    assert fairness_segments(None) == []


def test_billing_exports_map_to_the_subscription_contract(tmp_path: Path) -> None:
    columns = [
        Column("account_id", "VARCHAR"),
        Column("product", "VARCHAR"),
        Column("start_date", "DATE"),
        Column("end_date", "DATE"),
        Column("mrr", "DOUBLE"),
        Column("bill_period_months", "INTEGER"),
    ]
    mapping = propose_subscriptions_columns(columns, "account_id", tmp_path / "s")
    assert mapping == {
        "customer_id": "account_id",
        "plan": "product",
        "start_time": "start_date",
        "end_time": "end_date",
        "mrr": "mrr",
        "billing_period_months": "bill_period_months",
    }


def test_several_sources_are_profiled_as_one_log_each_with_its_own_mapping(
    tmp_path: Path,
) -> None:
    """A sales export and a tickets export in their own names: one log, each
    source mapped on its own, the ticket file's rows typed by its name."""
    sales = purchases_csv(tmp_path / "sales.csv")
    tickets = pd.DataFrame(
        {
            "HouseholdID": [1, 2, 2, 41],
            "OpenedAt": pd.to_datetime(
                ["2017-02-01", "2017-03-01", "2017-03-02", "2017-08-01 10:00"],
                format="ISO8601",
            ),
            "Channel": ["phone", "mail", "phone", "chat"],
        }
    )
    tickets.to_parquet(tmp_path / "support_tickets.parquet")
    profile = profile_events([sales, tmp_path / "support_tickets.parquet"])
    first, second = profile.sources
    assert first.mapping.constant_event_type == "purchase"
    # a channel is no event type: the file's name types its rows, and proposes
    # the service-request role
    assert second.mapping.columns == {
        "customer_id": "HouseholdID",
        "event_time": "OpenedAt",
    }
    assert second.mapping.constant_event_type == "support_tickets"
    roles = propose_roles(profile.event_types).roles
    assert roles["service_request"] == ["support_tickets"]
    assert (first.rows, second.rows) == (401, 4)
    assert profile.rows == 405
    # household 41 is only in the tickets: the log's customers are the union
    assert profile.customers == 41
    assert profile.last == datetime(2017, 8, 1, 10, 0)
    assert "the log, rows 405, customers 41" in profile.text()


def test_a_count_of_things_is_a_quantity(tmp_path: Path) -> None:
    """CDNOW's own header: customer_id date number_of_cds dollar_value."""
    columns = [
        Column("customer_id", "VARCHAR"),
        Column("date", "DATE"),
        Column("number_of_cds", "BIGINT"),
        Column("dollar_value", "DOUBLE"),
    ]
    mapping = propose_events_columns(columns, tmp_path / "cdnow_orders.csv")
    assert mapping.columns == {
        "customer_id": "customer_id",
        "event_time": "date",
        "amount": "dollar_value",
        "quantity": "number_of_cds",
    }
    assert mapping.constant_event_type == "purchase"
