"""One LightGBM binary model per target, early-stopped on the validation cutoff."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from features.config import LightGBMConfig
from features.encode import Encoding


def lgb_params(config: LightGBMConfig) -> dict:
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    encoding: Encoding,
    config: LightGBMConfig,
) -> lgb.Booster:
    names = list(encoding.features)
    cats = encoding.categorical
    train = lgb.Dataset(
        x_train,
        y_train,
        feature_name=names,
        categorical_feature=cats,
        free_raw_data=True,
    )
    valid = lgb.Dataset(x_valid, y_valid, reference=train)
    return lgb.train(
        lgb_params(config),
        train,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
