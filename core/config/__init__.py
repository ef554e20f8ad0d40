"""The project config: one YAML file, typed, unknown keys rejected.

The file maps a dataset's event types to roles, sets each target's horizon, the
feature windows, the training cutoffs, the data source and the API's keys. It is
validated once, as one `ProjectConfig`, by `load_config`; its sections live in
one module each:

- `base`: the strict base model, ConfigError, the path type (`ConfigPath`);
- `data`: data sources, engine, roles, targets, features, cutoffs;
- `training`: LightGBM, backtest, promotion, training, fairness, MLflow;
- `serving`: scoring, drift, online store, API, explain, outreach;
- `privacy`: pseudonyms, suppression list, retention;
- `project`: ProjectConfig, load_config, config_path;
- `secrets`: the keys read from the environment (never from the file).

Deployment settings can come from environment variables: the MLflow tracking URI
overrides the file's, API keys add to the keys file's.
"""

from core.config.base import (
    BASE_CONTEXT_KEY,
    MIN_KEY_BYTES,
    ConfigError,
    ConfigPath,
    Strict,
    resolve_path,
)
from core.config.data import (
    DUCKDB_SCHEME,
    POSTGRES_SCHEMES,
    ROLE_NAMES,
    ChurnDefinition,
    ChurnTarget,
    ColumnsConfig,
    CutoffsConfig,
    DatabaseSource,
    DataConfig,
    EngineConfig,
    EventSource,
    EventTarget,
    FeaturesConfig,
    RolesConfig,
    Source,
    SparkConfig,
    TargetsConfig,
)
from core.config.privacy import PSEUDONYM_KEY_ENV, PrivacyConfig
from core.config.project import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    TRACKING_URI_ENV,
    ProjectConfig,
    config_path,
    load_config,
)
from core.config.secrets import API_KEYS_ENV, OUTREACH_KEY_ENV
from core.config.serving import (
    ApiConfig,
    ContactTable,
    DriftConfig,
    ExplainConfig,
    FrequencyCap,
    IngestConfig,
    OnlineStoreConfig,
    OnlineTable,
    OutcomesConfig,
    OutreachConfig,
    RateLimit,
    RateLimitConfig,
    ScoresTable,
    ScoringConfig,
)
from core.config.training import (
    BacktestConfig,
    FairnessConfig,
    LightGBMConfig,
    MLflowConfig,
    PromotionConfig,
    TrainingConfig,
)

__all__ = [
    "API_KEYS_ENV",
    "BASE_CONTEXT_KEY",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DUCKDB_SCHEME",
    "MIN_KEY_BYTES",
    "OUTREACH_KEY_ENV",
    "POSTGRES_SCHEMES",
    "PSEUDONYM_KEY_ENV",
    "ROLE_NAMES",
    "TRACKING_URI_ENV",
    "ApiConfig",
    "RateLimit",
    "RateLimitConfig",
    "BacktestConfig",
    "ChurnDefinition",
    "ChurnTarget",
    "ColumnsConfig",
    "ConfigError",
    "ConfigPath",
    "CutoffsConfig",
    "DataConfig",
    "DatabaseSource",
    "DriftConfig",
    "OutcomesConfig",
    "EngineConfig",
    "EventSource",
    "EventTarget",
    "ExplainConfig",
    "FairnessConfig",
    "FeaturesConfig",
    "ContactTable",
    "FrequencyCap",
    "LightGBMConfig",
    "MLflowConfig",
    "IngestConfig",
    "OnlineStoreConfig",
    "OnlineTable",
    "OutreachConfig",
    "PrivacyConfig",
    "ProjectConfig",
    "PromotionConfig",
    "RolesConfig",
    "ScoresTable",
    "ScoringConfig",
    "Source",
    "SparkConfig",
    "Strict",
    "TargetsConfig",
    "TrainingConfig",
    "config_path",
    "load_config",
    "resolve_path",
]
