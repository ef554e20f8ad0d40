"""The data sections: where the events come from, the engine reading them, the
event types' roles, the targets, the feature windows and the training cutoffs."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

import pandas as pd
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.config.base import ConfigPath, Strict, config_base, path_or
from core.names import ACTIVITY, CANCEL, PURCHASE, SERVICE_REQUEST, TARGETS

ROLE_NAMES = (ACTIVITY, PURCHASE, SERVICE_REQUEST, CANCEL)


class SparkConfig(Strict):
    """The Spark session of `engine.kind: spark`. `master` None leaves the choice to
    Spark's own environment (spark-submit's --master, spark-defaults.conf), which
    is local mode on every core when nothing says otherwise; `conf` entries are
    passed to the session builder as they are."""

    master: str | None = None
    app_name: str = "propensity"
    conf: dict[str, str] = Field(default_factory=dict)


class EngineConfig(Strict):
    """Which engine builds features and training sets and scores the nightly job,
    and its resources. For DuckDB, None keeps its defaults (80% of RAM, every
    core); a memory limit makes DuckDB spill to disk instead of growing. DuckDB
    also validates the input files under Spark (features.sources.spark)."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    memory_limit: str | None = Field(
        None, pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )
    threads: int | None = Field(None, ge=1)
    spark: SparkConfig = SparkConfig()


POSTGRES_SCHEMES = ("postgresql", "postgres")
DUCKDB_SCHEME = "duckdb"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


def _database_uri(uri: str, schemes: tuple[str, ...], expected: str) -> str:
    """`uri` if its scheme is one of `schemes` and it holds no credentials."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme not in schemes:
        raise ValueError(f"unknown scheme {scheme or uri!r}; expected {expected}")
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    if parts.username or parts.password or "user" in query or "password" in query:
        raise ValueError(
            "the URI holds credentials; remove them and set PGUSER and "
            "PGPASSWORD (or ~/.pgpass) in the environment instead"
        )
    return uri


def _duckdb_file(uri: str) -> Path:
    """The file of a `duckdb:` URI: `duckdb:x.duckdb` or `duckdb:///abs/x.duckdb`."""
    return Path(uri.split(":", 1)[1].removeprefix("//"))


def _resolved_uri(uri: str, info: ValidationInfo) -> str:
    """A database URI checked, a relative DuckDB file taken against the config's
    folder."""
    uri = _database_uri(
        uri,
        (*POSTGRES_SCHEMES, DUCKDB_SCHEME),
        "postgresql://HOST:PORT/DATABASE or duckdb:PATH",
    )
    base = config_base(info)
    if base is None or uri.split(":", 1)[0].lower() != DUCKDB_SCHEME:
        return uri
    path = _duckdb_file(uri)
    return uri if path.is_absolute() else f"{DUCKDB_SCHEME}:{base / path}"


def _table_name(table: str | None) -> str | None:
    if table is not None and not _TABLE_NAME.match(table):
        raise ValueError(
            f"{table!r} is not a table name such as events or schema.events "
            "(use query for anything else)"
        )
    return table


class DatabaseSource(Strict):
    """A table or a query in a database: Postgres (`postgresql://host:port/db`) or
    a DuckDB file (`duckdb:path/to/file.duckdb`). The URI holds no credentials:
    libpq reads PGUSER and PGPASSWORD (or ~/.pgpass) from the environment. A
    relative DuckDB file resolves against the config's folder, like a path."""

    uri: str
    table: str | None = None
    query: str | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str, info: ValidationInfo) -> str:
        return _resolved_uri(uri, info)

    @field_validator("table")
    @classmethod
    def _table(cls, table: str | None) -> str | None:
        return _table_name(table)

    @model_validator(mode="after")
    def _table_or_query(self) -> DatabaseSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give either table or query (not both)")
        return self

    @property
    def scheme(self) -> str:
        return self.uri.split(":", 1)[0].lower()

    @property
    def duckdb_path(self) -> Path:
        """The DuckDB file: `duckdb:x.duckdb` (relative) or `duckdb:///abs/x.duckdb`."""
        return _duckdb_file(self.uri)

    def __str__(self) -> str:
        if self.table is not None:
            return f"{self.uri}, table {self.table}"
        query = " ".join(str(self.query).split())
        return f"{self.uri}, query {query[:60] + '...' if len(query) > 63 else query!r}"


DATABASE_MAPPING = (
    "a database source is a mapping: {uri: ..., table: ...} or {uri: ..., query: ...}"
)


def _source_kind(value: object) -> str:
    return "(database)" if isinstance(value, dict | DatabaseSource) else "(path)"


def _path(value: object) -> object:
    if isinstance(value, str) and "://" in value:
        raise ValueError(DATABASE_MAPPING)
    return value


# A path, or a mapping read as a DatabaseSource. Errors leave the "(...)" tags out
# of the key they name (data.events.uri; see project._format_error).
Source = path_or(DatabaseSource, "(database)", DATABASE_MAPPING)


# The contract's names a `data.columns` mapping may map, per table (the same
# strings as features.columns, which core does not import; a unit test ties them).
EVENT_NAMES = ("customer_id", "event_time", "event_type", "amount", "quantity")
CUSTOMER_NAMES = ("customer_id", "signup_time")
SUBSCRIPTION_NAMES = (
    "customer_id",
    "plan",
    "start_time",
    "end_time",
    "price",
    "mrr",
    "billing_period_days",
    "billing_period_months",
    "discount",
    "auto_renew",
    "quantity",
)
_ALTERNATIVES = (("price", "mrr"), ("billing_period_days", "billing_period_months"))


def _column_map(mapping: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """`mapping` (contract name -> the source's column) checked: known contract
    names, non-empty source names, one of each pair of alternatives."""
    unknown = [k for k in mapping if k not in names]
    if unknown:
        raise ValueError(
            f"unknown contract column(s) {unknown}; expected some of {list(names)}"
        )
    for key, column in mapping.items():
        if not column.strip():
            raise ValueError(f"{key}: expected the source's column name, got ''")
    for a, b in _ALTERNATIVES:
        if a in mapping and b in mapping:
            raise ValueError(f"map {a} or {b}, not both")
    return mapping


class ColumnsConfig(Strict):
    """Contract name -> the source's own column name, per table. A name left out
    is read under the contract's name."""

    events: dict[str, str] = Field(default_factory=dict)
    customers: dict[str, str] = Field(default_factory=dict)
    subscriptions: dict[str, str] = Field(default_factory=dict)

    @field_validator("events")
    @classmethod
    def _events(cls, mapping: dict[str, str]) -> dict[str, str]:
        return _column_map(mapping, EVENT_NAMES)

    @field_validator("customers")
    @classmethod
    def _customers(cls, mapping: dict[str, str]) -> dict[str, str]:
        return _column_map(mapping, CUSTOMER_NAMES)

    @field_validator("subscriptions")
    @classmethod
    def _subscriptions(cls, mapping: dict[str, str]) -> dict[str, str]:
        return _column_map(mapping, SUBSCRIPTION_NAMES)


class EventSource(Strict):
    """One source of `data.events` given as a mapping: a file or folder (`path`)
    or a database table or query (`uri` with `table` or `query`), with an optional
    constant `event_type` (a purchases table has no such column) and `columns`
    that extend or override `data.columns.events` for this source."""

    path: ConfigPath | None = None
    uri: str | None = None
    table: str | None = None
    query: str | None = None
    event_type: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str | None, info: ValidationInfo) -> str | None:
        return None if uri is None else _resolved_uri(uri, info)

    @field_validator("table")
    @classmethod
    def _table(cls, table: str | None) -> str | None:
        return _table_name(table)

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, event_type: str | None) -> str | None:
        if event_type is not None and not event_type.strip():
            raise ValueError("expected an event type name, got ''")
        return None if event_type is None else event_type.strip()

    @field_validator("columns")
    @classmethod
    def _columns(cls, mapping: dict[str, str]) -> dict[str, str]:
        return _column_map(mapping, EVENT_NAMES)

    @model_validator(mode="after")
    def _one_source(self) -> EventSource:
        if (self.path is None) == (self.uri is None):
            raise ValueError("give either path or uri (with table or query)")
        if self.uri is not None and (self.table is None) == (self.query is None):
            raise ValueError("give either table or query (not both)")
        if self.path is not None and (self.table or self.query):
            raise ValueError("table and query go with uri, not with path")
        if self.event_type is not None and "event_type" in self.columns:
            raise ValueError(
                "give event_type (a constant) or columns.event_type, not both"
            )
        return self

    @property
    def source(self) -> Source:
        """The path, or the DatabaseSource, this entry reads."""
        if self.path is not None:
            return self.path
        return DatabaseSource(uri=str(self.uri), table=self.table, query=self.query)

    def __str__(self) -> str:
        return str(self.source)


def _events_kind(value: object) -> str:
    if isinstance(value, list | tuple):
        return "(list)"
    if isinstance(value, EventSource) or (
        isinstance(value, dict) and {"path", "event_type", "columns"} & set(value)
    ):
        return "(source)"
    return _source_kind(value)


# One entry of a list of event sources: a path, or an EventSource mapping.
EventEntry = path_or(EventSource, "(source)", DATABASE_MAPPING)
# data.events: one source (a path, a database mapping, an EventSource mapping) or
# a list of them combined into one log.
EventsSources = Annotated[
    Annotated[ConfigPath, BeforeValidator(_path), Tag("(path)")]
    | Annotated[DatabaseSource, Tag("(database)")]
    | Annotated[EventSource, Tag("(source)")]
    | Annotated[list[EventEntry], Field(min_length=1), Tag("(list)")],
    Discriminator(_events_kind),
]


class DataConfig(Strict):
    """Where the events (and optional customers and subscriptions) come from: a
    file or folder of Parquet or CSV files, or a table or query in a database;
    the events may be a list of such sources, combined into one log."""

    events: EventsSources
    customers: Source | None = None
    subscriptions: Source | None = None
    format: Literal["auto", "parquet", "csv"] = "auto"
    # Events after this instant are rejected as "in the future". Default: now.
    as_of: datetime | None = None
    # contract name -> the source's column name, per table
    columns: ColumnsConfig = ColumnsConfig()
    # Subscription items of one customer with the same period are one term; its
    # plan is that of the item whose plan is listed here (else the dearest item).
    base_plans: list[str] | None = Field(None, min_length=1)

    def event_sources(self) -> list[EventSource]:
        """Every events source as an EventSource whose `columns` already hold
        `data.columns.events` overridden by the source's own; a constant
        event_type replaces any mapping of that column."""
        given = self.events if isinstance(self.events, list) else [self.events]
        out = []
        for entry in given:
            if isinstance(entry, EventSource | DatabaseSource):
                fields = entry.model_dump()
            else:
                fields = {"path": entry}
            columns = {**self.columns.events, **fields.pop("columns", {})}
            if fields.get("event_type") is not None:
                columns.pop("event_type", None)
            out.append(EventSource(**fields, columns=columns))
        return out


class RolesConfig(Strict):
    """Event types playing each role; every other type counts as activity."""

    purchase: list[str] = Field(default_factory=list)
    service_request: list[str] = Field(default_factory=list)
    cancel: list[str] = Field(default_factory=list)
    # None: every other event type is activity. A list: only these and the
    # types above are read; the rest are dropped at ingestion (minimisation).
    activity: list[str] | None = None

    @model_validator(mode="after")
    def _disjoint(self) -> RolesConfig:
        seen: dict[str, str] = {}
        for role in (PURCHASE, SERVICE_REQUEST, CANCEL, ACTIVITY):
            for event_type in getattr(self, role) or []:
                if event_type in seen:
                    raise ValueError(
                        f"event type {event_type!r} is mapped to both "
                        f"{seen[event_type]!r} and {role!r}"
                    )
                seen[event_type] = role
        return self

    def types_read(self) -> list[str] | None:
        """The event types ingestion keeps: None (all) unless `activity` lists
        the activity types."""
        if self.activity is None:
            return None
        return [t for role in ROLE_NAMES for t in getattr(self, role) or []]

    def role_of(self) -> dict[str, str]:
        """Event type -> role for every mapped type (unmapped types are activity)."""
        return {
            event_type: role
            for role in (PURCHASE, SERVICE_REQUEST, CANCEL)
            for event_type in getattr(self, role)
        }


ChurnDefinition = Literal["inactivity_or_cancel", "inactivity", "cancel", "contract"]


class ChurnTarget(Strict):
    horizon_days: int = Field(30, ge=1, le=3650)
    definition: ChurnDefinition = "inactivity_or_cancel"
    # contract: days after a term ends in which a new one still counts as renewal
    grace_days: int = Field(30, ge=0, le=3650)


class EventTarget(Strict):
    horizon_days: int = Field(30, ge=1, le=3650)
    # The population: every customer seen before the cutoff; with lookback_days,
    # only those with an event in the that many days before it.
    lookback_days: int | None = Field(None, ge=1, le=36500)


class TargetsConfig(Strict):
    """The targets trained and served: a target left out (or null) is neither
    trained nor served. No `targets:` key at all lists all three."""

    churn: ChurnTarget | None = ChurnTarget()
    purchase: EventTarget | None = EventTarget()
    service_request: EventTarget | None = EventTarget()

    @model_validator(mode="before")
    @classmethod
    def _listed_only(cls, data: object) -> object:
        # a `targets:` mapping lists its targets: the others are off (the
        # defaults above apply only when there is no `targets:` key at all)
        if isinstance(data, dict):
            return {t: data.get(t) for t in TARGETS} | data
        return data

    @model_validator(mode="after")
    def _at_least_one(self) -> TargetsConfig:
        if not self.listed():
            raise ValueError(
                f"list at least one target ({', '.join(TARGETS)}); an empty "
                "`targets:` would train and serve nothing"
            )
        return self

    @classmethod
    def every(cls) -> TargetsConfig:
        """All three targets with their defaults: no `targets:` key at all."""
        return cls(
            churn=ChurnTarget(), purchase=EventTarget(), service_request=EventTarget()
        )

    def listed(self) -> tuple[str, ...]:
        """The targets trained and served, in canonical order."""
        return tuple(t for t in TARGETS if getattr(self, t) is not None)

    def horizon(self, target: str) -> int:
        return self.section(target).horizon_days

    def section(self, target: str) -> ChurnTarget | EventTarget:
        """The target's settings; a clear error when it is not listed."""
        value = getattr(self, target, None)
        if value is None:
            raise ValueError(
                f"target {target!r} is not configured (targets lists "
                f"{', '.join(self.listed())})"
            )
        return value

    @property
    def churn_settings(self) -> ChurnTarget:
        """Churn's settings, or the defaults when churn is not listed: the
        features still need a churn horizon and definition."""
        return self.churn if self.churn is not None else ChurnTarget()


class FeaturesConfig(Strict):
    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90, 180, 365])
    # Each trend compares the last t days with the t days before them.
    trend_days: list[int] = Field(default_factory=lambda: [30, 90])
    # Roles whose events carry amounts and quantities worth summarising.
    amount_roles: list[Literal["activity", "purchase", "service_request", "cancel"]] = (
        Field(default_factory=lambda: [PURCHASE])
    )
    # Customer attributes to use; None means every attribute column present.
    attributes: list[str] | None = None
    # Events older than the incremental feature state's date (features.state):
    # applied to the customers they concern, or rejected (counted and logged).
    late_events: Literal["apply", "reject"] = "apply"
    # Feature groups (docs/features.md): the classic models as features, BG/NBD
    # P(alive) and predictions over the targets' horizons and Gamma-Gamma spend,
    # fitted at each cutoff (features.classic); and the behaviour features, the
    # overdue ratios, the purchase gap and the amount trends (features.behaviour).
    # classic is off by default: it triples the feature build, its gains are
    # mixed (docs/features.md), and live ingest cannot refit it per event.
    classic: bool = False
    behaviour: bool = True
    # The behaviour group's trend features (features.behaviour: last gap between
    # active days, weekday concentration, slopes of daily counts over 8 and 26
    # weeks). Off by default: on the demo they moved no backtest figure beyond
    # noise and lowered the demo campaign's uplift below ranking by probability.
    trends: bool = False

    @model_validator(mode="after")
    def _windows(self) -> FeaturesConfig:
        for name in ("windows_days", "trend_days"):
            days = getattr(self, name)
            if not days or any(w < 1 for w in days):
                raise ValueError(f"{name} must be a non-empty list of positive days")
            if len(set(days)) != len(days):
                raise ValueError(f"{name} has duplicates")
        if len(set(self.amount_roles)) != len(self.amount_roles):
            raise ValueError("amount_roles has duplicates")
        if self.trends and not self.behaviour:
            raise ValueError(
                "trends: true needs behaviour: true (the trend features are a part "
                "of the behaviour group)"
            )
        return self


class CutoffsConfig(Strict):
    """Training cutoffs: an explicit list, or a range with a pandas frequency."""

    dates: list[date] | None = None
    start: date | None = None
    end: date | None = None
    freq: str = "MS"

    @model_validator(mode="after")
    def _one_way(self) -> CutoffsConfig:
        if self.dates is None and self.start is None:
            raise ValueError("give either cutoffs.dates or cutoffs.start")
        if self.dates is not None and self.start is not None:
            raise ValueError("give cutoffs.dates or cutoffs.start, not both")
        if self.freq:
            try:
                pd.tseries.frequencies.to_offset(self.freq)
            except ValueError as exc:
                raise ValueError(
                    f"cutoffs.freq {self.freq!r} is not a frequency"
                ) from exc
        return self

    def resolve(self, last: datetime) -> list[datetime]:
        """The cutoffs as midnight timestamps; a range ends at `end` or `last`."""
        if self.dates is not None:
            days = sorted(set(self.dates))
        else:
            end = self.end or last.date()
            days = [d.date() for d in pd.date_range(self.start, end, freq=self.freq)]
        return [datetime(d.year, d.month, d.day) for d in days]
