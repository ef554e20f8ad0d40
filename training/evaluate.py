"""Metrics on the validation cutoff, and the recency baseline beside the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from features.columns import CHURN, PURCHASE, SERVICE_REQUEST

# The recency feature each target's baseline ranks by.
RECENCY_FEATURE = {
    CHURN: "days_since_last_event",
    PURCHASE: "days_since_last_purchase",
    SERVICE_REQUEST: "days_since_last_service_request",
}
EPS = 1e-15


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss, Brier score."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
    }


def _recency(frame: pd.DataFrame, target: str) -> np.ndarray:
    days = frame[RECENCY_FEATURE[target]].astype("float64")
    # Never seen: as if last seen before the customer's first event.
    never = frame["tenure_days"].astype("float64") + 1
    return np.log1p(days.fillna(never).clip(lower=0)).to_numpy().reshape(-1, 1)


class RecencyBaseline:
    """P(target) from days since the last relevant event, via a 1-D logistic fit."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.model = LogisticRegression()

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> RecencyBaseline:
        self.model.fit(_recency(frame, self.target), y)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(_recency(frame, self.target))[:, 1]
