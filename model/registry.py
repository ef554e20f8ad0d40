"""MLflow tracking set-up and loading registered models by alias.

Nothing here runs at import: entry points call `configure` with the URI they chose.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlparse

import lightgbm as lgb
import mlflow
import numpy as np
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from model import uplift
from model.blend import Blend, served_raw
from model.calibration import Calibrator
from model.encoding import Encoding
from model.uplift import UpliftModel

log = logging.getLogger(__name__)
METADATA_KEY = "propensity"
# the registry aliases: serving follows the champion; a new version starts as
# challenger (training.promote moves them)
CHAMPION = "champion"
CHALLENGER = "challenger"
# Every experiment the project creates is tagged a classical-ML one, so the
# MLflow UI (3.x) treats it as training runs rather than a GenAI app's traces
# (docs/training.md: MLflow UI).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# the UI's query parameter that opens an experiment on its runs (3.17 decides
# the view by a browser-wide switch, default GenAI, that this overrides)
ML_VIEW_QUERY = "workflowType=machine_learning"
# every move of `champion` is a run of `<experiment>.promotions` (training.promote)
PROMOTIONS_SUFFIX = ".promotions"


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
    location = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
    return ensure_experiment(client, experiment, location)


def ensure_experiment(
    client: MlflowClient, name: str, location: str | None = None
) -> str:
    """The id of experiment `name`, created (at `location`) if missing, tagged as
    a training experiment; one made before the tag existed gets it now."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(
            name,
            artifact_location=location,
            tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
        )
    # a deleted experiment takes no tags (and no runs: its user finds out there)
    if found.lifecycle_stage == "active" and EXPERIMENT_KIND_TAG not in found.tags:
        client.set_experiment_tag(
            found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND
        )
    return found.experiment_id


def experiment_url(ui: str, experiment_id: str) -> str:
    """The MLflow UI's address of an experiment's runs (its training view)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{ML_VIEW_QUERY}"


def promotions_experiment(experiment: str) -> str:
    return experiment + PROMOTIONS_SUFFIX


def promotion_history(client: MlflowClient, experiment: str, name: str) -> list[dict]:
    """Every recorded move of `champion` for `name`, oldest first (training
    records them; the nightly run copies them for the console)."""
    from mlflow.entities import ViewType

    found = client.get_experiment_by_name(promotions_experiment(experiment))
    if found is None:
        return []
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`move.model` = '{name}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=10_000,
    )
    moves = [
        {
            **{
                k[len("move.") :]: v
                for k, v in r.data.tags.items()
                if k.startswith("move.")
            },
            "figures": dict(r.data.metrics),
        }
        for r in runs
    ]
    return sorted(moves, key=lambda m: m["moved_at"])


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

    def raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        """Uncalibrated probabilities: the trees', or the blend's (`threads`: see
        `model.blend.served_raw`)."""
        return served_raw(self.booster, self.blend, matrix, threads)

    @property
    def evidence(self) -> list[dict]:
        """Per-origin backtest figures kept with the model, for the promotion gate."""
        return list(self.metadata.get("backtest", []))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for a matrix in the encoding's column order."""
        return self.calibrator.apply(self.raw(matrix))

    def unbuilt(self, built: Collection[str], version: str) -> str | None:
        """None when a feature definition that builds `built` (its catalogue
        version `version`) feeds every feature this model reads; else a sentence
        naming the model and the features it would lack."""
        have = set(built)
        missing = [f for f in self.encoding.features if f not in have]
        if not missing:
            return None
        shown = ", ".join(missing[:8])
        if len(missing) > 8:
            shown += f" and {len(missing) - 8} more"
        trained = self.metadata.get("feature_set_version") or "unknown"
        return (
            f"{self.name} v{self.version} reads {len(missing)} feature(s) the "
            f"config's feature definition does not build ({shown}); it was trained "
            f"on feature set {trained}, the config builds {version}"
        )

    def check(self) -> None:
        """The booster's own feature order must be the encoding's."""
        if list(self.booster.feature_name()) != list(self.encoding.features):
            raise ValueError(
                f"model {self.name} v{self.version}: booster features "
                f"{self.booster.feature_name()} differ from its recorded feature list"
            )


# what the registry answers for a model or an alias that does not exist
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class RegistryUnavailable(RuntimeError):
    """The registry could not be asked (a tracking server down, a store that
    cannot be opened): not the same as a model without the alias."""


class ArtifactError(RuntimeError):
    """A registered version's artifact cannot be loaded (missing, corrupted)."""


def load_alias(tracking_uri: str, name: str, alias: str) -> RegisteredModel | None:
    """The version behind `alias`, or None when the model or alias does not
    exist. RegistryUnavailable when the registry cannot be asked, ArtifactError
    (naming the version) when its artifact cannot be loaded."""
    client = MlflowClient(tracking_uri, tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND_CODES:
            return None
        raise RegistryUnavailable(
            f"the MLflow registry at {tracking_uri} cannot be read ({name}@{alias}): "
            f"{exc}"
        ) from exc
    try:
        return load_version(tracking_uri, name, str(mv.version), mv.run_id)
    except Exception as exc:
        raise ArtifactError(
            f"{name} version {mv.version} ({alias}): its artifact cannot be "
            f"loaded, corrupted or missing? {type(exc).__name__}: {exc}"
        ) from exc


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


def _read_model_folder(folder: Path) -> tuple[lgb.Booster, dict]:
    """The booster and the project's metadata of an MLflow LightGBM model folder.

    The MLmodel file is read once, with libyaml's loader: its metadata holds the
    backtest, the encoding and the drift reference (~3,000 YAML lines), which
    MLflow's pure-Python `Model.load` parses in ~0.25 s, twice through
    `mlflow.lightgbm.load_model`, whose requirement checks take ~0.6 s more per
    model (every `score`, server start and Bento load pays it per target). A
    booster saved in LightGBM's own text format is read directly; any other
    flavor layout goes through MLflow's loader."""
    with (folder / "MLmodel").open(encoding="utf-8") as f:
        mlmodel = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    flavor = (mlmodel.get("flavors") or {}).get("lightgbm") or {}
    data = flavor.get("data")
    if flavor.get("model_class") == "lightgbm.basic.Booster" and data:
        booster = lgb.Booster(model_file=str(folder / data))
    else:
        booster = mlflow.lightgbm.load_model(str(folder))
    return booster, (mlmodel.get("metadata") or {}).get(METADATA_KEY, {})


def load_local(
    local: str | Path, name: str, version: str, run_id: str | None = None
) -> RegisteredModel:
    """Load an MLflow model folder (as registered, or packed into a Bento)."""
    booster, meta = _read_model_folder(Path(local))
    model = RegisteredModel(
        name, version, booster, Encoding.from_dict(meta["encoding"]), meta, run_id
    )
    model.check()
    return model


def load_uplift_alias(
    tracking_uri: str, name: str, alias: str = CHAMPION
) -> UpliftModel | None:
    """The uplift model (model.uplift) behind `alias` of `name`, or None when
    the model or alias does not exist."""
    client = MlflowClient(tracking_uri, tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return uplift.load(
        download_version(tracking_uri, name, str(mv.version)), name, str(mv.version)
    )
