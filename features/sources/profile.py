"""What a new event log holds, read by DuckDB, and the column mapping and roles a
starter config proposes from it (`propensity init`).

`profile_events` reads a CSV or Parquet file (or a folder of them) in its own
column names and types and measures it: rows, customers, time span, the last
complete day, event types with their counts and events per customer, the columns
holding amounts and quantities. The proposals are made from the source's own
names and types:

- `propose_events_columns`: the id column, the timestamp (or date) column, the
  event-type column if one exists, amount and quantity columns by name and
  numeric type. Without an event-type column the source gets a constant
  `event_type` (`purchase` when the table looks like purchases: an amount, or a
  file named after orders, purchases, sales, transactions);
- `propose_roles`: roles from the event-type names and their frequencies;
- `propose_customers_columns`, `propose_subscriptions_columns`: the same for the
  optional tables; `fairness_segments`: the customers' categorical attributes.

Nothing here writes a config: `training.starter` renders the proposals as YAML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from features.columns import (
    AMOUNT,
    AUTO_RENEW,
    BILLING_PERIOD_DAYS,
    BILLING_PERIOD_MONTHS,
    CANCEL,
    CUSTOMER_ID,
    DISCOUNT,
    END_TIME,
    EVENT_TIME,
    EVENT_TYPE,
    MRR,
    PLAN,
    PRICE,
    PURCHASE,
    QUANTITY,
    SERVICE_REQUEST,
    SIGNUP_TIME,
    START_TIME,
)
from features.sources.contract import (
    ContractError,
    Problem,
    file_format,
    list_files,
    timestamp_sql,
)

# the words of an event-type name that propose each role (substrings, lower case)
ROLE_WORDS: dict[str, tuple[str, ...]] = {
    CANCEL: ("cancel", "churn", "unsubscribe", "close"),
    SERVICE_REQUEST: ("ticket", "support", "complaint", "contact", "call"),
    PURCHASE: ("purchase", "order", "transaction", "buy"),
}
# a cancel happens about once in a customer's life: a cancel-like type that its
# customers have more often than this on average is left as activity
MAX_CANCELS_PER_CUSTOMER = 3.0

ID_WORDS = ("customer", "cust", "household", "client", "user", "account", "member")
ID_SUFFIXES = ("id", "key", "no", "nr", "number", "code")
NOT_ID_WORDS = ("order", "invoice", "transaction", "product", "store", "item")
NOT_ID_WORDS += ("sku", "basket", "session", "event", "coupon", "campaign")
TIME_WORDS = ("time", "date", "timestamp", "datetime", "ts", "day", "at", "when")
TIME_WORDS += ("created", "occurred")
TYPE_WORDS = ("type", "event", "action", "kind", "activity", "name")
AMOUNT_WORDS = ("amount", "sales", "revenue", "value", "total", "spend", "paid")
AMOUNT_WORDS += ("net", "gross", "dollars", "sum", "price", "cost")
QUANTITY_WORDS = ("quantity", "qty", "units", "items", "count", "volume")
PURCHASE_TABLE_WORDS = ("purchase", "order", "transaction", "sale", "invoice")
PURCHASE_TABLE_WORDS += ("basket", "retail")
# an event-type column holds at most this many distinct values
MAX_EVENT_TYPES = 200
MAX_SEGMENT_VALUES = 20

NUMERIC = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT"
    r"|FLOAT|DOUBLE|REAL|DECIMAL.*)$"
)
TEMPORAL = re.compile(r"^(DATE|TIMESTAMP.*)$")


def words(name: str) -> list[str]:
    """A column name's lower-case words: `HouseholdID` -> household, id."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^0-9a-z]+", spaced.lower()) if w]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB's type name, e.g. VARCHAR, DOUBLE, TIMESTAMP

    @property
    def numeric(self) -> bool:
        return bool(NUMERIC.match(self.type))

    @property
    def temporal(self) -> bool:
        return bool(TEMPORAL.match(self.type))


@dataclass(frozen=True)
class EventType:
    name: str
    events: int
    customers: int

    @property
    def per_customer(self) -> float:
        return self.events / max(self.customers, 1)


@dataclass(frozen=True)
class EventsMapping:
    """Contract name -> the source's column, and the constant event type when the
    source has no event-type column."""

    columns: dict[str, str]
    constant_event_type: str | None = None

    def renamed(self) -> dict[str, str]:
        """The entries whose source name differs from the contract's."""
        return {k: v for k, v in self.columns.items() if k != v}


@dataclass
class EventsSource:
    """One events source: its files, its own columns and the mapping proposed."""

    path: Path
    files: list[Path]
    format: str
    columns: list[Column]
    mapping: EventsMapping
    rows: int = 0
    amount_columns: list[str] = field(default_factory=list)
    quantity_columns: list[str] = field(default_factory=list)

    def text(self) -> str:
        mapped = ", ".join(f"{k} <- {v}" for k, v in self.mapping.columns.items())
        lines = [
            f"events: {self.path} ({self.format}, {len(self.files)} file(s)), "
            f"rows {self.rows:,}",
            f"  columns: {mapped}",
        ]
        if self.mapping.constant_event_type:
            lines.append(
                f"  no event-type column: every row is "
                f"{self.mapping.constant_event_type!r}"
            )
        lines.append(
            "  amounts: "
            + (", ".join(self.amount_columns) or "none")
            + "; quantities: "
            + (", ".join(self.quantity_columns) or "none")
        )
        return "\n".join(lines)


@dataclass
class Profile:
    """What the events (one source or several, read as one log) and the optional
    tables hold."""

    sources: list[EventsSource]
    rows: int
    customers: int
    first: datetime
    last: datetime
    # the last day with events, and that day's events against the median day's
    last_day_events: int
    median_day_events: float
    event_types: list[EventType] = field(default_factory=list)
    customers_table: TableProfile | None = None
    subscriptions_table: TableProfile | None = None
    # rows the data contract refuses: no customer id, no readable time
    missing_ids: int = 0
    bad_times: int = 0

    # the first (or only) source's, for a log read from one source
    @property
    def path(self) -> Path:
        return self.sources[0].path

    @property
    def mapping(self) -> EventsMapping:
        return self.sources[0].mapping

    @property
    def columns(self) -> list[Column]:
        return self.sources[0].columns

    @property
    def amount_columns(self) -> list[str]:
        return [c for s in self.sources for c in s.amount_columns]

    @property
    def quantity_columns(self) -> list[str]:
        return [c for s in self.sources for c in s.quantity_columns]

    @property
    def last_complete_day(self) -> date:
        """The data are complete through the end of the last day with events."""
        return self.last.date()

    @property
    def data_end(self) -> datetime:
        """The instant the data are complete through (the next midnight)."""
        day = self.last_complete_day
        return datetime(day.year, day.month, day.day) + timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.last_complete_day - self.first.date()).days + 1

    @property
    def last_day_partial(self) -> bool:
        """The last day holds far fewer events than a median day: perhaps an
        export cut mid-day (the day would then count as complete)."""
        return self.days > 7 and self.last_day_events < 0.25 * self.median_day_events

    def text(self) -> str:
        """The profile for people."""
        lines = [source.text() for source in self.sources]
        lines += [
            ("the log, " if len(self.sources) > 1 else "")
            + f"rows {self.rows:,}, customers {self.customers:,}, "
            f"{self.rows / max(self.customers, 1):.1f} events per customer",
            f"  time span {self.first:%Y-%m-%d %H:%M} .. {self.last:%Y-%m-%d %H:%M} "
            f"({self.days} days); complete through {self.last_complete_day} "
            f"(the last day with events)",
        ]
        if self.last_day_partial:
            lines.append(
                f"  note: {self.last_complete_day} holds {self.last_day_events:,} "
                f"event(s) against a median day's {self.median_day_events:,.0f}; if "
                "the export was cut that day, export through the day before"
            )
        ids = " or ".join(
            dict.fromkeys(s.mapping.columns[CUSTOMER_ID] for s in self.sources)
        )
        times = " or ".join(
            dict.fromkeys(s.mapping.columns[EVENT_TIME] for s in self.sources)
        )
        for n, what in (
            (self.missing_ids, f"{ids} is empty"),
            (self.bad_times, f"{times} is no timestamp"),
        ):
            if n:
                lines.append(
                    f"  warning: {what} in {n:,} rows ({n / self.rows:.1%}): the data "
                    "contract refuses them; leave them out of the export"
                )
        lines.append(
            f"  event types ({len(self.event_types)}): events, customers, per customer"
        )
        for t in self.event_types[:30]:
            lines.append(
                f"    {t.name:30} {t.events:>12,} {t.customers:>10,} "
                f"{t.per_customer:>8.1f}"
            )
        if len(self.event_types) > 30:
            lines.append(f"    ... and {len(self.event_types) - 30} more")
        for label, table in (
            ("customers", self.customers_table),
            ("subscriptions", self.subscriptions_table),
        ):
            if table is not None:
                lines.append(table.text(label))
        return "\n".join(lines)


@dataclass
class TableProfile:
    """An optional table (customers, subscriptions): its columns and mapping."""

    path: Path
    files: list[Path]
    format: str
    columns: list[Column]
    rows: int
    mapping: dict[str, str]
    # customers: attribute columns with their distinct values
    distinct: dict[str, int] = field(default_factory=dict)

    def renamed(self) -> dict[str, str]:
        return {k: v for k, v in self.mapping.items() if k != v}

    def text(self, label: str) -> str:
        mapped = ", ".join(f"{k} <- {v}" for k, v in self.mapping.items())
        return (
            f"{label}: {self.path} ({self.format}), rows {self.rows:,}\n"
            f"  columns: {mapped}"
        )


# -- reading ---------------------------------------------------------------------


def _relation(path: Path, fmt: str = "auto") -> tuple[str, list[Path], str]:
    """A DuckDB table expression over a file or folder, read with its own types."""
    files = list_files(Path(path), fmt)
    fmt = file_format(files[0], fmt)
    paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    if fmt == "parquet":
        return f"read_parquet([{paths}], union_by_name = true)", files, fmt
    return (
        f"read_csv([{paths}], header = true, union_by_name = true, "
        "auto_detect = true, sample_size = -1)",
        files,
        fmt,
    )


def _columns(con: duckdb.DuckDBPyConnection, relation: str, path: Path) -> list[Column]:
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    except duckdb.Error as exc:
        raise ContractError([Problem(path, None, f"cannot be read: {exc}")]) from exc
    return [Column(row[0], str(row[1])) for row in described]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def profile_events(
    events: Path | Sequence[Path],
    customers: Path | None = None,
    subscriptions: Path | None = None,
    fmt: str = "auto",
    con: duckdb.DuckDBPyConnection | None = None,
) -> Profile:
    """Read and measure the events (one source, or several read as one log) and
    the optional tables; propose mappings."""
    paths = [Path(events)] if isinstance(events, str | Path) else list(events)
    if not paths:
        raise ValueError("no events source given")
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sources, selects = [], []
    for path in paths:
        relation, files, kind = _relation(path, fmt)
        columns = _columns(con, relation, path)
        mapping = propose_events_columns(columns, path, several=len(paths) > 1)
        cid = _quote(mapping.columns[CUSTOMER_ID])
        t = timestamp_sql(_quote(mapping.columns[EVENT_TIME]))
        kind_sql = (
            f"CAST({_quote(mapping.columns[EVENT_TYPE])} AS VARCHAR)"
            if EVENT_TYPE in mapping.columns
            else "'" + str(mapping.constant_event_type).replace("'", "''") + "'"
        )
        selects.append(
            f"SELECT TRIM(CAST({cid} AS VARCHAR)) AS _cid, {t} AS _t, "
            f"{kind_sql} AS _type FROM {relation}"
        )
        (rows,) = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
        if not rows:
            raise ContractError([Problem(path, None, "has no rows")])
        sources.append(
            EventsSource(
                path,
                files,
                kind,
                columns,
                mapping,
                int(rows),
                amount_columns=[c.name for c in columns if _amount_like(c)],
                quantity_columns=[c.name for c in columns if _quantity_like(c)],
            )
        )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW profiled AS " + " UNION ALL ".join(selects)
    )
    rows, n_customers, first, last, bad, no_id = con.execute(
        "SELECT count(*), count(DISTINCT _cid) FILTER (WHERE _cid <> ''), min(_t), "
        "max(_t), count(*) FILTER (WHERE _t IS NULL), count(*) FILTER (WHERE _cid "
        "IS NULL OR _cid = '') FROM profiled"
    ).fetchone()
    if first is None:
        times = ", ".join(
            f"{s.path}: {s.mapping.columns[EVENT_TIME]!r}" for s in sources
        )
        raise ContractError(
            [Problem(paths[0], None, f"no timestamp in the time column(s): {times}")]
        )
    by_day = con.execute(
        "SELECT CAST(_t AS DATE) AS d, count(*) AS n FROM profiled "
        "WHERE _t IS NOT NULL GROUP BY d ORDER BY d"
    ).fetchall()
    counts = sorted(n for _, n in by_day)
    median = float(counts[len(counts) // 2])
    types = [
        EventType(str(name), int(n), int(c))
        for name, n, c in con.execute(
            "SELECT _type, count(*) AS n, count(DISTINCT _cid) FROM profiled "
            "GROUP BY _type ORDER BY n DESC, _type"
        ).fetchall()
    ]
    profile = Profile(
        sources=sources,
        rows=int(rows),
        customers=int(n_customers),
        first=first,
        last=last,
        last_day_events=int(by_day[-1][1]),
        median_day_events=median,
        event_types=types,
        missing_ids=int(no_id),
        bad_times=int(bad),
    )
    events_id = sources[0].mapping.columns[CUSTOMER_ID]
    if customers is not None:
        profile.customers_table = profile_customers(customers, events_id, fmt, con)
    if subscriptions is not None:
        profile.subscriptions_table = profile_subscriptions(
            subscriptions, events_id, fmt, con
        )
    return profile


def profile_customers(
    path: Path, events_id: str, fmt: str, con: duckdb.DuckDBPyConnection
) -> TableProfile:
    relation, files, kind = _relation(path, fmt)
    columns = _columns(con, relation, Path(path))
    mapping = propose_customers_columns(columns, events_id, Path(path))
    attributes = [
        c.name for c in columns if c.name not in mapping.values() and not c.temporal
    ]
    distinct = {}
    if attributes:
        counted = con.execute(
            "SELECT "
            + ", ".join(f"count(DISTINCT {_quote(a)})" for a in attributes)
            + f" FROM {relation}"
        ).fetchone()
        distinct = dict(zip(attributes, map(int, counted), strict=True))
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    return TableProfile(Path(path), files, kind, columns, int(rows), mapping, distinct)


def profile_subscriptions(
    path: Path, events_id: str, fmt: str, con: duckdb.DuckDBPyConnection
) -> TableProfile:
    relation, files, kind = _relation(path, fmt)
    columns = _columns(con, relation, Path(path))
    mapping = propose_subscriptions_columns(columns, events_id, Path(path))
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    return TableProfile(Path(path), files, kind, columns, int(rows), mapping)


# -- proposals from names and types -------------------------------------------------


def _has(name: str, vocabulary: Sequence[str]) -> bool:
    return any(w in vocabulary for w in words(name))


def _id_score(column: Column) -> int:
    """How much a column looks like the customer id (0: not at all)."""
    ws = words(column.name)
    if column.name.lower() == CUSTOMER_ID:
        return 100
    if any(w in NOT_ID_WORDS for w in ws) or column.temporal:
        return 0
    entity = any(w.startswith(ID_WORDS) for w in ws)
    suffix = any(w in ID_SUFFIXES for w in ws) or ws[-1].endswith("id")
    if entity and suffix:
        return 50
    if entity:
        return 30
    if ws == ["id"]:
        return 10
    return 0


def _pick(columns: Sequence[Column], score) -> Column | None:
    scored = [(score(c), -i, c) for i, c in enumerate(columns)]
    best = max(scored, key=lambda s: (s[0], s[1]), default=None)
    return best[2] if best and best[0] > 0 else None


def _time_score(column: Column) -> int:
    ws = words(column.name)
    named = column.name.lower() == EVENT_TIME
    hinted = any(w in TIME_WORDS for w in ws)
    if column.temporal:
        return 100 if named else 60 + 10 * hinted
    if column.type == "VARCHAR" and (named or hinted):
        return 20  # text the loader parses as a timestamp
    return 0


def _type_score(column: Column) -> int:
    if column.type != "VARCHAR":
        return 0
    if column.name.lower() == EVENT_TYPE:
        return 100
    ws = words(column.name)
    if "type" in ws and ("event" in ws or "action" in ws):
        return 80
    return 40 if any(w in TYPE_WORDS for w in ws) and len(ws) <= 2 else 0


def _amount_like(column: Column) -> bool:
    return column.numeric and (
        column.name.lower() == AMOUNT or _has(column.name, AMOUNT_WORDS)
    )


def _quantity_like(column: Column) -> bool:
    """Named like a quantity: quantity, qty, units, ... or a count of something
    (`number_of_cds`, `num_items`, `n_units`)."""
    ws = words(column.name)
    counted = len(ws) > 1 and (ws[:2] == ["number", "of"] or ws[0] in ("num", "n"))
    return column.numeric and (
        column.name.lower() == QUANTITY or _has(column.name, QUANTITY_WORDS) or counted
    )


def _amount_score(column: Column) -> int:
    if not _amount_like(column):
        return 0
    if column.name.lower() == AMOUNT:
        return 100
    # a line's total before a unit price
    ranked = AMOUNT_WORDS[::-1]
    return 10 + max(ranked.index(w) for w in words(column.name) if w in ranked)


def _quantity_score(column: Column) -> int:
    if not _quantity_like(column):
        return 0
    return 100 if column.name.lower() == QUANTITY else 50


def looks_like_purchases(path: Path, amount: str | None) -> bool:
    """A table without event types is purchases when it carries an amount or its
    name says orders, sales, transactions."""
    return amount is not None or _has(path.stem, PURCHASE_TABLE_WORDS)


def constant_event_type(path: Path, amount: str | None, several: bool = False) -> str:
    """The event type of a source without an event-type column, from its name: a
    file named after tickets, complaints, cancellations keeps its name (so roles
    are proposed from it), one that looks like purchases is `purchase`; otherwise
    the file's name when the log has several sources, else `event`."""
    name = "_".join(words(path.stem)) or "event"
    role_words = ROLE_WORDS[CANCEL] + ROLE_WORDS[SERVICE_REQUEST]
    if any(w in name for w in role_words):
        return name
    if looks_like_purchases(path, amount):
        return PURCHASE
    return name if several else "event"


def propose_events_columns(
    columns: Sequence[Column], path: Path, several: bool = False
) -> EventsMapping:
    """The contract's event columns from the source's names and types; a
    ContractError naming the columns when no id or time column is found.
    `several`: the source is one of several read as one log."""
    found: dict[str, str] = {}
    for contract, score in (
        (CUSTOMER_ID, _id_score),
        (EVENT_TIME, _time_score),
    ):
        taken = set(found.values())
        best = _pick([c for c in columns if c.name not in taken], score)
        if best is None:
            names = ", ".join(f"{c.name} ({c.type})" for c in columns)
            what = {
                CUSTOMER_ID: "customer id column (e.g. customer_id, household_id)",
                EVENT_TIME: "timestamp or date column (e.g. event_time, order_date)",
            }[contract]
            raise ContractError(
                [Problem(path, None, f"found no {what} among: {names}")]
            )
        found[contract] = best.name
    rest = [c for c in columns if c.name not in found.values()]
    event_type = _pick(rest, _type_score)
    if event_type is not None:
        found[EVENT_TYPE] = event_type.name
    rest = [c for c in rest if c.name not in found.values()]
    amount = _pick(rest, _amount_score)
    if amount is not None:
        found[AMOUNT] = amount.name
    rest = [c for c in rest if c.name not in found.values()]
    quantity = _pick(rest, _quantity_score)
    if quantity is not None:
        found[QUANTITY] = quantity.name
    constant = None
    if event_type is None:
        constant = constant_event_type(path, found.get(AMOUNT), several)
    return EventsMapping(found, constant)


def propose_customers_columns(
    columns: Sequence[Column], events_id: str, path: Path
) -> dict[str, str]:
    """customer_id (the events' id name first) and signup_time when one is dated."""
    same = [c for c in columns if c.name == events_id]
    best = same[0] if same else _pick(columns, _id_score)
    if best is None:
        names = ", ".join(c.name for c in columns)
        raise ContractError(
            [Problem(path, None, f"found no customer id column among: {names}")]
        )
    found = {CUSTOMER_ID: best.name}
    signup = _pick(
        [c for c in columns if c.name != best.name],
        lambda c: (
            (c.temporal or c.name.lower() == SIGNUP_TIME)
            * (
                (c.name.lower() == SIGNUP_TIME) * 100
                + _has(c.name, ("signup", "registered", "joined", "created", "since"))
                * 50
            )
        ),
    )
    if signup is not None:
        found[SIGNUP_TIME] = signup.name
    return found


SUBSCRIPTION_WORDS: dict[str, tuple[str, ...]] = {
    PLAN: ("plan", "product", "tier", "package", "sku"),
    START_TIME: ("start", "begin", "from", "starts", "started"),
    END_TIME: ("end", "until", "to", "expires", "expiry", "ends", "ended"),
    PRICE: ("price", "amount", "fee"),
    MRR: ("mrr",),
    BILLING_PERIOD_DAYS: ("days",),
    BILLING_PERIOD_MONTHS: ("months", "month"),
    DISCOUNT: ("discount",),
    AUTO_RENEW: ("renew", "autorenew", "renewal"),
}


def propose_subscriptions_columns(
    columns: Sequence[Column], events_id: str, path: Path
) -> dict[str, str]:
    """The subscription contract's columns by name (each exact name first)."""
    found = propose_customers_columns(columns, events_id, path)
    found.pop(SIGNUP_TIME, None)
    for contract, vocabulary in SUBSCRIPTION_WORDS.items():
        taken = set(found.values())
        rest = [c for c in columns if c.name not in taken]
        exact = [c for c in rest if c.name.lower() == contract]
        if exact:
            found[contract] = exact[0].name
            continue
        if contract in (BILLING_PERIOD_DAYS, BILLING_PERIOD_MONTHS):
            rest = [c for c in rest if c.numeric and _has(c.name, ("period", "bill"))]
        best = _pick(rest, lambda c, v=vocabulary: int(_has(c.name, v)))
        if best is not None:
            found[contract] = best.name
    if PRICE in found and MRR in found:
        found.pop(PRICE)
    if BILLING_PERIOD_DAYS in found and BILLING_PERIOD_MONTHS in found:
        found.pop(BILLING_PERIOD_MONTHS)
    return found


def fairness_segments(table: TableProfile | None, limit: int = 3) -> list[str]:
    """Categorical customer attributes (text, 2..MAX_SEGMENT_VALUES values)."""
    if table is None:
        return []
    types = {c.name: c for c in table.columns}
    return [
        name
        for name, n in table.distinct.items()
        if types[name].type in ("VARCHAR", "BOOLEAN") and 2 <= n <= MAX_SEGMENT_VALUES
    ][:limit]


@dataclass(frozen=True)
class RoleProposal:
    roles: dict[str, list[str]]  # purchase, service_request, cancel
    # why a name-matched type was left as activity
    notes: list[str] = field(default_factory=list)


def propose_roles(types: Sequence[EventType]) -> RoleProposal:
    """Roles from the event-type names (ROLE_WORDS, cancel first, then service
    request, then purchase) and their frequencies: a cancel-like type its customers
    have more than MAX_CANCELS_PER_CUSTOMER times each, or one that names an order
    (a cancelled order, not a customer leaving), is left as activity."""
    roles: dict[str, list[str]] = {PURCHASE: [], SERVICE_REQUEST: [], CANCEL: []}
    notes = []
    for t in types:
        name = t.name.lower()
        role = next(
            (r for r, ws in ROLE_WORDS.items() if any(w in name for w in ws)), None
        )
        if role == CANCEL and any(w in name for w in ROLE_WORDS[PURCHASE]):
            notes.append(
                f"{t.name!r} sounds like a cancelled order, not a customer leaving: "
                "left as activity"
            )
            continue
        if role == CANCEL and t.per_customer > MAX_CANCELS_PER_CUSTOMER:
            notes.append(
                f"{t.name!r} sounds like a cancel but its customers have it "
                f"{t.per_customer:.1f} times each: left as activity"
            )
            continue
        if role is not None:
            roles[role].append(t.name)
    return RoleProposal(roles, notes)
