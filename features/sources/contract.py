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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
# events before this are refused: a zero or default date (1900-01-01,
# 0001-01-01, an epoch of 0 read in the wrong unit), not a customer's history
EARLIEST_EVENT = datetime(1970, 1, 1)

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


def _reason(text: str) -> tuple[str, str | None]:
    """DuckDB's reason for a reader error, and the CSV line it names (or None).

    A CSV error reads: `CSV Error on Line: N`, `Original Line: <the line>` (which
    may span several lines), the reason, a blank line, then hints and options;
    the line's text is left out: it may hold customer ids, or be megabytes long."""
    head = re.sub(r"^[A-Za-z ]*Error: ", "", text.split("\n", 1)[0]).strip()
    where = re.match(r"CSV Error on Line: (\d+)", head)
    if not where:
        return head, None
    ends = [
        i
        for i in (text.find("\n\nPossible Solution"), text.find("\n\n  file ="))
        if i >= 0
    ]
    before = text[: min(ends)] if ends else text
    return before.rsplit("\n", 1)[-1].strip(), where.group(1)


def read_problem(path: Path | str, fmt: str, exc: duckdb.Error) -> Problem:
    """A reader's error as a problem naming the file: the reason and, for a CSV,
    the line DuckDB names (1-based, the header is line 1), never the line's text."""
    reason, line = _reason(str(exc))
    converting = re.search(
        r"Error when converting column \"(.+?)\"\. .* to '(\w+)'", str(exc)
    )
    if converting and line:
        column, kind = converting.groups()
        return Problem(
            path,
            column,
            f"a value is not a {kind}, the type read from the column's first "
            f"rows; expected every value of {column!r} to be a {kind}, or empty "
            "(or no value of it to be)",
            (int(line) - 1,),
            1,
        )
    if "Maximum line size" in reason:
        size = re.search(r"Maximum line size of (\d+)", reason)
        limit = f"{int(size.group(1)):,} bytes" if size else "the maximum"
        return Problem(
            path,
            None,
            f"a line is longer than {limit}; expected one record per line "
            "(is this a CSV file, with its line breaks?)",
        )
    at = f" (line {line})" if line else ""
    if "unicode" in reason.lower() or "utf-8" in reason.lower():
        return Problem(
            path,
            None,
            f"is not UTF-8 text{at}; expected a UTF-8 CSV "
            "(re-encode it, e.g. iconv -f latin1 -t utf-8)",
        )
    if reason.startswith("Error when sniffing file"):
        return Problem(
            path,
            None,
            "cannot be read as CSV: its delimiter and quoting cannot be told "
            "(rows with different numbers of fields, an unbalanced quote, bytes "
            "that are not UTF-8?); expected a UTF-8 CSV with a header line",
        )
    return Problem(path, None, f"cannot be read as {fmt}{at}: {reason[:300]}")


def file_columns(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, hive: bool
) -> list[str]:
    try:
        return source_columns(con, scan_sql(path, fmt, hive))
    except duckdb.Error as exc:
        raise ContractError([read_problem(path, fmt, exc)]) from exc


def _readable(
    validate: Callable[..., list[Problem]],
) -> Callable[..., list[Problem]]:
    """`validate` (of one file: con, path, fmt, ...) with a reader's error while
    scanning (bytes that are not UTF-8, an over-long line, a damaged Parquet
    page) returned as a problem naming the file, not raised as DuckDB's."""

    def checked(
        con: duckdb.DuckDBPyConnection, path: Path, fmt: str, *args, **kwargs
    ) -> list[Problem]:
        try:
            return validate(con, path, fmt, *args, **kwargs)
        except ContractError as exc:
            return exc.problems
        except duckdb.Error as exc:
            return [read_problem(path, fmt, exc)]

    checked.__doc__, checked.__name__ = validate.__doc__, validate.__name__
    return checked


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
    where: Path | str,
    present: Sequence[str],
    required: Iterable[str],
    table: str = "events",
) -> list[Problem]:
    problems = []
    for col in required:
        if col in present:
            continue
        close = close_match(col, present)
        hint = (
            f"; found {close!r}, did you mean {col!r}?"
            if close
            else f"; name the source's column in data.columns.{table}.{col}"
        )
        problems.append(
            Problem(
                where,
                col,
                f"required column is missing (columns: {list(present)}){hint}",
            )
        )
    return problems


def quote(name: str) -> str:
    """`name` as a DuckDB identifier (a source's columns may hold any character)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ColumnMap:
    """How a source's columns are read under the contract's names: `columns` maps
    a contract name to the source's column (data.columns), `constants` gives a
    contract column one text value for every row (an events source's
    event_type)."""

    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns or self.constants)

    def missing(self, where: Path | str, present: Sequence[str]) -> list[Problem]:
        """A problem for each mapped column the source lacks, with a close
        spelling of it when the source has one (a name is typed here, so a typo
        in its first word counts too: `houshold_id`)."""
        problems = []
        for name, column in self.columns.items():
            if column in present:
                continue
            close = close_match(column, present) or next(
                iter(difflib.get_close_matches(column, present, n=1, cutoff=0.85)),
                None,
            )
            hint = f"; did you mean {close!r}?" if close else ""
            problems.append(
                Problem(
                    where,
                    column,
                    f"the column mapped to {name} is missing "
                    f"(columns: {list(present)}){hint}",
                )
            )
        return problems

    def renamed(self, present: Sequence[str]) -> list[str]:
        """The columns after mapping: mapped and constant ones under contract
        names, a source column that bears a mapped contract name left out."""
        given = {*self.columns, *self.constants}
        taken = {n.lower() for n in given} | {c.lower() for c in self.columns.values()}
        kept = [c for c in present if c.lower() not in taken]
        return [*kept, *given]

    def relation(self, relation: str, present: Sequence[str]) -> str:
        """`relation` (with the columns `present`) read with the contract's names."""
        given = {*self.columns, *self.constants}
        taken = {n.lower() for n in given} | {c.lower() for c in self.columns.values()}
        dropped = [c for c in present if c.lower() in taken]
        star = f"* EXCLUDE ({', '.join(quote(c) for c in dropped)})" if dropped else "*"
        mapped = [f"{quote(c)} AS {n}" for n, c in self.columns.items()]
        mapped += [f"{literal(v)} AS {n}" for n, v in self.constants.items()]
        return f"(SELECT {', '.join([star, *mapped])} FROM {relation})"

    def named(self, problems: list[Problem]) -> list[Problem]:
        """`problems` with each mapped contract column named as the source names it."""
        return [
            replace(p, column=self.columns[p.column]) if p.column in self.columns else p
            for p in problems
        ]


def mapped(
    where: Path | str,
    relation: str,
    present: Sequence[str],
    columns: ColumnMap | None,
) -> tuple[list[Problem], str, list[str]]:
    """The mapping's problems (a mapped column missing), and the relation and its
    columns under the contract's names."""
    if not columns:
        return [], relation, list(present)
    problems = columns.missing(where, present)
    return problems, columns.relation(relation, present), columns.renamed(present)


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


def not_finite_sql(column: str) -> str:
    """True when the column holds NaN or an infinity (text or number)."""
    return f"(isnan({number_sql(column)}) OR isinf({number_sql(column)}))"


def _is_blank(column: str) -> str:
    return f"({column} IS NULL OR TRIM(CAST({column} AS VARCHAR)) = '')"


@_readable
def validate_events_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    as_of: datetime | None,
    columns: ColumnMap | None = None,
) -> list[Problem]:
    """Every contract problem in one events file (empty list when it is fine), its
    columns read through `columns`; a mapped column's problems name it as the
    file does."""
    if path.stat().st_size == 0:
        return [Problem(path, None, "file is empty; expected a header and event rows")]
    present = file_columns(con, path, fmt, hive=True)
    problems, source, present = mapped(
        path, scan_sql(path, fmt, hive=True), present, columns
    )
    if problems:
        return problems
    found = validate_events(con, path, source, present, as_of)
    return columns.named(found) if columns else found


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
            checks += _number_checks(col)
    checks.append(
        (
            EVENT_TIME,
            f"{timestamp_sql(EVENT_TIME)} < TIMESTAMP '{EARLIEST_EVENT:%Y-%m-%d}'",
            f"event is before {EARLIEST_EVENT:%Y-%m-%d}; expected a real event time "
            "(a default or zero date?)",
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


def _number_checks(col: str) -> list[Check]:
    """An optional number: text that is not a number, and NaN or an infinity
    (read as numbers by DuckDB, refused: a sum over them is NaN)."""
    return [
        (
            col,
            f"NOT {_is_blank(col)} AND {number_sql(col)} IS NULL",
            f"{col} is not numeric; expected a number or empty",
        ),
        (
            col,
            not_finite_sql(col),
            f"{col} is NaN or infinite; expected a finite number, or empty when "
            "missing",
        ),
    ]


_INFINITE_TYPES = ("DATE", "TIMESTAMP", "DOUBLE", "FLOAT")


@_readable
def validate_typed_attributes(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str
) -> list[Problem]:
    """Problems of an attributes file (customers, subscriptions) read with its
    types, as the views read it: a CSV's types are detected from its first
    rows, and a later value of another type (`unknown` in a column of numbers)
    fails the read; a number that is NaN or infinite, or a date or timestamp
    that is infinite (DuckDB reads `inf` as a date), is refused. Two scans of a
    CSV, one of a Parquet file, so that these fail here, naming file, row and
    column, not later mid-job."""
    quoted = str(path).replace("'", "''")
    relation = (
        f"(SELECT *, file_row_number + 1 AS {ROW} FROM read_parquet('{quoted}', "
        "file_row_number = true) )"
        if fmt == "parquet"
        else f"(SELECT *, row_number() OVER () AS {ROW} FROM read_csv('{quoted}', "
        "header = true, auto_detect = true))"
    )
    if fmt == "csv":  # a Parquet file's types are its own: nothing to convert
        con.execute(f"SELECT count(COLUMNS(* EXCLUDE ({ROW}))) FROM {relation}")
    rel = con.sql(f"SELECT * FROM {relation} LIMIT 0")
    checks: list[Check] = []
    for name, kind in zip(rel.columns, rel.types, strict=True):
        kind = str(kind)
        if name == ROW or not kind.startswith(_INFINITE_TYPES):
            continue
        col = quote(name)
        bad = f"isinf({col})" + (
            f" OR isnan({col})" if kind in ("DOUBLE", "FLOAT") else ""
        )
        checks.append(
            (
                name,
                bad,
                f"{name} is NaN or infinite; expected a finite value, or empty "
                "when missing",
            )
        )
    return _run_checks(con, path, relation, checks)[1] if checks else []


def _validate_mapped(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    columns: ColumnMap | None,
    validate: Callable[..., list[Problem]],
    **kwargs: object,
) -> list[Problem]:
    """`validate` on one file (partition folders not read), through `columns`."""
    present = file_columns(con, path, fmt, hive=False)
    problems, source, present = mapped(
        path, scan_sql(path, fmt, hive=False), present, columns
    )
    if problems:
        return problems
    found = validate(con, path, source, present, **kwargs)
    return columns.named(found) if columns else found


@_readable
def validate_customers_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    columns: ColumnMap | None = None,
) -> list[Problem]:
    """Every contract problem in one customers file. Partition folders are not
    read: every column of the customers table is an attribute."""
    if path.stat().st_size == 0:
        return [
            Problem(path, None, "file is empty; expected a header and customer rows")
        ]
    return _validate_mapped(con, path, fmt, columns, validate_customers)


def validate_customers(
    con: duckdb.DuckDBPyConnection,
    where: Path | str,
    source: str,
    present: Sequence[str],
) -> list[Problem]:
    """Every contract problem in customers read by `source` (see validate_events)."""
    problems = _missing_columns(where, present, (CUSTOMER_ID,), "customers")
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


@_readable
def validate_subscriptions_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    columns: ColumnMap | None = None,
    base_plans: Sequence[str] | None = None,
) -> list[Problem]:
    """Every contract problem in one subscriptions file (partition folders not read)."""
    if path.stat().st_size == 0:
        return [
            Problem(
                path, None, "file is empty; expected a header and subscription rows"
            )
        ]
    return _validate_mapped(
        con, path, fmt, columns, validate_subscriptions, base_plans=base_plans
    )


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


def _terms_sql(source: str, base_plans: Sequence[str] | None) -> str:
    """`source` with, on each row, its term's place among the customer's terms.

    A term is the items (rows) of one customer with the same start_time and
    end_time: a base plan and its add-ons or seats. `__base` tells whether the
    term holds a base plan (every term does without `base_plans`); `__prev_end`,
    `__earlier` and `__earlier_ended` describe the customer's earlier terms in
    start order."""
    start, end = timestamp_sql(START_TIME), timestamp_sql(END_TIME)
    base = (
        "true"
        if base_plans is None
        else f"TRIM(CAST({PLAN} AS VARCHAR)) IN "
        f"({', '.join(literal(p) for p in base_plans)})"
    )
    key = f"TRIM(CAST({CUSTOMER_ID} AS VARCHAR))"
    return (
        f"(WITH items AS (SELECT *, {key} AS __cid, {start} AS __s, {end} AS __e, "
        f"coalesce({base}, false) AS __item_base FROM {source}), "
        "terms AS (SELECT __cid, __s, __e, bool_or(__item_base) AS __base, "
        f"min({ROW}) AS __first FROM items WHERE __s IS NOT NULL "
        "GROUP BY __cid, __s, __e), "
        "placed AS (SELECT *, max(__e) OVER w AS __prev_end, "
        "count(*) OVER w AS __earlier, count(__e) OVER w AS __earlier_ended "
        "FROM terms WINDOW w AS (PARTITION BY __cid ORDER BY __s, __e NULLS LAST, "
        "__first ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) "
        "SELECT i.*, p.__base, p.__prev_end, p.__earlier, p.__earlier_ended "
        "FROM items i LEFT JOIN placed p ON i.__cid = p.__cid AND i.__s = p.__s "
        "AND i.__e IS NOT DISTINCT FROM p.__e)"
    )


def validate_subscriptions(
    con: duckdb.DuckDBPyConnection,
    where: Path | str,
    source: str,
    present: Sequence[str],
    base_plans: Sequence[str] | None = None,
) -> list[Problem]:
    """Every contract problem in subscriptions read by `source` (see
    validate_events). A term is in force over [start_time, end_time); the rows
    of one customer with the same period are the items of one term (a base plan,
    add-ons, seats). Terms of one customer may not overlap, and an open term
    (end_time empty) must be the customer's last; with `base_plans`, an overlap
    by a term holding no base plan is named as an add-on out of its base's
    period."""
    problems = _missing_columns(
        where, present, REQUIRED_SUBSCRIPTION_COLUMNS, "subscriptions"
    )
    problems += _missing_alternatives(where, present, PRICE_COLUMNS)
    problems += _missing_alternatives(where, present, BILLING_PERIOD_COLUMNS)
    if problems:
        return problems
    price = present_alternative(present, PRICE_COLUMNS)
    period = present_alternative(present, BILLING_PERIOD_COLUMNS)
    start, end = timestamp_sql(START_TIME), timestamp_sql(END_TIME)
    source = _terms_sql(source, base_plans)
    overlap = "(__s < __prev_end OR __earlier > __earlier_ended)"
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
            START_TIME,
            f"{start} < TIMESTAMP '{EARLIEST_EVENT:%Y-%m-%d}'",
            f"start_time is before {EARLIEST_EVENT:%Y-%m-%d}; expected a real start "
            "(a default or zero date?)",
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
            f"{overlap} AND __base",
            "the term overlaps the customer's previous term (it starts before "
            "that one ends, or that one is open); expected one term at a time "
            "(items with the same customer_id, start_time and end_time are one term)",
        ),
        (
            START_TIME,
            f"{overlap} AND NOT __base",
            "the item is not a base plan (data.base_plans) and its period is not "
            "that of the customer's term; expected add-ons and seats with the "
            "start_time and end_time of their base plan",
        ),
        (
            price,
            f"{number_sql(price)} IS NULL OR {number_sql(price)} < 0 "
            f"OR {not_finite_sql(price)}",
            f"{price} is missing or not a finite number >= 0",
        ),
        (
            period,
            f"{number_sql(period)} IS NULL OR {number_sql(period)} <= 0 "
            f"OR {not_finite_sql(period)}",
            f"{period} is missing or not a finite number > 0",
        ),
    ]
    for col in OPTIONAL_SUBSCRIPTION_NUMBERS:
        if col in present:
            checks += _number_checks(col)
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
    "ColumnMap",
    "mapped",
]
