"""The data contract: what events and customers tables must hold, checked first.

Validation runs as DuckDB queries over each file (Parquet natively, CSV as text), or
over a database table or query staged in DuckDB, so that it streams through inputs
of any size. Every problem names the file (or the database source), the column, up
to five offending data rows and what was expected. Rows are 1-based: in a file the
header is excluded, in a database result they are positions in the order the
database returned the rows.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from features.columns import (
    AMOUNT,
    AUTO_RENEW,
    BILLING_PERIOD_COLUMNS,
    BILLING_PERIOD_DAYS,
    CUSTOMER_ID,
    DISCOUNT,
    END_TIME,
    EVENT_TIME,
    EVENT_TYPE,
    OPTIONAL_EVENT_COLUMNS,
    OPTIONAL_SUBSCRIPTION_NUMBERS,
    PLAN,
    PRICE,
    PRICE_COLUMNS,
    QUANTITY,
    REQUIRED_EVENT_COLUMNS,
    REQUIRED_SUBSCRIPTION_COLUMNS,
    START_TIME,
)

MAX_ROWS_SHOWN = 5

# The contract's events schema as Arrow: what adapters and the generator write.
EVENTS_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (EVENT_TIME, pa.timestamp("us")),
        (EVENT_TYPE, pa.string()),
        (AMOUNT, pa.float64()),
        (QUANTITY, pa.float64()),
    ]
)
# The contract's subscriptions schema as Arrow: what adapters and the generator write.
SUBSCRIPTIONS_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (PLAN, pa.string()),
        (START_TIME, pa.timestamp("us")),
        (END_TIME, pa.timestamp("us")),
        (PRICE, pa.float64()),
        (BILLING_PERIOD_DAYS, pa.float64()),
        (DISCOUNT, pa.float64()),
        (AUTO_RENEW, pa.bool_()),
        (QUANTITY, pa.float64()),
    ]
)
ROW = "__row"
# a billing period given in months, in days: 1 -> 30, 3 -> 91, 12 -> 365
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class Problem:
    file: Path | str  # a file, or a database source's description
    column: str | None
    expected: str
    rows: tuple[int, ...] = ()
    count: int = 0

    def __str__(self) -> str:
        where = f"{self.file}"
        if self.column:
            where += f", column {self.column!r}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows)
            more = f" ({self.count} rows in all)" if self.count > len(self.rows) else ""
            where += f", rows {shown}{more}"
        return f"{where}: {self.expected}"


@dataclass
class ContractError(ValueError):
    """One or more contract problems; str() lists each on its own line."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{len(self.problems)} data contract problem(s):"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def file_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise ContractError(
        [Problem(path, None, "expected a .parquet or .csv file (or set data.format)")]
    )


def list_files(path: Path, declared: str = "auto") -> list[Path]:
    """A file, or every .parquet/.csv file below a folder (sorted), checked to exist."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        patterns = {"parquet": ("*.parquet",), "csv": ("*.csv",)}.get(
            declared, ("*.parquet", "*.csv")
        )
        files = sorted(
            p
            for pattern in patterns
            for p in path.rglob(pattern)
            if not any(
                part.startswith((".", "_")) for part in p.relative_to(path).parts
            )
        )
        if not files:
            raise ContractError(
                [Problem(path, None, "folder holds no .parquet or .csv file")]
            )
        kinds = {file_format(f, declared) for f in files}
        if len(kinds) > 1:
            raise ContractError(
                [
                    Problem(
                        path, None, "folder mixes CSV and Parquet files; use one format"
                    )
                ]
            )
        return files
    raise ContractError([Problem(path, None, "file or folder not found")])


def scan_sql(path: Path, fmt: str, hive: bool) -> str:
    """A DuckDB table expression reading one file with a 1-based row number column.

    With `hive`, key=value folders in the path are read as columns too (so that
    a contract column can come from the partition folder).
    """
    quoted = str(path).replace("'", "''")
    hive_sql = f"hive_partitioning = {str(hive).lower()}"
    if fmt == "parquet":
        return (
            f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW} "
            f"FROM read_parquet('{quoted}', file_row_number = true, {hive_sql}))"
        )
    # CSV: every column as text, so that nothing is coerced silently; row numbers
    # come from the reader's order, which DuckDB preserves for a single file.
    return (
        f"(SELECT *, row_number() OVER () AS {ROW} FROM read_csv('{quoted}', "
        f"header = true, all_varchar = true, auto_detect = true, {hive_sql}))"
    )


def source_columns(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """The columns of a table expression, without the row number."""
    return [c for c in con.sql(f"SELECT * FROM {source} LIMIT 0").columns if c != ROW]


def file_columns(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, hive: bool
) -> list[str]:
    try:
        return source_columns(con, scan_sql(path, fmt, hive))
    except duckdb.Error as exc:
        raise ContractError(
            [Problem(path, None, f"cannot be read as {fmt}: {exc}")]
        ) from exc


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", name.lower()) if w]


def close_match(wanted: str, present: Sequence[str]) -> str | None:
    """The column in `present` that is plainly `wanted` misspelt, or None.

    The same name but for case and separators (`Customer-ID`), or a close spelling
    whose first word starts like `wanted`'s (`cust_id`, `event_ts`, `start_date`);
    never a column that only shares a suffix (`store_id` is not `customer_id`)."""
    bare = "".join(_words(wanted))
    for name in present:
        if "".join(_words(name)) == bare:
            return name
    head = (_words(wanted) or [""])[0]
    for name in difflib.get_close_matches(wanted, present, n=3, cutoff=0.7):
        first = (_words(name) or [""])[0]
        if first and (head.startswith(first) or first.startswith(head)):
            return name
    return None


def _missing_columns(
    where: Path | str, present: Sequence[str], required: Iterable[str]
) -> list[Problem]:
    problems = []
    for col in required:
        if col in present:
            continue
        close = close_match(col, present)
        hint = f"; found {close!r}, did you mean {col!r}?" if close else ""
        problems.append(
            Problem(
                where,
                col,
                f"required column is missing (columns: {list(present)}){hint}",
            )
        )
    return problems


Check = tuple[str, str, str]  # column, SQL condition for a bad row, what was expected


def _run_checks(
    con: duckdb.DuckDBPyConnection,
    where: Path | str,
    source: str,
    checks: list[Check],
) -> tuple[int, list[Problem]]:
    """The source's row count and a problem per failing check, in one scan."""
    shown = f"min({ROW}, {MAX_ROWS_SHOWN})"
    aggregates = ", ".join(
        f"count(*) FILTER (WHERE {bad}), {shown} FILTER (WHERE {bad})"
        for _, bad, _ in checks
    )
    row = con.execute(f"SELECT count(*), {aggregates} FROM {source}").fetchall()[0]
    problems = []
    for k, (column, _, expected) in enumerate(checks):
        count, rows = row[1 + 2 * k], row[2 + 2 * k]
        if count:
            problems.append(
                Problem(
                    where, column, expected, tuple(int(r) for r in rows), int(count)
                )
            )
    return int(row[0]), problems


def timestamp_sql(column: str) -> str:
    """Text or timestamp -> UTC timestamp without zone (naive values taken as UTC)."""
    return f"CAST(TRY_CAST({column} AS TIMESTAMPTZ) AS TIMESTAMP)"


def number_sql(column: str) -> str:
    return f"TRY_CAST(NULLIF(TRIM(CAST({column} AS VARCHAR)), '') AS DOUBLE)"


def _is_blank(column: str) -> str:
    return f"({column} IS NULL OR TRIM(CAST({column} AS VARCHAR)) = '')"


def validate_events_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, as_of: datetime | None
) -> list[Problem]:
    """Every contract problem in one events file (empty list when it is fine)."""
    if path.stat().st_size == 0:
        return [Problem(path, None, "file is empty; expected a header and event rows")]
    present = file_columns(con, path, fmt, hive=True)
    return validate_events(con, path, scan_sql(path, fmt, hive=True), present, as_of)


def validate_events(
    con: duckdb.DuckDBPyConnection,
    where: Path | str,
    source: str,
    present: Sequence[str],
    as_of: datetime | None,
) -> list[Problem]:
    """Every contract problem in events read by `source`, a table expression with
    the columns `present` and a 1-based ROW column; `where` names it."""
    problems = _missing_columns(where, present, REQUIRED_EVENT_COLUMNS)
    if problems:
        return problems
    checks: list[Check] = [
        (
            CUSTOMER_ID,
            _is_blank(CUSTOMER_ID),
            "customer_id is missing; expected a non-empty id",
        ),
        (
            EVENT_TYPE,
            _is_blank(EVENT_TYPE),
            "event_type is missing; expected a non-empty name",
        ),
        (
            EVENT_TIME,
            f"{timestamp_sql(EVENT_TIME)} IS NULL",
            "expected a timestamp such as 2024-03-01 13:45:00 or 2024-03-01T13:45:00Z",
        ),
    ]
    for col in OPTIONAL_EVENT_COLUMNS:
        if col in present:
            checks.append(
                (
                    col,
                    f"NOT {_is_blank(col)} AND {number_sql(col)} IS NULL",
                    f"{col} is not numeric; expected a number or empty",
                )
            )
    if as_of is not None:
        stamp = as_of.strftime("%Y-%m-%d %H:%M:%S")
        checks.append(
            (
                EVENT_TIME,
                f"{timestamp_sql(EVENT_TIME)} > TIMESTAMP '{stamp}'",
                f"event is in the future of the as-of date {stamp} UTC",
            )
        )
    rows, problems = _run_checks(con, where, source, checks)
    if not rows:
        return [Problem(where, None, "has no rows; expected at least one event")]
    return problems


def validate_customers_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str
) -> list[Problem]:
    """Every contract problem in one customers file. Partition folders are not
    read: every column of the customers table is an attribute."""
    if path.stat().st_size == 0:
        return [
            Problem(path, None, "file is empty; expected a header and customer rows")
        ]
    present = file_columns(con, path, fmt, hive=False)
    return validate_customers(con, path, scan_sql(path, fmt, hive=False), present)


def validate_customers(
    con: duckdb.DuckDBPyConnection,
    where: Path | str,
    source: str,
    present: Sequence[str],
) -> list[Problem]:
    """Every contract problem in customers read by `source` (see validate_events)."""
    problems = _missing_columns(where, present, (CUSTOMER_ID,))
    if problems:
        return problems
    source = (
        f"(SELECT *, count(*) OVER (PARTITION BY {CUSTOMER_ID}) AS __n FROM {source})"
    )
    checks: list[Check] = [
        (
            CUSTOMER_ID,
            _is_blank(CUSTOMER_ID),
            "customer_id is missing; expected a non-empty id",
        ),
        (
            CUSTOMER_ID,
            "__n > 1",
            "customer_id is repeated; expected one row per customer",
        ),
    ]
    return _run_checks(con, where, source, checks)[1]


def validate_subscriptions_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str
) -> list[Problem]:
    """Every contract problem in one subscriptions file (partition folders not read)."""
    if path.stat().st_size == 0:
        return [
            Problem(
                path, None, "file is empty; expected a header and subscription rows"
            )
        ]
    present = file_columns(con, path, fmt, hive=False)
    return validate_subscriptions(con, path, scan_sql(path, fmt, hive=False), present)


def present_alternative(present: Sequence[str], names: Sequence[str]) -> str | None:
    """The first of `names` (a contract column, then the names accepted instead)
    that `present` holds, or None."""
    return next((n for n in names if n in present), None)


def _missing_alternatives(
    where: Path | str, present: Sequence[str], names: Sequence[str]
) -> list[Problem]:
    if present_alternative(present, names):
        return []
    either = " or ".join(repr(n) for n in names)
    return [
        Problem(
            where,
            names[0],
            f"required column is missing; expected {either} (columns: {list(present)})",
        )
    ]


def validate_subscriptions(
    con: duckdb.DuckDBPyConnection,
    where: Path | str,
    source: str,
    present: Sequence[str],
) -> list[Problem]:
    """Every contract problem in subscriptions read by `source` (see
    validate_events). A row is a term in force over [start_time, end_time); terms
    of one customer may not overlap, and an open term (end_time empty) must be
    the customer's last."""
    problems = _missing_columns(where, present, REQUIRED_SUBSCRIPTION_COLUMNS)
    problems += _missing_alternatives(where, present, PRICE_COLUMNS)
    problems += _missing_alternatives(where, present, BILLING_PERIOD_COLUMNS)
    if problems:
        return problems
    price = present_alternative(present, PRICE_COLUMNS)
    period = present_alternative(present, BILLING_PERIOD_COLUMNS)
    start, end = timestamp_sql(START_TIME), timestamp_sql(END_TIME)
    # the previous term of the customer in start order, over the whole source
    source = (
        f"(SELECT *, max({end}) OVER w AS __prev_end, "
        f"count(*) OVER w AS __earlier, count({end}) OVER w AS __earlier_ended "
        f"FROM {source} WINDOW w AS (PARTITION BY {CUSTOMER_ID} ORDER BY {start}, "
        f"{ROW} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))"
    )
    checks: list[Check] = [
        (
            CUSTOMER_ID,
            _is_blank(CUSTOMER_ID),
            "customer_id is missing; expected a non-empty id",
        ),
        (PLAN, _is_blank(PLAN), "plan is missing; expected a non-empty name"),
        (
            START_TIME,
            f"{start} IS NULL",
            "expected a timestamp such as 2024-03-01 or 2024-03-01T13:45:00Z",
        ),
        (
            END_TIME,
            f"NOT {_is_blank(END_TIME)} AND {end} IS NULL",
            "expected a timestamp, or empty while the term is open",
        ),
        (
            END_TIME,
            f"{end} <= {start}",
            "end_time is not after start_time; expected a period that ends "
            "after it starts",
        ),
        (
            START_TIME,
            f"{start} < __prev_end OR __earlier > __earlier_ended",
            "the term overlaps the customer's previous term (it starts before "
            "that one ends, or that one is open); expected one term at a time",
        ),
        (
            price,
            f"{number_sql(price)} IS NULL OR {number_sql(price)} < 0",
            f"{price} is missing or not a number >= 0",
        ),
        (
            period,
            f"{number_sql(period)} IS NULL OR {number_sql(period)} <= 0",
            f"{period} is missing or not a number > 0",
        ),
    ]
    for col in OPTIONAL_SUBSCRIPTION_NUMBERS:
        if col in present:
            checks.append(
                (
                    col,
                    f"NOT {_is_blank(col)} AND {number_sql(col)} IS NULL",
                    f"{col} is not numeric; expected a number or empty",
                )
            )
    if AUTO_RENEW in present:
        checks.append(
            (
                AUTO_RENEW,
                f"NOT {_is_blank(AUTO_RENEW)} AND {boolean_sql(AUTO_RENEW)} IS NULL",
                "auto_renew is not a boolean; expected true/false, 1/0 or empty",
            )
        )
    rows, found = _run_checks(con, where, source, checks)
    if not rows:
        return [Problem(where, None, "has no rows; expected at least one term")]
    return found


def boolean_sql(column: str) -> str:
    return f"TRY_CAST(NULLIF(TRIM(CAST({column} AS VARCHAR)), '') AS BOOLEAN)"


def ensure(problems: list[Problem]) -> None:
    if problems:
        raise ContractError(problems)


__all__ = [
    "EVENTS_SCHEMA",
    "SUBSCRIPTIONS_SCHEMA",
    "ContractError",
    "Problem",
    "ensure",
    "file_format",
    "list_files",
    "source_columns",
    "validate_customers",
    "validate_customers_file",
    "validate_events",
    "validate_events_file",
    "validate_subscriptions",
    "validate_subscriptions_file",
]
