"""Loading: validate the contract, then expose events, customers and subscriptions
as Ibis tables.

The tables are DuckDB views with types normalised to the contract (string ids, UTC
timestamps without zone truncated to whole seconds, float amounts): over the files,
so nothing is copied and files of any size stream through, or over a database
table or query first staged in DuckDB (features.sources.database).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import ibis
import ibis.expr.operations as ops

from core.config import (
    ColumnsConfig,
    DatabaseSource,
    DataConfig,
    EventSource,
    ProjectConfig,
    Source,
)
from features.columns import (
    AMOUNT,
    AUTO_RENEW,
    BILLING_PERIOD_COLUMNS,
    BILLING_PERIOD_DAYS,
    BILLING_PERIOD_MONTHS,
    CUSTOMER_ID,
    DISCOUNT,
    END_TIME,
    EVENT_TIME,
    EVENT_TYPE,
    PLAN,
    PRICE,
    PRICE_COLUMNS,
    QUANTITY,
    START_TIME,
)
from features.sources.contract import (
    DAYS_PER_MONTH,
    ROW,
    ColumnMap,
    ContractError,
    Problem,
    boolean_sql,
    ensure,
    file_format,
    list_files,
    literal,
    mapped,
    number_sql,
    present_alternative,
    source_columns,
    timestamp_sql,
    validate_customers,
    validate_customers_file,
    validate_events,
    validate_events_file,
    validate_subscriptions,
    validate_subscriptions_file,
    validate_typed_attributes,
)
from features.sources.database import stage
from features.sources.privacy import Pseudonymiser, pseudonymiser, suppressed

log = logging.getLogger(__name__)

EVENTS_VIEW = "events"
CUSTOMERS_VIEW = "customers"
SUBSCRIPTIONS_VIEW = "subscriptions"
SUPPRESSED_TABLE = "suppressed_customers"
PSEUDONYM_MAP, RAW_ID, PSEUDONYM = "pseudonym_map", "__raw_id", "__pseudonym"
RAW_TEXT = f"TRIM(CAST({CUSTOMER_ID} AS VARCHAR))"


@dataclass
class Dataset:
    """Validated events (and customers) on one DuckDB connection, as Ibis tables."""

    con: ibis.BaseBackend
    events: ibis.Table
    customers: ibis.Table | None
    events_files: list[Path]  # empty for a database source
    customers_files: list[Path]
    subscriptions: ibis.Table | None = None
    subscriptions_files: list[Path] = field(default_factory=list)
    # the suppression list the views left out (features.sources.privacy)
    suppressed: frozenset[str] = frozenset()
    # the events sources, each with its mapping (events_files holds their files)
    event_sources: list[EventSource] = field(default_factory=list)
    _range: tuple[datetime, datetime] | None = field(default=None, repr=False)
    _rows: int | None = field(default=None, repr=False)

    @property
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        return self.con.con

    def time_range(self) -> tuple[datetime, datetime]:
        """First and last event time (one scan, then remembered: the files were
        validated and do not change under a Dataset)."""
        if self._range is None:
            row = self.duckdb.execute(
                f"SELECT min({EVENT_TIME}), max({EVENT_TIME}), count(*) "
                f"FROM {EVENTS_VIEW}"
            ).fetchall()[0]
            self._range, self._rows = (row[0], row[1]), int(row[2])
        return self._range

    def rows(self) -> int:
        """The number of events (counted with the time range, then remembered)."""
        if self._rows is None:
            self.time_range()
        return self._rows

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
    con = ibis.duckdb.from_connection(raw)
    con.compile = _memoized_compile(con.compile)
    return con


# Compiled SQL by the expression's structure (`_structure`: database tables by name
# and schema, not their connection; the same literals but dates), each in-memory
# table, such as the cutoffs, and each view Ibis names at random (a Parquet file
# read) standing in by its place, as its name is random, and
# each date or timestamp literal, such as an as-of date or a segment edge, by its
# place; shared by every connection `connect` makes in this process. Ibis spends
# ~0.1-1 s compiling the feature definition's expression (sqlglot), often more
# than DuckDB takes to run it: a nightly's customer chunks, the API's live
# refreshes, the nights of the incremental state and repeated builds over other
# data or at other dates compile the same expression.
_COMPILED: OrderedDict = OrderedDict()
_COMPILED_MAX = 256
_COMPILED_LOCK = threading.Lock()
# a literal's SQL (`MAKE_DATE(2025, 3, 1)`), by (value, type)
_RENDERED: OrderedDict = OrderedDict()


# the views Ibis names at random (`con.read_parquet(path)`): by place, like an
# in-memory table
_GENERATED = re.compile(r"ibis_read_[a-z]+_[a-z0-9]{26}")


def _dated(op: ops.Node) -> bool:
    """A date, or a timestamp without time zone, given as a literal."""
    if not isinstance(op, ops.Literal) or op.value is None:
        return False
    dtype = op.dtype
    return dtype.is_date() or (dtype.is_timestamp() and dtype.timezone is None)


def _rendered(compile_sql, literal: ops.Literal) -> str | None:
    """The SQL DuckDB's compiler writes for a literal, compiled alone once."""
    key = (literal.value, literal.dtype)
    with _COMPILED_LOCK:
        found = _RENDERED.get(key)
    if found is None:
        sql = compile_sql(literal.to_expr().name("v"))
        head, _, rest = sql.partition("SELECT ")
        found, _, _ = rest.rpartition(' AS "v"')
        if head or not found:
            return None
        with _COMPILED_LOCK:
            _RENDERED[key] = found
            while len(_RENDERED) > 4 * _COMPILED_MAX:
                _RENDERED.popitem(last=False)
    return found


class _HoldsConnection(Exception):
    """An expression on `con.sql(...)`: its key would keep the connection alive."""


def _structure(op: ops.Node) -> tuple[tuple, list, list]:
    """The expression's structure as a hashable key, with its in-memory tables and
    dated literals in the order the key numbers them: each node once, as its
    type and arguments with the nodes among them by number; a database table by
    name, schema and namespace (not its connection), an in-memory table (or a
    view Ibis named at random) by schema and number, a dated literal by type and
    number. A plain walk: an order of
    magnitude cheaper than rebuilding the graph with stand-ins (`Node.replace`)."""
    ids: dict = {}
    keys: list = []
    memtables: list = []
    dated: list = []

    def value(arg):
        if isinstance(arg, ops.Node):
            found = ids.get(arg)
            return visit(arg) if found is None else found
        if isinstance(arg, tuple):
            return tuple(value(a) for a in arg)
        if isinstance(arg, dict):
            return tuple((k, value(v)) for k, v in arg.items())
        return arg

    def visit(node: ops.Node) -> int:
        if isinstance(node, ops.SQLQueryResult):
            raise _HoldsConnection
        if isinstance(node, ops.InMemoryTable) or (
            isinstance(node, ops.DatabaseTable) and _GENERATED.match(node.name)
        ):
            key = ("memtable", len(memtables), node.schema)
            memtables.append(node)
        elif isinstance(node, ops.DatabaseTable):
            key = ("table", node.name, node.schema, node.namespace)
        elif _dated(node):
            key = ("dated", len(dated), node.dtype)
            dated.append(node)
        else:
            key = (type(node), value(node.__args__))
        ids[node] = number = len(keys)
        keys.append(key)
        return number

    visit(op)
    return tuple(keys), memtables, dated


def _memoized_compile(compile_sql):
    def compile(expr, /, *, limit=None, params=None, pretty=False):
        if params:
            return compile_sql(expr, limit=limit, params=params, pretty=pretty)
        try:
            structure, memtables, dated = _structure(expr.op())
            key = (structure, limit, pretty)
            with _COMPILED_LOCK:
                template = _COMPILED.get(key)
        except (_HoldsConnection, TypeError, RecursionError):
            # a query holding its connection, an unhashable argument, a graph
            # too deep to walk: compiled as it is, not kept
            return compile_sql(expr, limit=limit, pretty=pretty)
        if template is None:
            return _remember(key, expr, memtables, dated)
        if template is _UNCACHEABLE:
            return compile_sql(expr, limit=limit, pretty=pretty)
        with _COMPILED_LOCK:
            _COMPILED.move_to_end(key)
        sql, literals = template
        for i, m in enumerate(memtables):
            sql = sql.replace(f"__propensity_memtable_{i}__", m.name)
        for token, d in zip(literals, dated, strict=True):
            rendered = _rendered(compile_sql, d)
            if rendered is None:
                return compile_sql(expr, limit=limit, pretty=pretty)
            sql = sql.replace(token, rendered)
        return sql

    def _remember(key, expr, memtables, dated) -> str:
        """Compile `expr` and keep its SQL as a template under `key`: each
        in-memory table's name and each dated literal's SQL replaced by a
        placeholder. When a literal's SQL is not found in it, the key is kept as
        uncacheable (compiled each time)."""
        _, limit, pretty = key
        sql = compile_sql(expr, limit=limit, pretty=pretty)
        template = sql
        for i, m in enumerate(memtables):
            template = template.replace(m.name, f"__propensity_memtable_{i}__")
        literals = []
        for i, d in enumerate(dated):
            rendered = _rendered(compile_sql, d)
            if rendered is None or rendered not in template:
                break
            literals.append(f"__propensity_literal_{i}__")
            template = template.replace(rendered, literals[-1])
        kept = (template, literals) if len(literals) == len(dated) else _UNCACHEABLE
        with _COMPILED_LOCK:
            _COMPILED[key] = kept
            while len(_COMPILED) > _COMPILED_MAX:
                _COMPILED.popitem(last=False)
        return sql

    return compile


# a key whose SQL could not be kept as a template
_UNCACHEABLE = object()


@dataclass(frozen=True)
class _Input:
    """One table before its view: its problems and the relation the view reads."""

    problems: list[Problem]
    relation: str  # a DuckDB table expression
    files: list[Path]


def _union_sql(files: list[Path], fmt: str, typed: bool, hive: bool) -> str:
    paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    options = f"union_by_name = true, hive_partitioning = {str(hive).lower()}"
    if fmt == "parquet":
        return f"read_parquet([{paths}], {options})"
    kind = "auto_detect = true" if typed else "all_varchar = true"
    return f"read_csv([{paths}], header = true, {options}, {kind})"


def _staged(
    con: duckdb.DuckDBPyConnection, source: DatabaseSource, view: str
) -> tuple[str, list[str]]:
    """The source copied into a temporary table (with ROW), and its columns."""
    table = f"{view}_staged"
    stage(con, source, table)
    return table, source_columns(con, table)


def _without_row(table: str) -> str:
    return f"(SELECT * EXCLUDE ({ROW}) FROM {table})"


def _database_input(
    con: duckdb.DuckDBPyConnection,
    source: DatabaseSource,
    view: str,
    columns: ColumnMap | None,
    validate: Callable[..., list[Problem]],
    **kwargs: object,
) -> _Input:
    """A database source staged, read through `columns` and validated."""
    table, present = _staged(con, source, view)
    problems, relation, present = mapped(str(source), table, present, columns)
    if not problems:
        problems = validate(con, str(source), relation, present, **kwargs)
        problems = columns.named(problems) if columns else problems
    return _Input(problems, _without_row(relation), [])


def _files_relation(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    fmt: str,
    typed: bool,
    hive: bool,
    columns: ColumnMap | None,
) -> str:
    """The files as one relation, their columns under the contract's names."""
    relation = _union_sql(files, fmt, typed=typed, hive=hive)
    if not columns:
        return relation
    return columns.relation(relation, source_columns(con, relation))


def event_map(entry: EventSource) -> ColumnMap:
    """How one events source's columns are read: its mapping, and its constant
    event type."""
    constants = {} if entry.event_type is None else {EVENT_TYPE: entry.event_type}
    return ColumnMap(dict(entry.columns), constants)


def _events_input(
    con: duckdb.DuckDBPyConnection,
    entry: EventSource,
    fmt: str,
    as_of: datetime,
    view: str = EVENTS_VIEW,
) -> _Input:
    """Events from a database, or from files whose key=value partition folders may
    supply contract columns (other partition keys are dropped by the view)."""
    columns = event_map(entry)
    source = entry.source
    if isinstance(source, DatabaseSource):
        return _database_input(con, source, view, columns, validate_events, as_of=as_of)
    files = list_files(source, fmt)
    fmt = file_format(files[0], fmt)
    problems = [
        p for f in files for p in validate_events_file(con, f, fmt, as_of, columns)
    ]
    relation = (
        ""
        if problems
        else (_files_relation(con, files, fmt, typed=False, hive=True, columns=columns))
    )
    return _Input(problems, relation, files)


def _attribute_input(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    fmt: str,
    view: str,
    validate: Callable[..., list[Problem]],
    validate_file: Callable[..., list[Problem]],
    columns: ColumnMap | None = None,
    **kwargs: object,
) -> _Input:
    """A customers or subscriptions table from a database, or from files (partition
    folders not read: every column is the table's own)."""
    if isinstance(source, DatabaseSource):
        return _database_input(con, source, view, columns, validate, **kwargs)
    files = list_files(source, fmt)
    fmt = file_format(files[0], fmt)
    problems = [p for f in files for p in validate_file(con, f, fmt, columns, **kwargs)]
    if not problems:
        problems = [p for f in files for p in validate_typed_attributes(con, f, fmt)]
    relation = (
        ""
        if problems
        else (_files_relation(con, files, fmt, typed=True, hive=False, columns=columns))
    )
    return _Input(problems, relation, files)


def _customers_input(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    fmt: str,
    columns: dict[str, str] | None = None,
) -> _Input:
    return _attribute_input(
        con,
        source,
        fmt,
        CUSTOMERS_VIEW,
        validate_customers,
        validate_customers_file,
        ColumnMap(dict(columns or {})),
    )


def _subscriptions_input(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    fmt: str,
    columns: dict[str, str] | None = None,
    base_plans: list[str] | None = None,
) -> _Input:
    return _attribute_input(
        con,
        source,
        fmt,
        SUBSCRIPTIONS_VIEW,
        validate_subscriptions,
        validate_subscriptions_file,
        ColumnMap(dict(columns or {})),
        base_plans=base_plans,
    )


def _subscriptions_view_sql(
    relation: str, present: list[str], ids: _Ids, base_plans: list[str] | None = None
) -> str:
    """Normalising view with every contract column, one row per term: `mrr` read
    as the price, a period in months as days, absent optional columns null.

    The items of one customer with the same start_time and end_time (a base plan,
    its add-ons, seats) are one term: its price the sum of theirs, its plan and
    other values those of the plan item, a plan in `base_plans` before any other
    and then the dearest (ties: the plan name)."""
    price = present_alternative(present, PRICE_COLUMNS)
    period = present_alternative(present, BILLING_PERIOD_COLUMNS)
    days = number_sql(period)
    if period == BILLING_PERIOD_MONTHS:
        days = f"round({days} * {DAYS_PER_MONTH})"
    plan = f"TRIM(CAST({PLAN} AS VARCHAR))"
    base = (
        "false"
        if not base_plans
        else f"coalesce({plan} IN ({', '.join(literal(p) for p in base_plans)}), false)"
    )

    def stamp(col: str) -> str:
        return f"date_trunc('second', {timestamp_sql(col)})"

    def optional(col: str, cast=number_sql, kind: str = "DOUBLE") -> str:
        return cast(col) if col in present else f"CAST(NULL AS {kind})"

    items = (
        f"SELECT {ids.expr(RAW_TEXT)} AS {CUSTOMER_ID}, {plan} AS {PLAN}, "
        f"{stamp(START_TIME)} AS {START_TIME}, {stamp(END_TIME)} AS {END_TIME}, "
        f"{number_sql(price)} AS {PRICE}, {days} AS {BILLING_PERIOD_DAYS}, "
        f"{optional(DISCOUNT)} AS {DISCOUNT}, "
        f"{optional(AUTO_RENEW, boolean_sql, 'BOOLEAN')} AS {AUTO_RENEW}, "
        f"{optional(QUANTITY)} AS {QUANTITY}, "
        f"{{'base': {base}, 'price': {number_sql(price)}, 'plan': {plan}}} AS __rank "
        f"FROM {ids.relation(relation)}"
    )

    def of_plan_item(col: str) -> str:
        return f"arg_max_null({col}, __rank) AS {col}"

    return (
        f"CREATE OR REPLACE VIEW {SUBSCRIPTIONS_VIEW} AS SELECT {CUSTOMER_ID}, "
        f"{of_plan_item(PLAN)}, {START_TIME}, {END_TIME}, sum({PRICE}) AS {PRICE}, "
        + ", ".join(
            of_plan_item(c)
            for c in (BILLING_PERIOD_DAYS, DISCOUNT, AUTO_RENEW, QUANTITY)
        )
        + f" FROM ({items}) GROUP BY {CUSTOMER_ID}, {START_TIME}, {END_TIME}"
    )


def _events_select_sql(
    relation: str,
    types: dict[str, str],
    ids: _Ids,
    event_types: list[str] | None = None,
) -> str:
    """The normalising SELECT of one events source; columns already of the
    contract's type are passed through (a text-to-timestamp round trip costs
    seconds per 20M rows)."""

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
    kept = ", ".join(literal(t) for t in event_types or [])
    return (
        f"SELECT {ids.expr(f'TRIM({text(CUSTOMER_ID)})')} AS {CUSTOMER_ID}, "
        f"date_trunc('second', {stamp}) AS {EVENT_TIME}, "
        f"TRIM({text(EVENT_TYPE)}) AS {EVENT_TYPE}, "
        f"{optional(AMOUNT)} AS {AMOUNT}, {optional(QUANTITY)} AS {QUANTITY} "
        f"FROM {ids.relation(relation)}"
        + (
            ""
            if event_types is None
            else f" WHERE TRIM({text(EVENT_TYPE)}) IN ({kept})"
        )
    )


def _events_view_sql(
    relations: list[str],
    con: duckdb.DuckDBPyConnection,
    ids: _Ids,
    event_types: list[str] | None = None,
    stored: Sequence[str] = (),
) -> str:
    """The events view: each source normalised on its own (its columns' types
    are its own), then all of them as one log (UNION ALL); the `stored`
    relations hold stored ids already (pseudonyms when they are on)."""
    selects = [
        _events_select_sql(r, _column_types(con, r), ids, event_types)
        for r in relations
    ] + [
        _events_select_sql(r, _column_types(con, r), _Ids(), event_types)
        for r in stored
    ]
    return f"CREATE OR REPLACE VIEW {EVENTS_VIEW} AS " + " UNION ALL ".join(selects)


def _column_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rel = con.sql(f"SELECT * FROM {relation} LIMIT 0")
    return {
        name: str(dtype) for name, dtype in zip(rel.columns, rel.types, strict=True)
    }


def _customers_view(
    con: ibis.BaseBackend,
    relation: str,
    ids: _Ids | None = None,
    keep: list[str] | None = None,
) -> ibis.Table:
    """The customers view; with `keep`, only customer_id and those attributes
    (the rest is never read: data minimisation)."""
    ids = ids or _Ids()
    columns = "*" if keep is None else ", ".join([CUSTOMER_ID, *keep])
    if ids.mapped and keep is not None:
        columns += f", {PSEUDONYM}"
    exclude = f"EXCLUDE ({PSEUDONYM}) " if ids.mapped else ""
    con.con.execute(
        f"CREATE OR REPLACE VIEW {CUSTOMERS_VIEW} AS SELECT * {exclude}REPLACE "
        f"({ids.expr(RAW_TEXT)} AS {CUSTOMER_ID}) "
        f"FROM (SELECT {columns} FROM {ids.relation(relation)})"
    )
    return con.table(CUSTOMERS_VIEW)


@dataclass(frozen=True)
class _Ids:
    """How the views read customer ids: as they are, or as their pseudonyms,
    joined from a map of every distinct id (hashing each row's id instead costs
    two SHA-256 per event on every scan: 1.6x the feature job, against 1.2-1.3x)."""

    mapped: bool = False

    def relation(self, relation: str) -> str:
        if not self.mapped:
            return relation
        return (
            f"(SELECT r.*, m.{PSEUDONYM} FROM {relation} r JOIN {PSEUDONYM_MAP} m "
            f"ON m.{RAW_ID} = TRIM(CAST(r.{CUSTOMER_ID} AS VARCHAR)))"
        )

    def expr(self, raw_text: str) -> str:
        return PSEUDONYM if self.mapped else raw_text


def _id_source(
    con: duckdb.DuckDBPyConnection,
    pseudonyms: Pseudonymiser | None,
    relations: list[str],
    suppressed: frozenset[str],
) -> _Ids:
    """The views' ids: with pseudonyms, a temporary map from every distinct raw
    id of `relations` to its pseudonym (kept in memory, never written); with a
    suppression list, its table for the views' anti-join (_suppressed_view)."""
    if suppressed:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {SUPPRESSED_TABLE} (id VARCHAR)")
        con.executemany(
            f"INSERT INTO {SUPPRESSED_TABLE} VALUES (?)", [[s] for s in suppressed]
        )
    if pseudonyms is None or not pseudonyms.enabled:
        return _Ids()
    distinct = " UNION ".join(
        f"SELECT {RAW_TEXT} AS {RAW_ID} FROM {r}" for r in relations
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PSEUDONYM_MAP} AS SELECT {RAW_ID}, "
        f"{pseudonyms.sql(RAW_ID)} AS {PSEUDONYM} FROM (SELECT DISTINCT {RAW_ID} "
        f"FROM ({distinct}))"
    )
    return _Ids(mapped=True)


def _suppressed_view(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Rename `view` aside and put a view without the suppressed customers in its
    place (an anti-join on the stored id)."""
    con.execute(f"DROP VIEW IF EXISTS {view}_all")  # a second load on `con`
    con.execute(f"ALTER VIEW {view} RENAME TO {view}_all")
    con.execute(
        f"CREATE VIEW {view} AS SELECT * FROM {view}_all WHERE {CUSTOMER_ID} "
        f"NOT IN (SELECT id FROM {SUPPRESSED_TABLE})"
    )


EventsInput = Source | EventSource | Sequence[Source | EventSource]


def event_sources(
    events: EventsInput, columns: ColumnsConfig | None = None
) -> list[EventSource]:
    """`events` (one source or several) as EventSources, each with its column
    mapping: `columns.events` overridden by the source's own."""

    def entry(e: Source | EventSource) -> Source | EventSource:
        return EventSource(**e.model_dump()) if isinstance(e, DatabaseSource) else e

    given = [entry(e) for e in events] if isinstance(events, list | tuple) else events
    config = DataConfig(events=given, columns=columns or ColumnsConfig())
    return config.event_sources()


def load_customers(
    customers: Source,
    *,
    fmt: str = "auto",
    con: ibis.BaseBackend | None = None,
    columns: ColumnsConfig | None = None,
) -> ibis.Table:
    """Validate and expose only the customers table (its schema fixes the
    attribute features); ContractError on bad input."""
    con = con or connect()
    mapping = (columns or ColumnsConfig()).customers
    found = _customers_input(con.con, customers, fmt, mapping)
    ensure(found.problems)
    return _customers_view(con, found.relation)


def _all_events(
    raw: duckdb.DuckDBPyConnection,
    sources: list[EventSource],
    fmt: str,
    as_of: datetime,
) -> list[_Input]:
    """Each events source read and validated (a staged database table named by
    its place when there are several)."""
    if len(sources) == 1:
        return [_events_input(raw, sources[0], fmt, as_of)]
    return [
        _events_input(raw, entry, fmt, as_of, view=f"{EVENTS_VIEW}_{i}")
        for i, entry in enumerate(sources)
    ]


def load(
    events: EventsInput,
    customers: Source | None = None,
    *,
    fmt: str = "auto",
    as_of: datetime | None = None,
    con: ibis.BaseBackend | None = None,
    subscriptions: Source | None = None,
    pseudonyms: Pseudonymiser | None = None,
    suppressed: frozenset[str] = frozenset(),
    attributes: list[str] | None = None,
    event_types: list[str] | None = None,
    columns: ColumnsConfig | None = None,
    base_plans: list[str] | None = None,
    stored_events: Path | None = None,
) -> Dataset:
    """Validate every input, then expose them as views; ContractError on bad input.

    Each input is a file or folder path, or a DatabaseSource; the events may also
    be an EventSource (a constant event type, its own column mapping) or a list
    of sources, each validated on its own and then combined into one log.
    `columns` maps contract names to the sources' own (data.columns). `as_of`
    defaults to now: events after it are rejected as being in the future.
    Subscriptions are optional: without them the dataset is what it always was;
    their items with one customer and period are one term (`base_plans` names
    the plan items).

    Privacy (features.sources.privacy): with `pseudonyms` every view holds customer ids
    as pseudonyms; customers whose stored id is in `suppressed` are dropped from
    every view; with `attributes` the customers view holds only those columns.
    Validation reads the raw input, and its messages name files, rows and
    columns, never an id. `stored_events` is a folder of events files whose ids
    are stored ids already (real-time ingest's sealed log): validated and added
    to the events as they are.
    """
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
    con = con or connect()
    raw = con.con
    columns = columns or ColumnsConfig()
    sources = event_sources(events, columns)
    found = _all_events(raw, sources, fmt, as_of)
    if stored_events is not None:
        found.append(
            _events_input(
                raw, EventSource(path=stored_events), "auto", as_of, "events_stored"
            )
        )
    people = (
        None
        if customers is None
        else _customers_input(raw, customers, fmt, columns.customers)
    )
    terms = (
        None
        if subscriptions is None
        else _subscriptions_input(
            raw, subscriptions, fmt, columns.subscriptions, base_plans
        )
    )
    ensure(
        [p for i in found for p in i.problems]
        + (people.problems if people else [])
        + (terms.problems if terms else [])
    )
    stored_input = found.pop() if stored_events is not None else None
    plain = [stored_input.relation] if stored_input is not None else []
    event_relations = [i.relation for i in found]
    relations = event_relations + [i.relation for i in (people, terms) if i]
    ids = _id_source(raw, pseudonyms, relations, suppressed)
    raw.execute(_events_view_sql(event_relations, raw, ids, event_types, plain))
    views = [EVENTS_VIEW]
    if people:
        _customers_view(con, people.relation, ids, attributes)
        views.append(CUSTOMERS_VIEW)
    if terms:
        present = list(_column_types(raw, terms.relation))
        raw.execute(_subscriptions_view_sql(terms.relation, present, ids, base_plans))
        views.append(SUBSCRIPTIONS_VIEW)
    for view in views if suppressed else []:
        _suppressed_view(raw, view)
    customers_table = con.table(CUSTOMERS_VIEW) if people else None
    subscriptions_table = con.table(SUBSCRIPTIONS_VIEW) if terms else None
    log.info(
        "loaded events from %s, customers from %s, subscriptions from %s",
        ", ".join(str(e) for e in sources),
        customers,
        subscriptions,
    )
    return Dataset(
        con,
        con.table(EVENTS_VIEW),
        customers_table,
        [f for i in found for f in i.files]
        + (stored_input.files if stored_input else []),
        people.files if people else [],
        subscriptions_table,
        terms.files if terms else [],
        suppressed,
        event_sources=sources,
    )


def load_project(config: ProjectConfig, con: ibis.BaseBackend | None = None) -> Dataset:
    """The project's data as its config says: sources, column mapping, format and
    as-of, and the privacy settings (pseudonyms, the suppression list, only the
    attributes and event types the config uses)."""
    return load(
        config.data.events,
        config.data.customers,
        fmt=config.data.format,
        as_of=config.data.as_of,
        con=con,
        subscriptions=config.data.subscriptions,
        pseudonyms=pseudonymiser(config.privacy),
        suppressed=suppressed(config.privacy),
        attributes=config.attributes_read(),
        event_types=config.roles.types_read(),
        columns=config.data.columns,
        base_plans=config.data.base_plans,
        stored_events=ingested_parts(config),
    )


__all__ = [
    "ContractError",
    "Dataset",
    "connect",
    "load",
    "load_customers",
    "event_sources",
    "load_project",
]


INGESTED_PARTS = "parts"


def ingested_parts(config: ProjectConfig) -> Path | None:
    """The sealed parts of real-time ingest's event log (serving.ingest.log:
    `<ingest.log>/parts`, stored ids, the contract's column names), or None
    when there are none yet."""
    parts = Path(config.ingest.log) / INGESTED_PARTS
    return parts if any(parts.glob("part-*.parquet")) else None
