"""Fitting a calibration map on predictions a model made out of time.

Marketing systems multiply these probabilities by money, so they must mean what
they say. The map (`model.calibration.Calibrator`, applied with numpy alone by the
API and the nightly job) is fitted here on the backtest's out-of-time predictions
(rows the trees never saw): `platt` by a logistic fit on the logit, `isotonic` by
scikit-learn's PAV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from model.calibration import METHODS, Calibrator, logit

NONE = "none"
# a map is only fitted on predictions holding this many positives (fewer: none);
# isotonic steps need many more than Platt's two parameters
MIN_POSITIVES = {"platt": 30, "isotonic": 200}


def fit(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    """The `method` map fitted on raw probabilities `p` and outcomes `y` (`none`:
    the identity)."""
    if method == NONE:
        return Calibrator()
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(logit(p).reshape(-1, 1), y)
        return Calibrator(
            "platt", {"coef": [float(lr.coef_[0, 0]), float(lr.intercept_[0])]}
        )
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(p, y)
        return Calibrator(
            "isotonic",
            {
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            },
        )
    raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")


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
    """Fit each method on the earlier origins' (p, y) and keep the one with the
    lowest log loss on the later origin, none (the raw predictions) included and
    winning ties, so calibration never makes that log loss worse; a method whose
    earlier predictions hold fewer than `MIN_POSITIVES` positives is not tried
    (`method` other than auto: that one)."""
    positives = int(np.asarray(earlier[1]).sum())
    if method == "auto":
        tried = [m for m in METHODS if positives >= MIN_POSITIVES[m]]
        candidates = (NONE, *tried)
    else:
        candidates = (method,)
    losses = {}
    for name in candidates:
        fitted = fit(name, *earlier)
        q = np.clip(fitted.apply(later[0]), 1e-15, 1 - 1e-15)
        losses[name] = float(log_loss(later[1], q, labels=[0, 1]))
    best = min(losses, key=lambda m: (losses[m], m != NONE))
    return Choice(best, losses)
