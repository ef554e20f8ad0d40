"""Adapters from the real datasets in ../shared/data to the data contract.

Hillstrom's randomised e-mail experiment is also a campaign: `hillstrom` returns,
beside its outcome events and customers, each customer's group, for the
contact log (serving.outreach.contact_log) the CLI writes.

Each adapter reads one dataset's own format and returns an events table in the
contract schema (`EVENTS_SCHEMA`), so that the rest of the project (validation,
features, labels, training) runs on real data unchanged. `ROLES` gives each
dataset's event-type -> role mapping. `write_contract` writes a table as Parquet
atomically, ready for `features.sources.load.load`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_write
from core.config import RolesConfig
from features.columns import (
    AMOUNT,
    AUTO_RENEW,
    BILLING_PERIOD_DAYS,
    CUSTOMER_ID,
    DISCOUNT,
    END_TIME,
    EVENT_TIME,
    EVENT_TYPE,
    PLAN,
    PRICE,
    QUANTITY,
    START_TIME,
)
from features.sources.contract import (
    DAYS_PER_MONTH,
    EVENTS_SCHEMA,
    SUBSCRIPTIONS_SCHEMA,
)

log = logging.getLogger(__name__)

COUNTRY = "country"
CUSTOMERS_SCHEMA = pa.schema([(CUSTOMER_ID, pa.string()), (COUNTRY, pa.string())])

# Event types the adapters emit (dataset vocabulary, mapped to roles by ROLES).
PURCHASE_EVENT = "purchase"
CANCELLATION_EVENT = "cancellation"

CHURNSIM_CANCEL = "cancel"  # the derived row on each churned account's cancel date
CHANNEL = "channel"
DATE_OF_BIRTH = "date_of_birth"
CHURNSIM_CUSTOMERS_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (CHANNEL, pa.string()),
        (COUNTRY, pa.string()),
        (DATE_OF_BIRTH, pa.timestamp("us")),
    ]
)

ROLES: dict[str, RolesConfig] = {
    "cdnow": RolesConfig(purchase=[PURCHASE_EVENT]),
    # A cancellation invoice is a customer-initiated, timestamped event: the
    # service-request stand-in.
    "online_retail": RolesConfig(
        purchase=[PURCHASE_EVENT], service_request=[CANCELLATION_EVENT]
    ),
    # usage only: no purchases or service requests in the simulator's model
    "churnsim": RolesConfig(cancel=[CHURNSIM_CANCEL]),
    # a visit is activity; a conversion is a purchase with the spend as amount
    "hillstrom": RolesConfig(purchase=[PURCHASE_EVENT]),
}

CDNOW_MASTER_HEADER = "customer_id"
CDNOW_MASTER_COLUMNS = ("customer_id", "date", "cds", "dollars")
CDNOW_SAMPLE_COLUMNS = ("master_id", "sample_id", "date", "cds", "dollars")


def _events(frame: pd.DataFrame) -> pa.Table:
    """A frame with the contract columns -> a table in exactly the contract schema."""
    table = pa.Table.from_pandas(
        frame[list(EVENTS_SCHEMA.names)], schema=EVENTS_SCHEMA, preserve_index=False
    )
    return table.replace_schema_metadata(None)


def cdnow(path: Path) -> pa.Table:
    """CDNOW master or sample file -> one `purchase` event per row.

    The file kind is detected from its first line: the master file starts with a
    `customer_id ...` header, the sample has no header and five columns
    (`master_id sample_id date cds dollars`). The customer id is the master id kept
    as text exactly as in the file, zero-padded to five digits (`"00001"`), so one
    customer has the same id in both files. Events are at midnight of the date;
    amount is the dollar value, quantity the number of CDs.
    """
    path = Path(path)
    with path.open() as fh:
        first = fh.readline().split()
    if first and first[0] == CDNOW_MASTER_HEADER:
        names, skip, id_column = CDNOW_MASTER_COLUMNS, 1, "customer_id"
    elif len(first) == len(CDNOW_SAMPLE_COLUMNS):
        names, skip, id_column = CDNOW_SAMPLE_COLUMNS, 0, "master_id"
    else:
        raise ValueError(
            f"{path}: first line {first!r} is neither the CDNOW master header "
            f"nor a five-column CDNOW sample row"
        )
    raw = pd.read_csv(
        path, sep=r"\s+", header=None, skiprows=skip, names=list(names), dtype=str
    )
    frame = pd.DataFrame(
        {
            CUSTOMER_ID: raw[id_column],
            EVENT_TIME: pd.to_datetime(raw["date"], format="%Y%m%d"),
            EVENT_TYPE: PURCHASE_EVENT,
            AMOUNT: raw["dollars"].astype("float64"),
            QUANTITY: raw["cds"].astype("float64"),
        }
    )
    log.info("CDNOW %s: %d purchase events", path.name, len(frame))
    return _events(frame)


def _retail_lines(path: Path, columns: list[str]) -> pd.DataFrame:
    """Online Retail invoice lines with a CustomerID (others cannot be attributed)."""
    lines = pd.read_parquet(path, columns=["CustomerID", *columns])
    missing = int(lines["CustomerID"].isna().sum())
    log.info(
        "Online Retail %s: dropped %d of %d lines without CustomerID",
        Path(path).name,
        missing,
        len(lines),
    )
    lines = lines[lines["CustomerID"].notna()].copy()
    lines[CUSTOMER_ID] = lines["CustomerID"].astype("int64").astype(str)
    return lines


def online_retail(path: Path) -> pa.Table:
    """Online Retail invoice lines -> one event per (customer, invoice).

    An invoice whose number starts with "C" is a `cancellation`, any other a
    `purchase`. event_time is the invoice's earliest line time (the file's naive
    local time, declared UTC); amount is the invoice total sum(Quantity *
    UnitPrice), made positive for cancellations; quantity is sum(|Quantity|).
    """
    lines = _retail_lines(path, ["InvoiceNo", "InvoiceDate", "Quantity", "UnitPrice"])
    lines["_value"] = lines["Quantity"] * lines["UnitPrice"]
    lines["_units"] = lines["Quantity"].abs()
    invoices = lines.groupby([CUSTOMER_ID, "InvoiceNo"], as_index=False).agg(
        **{
            EVENT_TIME: ("InvoiceDate", "min"),
            AMOUNT: ("_value", "sum"),
            QUANTITY: ("_units", "sum"),
        }
    )
    cancelled = invoices["InvoiceNo"].str.startswith("C")
    invoices[EVENT_TYPE] = cancelled.map(
        {True: CANCELLATION_EVENT, False: PURCHASE_EVENT}
    )
    invoices.loc[cancelled, AMOUNT] = invoices.loc[cancelled, AMOUNT].abs()
    invoices = invoices.sort_values([EVENT_TIME, CUSTOMER_ID, "InvoiceNo"])
    log.info(
        "Online Retail %s: %d invoice events (%d cancellations)",
        Path(path).name,
        len(invoices),
        int(cancelled.sum()),
    )
    return _events(invoices)


def online_retail_customers(path: Path) -> pa.Table:
    """Online Retail customers with `country`: their most frequent Country value.

    Counted over invoice lines with a CustomerID. A few customers (8 in the real
    file) have lines in several countries; ties go to the alphabetically first
    country, so the result is deterministic. One row per customer, as the
    contract's customers table requires.
    """
    lines = _retail_lines(path, ["Country"])
    counts = (
        lines.groupby([CUSTOMER_ID, "Country"], as_index=False)
        .size()
        .sort_values([CUSTOMER_ID, "size", "Country"], ascending=[True, False, True])
    )
    top = counts.drop_duplicates(CUSTOMER_ID).rename(columns={"Country": COUNTRY})
    table = pa.Table.from_pandas(
        top[[CUSTOMER_ID, COUNTRY]], schema=CUSTOMERS_SCHEMA, preserve_index=False
    )
    return table.replace_schema_metadata(None)


def churnsim_events(folder: Path) -> pa.Table:
    """ChurnSim `events.parquet` (already in the contract's columns, times in UTC
    with a zone) -> the contract schema, times as UTC without a zone."""
    table = pq.read_table(Path(folder) / "events.parquet")
    return table.select(list(EVENTS_SCHEMA.names)).cast(EVENTS_SCHEMA)


def churnsim_subscriptions(folder: Path) -> pa.Table:
    """ChurnSim `subscriptions.parquet` -> contract subscription terms: product as
    the plan, start/end dates as midnights (UTC), mrr as the price, the billing
    period in months as days (as `features.sources.load` reads months), discount and
    quantity as stored; auto-renew is not recorded (null)."""
    frame = pq.read_table(Path(folder) / "subscriptions.parquet").to_pandas()
    out = pd.DataFrame(
        {
            CUSTOMER_ID: frame[CUSTOMER_ID].astype(str),
            PLAN: frame["product"].astype(str),
            START_TIME: pd.to_datetime(frame["start_date"]),
            END_TIME: pd.to_datetime(frame["end_date"]),
            PRICE: frame["mrr"].astype("float64"),
            BILLING_PERIOD_DAYS: (frame["bill_period_months"] * DAYS_PER_MONTH)
            .round()
            .astype("float64"),
            DISCOUNT: frame["discount"].astype("float64"),
            AUTO_RENEW: pd.Series(None, index=frame.index, dtype="boolean"),
            QUANTITY: frame["quantity"].astype("float64"),
        }
    ).sort_values([CUSTOMER_ID, START_TIME], kind="stable")
    for col in (START_TIME, END_TIME):
        out[col] = out[col].astype("datetime64[us]")
    table = pa.Table.from_pandas(out, schema=SUBSCRIPTIONS_SCHEMA, preserve_index=False)
    return table.replace_schema_metadata(None)


def churnsim_customers(folder: Path) -> pa.Table:
    """ChurnSim `accounts.parquet` -> customers: channel, country, date of birth
    (a timestamp, so the features read it as days since: the age)."""
    frame = pq.read_table(Path(folder) / "accounts.parquet").to_pandas()
    out = pd.DataFrame(
        {
            CUSTOMER_ID: frame[CUSTOMER_ID].astype(str),
            CHANNEL: frame[CHANNEL].astype(str),
            COUNTRY: frame[COUNTRY].astype(object),
            DATE_OF_BIRTH: pd.to_datetime(frame[DATE_OF_BIRTH]).astype(
                "datetime64[us]"
            ),
        }
    )
    table = pa.Table.from_pandas(
        out, schema=CHURNSIM_CUSTOMERS_SCHEMA, preserve_index=False
    )
    return table.replace_schema_metadata(None)


# Hillstrom: the challenge gives no dates. The convention: the e-mails were sent
# (and the campaigns confirmed) at midnight UTC of HILLSTROM_SEND, and each
# outcome of the two tracked weeks is an event one day later.
HILLSTROM_SEND = datetime(2008, 3, 1)
HILLSTROM_OUTCOME_AT = HILLSTROM_SEND + timedelta(days=1)
HILLSTROM_WEEKS = 2
VISIT_EVENT = "visit"
HILLSTROM_CONTROL = "No E-Mail"
# campaign id -> the segment e-mailed; both share the No E-Mail customers as control
HILLSTROM_CAMPAIGNS = {
    "hillstrom-mens": "Mens E-Mail",
    "hillstrom-womens": "Womens E-Mail",
}
HILLSTROM_ATTRIBUTES = (
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
)
HILLSTROM_COLUMNS = (*HILLSTROM_ATTRIBUTES, "segment", "visit", "conversion", "spend")


@dataclass(frozen=True)
class Hillstrom:
    """The experiment in the contract: outcome events, customers (attributes)
    and per campaign id its (customer_id, group) rows."""

    events: pa.Table
    customers: pa.Table
    campaigns: dict[str, list[tuple[str, str]]]


def hillstrom(path: Path) -> Hillstrom:
    """Hillstrom's `hillstrom.csv` -> the contract and two campaigns.

    The customer id is the row number, 1-based in file order, as text. Per
    customer a `visit` event if they visited and a `purchase` event with the
    spend as amount if they converted, both at HILLSTROM_OUTCOME_AT (the send
    date + 1 day). Customers: the pre-send attributes (not the segment, which
    the contact log holds, nor the outcomes). Campaigns: `hillstrom-mens` and
    `hillstrom-womens`, each its e-mailed segment as treatment and the No E-Mail
    customers as control.
    """
    raw = pd.read_csv(path)
    missing = [c for c in HILLSTROM_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected Hillstrom's "
            f"{', '.join(HILLSTROM_COLUMNS)}"
        )
    known = {HILLSTROM_CONTROL, *HILLSTROM_CAMPAIGNS.values()}
    stray = sorted(set(raw["segment"]) - known)
    if stray:
        raise ValueError(f"{path}: column segment: unknown value(s) {stray[:5]}")
    ids = pd.Series(range(1, len(raw) + 1), dtype="int64").astype(str)
    visits = pd.DataFrame(
        {CUSTOMER_ID: ids[raw["visit"] == 1], EVENT_TYPE: VISIT_EVENT, AMOUNT: None}
    )
    bought = raw["conversion"] == 1
    purchases = pd.DataFrame(
        {
            CUSTOMER_ID: ids[bought],
            EVENT_TYPE: PURCHASE_EVENT,
            AMOUNT: raw.loc[bought, "spend"].astype("float64"),
        }
    )
    frame = pd.concat([visits, purchases], ignore_index=True)
    frame[EVENT_TIME] = pd.Timestamp(HILLSTROM_OUTCOME_AT)
    frame[AMOUNT] = frame[AMOUNT].astype("float64")
    frame[QUANTITY] = np.where(frame[EVENT_TYPE] == PURCHASE_EVENT, 1.0, np.nan)
    frame = frame.sort_values([CUSTOMER_ID, EVENT_TYPE], kind="stable")
    customers = raw[list(HILLSTROM_ATTRIBUTES)].copy()
    customers.insert(0, CUSTOMER_ID, ids)
    control = ids[raw["segment"] == HILLSTROM_CONTROL].tolist()
    campaigns = {
        campaign: [(c, "treatment") for c in ids[raw["segment"] == segment]]
        + [(c, "control") for c in control]
        for campaign, segment in HILLSTROM_CAMPAIGNS.items()
    }
    log.info(
        "Hillstrom %s: %d customers, %d visit and %d purchase events",
        Path(path).name,
        len(raw),
        len(visits),
        len(purchases),
    )
    people = pa.Table.from_pandas(customers, preserve_index=False)
    people = people.cast(
        pa.schema(
            (f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
            for f in people.schema
        )
    )
    return Hillstrom(_events(frame), people.replace_schema_metadata(None), campaigns)


def write_contract(table: pa.Table, out: Path) -> Path:
    """Write `table` to Parquet at `out` atomically; creates the folder.

    The data goes to a hidden temp file in the same folder (skipped by
    `features.sources.contract.list_files`), then `core.atomic.atomic_write`
    renames it over `out`, so a reader never sees a half-written file.
    """
    out = Path(out)
    atomic_write(out, lambda tmp: pq.write_table(table, tmp))
    log.info("wrote %d rows to %s", table.num_rows, out)
    return out


__all__ = [
    "CANCELLATION_EVENT",
    "COUNTRY",
    "CUSTOMERS_SCHEMA",
    "EVENTS_SCHEMA",
    "HILLSTROM_SEND",
    "PURCHASE_EVENT",
    "VISIT_EVENT",
    "ROLES",
    "cdnow",
    "churnsim_customers",
    "churnsim_events",
    "churnsim_subscriptions",
    "hillstrom",
    "online_retail",
    "online_retail_customers",
    "write_contract",
]
