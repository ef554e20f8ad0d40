"""Adapters on tiny literal inputs: exact output rows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.columns import AMOUNT, CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, QUANTITY
from features.sources.adapters import (
    EVENTS_SCHEMA,
    cdnow,
    online_retail,
    online_retail_customers,
    write_contract,
)

# Same layout as the real files: leading blanks, runs of spaces, CRLF line ends.
MASTER = (
    " customer_id  date number_of_cds  dollar_value\r\n"
    " 00001 19970101  1   11.77\r\n"
    " 00004 19970118  2   29.73\r\n"
)
SAMPLE = " 00004 0001 19970118  2   29.73\r\n 00004 0001 19970802  1   14.96\r\n"


def test_cdnow_master_and_sample_rows(tmp_path: Path) -> None:
    (tmp_path / "master.txt").write_text(MASTER, newline="")
    (tmp_path / "sample.txt").write_text(SAMPLE, newline="")

    master = cdnow(tmp_path / "master.txt")
    sample = cdnow(tmp_path / "sample.txt")

    assert master.schema == EVENTS_SCHEMA
    assert sample.schema == EVENTS_SCHEMA
    assert master.to_pylist() == [
        {
            CUSTOMER_ID: "00001",
            EVENT_TIME: datetime(1997, 1, 1),
            EVENT_TYPE: "purchase",
            AMOUNT: 11.77,
            QUANTITY: 1.0,
        },
        {
            CUSTOMER_ID: "00004",
            EVENT_TIME: datetime(1997, 1, 18),
            EVENT_TYPE: "purchase",
            AMOUNT: 29.73,
            QUANTITY: 2.0,
        },
    ]
    # The sample's id is the master id, so the shared row is identical.
    assert sample.to_pylist() == [
        master.to_pylist()[1],
        {
            CUSTOMER_ID: "00004",
            EVENT_TIME: datetime(1997, 8, 2),
            EVENT_TYPE: "purchase",
            AMOUNT: 14.96,
            QUANTITY: 1.0,
        },
    ]


def test_online_retail_one_event_per_invoice(tmp_path: Path) -> None:
    lines = pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "C536379", "536370"],
            "StockCode": ["85123A", "71053", "85123A", "22728"],
            "Description": ["HEART", "LANTERN", "HEART", "ALARM CLOCK"],
            "Quantity": [6.0, 2.0, -3.0, 24.0],
            "InvoiceDate": pd.to_datetime(
                [
                    "2010-12-01 08:26",
                    "2010-12-01 08:27",
                    "2010-12-01 09:41",
                    "2010-12-01 08:45",
                ]
            ).astype("datetime64[us]"),
            "UnitPrice": [2.55, 3.39, 2.55, 3.75],
            "CustomerID": [17850.0, 17850.0, 17850.0, None],
            "Country": ["United Kingdom", "United Kingdom", "France", "France"],
        }
    )
    path = tmp_path / "online_retail.parquet"
    lines.to_parquet(path, index=False)

    events = online_retail(path)

    assert events.schema == EVENTS_SCHEMA
    rows = events.to_pylist()
    assert [
        (r[CUSTOMER_ID], r[EVENT_TIME], r[EVENT_TYPE], r[QUANTITY]) for r in rows
    ] == [
        ("17850", datetime(2010, 12, 1, 8, 26), "purchase", 8.0),
        ("17850", datetime(2010, 12, 1, 9, 41), "cancellation", 3.0),
    ]
    assert [r[AMOUNT] for r in rows] == pytest.approx([6 * 2.55 + 2 * 3.39, 3 * 2.55])
    # Two UK lines beat one French line; the line without a customer is dropped.
    assert online_retail_customers(path).to_pylist() == [
        {CUSTOMER_ID: "17850", "country": "United Kingdom"}
    ]


def test_write_contract_is_atomic_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "master.txt").write_text(MASTER, newline="")
    table = cdnow(tmp_path / "master.txt")
    out = tmp_path / "nested" / "events.parquet"

    assert write_contract(table, out) == out
    assert write_contract(table.slice(0, 1), out) == out  # replaces in place

    assert pq.read_table(out).equals(table.slice(0, 1))
    assert sorted(p.name for p in out.parent.iterdir()) == ["events.parquet"]


HILLSTROM_CSV = (
    "recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,"
    "visit,conversion,spend\n"
    "10,2) $100 - $200,142.44,1,0,Surburban,0,Phone,Womens E-Mail,0,0,0\n"
    "6,3) $200 - $350,329.08,1,1,Rural,1,Web,No E-Mail,1,0,0\n"
    "7,2) $100 - $200,180.65,0,1,Surburban,1,Web,Mens E-Mail,1,1,29.99\n"
)


def test_hillstrom_rows_events_and_campaigns(tmp_path: Path) -> None:
    from features.sources.adapters import hillstrom

    (tmp_path / "h.csv").write_text(HILLSTROM_CSV)
    found = hillstrom(tmp_path / "h.csv")
    day = datetime(2008, 3, 2)  # the send date + 1 day
    assert found.events.schema == EVENTS_SCHEMA
    assert sorted(found.events.to_pylist(), key=lambda r: r[EVENT_TYPE]) == [
        {
            CUSTOMER_ID: "3",
            EVENT_TIME: day,
            EVENT_TYPE: "purchase",
            AMOUNT: 29.99,
            QUANTITY: 1.0,
        },
        {
            CUSTOMER_ID: "2",
            EVENT_TIME: day,
            EVENT_TYPE: "visit",
            AMOUNT: None,
            QUANTITY: None,
        },
        {
            CUSTOMER_ID: "3",
            EVENT_TIME: day,
            EVENT_TYPE: "visit",
            AMOUNT: None,
            QUANTITY: None,
        },
    ]
    assert found.customers.column_names == [
        CUSTOMER_ID,
        "recency",
        "history_segment",
        "history",
        "mens",
        "womens",
        "zip_code",
        "newbie",
        "channel",
    ]
    assert found.campaigns == {
        "hillstrom-mens": [("3", "treatment"), ("2", "control")],
        "hillstrom-womens": [("1", "treatment"), ("2", "control")],
    }
    (tmp_path / "bad.csv").write_text(HILLSTROM_CSV.replace("segment", "group"))
    with pytest.raises(ValueError, match="bad.csv: missing column.*segment"):
        hillstrom(tmp_path / "bad.csv")
