"""MLflow tracking set-up and loading registered models by alias.

Nothing here runs at import: entry points call `configure` with the URI they chose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlparse

import lightgbm as lgb
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from model.blend import Blend, served_raw
from model.calibration import Calibrator
from model.encoding import Encoding

log = logging.getLogger(__name__)
METADATA_KEY = "propensity"
# the registry aliases: serving follows the champion; a new version starts as
# challenger (training.promote moves them)
CHAMPION = "champion"
CHALLENGER = "challenger"


def sqlite_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    return Path(unquote(parsed.path))


def configure(uri: str, experiment: str | None = None) -> str | None:
    """Point MLflow at `uri`; create the experiment if needed and return its id.

    Beside a SQLite store its artifacts go to `<store folder>/artifacts`. On a
    tracking server (http) the server picks the location (`mlflow-artifacts:/...`
    with `--artifacts-destination`): clients upload and download through it."""
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment is None:
        return None
    client = MlflowClient(uri, uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
    return client.create_experiment(experiment, artifact_location=location)


def log_record_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, object],
    metrics: dict[str, float],
    stamp_ms: int,
    notes: dict[str, list[str]],
    files: dict[str, str],
) -> str:
    """One finished run holding a record (a campaign readout, an outcome check):
    `params`, `metrics` stamped at `stamp_ms`, the `notes` joined as tags, and
    `files` (name -> text) as artifacts. A failure marks the run FAILED and is
    raised. Returns the run's id."""
    import tempfile

    from mlflow.entities import Metric, Param, RunTag

    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, stamp_ms, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, "; ".join(v)[:4000]) for k, v in notes.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text)
            client.log_artifacts(run_id, tmp)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


@dataclass
class RegisteredModel:
    """A registered LightGBM booster with the encoding it was trained with."""

    name: str
    version: str
    booster: lgb.Booster
    encoding: Encoding
    metadata: dict
    run_id: str | None

    @cached_property
    def calibrator(self) -> Calibrator:
        """The calibration map served with the booster (identity if none kept)."""
        return Calibrator.from_dict(self.metadata.get("calibration"))

    @cached_property
    def blend(self) -> Blend | None:
        """The stacked blend served instead of the trees alone (None: the trees)."""
        return Blend.from_dict(self.metadata.get("blend"))

    def raw(self, matrix: np.ndarray) -> np.ndarray:
        """Uncalibrated probabilities: the trees', or the blend's."""
        return served_raw(self.booster, self.blend, matrix)

    @property
    def evidence(self) -> list[dict]:
        """Per-origin backtest figures kept with the model, for the promotion gate."""
        return list(self.metadata.get("backtest", []))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for a matrix in the encoding's column order."""
        return self.calibrator.apply(self.raw(matrix))

    def check(self) -> None:
        """The booster's own feature order must be the encoding's."""
        if list(self.booster.feature_name()) != list(self.encoding.features):
            raise ValueError(
                f"model {self.name} v{self.version}: booster features "
                f"{self.booster.feature_name()} differ from its recorded feature list"
            )


def load_alias(tracking_uri: str, name: str, alias: str) -> RegisteredModel | None:
    """The version behind `alias`, or None when the model or alias does not exist."""
    client = MlflowClient(tracking_uri, tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return load_version(tracking_uri, name, str(mv.version), mv.run_id)


def load_version(
    tracking_uri: str, name: str, version: str, run_id: str | None = None
) -> RegisteredModel:
    """Download a registered version from the store at `tracking_uri` and load it."""
    return load_local(
        download_version(tracking_uri, name, version), name, version, run_id
    )


def download_version(tracking_uri: str, name: str, version: str) -> str:
    """A registered version's MLflow model folder, downloaded to a local path."""
    client = MlflowClient(tracking_uri, tracking_uri)
    source = client.get_model_version_download_uri(name, version)
    return mlflow.artifacts.download_artifacts(source, tracking_uri=tracking_uri)


def load_local(
    local: str | Path, name: str, version: str, run_id: str | None = None
) -> RegisteredModel:
    """Load an MLflow model folder (as registered, or packed into a Bento)."""
    local = str(local)
    booster = mlflow.lightgbm.load_model(local)
    meta = (Model.load(local).metadata or {}).get(METADATA_KEY, {})
    model = RegisteredModel(
        name, version, booster, Encoding.from_dict(meta["encoding"]), meta, run_id
    )
    model.check()
    return model
