"""The project config: one YAML file, typed, unknown keys rejected.

The file maps a dataset's event types to roles, sets each target's horizon, the
feature windows, the training cutoffs, the data source and the API's keys.
Deployment settings can come from environment variables: the MLflow tracking URI
overrides the file's, API keys add to the keys file's.
"""

from __future__ import annotations

import math
import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from core.names import ACTIVITY, CANCEL, PURCHASE, SERVICE_REQUEST

DEFAULT_CONFIG_PATH = Path("propensity.yaml")
CONFIG_ENV = "PROPENSITY_CONFIG"


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Strict):
    """The Spark session of `engine.kind: spark`. `master` None leaves the choice to
    Spark's own environment (spark-submit's --master, spark-defaults.conf), which
    is local mode on every core when nothing says otherwise; `conf` entries are
    passed to the session builder as they are."""

    master: str | None = None
    app_name: str = "propensity"
    conf: dict[str, str] = Field(default_factory=dict)


class EngineConfig(_Strict):
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


class DatabaseSource(_Strict):
    """A table or a query in a database: Postgres (`postgresql://host:port/db`) or
    a DuckDB file (`duckdb:path/to/file.duckdb`). The URI holds no credentials:
    libpq reads PGUSER and PGPASSWORD (or ~/.pgpass) from the environment."""

    uri: str
    table: str | None = None
    query: str | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        return _database_uri(
            uri,
            (*POSTGRES_SCHEMES, DUCKDB_SCHEME),
            "postgresql://HOST:PORT/DATABASE or duckdb:PATH",
        )

    @field_validator("table")
    @classmethod
    def _table(cls, table: str | None) -> str | None:
        if table is not None and not _TABLE_NAME.match(table):
            raise ValueError(
                f"{table!r} is not a table name such as events or schema.events "
                "(use query for anything else)"
            )
        return table

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
        return Path(self.uri.split(":", 1)[1].removeprefix("//"))

    def resolved(self, base: Path) -> DatabaseSource:
        """Itself, with a relative DuckDB file taken against `base`."""
        if self.scheme != DUCKDB_SCHEME or self.duckdb_path.is_absolute():
            return self
        return self.model_copy(
            update={"uri": f"{DUCKDB_SCHEME}:{base / self.duckdb_path}"}
        )

    def __str__(self) -> str:
        if self.table is not None:
            return f"{self.uri}, table {self.table}"
        query = " ".join(str(self.query).split())
        return f"{self.uri}, query {query[:60] + '...' if len(query) > 63 else query!r}"


def _source_kind(value: object) -> str:
    return "(database)" if isinstance(value, dict | DatabaseSource) else "(path)"


def _path(value: object) -> object:
    if isinstance(value, str) and "://" in value:
        raise ValueError(
            "a database source is a mapping: {uri: ..., table: ...} or "
            "{uri: ..., query: ...}"
        )
    return value


# A path, or a mapping read as a DatabaseSource. Errors leave the "(...)" tags out
# of the key they name (data.events.uri; see _format_error).
Source = Annotated[
    Annotated[Path, BeforeValidator(_path), Tag("(path)")]
    | Annotated[DatabaseSource, Tag("(database)")],
    Discriminator(_source_kind),
]


class DataConfig(_Strict):
    """Where the events (and optional customers and subscriptions) come from: a
    file or folder of Parquet or CSV files, or a table or query in a database."""

    events: Source
    customers: Source | None = None
    subscriptions: Source | None = None
    format: Literal["auto", "parquet", "csv"] = "auto"
    # Events after this instant are rejected as "in the future". Default: now.
    as_of: datetime | None = None


class RolesConfig(_Strict):
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


class ChurnTarget(_Strict):
    horizon_days: int = Field(30, ge=1, le=3650)
    definition: ChurnDefinition = "inactivity_or_cancel"
    # contract: days after a term ends in which a new one still counts as renewal
    grace_days: int = Field(30, ge=0, le=3650)


class EventTarget(_Strict):
    horizon_days: int = Field(30, ge=1, le=3650)


class TargetsConfig(_Strict):
    churn: ChurnTarget = ChurnTarget()
    purchase: EventTarget = EventTarget()
    service_request: EventTarget = EventTarget()

    def horizon(self, target: str) -> int:
        return getattr(self, target).horizon_days


class FeaturesConfig(_Strict):
    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90, 180, 365])
    # Each trend compares the last t days with the t days before them.
    trend_days: list[int] = Field(default_factory=lambda: [30, 90])
    # Roles whose events carry amounts and quantities worth summarising.
    amount_roles: list[Literal["activity", "purchase", "service_request", "cancel"]] = (
        Field(default_factory=lambda: [PURCHASE])
    )
    # Customer attributes to use; None means every attribute column present.
    attributes: list[str] | None = None

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
        return self


class CutoffsConfig(_Strict):
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


class LightGBMConfig(_Strict):
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_boost_round: int = Field(500, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    # L2 regularisation of leaf values; 0 is LightGBM's default (none).
    lambda_l2: float = Field(0.0, ge=0)
    seed: int = 0
    num_threads: int = Field(0, ge=0)


class BacktestConfig(_Strict):
    """Rolling-origin evaluation: the latest `origins` complete cutoffs, each scored
    by a model trained only on cutoffs whose label windows end by it."""

    origins: int = Field(4, ge=2)
    # Logistic-regression baseline: training rows sampled down to this many.
    baseline_max_rows: int = Field(200_000, ge=1_000)
    # How the served probabilities are calibrated: chosen by log loss on the last
    # origin (auto), or fixed.
    calibration: Literal["auto", "isotonic", "platt"] = "auto"


class PromotionConfig(_Strict):
    """The gate a challenger passes to become champion, on the origins both share."""

    # Mean log loss must be lower than the champion's by more than this.
    min_log_loss_gain: float = Field(0.0, ge=0)
    # Mean ROC AUC may be lower than the champion's by at most this.
    max_auc_loss: float = Field(0.005, ge=0)


class TrainingConfig(_Strict):
    cutoffs: CutoffsConfig
    # A copy of each run's training table (training-<id>.parquet) for
    # reproducing a model; None keeps none. `propensity forget` and
    # privacy.retention_days delete from it.
    snapshot_dir: Path | None = None
    lightgbm: LightGBMConfig = LightGBMConfig()
    backtest: BacktestConfig = BacktestConfig()
    promotion: PromotionConfig = PromotionConfig()


class MLflowConfig(_Strict):
    # None -> sqlite:///<project>/mlruns/mlflow.db; env MLFLOW_TRACKING_URI wins.
    tracking_uri: str | None = None
    experiment: str = "propensity"
    # Registered model name per target is "<prefix><target>".
    model_prefix: str = ""


class ScoresTable(_Strict):
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


class DriftConfig(_Strict):
    """PSI thresholds of the nightly drift report (per feature and per score)."""

    warn: float = Field(0.1, gt=0)
    alert: float = Field(0.25, gt=0)
    # Features reported but never raising a warning or an alert: those that grow
    # with the calendar (tenure, days since a fixed date) drift by construction.
    ignore: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _order(self) -> DriftConfig:
        if self.alert < self.warn:
            raise ValueError(f"alert ({self.alert}) is below warn ({self.warn})")
        return self


class ScoringConfig(_Strict):
    output: Path = Path("scores")
    # Optional sink: every run's rows upserted into a Postgres table as well.
    postgres: ScoresTable | None = None
    drift: DriftConfig = DriftConfig()
    # How the nightly job computes reason codes for its top deciles: path (the
    # cheap path attribution) or shap (TreeSHAP; README: Nightly scoring).
    reason_method: Literal["shap", "path"] = "path"


class OnlineTable(ScoresTable):
    """The online store as a Postgres table (replaced whole by each nightly run);
    credentials from PGUSER/PGPASSWORD or ~/.pgpass, never the URI."""


class OnlineStoreConfig(_Strict):
    """Each customer's latest features and scores, written by the nightly job for
    the API's `predict_by_id`: a SQLite file swapped whole by each run, or, when
    `postgres` is set, a Postgres table instead."""

    path: Path = Path("online/store.sqlite")
    postgres: OnlineTable | None = None


class ApiConfig(_Strict):
    """Who may call the API. Keys come from $PROPENSITY_API_KEYS (comma-separated,
    plaintext, for development) and from `keys_file` (salted hashes, one
    `name:salt_hex:sha256_hex` line per key, written by `propensity api-key new`).
    The service refuses to start with no key unless `require_keys` is false."""

    keys_file: Path | None = None
    require_keys: bool = True
    # A larger request body is refused with 413 before it is parsed; 10,000
    # records of ~100 features take about 40 MB of JSON.
    max_request_mb: float = Field(64, gt=0)
    # BentoML worker processes of `propensity serve`, each with its own copy of
    # the champions (BentoML's default is 1)
    workers: int = Field(1, ge=1, le=64)


class ExplainConfig(_Strict):
    """Reason codes served with a score."""

    # Features never given as a reason (nothing a campaign can act on, e.g. age).
    # Names are not checked here: a name no champion reads is simply never shown.
    non_actionable: list[str] = Field(default_factory=list)
    top_k: int = Field(3, ge=1, le=20)
    # shap: LightGBM's TreeSHAP (exact, ~0.7 ms a row per 100 trees); path: the
    # Saabas path attribution, ~100x cheaper (serving.attribution)
    method: Literal["shap", "path"] = "shap"


OUTREACH_KEY_ENV = "PROPENSITY_OUTREACH_KEY"
MIN_KEY_BYTES = 16


class FrequencyCap(_Strict):
    """No customer selected more than `max_contacts` times in `per_days` days."""

    max_contacts: int = Field(ge=1)
    per_days: int = Field(ge=1)


class OutreachConfig(_Strict):
    """Campaign selection: value per customer, contact cost, the held-out control,
    and the contact policy (opt-outs, consent, a frequency cap;
    serving.outreach.contact_policy).

    The control group is drawn by a keyed hash, so the key is a secret: it comes
    from $PROPENSITY_OUTREACH_KEY or from `key_file` (relative to this config),
    never from the config itself. With neither, selection refuses to run."""

    control_share: float = Field(0.10, ge=0, le=0.5)
    # Value of a conversion for customers without their own value.
    default_value: float = Field(1.0, ge=0)
    contact_cost: float = Field(0.0, ge=0)
    key_file: Path | None = None
    # Customer ids as the marketing system knows them, one per line (`#` comments),
    # never selected; re-read when the file changes.
    opt_out_file: Path | None = None
    # Only customers sent with `consent: true` may be selected.
    require_consent: bool = False
    # At most max_contacts confirmed selections per customer in any per_days days,
    # counted in contact_log (an SQLite file the confirm mode writes).
    frequency_cap: FrequencyCap | None = None
    contact_log: Path = Path("contacts/contacts.sqlite")

    def key(self) -> bytes:
        """The control-group key: the environment variable, then the key file."""
        env = os.environ.get(OUTREACH_KEY_ENV)
        if env:
            key, where = env.encode(), f"${OUTREACH_KEY_ENV}"
        elif self.key_file is not None:
            if not self.key_file.is_file():
                raise ConfigError(f"outreach.key_file: {self.key_file} not found")
            key, where = self.key_file.read_bytes().strip(), str(self.key_file)
        else:
            raise ConfigError(
                f"outreach: no control-group key; set ${OUTREACH_KEY_ENV} or "
                "outreach.key_file (a secret of at least "
                f"{MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`)"
            )
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"outreach: the key from {where} is shorter than {MIN_KEY_BYTES} bytes"
            )
        return key


PSEUDONYM_KEY_ENV = "PROPENSITY_PSEUDONYM_KEY"


class PrivacyConfig(_Strict):
    """What the project keeps about people (features.sources.privacy, README: Privacy).

    `pseudonymise` replaces customer ids by HMAC-SHA256 pseudonyms where they are
    read; the key comes from the environment variable `key_env`, never from a
    file. `dir` holds the suppression list and the erasure log of `propensity
    forget`. `retention_days` deletes score outputs and training snapshots
    written more than that many days ago, after each scoring and training run."""

    pseudonymise: bool = False
    key_env: str = Field(PSEUDONYM_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dir: Path = Path("privacy")
    retention_days: int | None = Field(None, ge=1)


class FairnessConfig(_Strict):
    """The fairness report of each training run (training.fairness, README:
    Fairness report): per value of each customer attribute in `segments`, score
    distribution, calibration and selection rate at the outreach threshold. It
    informs; it never changes a score.

    `bands` cuts a numeric attribute into buckets [edge, next edge) plus "<first"
    and "last+" and "missing"; a numeric segment without bands is refused at
    training time, when the customers table says which attributes are numeric.
    `threshold` None selects the out-of-time rows' top decile, the customers the
    nightly job puts in decile 1. Segments under `min_segment_size` rows are
    reported, never flagged."""

    segments: list[str] = Field(default_factory=list)
    bands: dict[str, list[float]] = Field(default_factory=dict)
    threshold: float | None = Field(None, gt=0, le=1)
    min_segment_size: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _segments_and_bands(self) -> FairnessConfig:
        if len(set(self.segments)) != len(self.segments):
            raise ValueError("segments has duplicates")
        stray = sorted(set(self.bands) - set(self.segments))
        if stray:
            raise ValueError(f"bands for attributes not in segments: {stray}")
        for name, edges in self.bands.items():
            increasing = all(b > a for a, b in zip(edges, edges[1:], strict=False))
            if not edges or not increasing or not all(map(math.isfinite, edges)):
                raise ValueError(
                    f"bands.{name} must be a non-empty list of finite, increasing edges"
                )
        return self


class ProjectConfig(_Strict):
    data: DataConfig
    engine: EngineConfig = EngineConfig()
    roles: RolesConfig = RolesConfig()
    targets: TargetsConfig = TargetsConfig()
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig
    mlflow: MLflowConfig = MLflowConfig()
    scoring: ScoringConfig = ScoringConfig()
    online_store: OnlineStoreConfig = OnlineStoreConfig()
    api: ApiConfig = ApiConfig()
    explain: ExplainConfig = ExplainConfig()
    outreach: OutreachConfig = OutreachConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    fairness: FairnessConfig = FairnessConfig()

    @model_validator(mode="after")
    def _contract_needs_subscriptions(self) -> ProjectConfig:
        if self.targets.churn.definition == "contract" and not self.data.subscriptions:
            raise ValueError(
                "targets.churn.definition 'contract' reads the subscriptions "
                "table: set data.subscriptions"
            )
        return self

    def attributes_read(self) -> list[str] | None:
        """The customer attributes ingestion keeps: None (all) unless
        `features.attributes` lists those the models use; then those and the
        fairness report's segments."""
        used = self.features.attributes
        if used is None:
            return None
        return list(dict.fromkeys([*used, *self.fairness.segments]))

    def model_name(self, target: str) -> str:
        return f"{self.mlflow.model_prefix}{target}"

    def tracking_uri(self, root: Path | None = None) -> str:
        """MLflow tracking URI: $MLFLOW_TRACKING_URI, then config, then mlruns/."""
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        base = (root or Path.cwd()).resolve()
        return f"sqlite:///{base / 'mlruns' / 'mlflow.db'}"


ROLE_NAMES = (ACTIVITY, PURCHASE, SERVICE_REQUEST, CANCEL)


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for err in exc.errors():
        parts = [str(part) for part in err["loc"] if not str(part).startswith("(")]
        key = ".".join(parts) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def config_path(path: Path | str | None = None) -> Path:
    """The config file: the argument, $PROPENSITY_CONFIG, or ./propensity.yaml."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path | str | None = None) -> ProjectConfig:
    """Load and validate the config; relative data paths resolve against its folder."""
    path = config_path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from exc
    return _resolve_paths(config, path.resolve().parent)


def _resolve_paths(config: ProjectConfig, base: Path) -> ProjectConfig:
    def resolve(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    def resolve_source(source: Source | None) -> Source | None:
        if isinstance(source, DatabaseSource):
            return source.resolved(base)
        return resolve(source) or source

    data = config.data.model_copy(
        update={
            "events": resolve_source(config.data.events),
            "customers": resolve_source(config.data.customers),
            "subscriptions": resolve_source(config.data.subscriptions),
        }
    )
    scoring = config.scoring.model_copy(
        update={"output": resolve(config.scoring.output) or config.scoring.output}
    )
    online = config.online_store.model_copy(
        update={"path": resolve(config.online_store.path) or config.online_store.path}
    )
    api = config.api.model_copy(update={"keys_file": resolve(config.api.keys_file)})
    outreach = config.outreach.model_copy(
        update={
            "key_file": resolve(config.outreach.key_file),
            "opt_out_file": resolve(config.outreach.opt_out_file),
            "contact_log": resolve(config.outreach.contact_log)
            or config.outreach.contact_log,
        }
    )
    training = config.training.model_copy(
        update={
            "snapshot_dir": resolve(config.training.snapshot_dir)
            or config.training.snapshot_dir
        }
    )
    privacy = config.privacy.model_copy(
        update={"dir": resolve(config.privacy.dir) or config.privacy.dir}
    )
    return config.model_copy(
        update={
            "data": data,
            "scoring": scoring,
            "online_store": online,
            "api": api,
            "outreach": outreach,
            "privacy": privacy,
            "training": training,
        }
    )
