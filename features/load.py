"""Loading: validate the contract, then expose events and customers as Ibis tables.

The tables are DuckDB views over the files with types normalised to the contract
(string ids, UTC timestamps without zone truncated to whole seconds, float
amounts), so nothing is copied and files of any size stream through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import ibis

from features.columns import (
    AMOUNT,
    CUSTOMER_ID,
    EVENT_TIME,
    EVENT_TYPE,
    QUANTITY,
)
from features.contract import (
    ContractError,
    Problem,
    ensure,
    file_format,
    list_files,
    number_sql,
    timestamp_sql,
    validate_customers_file,
    validate_events_file,
)

log = logging.getLogger(__name__)

EVENTS_VIEW = "events"
CUSTOMERS_VIEW = "customers"


@dataclass
class Dataset:
    """Validated events (and customers) on one DuckDB connection, as Ibis tables."""

    con: ibis.BaseBackend
    events: ibis.Table
    customers: ibis.Table | None
    events_files: list[Path]
    customers_files: list[Path]
    _range: tuple[datetime, datetime] | None = field(default=None, repr=False)

    @property
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        return self.con.con

    def time_range(self) -> tuple[datetime, datetime]:
        """First and last event time (one scan, then remembered: the files were
        validated and do not change under a Dataset)."""
        if self._range is None:
            row = self.duckdb.execute(
                f"SELECT min({EVENT_TIME}), max({EVENT_TIME}) FROM {EVENTS_VIEW}"
            ).fetchall()[0]
            self._range = (row[0], row[1])
        return self._range

    def fingerprint(self) -> dict[str, str | int]:
        """A content fingerprint of the events: rows, time range, order-free hash."""
        rows, digest = self.duckdb.execute(
            f"SELECT count(*), sum(hash({CUSTOMER_ID}, {EVENT_TIME}, {EVENT_TYPE}, "
            f"{AMOUNT}, {QUANTITY})) FROM {EVENTS_VIEW}"
        ).fetchall()[0]
        first, last = self.time_range()
        return {
            "rows": int(rows),
            "first_event": str(first),
            "last_event": str(last),
            "hash": f"{int(digest or 0) % 2**64:016x}",
        }


def connect(
    memory_limit: str | None = None, threads: int | None = None
) -> ibis.BaseBackend:
    """A DuckDB connection in UTC, wrapped for Ibis."""
    raw = duckdb.connect()
    raw.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        raw.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        raw.execute(f"SET threads = {int(threads)}")
    return ibis.duckdb.from_connection(raw)


def _union_sql(files: list[Path], fmt: str, typed: bool) -> str:
    paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    if fmt == "parquet":
        return f"read_parquet([{paths}], union_by_name = true)"
    kind = "auto_detect = true" if typed else "all_varchar = true"
    return f"read_csv([{paths}], header = true, union_by_name = true, {kind})"


def _events_view_sql(files: list[Path], fmt: str, types: dict[str, str]) -> str:
    """Normalising view; columns already of the contract's type are passed through
    (a text-to-timestamp round trip costs seconds per 20M rows)."""

    def optional(col: str) -> str:
        if col not in types:
            return "CAST(NULL AS DOUBLE)"
        return col if types[col] == "DOUBLE" else number_sql(col)

    def text(col: str) -> str:
        return col if types[col] == "VARCHAR" else f"CAST({col} AS VARCHAR)"

    stamp = {
        "TIMESTAMP": EVENT_TIME,
        "TIMESTAMP_NS": f"CAST({EVENT_TIME} AS TIMESTAMP)",
        "TIMESTAMP_MS": f"CAST({EVENT_TIME} AS TIMESTAMP)",
        "TIMESTAMP_S": f"CAST({EVENT_TIME} AS TIMESTAMP)",
        "TIMESTAMP WITH TIME ZONE": f"CAST({EVENT_TIME} AS TIMESTAMP)",
    }.get(types[EVENT_TIME], timestamp_sql(EVENT_TIME))
    return (
        f"CREATE OR REPLACE VIEW {EVENTS_VIEW} AS SELECT "
        f"TRIM({text(CUSTOMER_ID)}) AS {CUSTOMER_ID}, "
        f"date_trunc('second', {stamp}) AS {EVENT_TIME}, "
        f"TRIM({text(EVENT_TYPE)}) AS {EVENT_TYPE}, "
        f"{optional(AMOUNT)} AS {AMOUNT}, {optional(QUANTITY)} AS {QUANTITY} "
        f"FROM {_union_sql(files, fmt, typed=False)}"
    )


def _column_types(
    con: duckdb.DuckDBPyConnection, files: list[Path], fmt: str
) -> dict[str, str]:
    rel = con.sql(f"SELECT * FROM {_union_sql(files, fmt, typed=False)} LIMIT 0")
    return {
        name: str(dtype) for name, dtype in zip(rel.columns, rel.types, strict=True)
    }


def _customers_view_sql(files: list[Path], fmt: str) -> str:
    return (
        f"CREATE OR REPLACE VIEW {CUSTOMERS_VIEW} AS SELECT * REPLACE "
        f"(TRIM(CAST({CUSTOMER_ID} AS VARCHAR)) AS {CUSTOMER_ID}) "
        f"FROM {_union_sql(files, fmt, typed=True)}"
    )


def _customer_files(
    con: ibis.BaseBackend, customers: Path, fmt: str
) -> tuple[list[Path], str, list[Problem]]:
    files = list_files(customers, fmt)
    customer_fmt = file_format(files[0], fmt)
    problems = [
        p
        for path in files
        for p in validate_customers_file(con.con, path, customer_fmt)
    ]
    return files, customer_fmt, problems


def _customers_view(con: ibis.BaseBackend, files: list[Path], fmt: str) -> ibis.Table:
    con.con.execute(_customers_view_sql(files, fmt))
    return con.table(CUSTOMERS_VIEW)


def load_customers(
    customers: Path, *, fmt: str = "auto", con: ibis.BaseBackend | None = None
) -> ibis.Table:
    """Validate and expose only the customers table (its schema fixes the
    attribute features); ContractError on bad input."""
    con = con or connect()
    files, customer_fmt, problems = _customer_files(con, customers, fmt)
    ensure(problems)
    return _customers_view(con, files, customer_fmt)


def load(
    events: Path,
    customers: Path | None = None,
    *,
    fmt: str = "auto",
    as_of: datetime | None = None,
    con: ibis.BaseBackend | None = None,
) -> Dataset:
    """Validate every file, then expose them as views; ContractError on bad input.

    `as_of` defaults to now: events after it are rejected as being in the future.
    """
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
    con = con or connect()
    raw = con.con
    event_files = list_files(events, fmt)
    event_fmt = file_format(event_files[0], fmt)
    problems: list[Problem] = []
    for path in event_files:
        problems += validate_events_file(raw, path, event_fmt, as_of)
    customer_files: list[Path] = []
    if customers is not None:
        customer_files, customer_fmt, found = _customer_files(con, customers, fmt)
        problems += found
    ensure(problems)
    types = _column_types(raw, event_files, event_fmt)
    raw.execute(_events_view_sql(event_files, event_fmt, types))
    customers_table = (
        _customers_view(con, customer_files, customer_fmt) if customer_files else None
    )
    log.info(
        "loaded %d events file(s), %d customers file(s)",
        len(event_files),
        len(customer_files),
    )
    return Dataset(
        con, con.table(EVENTS_VIEW), customers_table, event_files, customer_files
    )


__all__ = ["ContractError", "Dataset", "connect", "load", "load_customers"]
