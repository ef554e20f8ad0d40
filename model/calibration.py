"""Applying a calibration map to a model's raw probabilities.

A calibrator maps a raw probability to a calibrated one (fitted by
`training.calibrate` on the backtest's out-of-time predictions):

- `platt`: a logistic map on the logit of the raw probability (two numbers);
- `isotonic`: a monotone step map, applied as scikit-learn applies it, by linear
  interpolation between its thresholds and clipped at the ends.

Both serialise to a small dict kept in the registered model's metadata and apply
with numpy alone, so the API and the nightly job need no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

METHODS = ("isotonic", "platt")
EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map; `identity` leaves probabilities as they are."""

    method: str = "identity"
    # platt: [slope, intercept] on the logit; isotonic: thresholds x and values y
    params: dict[str, list[float]] = field(default_factory=dict)

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "identity":
            return p
        if self.method == "platt":
            slope, intercept = self.params["coef"]
            return 1.0 / (1.0 + np.exp(-(slope * logit(p) + intercept)))
        if self.method == "isotonic":
            return np.interp(p, *self._thresholds)
        raise ValueError(f"unknown calibration method {self.method!r}")

    @cached_property
    def _thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """The isotonic thresholds as arrays, converted once (apply is on the API's
        hot path)."""
        return np.asarray(self.params["x"]), np.asarray(self.params["y"])

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict | None) -> Calibrator:
        if not data:
            return cls()
        return cls(data["method"], {k: list(v) for k, v in data["params"].items()})
