"""One LightGBM binary model per target: early-stopped in the backtest, then refitted
on every complete cutoff for the number of rounds the backtest found."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from core.config import LightGBMConfig
from model.encoding import Encoding


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
        "lambda_l2": config.lambda_l2,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    encoding: Encoding,
    config: LightGBMConfig,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    rounds: int | None = None,
    weight: np.ndarray | None = None,
    monotone: list[int] | None = None,
) -> lgb.Booster:
    """Early-stopped on `valid` when given; otherwise exactly `rounds` rounds (the
    configured maximum by default). `weight`: per training row (training.select's
    cutoff weighting); `monotone`: LightGBM's monotone constraints per feature."""
    params = lgb_params(config)
    if monotone is not None and any(monotone):
        params |= {"monotone_constraints": list(monotone)}
    train = lgb.Dataset(
        x_train,
        y_train,
        weight=weight,
        feature_name=list(encoding.features),
        categorical_feature=encoding.categorical,
        free_raw_data=True,
    )
    if valid is None:
        return lgb.train(
            params, train, num_boost_round=rounds or config.num_boost_round
        )
    valid_set = lgb.Dataset(valid[0], valid[1], reference=train)
    return lgb.train(
        params,
        train,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
