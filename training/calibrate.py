"""Calibrating a model's probabilities on predictions it made out of time.

Marketing systems multiply these probabilities by money, so they must mean what
they say. A calibrator maps a raw probability to a calibrated one and is fitted on
the backtest's out-of-time predictions (rows the trees never saw):

- `platt`: a logistic fit on the logit of the raw probability (two numbers);
- `isotonic`: a monotone step fit (scikit-learn's PAV), applied as sklearn does,
  by linear interpolation between its thresholds and clipped at the ends.

Both serialise to a small dict kept in the registered model's metadata, and apply
with numpy alone, so the API and the nightly job need no scikit-learn object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

METHODS = ("isotonic", "platt")
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map; `identity` leaves probabilities as they are."""

    method: str = "identity"
    # platt: [slope, intercept] on the logit; isotonic: thresholds x and values y
    params: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if method == "platt":
            lr = LogisticRegression(C=1e6, max_iter=1000)
            lr.fit(_logit(p).reshape(-1, 1), y)
            return cls(
                "platt",
                {"coef": [float(lr.coef_[0, 0]), float(lr.intercept_[0])]},
            )
        if method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(p, y)
            return cls(
                "isotonic",
                {
                    "x": [float(v) for v in iso.X_thresholds_],
                    "y": [float(v) for v in iso.y_thresholds_],
                },
            )
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "identity":
            return p
        if self.method == "platt":
            slope, intercept = self.params["coef"]
            return 1.0 / (1.0 + np.exp(-(slope * _logit(p) + intercept)))
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


@dataclass(frozen=True)
class Choice:
    """The chosen method, and each candidate's log loss on the later origin."""

    method: str
    log_loss: dict[str, float]


def choose(
    earlier: tuple[np.ndarray, np.ndarray],
    later: tuple[np.ndarray, np.ndarray],
    method: str = "auto",
) -> Choice:
    """Fit each method on the earlier origins' (p, y) and keep the one with the lower
    log loss on the later origin (`method` other than auto: that one)."""
    candidates = METHODS if method == "auto" else (method,)
    losses = {}
    for name in candidates:
        fitted = Calibrator.fit(name, *earlier)
        q = np.clip(fitted.apply(later[0]), 1e-15, 1 - 1e-15)
        losses[name] = float(log_loss(later[1], q, labels=[0, 1]))
    return Choice(min(losses, key=losses.__getitem__), losses)
