"""The uplift model artifact: what contacting a customer changes in the target.

tau(x) = p_treated(x) - p_control(x): the change in the probability of the
target's outcome if the customer is contacted, from LightGBM boosters fitted by
`training.uplift` on logged campaigns (treatment against the keyed-hash control):

- `t` (two-model learner): one classifier on the treated, one on the control;
  tau = p_treated - p_control.
- `x` (X-learner, Kuenzel et al. 2019): the two classifiers above, then two
  regressions of the imputed effects, `tau_treated` on the treated
  (y - p_control(x)) and `tau_control` on the control (p_treated(x) - y),
  blended by the treated share g of the campaigns (constant: the groups were
  drawn at random): tau = g * tau_control + (1 - g) * tau_treated.

For churn a good campaign has tau < 0 (fewer churn); `benefit` = direction * tau
is the gain per contact either way (direction -1 for churn, +1 otherwise).

Saved as a folder (`uplift.json` and one LightGBM text model per part) inside an
MLflow pyfunc model (`loader_module="model.uplift"`), so the registry holds it
and serving loads it with numpy, pandas and LightGBM only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from model.encoding import Encoding

LEARNERS = ("t", "x")
TREATED, CONTROL = "treated", "control"
TAU_TREATED, TAU_CONTROL = "tau_treated", "tau_control"
PARTS = {"t": (TREATED, CONTROL), "x": (TREATED, CONTROL, TAU_TREATED, TAU_CONTROL)}
SPEC_FILE = "uplift.json"
# the registered uplift model of a target is "<prefix><target>-uplift"
NAME_SUFFIX = "-uplift"


def registered_name(model_name: str) -> str:
    """The uplift model's registered name beside the target's model name."""
    return f"{model_name}{NAME_SUFFIX}"


def direction(target: str) -> int:
    """+1 when more of the outcome is the goal, -1 for churn (less is)."""
    return -1 if target == "churn" else 1


@dataclass
class UpliftModel:
    """A learner's boosters with the encoding they read and the treated share."""

    learner: str
    target: str
    encoding: Encoding
    boosters: dict[str, lgb.Booster]
    treated_share: float
    metadata: dict = field(default_factory=dict)
    name: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner: one of {LEARNERS}, got {self.learner!r}")
        missing = [p for p in PARTS[self.learner] if p not in self.boosters]
        if missing:
            raise ValueError(f"uplift model ({self.learner}): missing parts {missing}")
        for part, booster in self.boosters.items():
            if list(booster.feature_name()) != list(self.encoding.features):
                raise ValueError(
                    f"uplift model part {part}: booster features "
                    f"{booster.feature_name()} differ from the encoding's"
                )

    @property
    def direction(self) -> int:
        return direction(self.target)

    def outcome_probabilities(self, matrix: np.ndarray) -> tuple[np.ndarray, ...]:
        """(p_treated, p_control) of the two outcome classifiers."""
        return (
            self.boosters[TREATED].predict(matrix),
            self.boosters[CONTROL].predict(matrix),
        )

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """tau = p_treated - p_control per row of a matrix in encoding order."""
        if self.learner == "t":
            treated, control = self.outcome_probabilities(matrix)
            return treated - control
        g = self.treated_share
        return g * self.boosters[TAU_CONTROL].predict(matrix) + (1 - g) * self.boosters[
            TAU_TREATED
        ].predict(matrix)

    def benefit(self, matrix: np.ndarray) -> np.ndarray:
        """The gain in the wanted direction per contact: -tau for churn."""
        return self.direction * self.predict(matrix)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict(self.encoding.to_matrix(frame))

    def spec(self) -> dict:
        return {
            "learner": self.learner,
            "target": self.target,
            "encoding": self.encoding.to_dict(),
            "treated_share": self.treated_share,
            "parts": list(self.boosters),
            "metadata": self.metadata,
        }

    def save(self, folder: Path) -> Path:
        """Write the spec and one LightGBM text model per part into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        for part, booster in self.boosters.items():
            booster.save_model(str(folder / f"{part}.txt"))
        (folder / SPEC_FILE).write_text(json.dumps(self.spec(), indent=1))
        return folder


def find_spec(folder: str | Path) -> Path:
    """The folder holding `uplift.json` under an MLflow model folder."""
    found = sorted(Path(folder).rglob(SPEC_FILE))
    if not found:
        raise FileNotFoundError(f"{folder}: no {SPEC_FILE}: not an uplift model")
    return found[0].parent


def load(folder: str | Path, name: str = "", version: str = "") -> UpliftModel:
    """An uplift model saved by `UpliftModel.save` (or any MLflow model folder
    holding one)."""
    where = find_spec(folder)
    spec = json.loads((where / SPEC_FILE).read_text())
    boosters = {
        part: lgb.Booster(model_file=str(where / f"{part}.txt"))
        for part in spec["parts"]
    }
    return UpliftModel(
        learner=spec["learner"],
        target=spec["target"],
        encoding=Encoding.from_dict(spec["encoding"]),
        boosters=boosters,
        treated_share=float(spec["treated_share"]),
        metadata=spec.get("metadata", {}),
        name=name,
        version=version,
    )


class _Pyfunc:
    """MLflow's pyfunc face of the model: a frame of features -> tau."""

    def __init__(self, model: UpliftModel) -> None:
        self.model = model

    def predict(self, frame: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.model.predict_frame(frame)


def _load_pyfunc(data_path: str) -> _Pyfunc:
    """MLflow's hook for `loader_module="model.uplift"`."""
    return _Pyfunc(load(data_path))
