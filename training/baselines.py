"""Metrics on out-of-time rows, and the baselines every model is compared with.

Baselines (each fitted on exactly the rows the model is fitted on, scored on the
same origin):
- `recency`: days since the last relevant event, through a 1-D logistic fit;
- `logreg`: logistic regression on the same features (signed log1p, missing
  indicators, scaling; categoricals one-hot) as a scikit-learn pipeline;
- `bgnbd` (purchase only): BG/NBD fitted on the purchases before the origin,
  P(at least one purchase in the horizon), see features/bgnbd.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from features.bgnbd import P_PURCHASE, ConvergenceError, purchase_baseline
from features.columns import CHURN, CUSTOMER_ID, PURCHASE, SERVICE_REQUEST
from model.encoding import Encoding

log = logging.getLogger(__name__)

# The recency feature each target's baseline ranks by.
RECENCY_FEATURE = {
    CHURN: "days_since_last_event",
    PURCHASE: "days_since_last_purchase",
    SERVICE_REQUEST: "days_since_last_service_request",
}


def _recency(frame: pd.DataFrame, target: str) -> np.ndarray:
    days = frame[RECENCY_FEATURE[target]].astype("float64")
    # Never seen: as if last seen before the customer's first event.
    never = frame["tenure_days"].astype("float64") + 1
    return np.log1p(days.fillna(never).clip(lower=0)).to_numpy().reshape(-1, 1)


class RecencyBaseline:
    """P(target) from days since the last relevant event, via a 1-D logistic fit."""

    name = "recency"

    def __init__(self, target: str) -> None:
        self.target = target
        self.model = LogisticRegression()

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> RecencyBaseline:
        self.model.fit(_recency(frame, self.target), y)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(_recency(frame, self.target))[:, 1]


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class MedianImputer(SimpleImputer):
    """`SimpleImputer(strategy="median")` whose medians come from `np.nanmedian`:
    scikit-learn's masked-array median took about a sixth of a `train` on CDNOW
    (350k rows). The same statistics, indicators and empty-column rule."""

    def _dense_fit(self, X, strategy, missing_values, fill_value):
        nan = isinstance(missing_values, float) and np.isnan(missing_values)
        if strategy != "median" or not nan or X.dtype.kind != "f":
            return super()._dense_fit(X, strategy, missing_values, fill_value)
        missing = np.isnan(X)
        self._fit_indicator(missing)
        median = np.full(X.shape[1], np.nan)
        seen = ~missing.all(axis=0)
        if seen.any():
            median[seen] = np.nanmedian(X[:, seen], axis=0)
        median[~seen] = 0 if self.keep_empty_features else np.nan
        return median


class LogisticBaseline:
    """Logistic regression on the model's own features, as a scikit-learn pipeline.

    Numeric features: signed log1p (counts and amounts are heavy-tailed), median
    imputation with missing indicators, standard scaling. Categorical codes:
    one-hot. Training rows beyond `max_rows` are sampled (seeded) to bound the fit.
    """

    name = "logreg"

    def __init__(self, encoding: Encoding, max_rows: int, seed: int = 0) -> None:
        self.encoding = encoding
        self.max_rows = max_rows
        self.seed = seed
        cats = [
            i for i, f in enumerate(encoding.features) if f in encoding.vocabularies
        ]
        nums = [i for i in range(len(encoding.features)) if i not in cats]
        numeric = Pipeline(
            [
                ("functiontransformer", FunctionTransformer(_signed_log1p)),
                # an all-missing column (a window longer than the history) becomes 0
                (
                    "simpleimputer",
                    MedianImputer(
                        strategy="median", add_indicator=True, keep_empty_features=True
                    ),
                ),
                ("standardscaler", StandardScaler()),
            ]
        )
        categorical = make_pipeline(
            SimpleImputer(strategy="constant", fill_value=-1),
            OneHotEncoder(handle_unknown="ignore"),
        )
        self.model = Pipeline(
            [
                (
                    "columns",
                    ColumnTransformer(
                        [("numeric", numeric, nums), ("categorical", categorical, cats)]
                    ),
                ),
                ("logreg", LogisticRegression(C=1.0, max_iter=2000)),
            ]
        )

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticBaseline:
        if len(y) > self.max_rows:
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(len(y), self.max_rows, replace=False))
            x, y = x[keep], y[keep]
        # one BLAS thread: with two, OpenBLAS spun against LightGBM's OpenMP threads
        # and the fit took 8x longer on two cores
        with threadpool_limits(1, user_api="blas"):
            self.model.fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)[:, 1]


def bgnbd_baseline(
    purchases: pd.DataFrame,
    origin_rows: pd.DataFrame,
    train_rows: pd.DataFrame,
    train_y: np.ndarray,
    origin,
    horizon_days: int,
    role_of: dict[str, str],
    fits: dict | None = None,
) -> np.ndarray:
    """BG/NBD's P(any purchase within the horizon) for the origin's rows.

    Customers with no purchase before the origin are outside the BG/NBD process;
    they get the purchase rate of never-purchased rows in the training cutoffs.
    Returns NaNs when the likelihood fit does not converge (logged). `fits`: a
    cache of the fits by (origin, horizon), when one origin is fitted twice (the
    quality benchmark's inner origin is the previous test origin).
    """
    key = (origin, horizon_days)
    if fits is not None and key in fits:
        history = fits[key]
    else:
        try:
            _, history = purchase_baseline(purchases, origin, horizon_days, role_of)
        except ConvergenceError as exc:
            log.warning("BG/NBD at %s did not converge: %s", origin, exc)
            history = None
        if fits is not None:
            fits[key] = history
    if history is None:
        return np.full(len(origin_rows), np.nan)
    p = history[P_PURCHASE].reindex(origin_rows[CUSTOMER_ID]).to_numpy()
    never = train_rows[RECENCY_FEATURE[PURCHASE]].isna().to_numpy()
    fill = float(train_y[never].mean()) if never.any() else float(train_y.mean())
    return np.where(np.isnan(p), fill, p)
