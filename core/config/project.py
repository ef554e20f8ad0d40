"""The whole config (ProjectConfig), where its file is, and loading it.

`load_config` reads the YAML file once and validates it with the file's folder
as the validation context, so every `ConfigPath` in it resolves against that
folder. A validation error becomes one ConfigError naming each bad key.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from core.config.base import BASE_CONTEXT_KEY, ConfigError, Strict
from core.config.data import (
    DataConfig,
    EngineConfig,
    FeaturesConfig,
    RolesConfig,
    TargetsConfig,
)
from core.config.privacy import PrivacyConfig
from core.config.serving import (
    ApiConfig,
    ExplainConfig,
    IngestConfig,
    OnlineStoreConfig,
    OutreachConfig,
    ScoringConfig,
)
from core.config.training import FairnessConfig, MLflowConfig, TrainingConfig

DEFAULT_CONFIG_PATH = Path("propensity.yaml")
CONFIG_ENV = "PROPENSITY_CONFIG"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


class ProjectConfig(Strict):
    data: DataConfig
    engine: EngineConfig = EngineConfig()
    roles: RolesConfig = RolesConfig()
    # no `targets:` key: all three
    targets: TargetsConfig = Field(default_factory=TargetsConfig.every)
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig
    mlflow: MLflowConfig = MLflowConfig()
    scoring: ScoringConfig = ScoringConfig()
    online_store: OnlineStoreConfig = OnlineStoreConfig()
    ingest: IngestConfig = IngestConfig()
    api: ApiConfig = ApiConfig()
    explain: ExplainConfig = ExplainConfig()
    outreach: OutreachConfig = OutreachConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    fairness: FairnessConfig = FairnessConfig()

    @model_validator(mode="after")
    def _contract_needs_subscriptions(self) -> ProjectConfig:
        churn = self.targets.churn
        if (
            churn is not None
            and churn.definition == "contract"
            and not (self.data.subscriptions)
        ):
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
        """MLflow tracking URI: $MLFLOW_TRACKING_URI, then config, then mlruns/.

        The environment wins because the tracking server is a deployment
        setting: the same config file serves a laptop and the team's server."""
        env = os.environ.get(TRACKING_URI_ENV)
        if env:
            return env
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        base = (root or Path.cwd()).resolve()
        return f"sqlite:///{base / 'mlruns' / 'mlflow.db'}"


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


# a config is a few KB; a file over this is not one (or is hostile)
MAX_CONFIG_BYTES = 1_000_000


class _NoAliases(yaml.SafeLoader):
    """safe_load without anchors and aliases: an alias is a reference that
    yaml.safe_load expands into a shared object, and a few lines of nested
    aliases (a "billion laughs") grow into 10^9 nodes when anything walks them
    (validation, printing). A config has no need of them: each is refused,
    naming its line."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's)
        if self.check_event(yaml.AliasEvent) or (
            self.check_event(yaml.NodeEvent) and self.peek_event().anchor
        ):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                None,
                None,
                f"YAML anchors and aliases (&{event.anchor}, *{event.anchor}) are "
                "not accepted in a config; write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _read_yaml(path: Path) -> object:
    """The file's YAML (aliases refused, size capped); ConfigError naming the
    file and line when it cannot be read."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes; expected a config of at most "
            f"{MAX_CONFIG_BYTES:,} bytes"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected a UTF-8 YAML file"
        ) from exc
    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply; expected a config") from exc


def load_config(path: Path | str | None = None) -> ProjectConfig:
    """Load and validate the config; relative paths resolve against its folder."""
    path = config_path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = _read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return ProjectConfig.model_validate(
            raw, context={BASE_CONTEXT_KEY: path.resolve().parent}
        )
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from exc
