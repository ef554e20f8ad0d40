"""The data contract: what events and customers files must hold, checked first.

Validation runs as DuckDB queries over each file (Parquet natively, CSV as text) so
that it streams through files of any size. Every problem names the file, the column,
up to five offending data rows (1-based, header excluded) and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from features.columns import (
    AMOUNT,
    CUSTOMER_ID,
    EVENT_TIME,
    EVENT_TYPE,
    OPTIONAL_EVENT_COLUMNS,
    QUANTITY,
    REQUIRED_EVENT_COLUMNS,
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
ROW = "__row"


@dataclass(frozen=True)
class Problem:
    file: Path
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


def scan_sql(path: Path, fmt: str) -> str:
    """A DuckDB table expression reading one file with a 1-based row number column."""
    quoted = str(path).replace("'", "''")
    if fmt == "parquet":
        return (
            f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW} "
            f"FROM read_parquet('{quoted}', file_row_number = true))"
        )
    # CSV: every column as text, so that nothing is coerced silently; row numbers
    # come from the reader's order, which DuckDB preserves for a single file.
    return (
        f"(SELECT *, row_number() OVER () AS {ROW} FROM read_csv('{quoted}', "
        "header = true, all_varchar = true, auto_detect = true))"
    )


def file_columns(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> list[str]:
    try:
        rel = con.sql(f"SELECT * FROM {scan_sql(path, fmt)} LIMIT 0")
    except duckdb.Error as exc:
        raise ContractError(
            [Problem(path, None, f"cannot be read as {fmt}: {exc}")]
        ) from exc
    return [c for c in rel.columns if c != ROW]


def _missing_columns(
    path: Path, present: Sequence[str], required: Iterable[str]
) -> list[Problem]:
    problems = []
    for col in required:
        if col in present:
            continue
        close = difflib.get_close_matches(col, present, n=1, cutoff=0.6)
        close += [c for c in present if c.lower() == col.lower()]
        hint = f"; found {close[-1]!r}, did you mean {col!r}?" if close else ""
        problems.append(
            Problem(
                path,
                col,
                f"required column is missing (columns: {list(present)}){hint}",
            )
        )
    return problems


Check = tuple[str, str, str]  # column, SQL condition for a bad row, what was expected


def _run_checks(
    con: duckdb.DuckDBPyConnection, path: Path, source: str, checks: list[Check]
) -> tuple[int, list[Problem]]:
    """The file's row count and a problem per failing check, in one scan."""
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
                Problem(path, column, expected, tuple(int(r) for r in rows), int(count))
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
    present = file_columns(con, path, fmt)
    problems = _missing_columns(path, present, REQUIRED_EVENT_COLUMNS)
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
    rows, problems = _run_checks(con, path, scan_sql(path, fmt), checks)
    if not rows:
        return [Problem(path, None, "file has no rows; expected at least one event")]
    return problems


def validate_customers_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str
) -> list[Problem]:
    if path.stat().st_size == 0:
        return [
            Problem(path, None, "file is empty; expected a header and customer rows")
        ]
    present = file_columns(con, path, fmt)
    problems = _missing_columns(path, present, (CUSTOMER_ID,))
    if problems:
        return problems
    source = (
        f"(SELECT *, count(*) OVER (PARTITION BY {CUSTOMER_ID}) AS __n "
        f"FROM {scan_sql(path, fmt)})"
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
    return _run_checks(con, path, source, checks)[1]


def ensure(problems: list[Problem]) -> None:
    if problems:
        raise ContractError(problems)


__all__ = [
    "EVENTS_SCHEMA",
    "ContractError",
    "Problem",
    "ensure",
    "file_format",
    "list_files",
    "validate_customers_file",
    "validate_events_file",
]
