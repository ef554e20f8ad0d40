"""Packing the champions into a Bento: `propensity bento` (`make bento`).

Each champion's MLflow model folder is imported into the BentoML model store as
`propensity-<model name>`, labelled with its registered name, version and run,
and `bentoml build` (bentofile.yaml) packs the latest of each into the Bento:
the versions are pinned in the Bento from then on, whatever the registry does
later. A champion already imported (same run) is not imported again.

Served from a Bento (`bentoml serve propensity:latest`, or its container, where
bentofile.yaml also sets PROPENSITY_MODELS=bentoml), the service loads the packed
models instead of asking an MLflow registry for its champions.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml

from core.config import ProjectConfig
from model.registry import CHAMPION, RegisteredModel, download_version, load_local

log = logging.getLogger(__name__)

MODELS_ENV = "PROPENSITY_MODELS"
MLFLOW_FOLDER = "mlflow_model"
ROOT = Path(__file__).resolve().parents[2]


def bento_model_name(config: ProjectConfig, target: str) -> str:
    return f"propensity-{config.model_name(target)}".replace("_", "-")


def from_bento_store() -> bool:
    """True when told to load packed models (the Bento's container sets it)."""
    return os.environ.get(MODELS_ENV, "registry") == "bentoml"


def import_champions(config: ProjectConfig, tracking_uri: str) -> list[str]:
    """Import each target's champion into the BentoML model store; the tags."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, tracking_uri)
    tags = []
    for target in config.targets.listed():
        name = config.model_name(target)
        mv = client.get_model_version_by_alias(name, CHAMPION)
        bento_name = bento_model_name(config, target)
        existing = [
            m
            for m in _stored(bento_name)
            if m.info.labels.get("mlflow_run_id") == mv.run_id
        ]
        if existing:
            tags.append(str(existing[0].tag))
            log.info("%s v%s already imported as %s", name, mv.version, tags[-1])
            continue
        local = download_version(tracking_uri, name, str(mv.version))
        labels = {
            "mlflow_model": name,
            "mlflow_version": str(mv.version),
            "mlflow_run_id": mv.run_id or "",
            "alias": CHAMPION,
        }
        with bentoml.models.create(bento_name, labels=labels) as model:
            shutil.copytree(local, Path(model.path) / MLFLOW_FOLDER)
        tags.append(str(model.tag))
        log.info("imported %s v%s as %s", name, mv.version, model.tag)
    return tags


def _stored(name: str) -> list:
    try:
        return bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        return []


def load_packed(config: ProjectConfig) -> dict[str, RegisteredModel]:
    """The packed champions: the latest of each listed target's model in the
    store."""
    models = {}
    for target in config.targets.listed():
        stored = bentoml.models.get(f"{bento_model_name(config, target)}:latest")
        labels = stored.info.labels
        models[target] = load_local(
            Path(stored.path) / MLFLOW_FOLDER,
            labels["mlflow_model"],
            labels["mlflow_version"],
            labels.get("mlflow_run_id") or None,
        )
    return models


def build(version: str | None = None) -> str:
    """`bentoml build` of bentofile.yaml; the built Bento's tag."""
    cmd = [str(Path(sys.executable).parent / "bentoml"), "build", str(ROOT)]
    cmd += ["--output", "tag"]
    if version:
        cmd += ["--version", version]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{done.stderr[-3000:]}")
    # --output tag prints "__tag__:<name>:<version>"
    line = next((x for x in done.stdout.splitlines() if x.startswith("__tag__:")), None)
    return line.removeprefix("__tag__:") if line else done.stdout.strip()
