"""The serving sections: nightly scoring and its drift report, the online store,
the API, reason codes and outreach (campaign selection and contact policy)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from core.config.base import ConfigPath, Strict, path_or
from core.config.data import _TABLE_NAME, POSTGRES_SCHEMES, _database_uri


class ScoresTable(Strict):
    """A Postgres table the nightly scores are upserted into, by (customer_id,
    as_of). The URI holds no credentials: libpq reads PGUSER and PGPASSWORD (or
    ~/.pgpass) from the environment. The table is created when missing."""

    uri: str
    table: str

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        return _database_uri(uri, POSTGRES_SCHEMES, "postgresql://HOST:PORT/DATABASE")

    @field_validator("table")
    @classmethod
    def _table(cls, table: str) -> str:
        if not _TABLE_NAME.match(table) or table.count(".") > 1:
            raise ValueError(
                f"{table!r} is not a table name such as scores or schema.scores"
            )
        return table


class DriftConfig(Strict):
    """PSI thresholds of the nightly drift report (per feature and per score)."""

    warn: float = Field(0.1, gt=0)
    alert: float = Field(0.25, gt=0)
    # Features reported but never raising a warning or an alert.
    ignore: list[str] = Field(default_factory=list)
    # Features that grow with the calendar by construction (tenure, days since the
    # first purchase or an attribute date: the feature catalogue marks them) drift
    # as the population ages; they are reported, and warn or alert only when this
    # is true. Scores always can.
    alert_calendar_features: bool = False

    @model_validator(mode="after")
    def _order(self) -> DriftConfig:
        if self.alert < self.warn:
            raise ValueError(f"alert ({self.alert}) is below warn ({self.warn})")
        return self


class OutcomesConfig(Strict):
    """When outcome monitoring (serving.monitoring) alerts on a matured score date:
    its realised ROC AUC below the champion's backtest mean by more than
    `auc_tolerance`, or its realised ECE (10 equal-count bins) above `max_ece`."""

    auc_tolerance: float = Field(0.05, ge=0, le=1)
    max_ece: float = Field(0.05, gt=0, le=1)


class ScoringConfig(Strict):
    output: ConfigPath = Path("scores")
    # Optional sink: every run's rows upserted into a Postgres table as well.
    postgres: ScoresTable | None = None
    drift: DriftConfig = DriftConfig()
    outcomes: OutcomesConfig = OutcomesConfig()
    # How the nightly job computes reason codes for its top deciles: path (the
    # cheap path attribution) or shap (TreeSHAP; README: Nightly scoring).
    reason_method: Literal["shap", "path"] = "path"
    # A run scoring fewer customers than this share of the last good run's count
    # (or none at all) exits 9 (SCORED_TOO_FEW): the Parquet output is published,
    # the online store and the sink are left as they were. 0: only none fails.
    min_scored_ratio: float = Field(0.5, ge=0, le=1)


class OnlineTable(ScoresTable):
    """The online store as a Postgres table (replaced whole by each nightly run);
    credentials from PGUSER/PGPASSWORD or ~/.pgpass, never the URI."""


class OnlineStoreConfig(Strict):
    """Each customer's latest features and scores, written by the nightly job for
    the API's `predict_by_id`: a SQLite file swapped whole by each run, or, when
    `postgres` is set, a Postgres table instead."""

    path: ConfigPath = Path("online/store.sqlite")
    postgres: OnlineTable | None = None


class RateLimit(Strict):
    """A token bucket: `per_second` requests a second on average, `burst` at once
    (default: per_second rounded up, at least 1)."""

    per_second: float = Field(gt=0, allow_inf_nan=False)
    burst: int | None = Field(None, ge=1)

    @property
    def capacity(self) -> int:
        return (
            self.burst if self.burst is not None else max(1, math.ceil(self.per_second))
        )


REDIS_SCHEMES = ("redis", "rediss", "unix")


class RateLimitConfig(RateLimit):
    """Requests per second per API key name (serving.api.limits), in each worker
    process unless `redis` is set; `keys` overrides the limit of named keys."""

    keys: dict[str, RateLimit] = Field(default_factory=dict)
    # redis://HOST:PORT/DB: buckets shared by every worker and replica using it
    # (each falls back to its own, logging an error, while Redis is unreachable)
    redis: str | None = None

    @field_validator("redis")
    @classmethod
    def _redis(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"{uri!r} is not a Redis URI; expected redis://HOST:PORT/DB "
                "(or rediss://, unix://)"
            )
        parts = urlsplit(uri)
        if parts.username or parts.password:
            raise ValueError(
                "the URI holds credentials; a Redis that needs a password is not "
                "supported yet (the config is no place for a secret)"
            )
        return uri


class ApiConfig(Strict):
    """Who may call the API. Keys come from $PROPENSITY_API_KEYS (comma-separated,
    plaintext, for development; core.config.secrets) and from `keys_file` (salted
    hashes, one `name:salt_hex:sha256_hex` line per key, written by `propensity
    api-key new`). The service refuses to start with no key unless `require_keys`
    is false."""

    keys_file: ConfigPath | None = None
    require_keys: bool = True
    # A larger request body is refused with 413 before it is parsed; 10,000
    # records of ~100 features take about 40 MB of JSON.
    max_request_mb: float = Field(64, gt=0)
    # BentoML worker processes of `propensity serve`, each with its own copy of
    # the champions (BentoML's default is 1)
    workers: int = Field(1, ge=1, le=64)
    # A worker whose champions (or online store) cannot be loaded at start-up
    # stays up, not ready, and tries again after 1, 2, 4 ... seconds, at most
    # this many (serving/api/readiness.py)
    load_retry_max_s: float = Field(30, gt=0, le=3600)
    # Requests per second per key name: 429 with Retry-After over it; none when
    # unset. Each worker counts its own (the effective limit is workers x this)
    # unless rate_limit.redis shares the buckets.
    rate_limit: RateLimitConfig | None = None
    # One JSON line per request on the logger propensity.access (key name,
    # endpoint, records, status, latency; never a key or a customer id).
    access_log: bool = True


class ExplainConfig(Strict):
    """Reason codes served with a score."""

    # Features never given as a reason (nothing a campaign can act on, e.g. age).
    # Names are not checked here: a name no champion reads is simply never shown.
    non_actionable: list[str] = Field(default_factory=list)
    top_k: int = Field(3, ge=1, le=20)
    # shap: LightGBM's TreeSHAP (exact, ~0.7 ms a row per 100 trees); path: the
    # Saabas path attribution, ~100x cheaper (serving.attribution)
    method: Literal["shap", "path"] = "shap"


class ContactTable(ScoresTable):
    """The contact log as a Postgres table, shared by API replicas on several
    machines (serving.outreach.contact_log_postgres): `table` holds the
    contacts, `<table>__campaigns` the confirmed campaigns; both are created by
    the first confirm. Credentials from PGUSER/PGPASSWORD or ~/.pgpass, never
    the URI."""

    def __str__(self) -> str:
        return f"{self.uri}, table {self.table}"


# An SQLite file, or a mapping read as a Postgres table.
ContactLogSetting = path_or(
    ContactTable,
    "(postgres)",
    "a Postgres contact log is a mapping: {uri: postgresql://..., table: ...}",
)


class FrequencyCap(Strict):
    """No customer selected more than `max_contacts` times in `per_days` days."""

    max_contacts: int = Field(ge=1)
    per_days: int = Field(ge=1)


class OutreachConfig(Strict):
    """Campaign selection: value per customer, contact cost, the held-out control,
    and the contact policy (opt-outs, consent, a frequency cap;
    serving.outreach.contact_policy).

    The control group is drawn by a keyed hash, so the key is a secret: it comes
    from $PROPENSITY_OUTREACH_KEY or from `key_file` (relative to this config),
    never from the config itself; `core.config.secrets.outreach_key` reads it.
    With neither, selection refuses to run."""

    control_share: float = Field(0.10, ge=0, le=0.5)
    # Value of a conversion for customers without their own value.
    default_value: float = Field(1.0, ge=0)
    contact_cost: float = Field(0.0, ge=0)
    key_file: ConfigPath | None = None
    # Customer ids as the marketing system knows them, one per line (`#` comments),
    # never selected; re-read when the file changes.
    opt_out_file: ConfigPath | None = None
    # Only customers sent with `consent: true` may be selected.
    require_consent: bool = False
    # At most max_contacts confirmed selections per customer in any per_days days,
    # counted in contact_log, which the confirm mode writes: an SQLite file, or
    # {uri: postgresql://..., table: ...} for replicas on several machines.
    frequency_cap: FrequencyCap | None = None
    contact_log: ContactLogSetting = Path("contacts/contacts.sqlite")


class IngestConfig(Strict):
    """Real-time ingest (serving.ingest): events sent to `POST /events` or read
    from a Redis Stream are validated by the data contract, appended to the event
    log (`log`: a SQLite file, sealed into Parquet parts the nightly run reads)
    and their customers' online-store rows refreshed."""

    # the event log: `events.sqlite` and the sealed `parts/` the nightly reads
    log: ConfigPath = Path("ingest")
    # events per POST /events (or stream read) at most; more is a 413
    max_events: int = Field(10_000, ge=1, le=100_000)
    # how long the live layer waits to group concurrent batches (ms)
    group_ms: float = Field(20, ge=0, le=1000)
    # when a batch is answered (a stream entry acknowledged): once its
    # customers' live rows include it (`applied`), or once the event log holds
    # it (`logged`: durable; the rows follow, refreshed in bigger groups, which
    # is what sustains thousands of events/s; docs/ingest.md)
    acknowledge: Literal["applied", "logged"] = "applied"
    # niceness added to the thread refreshing the live rows (Linux nice is per
    # thread): requests such as predict_by_id come first when the cores are
    # busy, and the refreshes take what is left, so freshness and `applied`
    # throughput drop (0: the refreshes as the requests; docs/ingest.md)
    nice: int = Field(0, ge=0, le=19)
    # where the API recomputes the live rows: in a process of its own beside
    # the API worker (`process`: no interpreter lock shared with the requests)
    # or in a thread of the worker (`thread`); the stream consumer is a
    # process of its own already
    refresh: Literal["process", "thread"] = "process"
    # the Redis Stream consumer (`propensity ingest --stream NAME`)
    redis: str = "redis://127.0.0.1:6379/0"
    stream: str = "propensity:events"
    group: str = "propensity-ingest"
    # stream entries read per XREADGROUP, and how long it blocks (ms)
    read_count: int = Field(5000, ge=1, le=100_000)
    block_ms: int = Field(200, ge=1, le=60_000)

    @field_validator("redis")
    @classmethod
    def _redis(cls, uri: str) -> str:
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"{uri!r} is not a Redis URI; expected redis://HOST:PORT/DB"
            )
        return uri
