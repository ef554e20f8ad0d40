"""The champions of the listed targets (`targets:`), loaded once, and scoring
through each model's own encoding.

Shared by the BentoML service and the nightly job, so both score exactly alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
import pandas as pd

from core.config import ConfigError, ProjectConfig
from features.columns import TARGETS
from model.encoding import Encoding
from model.registry import CHAMPION, RegisteredModel, load_alias, load_uplift_alias
from model.uplift import UpliftModel, registered_name
from serving.attribution import Method
from serving.reasons import Reason, reasons

T = TypeVar("T")
log = logging.getLogger(__name__)


class NoChampionError(RuntimeError):
    """A target has no champion in the registry: train first."""


class RecordError(ValueError):
    """A feature record is invalid; the message names the field."""


class UnknownTargetError(KeyError):
    """A target that is not served (not listed under `targets:`)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Champions:
    models: dict[str, RegisteredModel]

    @classmethod
    def load(cls, config: ProjectConfig, tracking_uri: str) -> Champions:
        models, missing = {}, []
        for target in config.targets.listed():
            model = load_alias(tracking_uri, config.model_name(target), CHAMPION)
            if model is None:
                missing.append(config.model_name(target))
            else:
                models[target] = model
        if missing:
            raise NoChampionError(
                f"no '{CHAMPION}' model for {', '.join(missing)} in the registry at "
                f"{tracking_uri}: train first (`propensity train` or `make train`), "
                "or leave the target out of targets: in the config if it cannot "
                "be trained"
            )
        return cls(models)

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets served, in canonical order."""
        return tuple(t for t in TARGETS if t in self.models)

    def model(self, target: str) -> RegisteredModel:
        """The target's champion; UnknownTargetError naming the served targets
        when the target is not served."""
        model = self.models.get(target)
        if model is None:
            raise UnknownTargetError(
                f"target {target!r} is not served: this service answers "
                f"{', '.join(self.targets)} (the targets listed in the config)"
            )
        return model

    # computed once: the champions are fixed for the object's life, and these
    # are read for every record checked
    @cached_property
    def feature_names(self) -> list[str]:
        """Every feature any champion reads, in first-seen order."""
        seen: dict[str, None] = {}
        for model in self.models.values():
            seen.update(dict.fromkeys(model.encoding.features))
        return list(seen)

    @cached_property
    def _feature_set(self) -> frozenset[str]:
        return frozenset(self.feature_names)

    @cached_property
    def categorical(self) -> frozenset[str]:
        return frozenset(
            c for m in self.models.values() for c in m.encoding.vocabularies
        )

    def require_built(self, built: Collection[str], version: str) -> None:
        """ConfigError naming each champion that reads a feature the config's
        feature definition (building `built`, catalogue version `version`) does
        not build: scoring could not feed it (a changed config whose challenger
        the gate did not promote)."""
        lacking = [
            why for m in self.models.values() if (why := m.unbuilt(built, version))
        ]
        if lacking:
            raise ConfigError(
                "; ".join(f"champion {why}" for why in lacking)
                + ". Scoring cannot feed it: train with this config and promote "
                "the new version (`propensity promote TARGET VERSION --force "
                "--reason ...` when the gate kept the old champion), or restore "
                "the config the champion was trained with"
            )

    @property
    def versions(self) -> dict[str, str]:
        return {t: m.version for t, m in self.models.items()}

    @property
    def feature_set_version(self) -> str:
        versions = {
            m.metadata.get("feature_set_version", "") for m in self.models.values()
        }
        return ",".join(sorted(versions))

    def _each(
        self,
        build: Callable[[Encoding], np.ndarray],
        apply: Callable[[RegisteredModel, np.ndarray], T],
    ) -> dict[str, T]:
        """`apply` per champion, building one matrix per distinct encoding (the
        three champions usually share one)."""
        built: list[tuple[Encoding, np.ndarray]] = []
        out = {}
        for target, model in self.models.items():
            matrix = next((m for e, m in built if e == model.encoding), None)
            if matrix is None:
                matrix = build(model.encoding)
                built.append((model.encoding, matrix))
            out[target] = apply(model, matrix)
        return out

    def _predict(
        self, build: Callable[[Encoding], np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Each champion's probabilities."""
        return self._each(build, lambda model, matrix: model.predict(matrix))

    def predict_frame(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Probabilities per target for a frame holding the feature columns."""
        return self._predict(lambda encoding: encoding.to_matrix(frame))

    def check_records(
        self, records: Sequence[Mapping[str, object]], field: str
    ) -> None:
        """Raise RecordError naming the first missing, unknown or mistyped field."""
        names = self._feature_set
        categorical = self.categorical
        for i, record in enumerate(records):
            if record.keys() != names:
                _key_error(record, self.feature_names, names, f"{field}[{i}].features")
            for name, value in record.items():
                if isinstance(value, str | bool) and name not in categorical:
                    raise RecordError(
                        f"{field}[{i}].features.{name}: expected a number or null, "
                        f"got {value!r}"
                    )

    def predict_records(
        self, records: Sequence[Mapping[str, object]]
    ) -> dict[str, np.ndarray]:
        """Probabilities per target from checked records, straight to numpy."""
        return self._predict(_record_matrix(records))

    def matrix(
        self, records: Sequence[Mapping[str, object]], target: str
    ) -> np.ndarray:
        """Checked records as one champion's input matrix (its encoding's order):
        for scoring and explaining a single target from one conversion."""
        return _record_matrix(records)(self.model(target).encoding)

    def explain_records(
        self,
        records: Sequence[Mapping[str, object]],
        k: int,
        exclude: Collection[str] = frozenset(),
        method: Method = "shap",
        descriptions: Mapping[str, str] | None = None,
    ) -> dict[str, list[list[Reason]]]:
        """Reason codes per target for checked records (see `serving.reasons`):
        one matrix per encoding, one attribution call per champion."""

        def explain(model: RegisteredModel, matrix: np.ndarray) -> list[list[Reason]]:
            return reasons(model, matrix, k, exclude, descriptions, method)

        return self._each(_record_matrix(records), explain)


def load_uplift(
    config: ProjectConfig, tracking_uri: str, features: Collection[str]
) -> dict[str, UpliftModel]:
    """The uplift champions (`<model>-uplift@champion`) of the listed targets,
    for outreach's ranking by expected incremental value. One that reads a
    feature the served records do not hold is left out, with a warning (its
    target is then ranked by probability)."""
    out = {}
    for target in config.targets.listed():
        name = registered_name(config.model_name(target))
        model = load_uplift_alias(tracking_uri, name, CHAMPION)
        if model is None:
            continue
        absent = [f for f in model.encoding.features if f not in features]
        if absent:
            log.warning(
                "%s v%s left out: it reads %s, which the served records do not "
                "hold; %s outreach ranks by probability",
                name,
                model.version,
                absent[:5],
                target,
            )
            continue
        out[target] = model
    return out


def uplift_matrix(
    model: UpliftModel, records: Sequence[Mapping[str, object]]
) -> np.ndarray:
    """Checked records as the uplift model's input matrix."""
    return _record_matrix(records)(model.encoding)


def _key_error(
    record: Mapping[str, object],
    ordered: Sequence[str],
    names: frozenset[str],
    where: str,
) -> None:
    missing = [n for n in ordered if n not in record]
    if missing:
        raise RecordError(
            f"{where}.{missing[0]}: missing; expected a value or null "
            f"({len(missing)} feature(s) missing)"
        )
    unknown = sorted(set(record) - names)
    raise RecordError(f"{where}.{unknown[0]}: unknown feature")


def _record_matrix(
    records: Sequence[Mapping[str, object]],
) -> Callable[[Encoding], np.ndarray]:
    def build(encoding: Encoding) -> np.ndarray:
        matrix = np.empty((len(records), len(encoding.features)), dtype=np.float64)
        for i, record in enumerate(records):
            encoding.record_to_row(record, matrix[i])
        return matrix

    return build
