"""The training sections: LightGBM, the rolling-origin backtest, the promotion
gate, training's own settings, the fairness report and MLflow."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from core.config.base import ConfigPath, Strict
from core.config.data import CutoffsConfig


class LightGBMConfig(Strict):
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_boost_round: int = Field(500, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    # L2 regularisation of leaf values; 0 is LightGBM's default (none).
    lambda_l2: float = Field(0.0, ge=0)
    seed: int = 0
    num_threads: int = Field(0, ge=0)


class BacktestConfig(Strict):
    """Rolling-origin evaluation: the latest `origins` complete cutoffs, each scored
    by a model trained only on cutoffs whose label windows end by it."""

    origins: int = Field(4, ge=2)
    # Logistic-regression baseline: training rows sampled down to this many.
    baseline_max_rows: int = Field(200_000, ge=1_000)
    # How the served probabilities are calibrated: chosen by log loss on the last
    # origin among none, isotonic and Platt (auto; none when too few positives or
    # when no map beats the raw log loss), or fixed.
    calibration: Literal["auto", "none", "isotonic", "platt"] = "auto"
    # LightGBM variants the backtest also fits at every origin and may serve
    # (training/select.py): monotone constraints on the target's recency
    # features, recent cutoffs weighted more; each costs one more fit per origin.
    tree_variants: list[Literal["monotone", "recent"]] = []
    # auto (the default): serve what the backtest chooses (training/select.py:
    # the trees, their out-of-fold blend with the logistic regression, or the
    # regression itself), so the champion is never below a baseline it could
    # serve in its own backtest; lightgbm: the configured LightGBM alone, no
    # variant, blend or baseline
    serve: Literal["auto", "lightgbm"] = "auto"


class PromotionConfig(Strict):
    """The gate a challenger passes to become champion, on the origins both share
    (docs/training.md: The promotion gate). Both figures are paired bootstrap
    intervals over customers at `confidence` when both runs logged their
    out-of-time predictions, else plain means (older champions)."""

    # The log-loss gain (champion - challenger, mean over the common origins) must
    # exceed this beyond noise: the interval's lower end must lie above it.
    min_log_loss_gain: float = Field(0.0, ge=0)
    # The AUC loss (champion - challenger) may not exceed this beyond noise: the
    # challenger is refused when the interval's lower end lies above it.
    max_auc_loss: float = Field(0.005, ge=0)
    # The central interval's coverage (0.95: from the 2.5th to the 97.5th
    # percentile of the resampled figures).
    confidence: float = Field(0.95, gt=0.5, lt=1)
    # Resamples of the customers (each with all its rows); at 1000, about 5-10 s
    # per 100k out-of-time rows on two cores (time grows with rows x resamples).
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)


class UpliftConfig(Strict):
    """Uplift models from logged campaigns (training.uplift, docs/campaigns.md:
    Uplift targeting): the learner, the keyed-hash splits and LightGBM's
    settings for its small per-group models (no early stopping: fixed rounds)."""

    # t: two-model learner; x: X-learner; auto: the higher mean Qini over splits
    learner: Literal["auto", "t", "x"] = "auto"
    splits: int = Field(5, ge=1, le=50)
    held_out_share: float = Field(0.3, gt=0, lt=1)
    # fewer matured treated or control customers than this: no uplift model
    min_group_customers: int = Field(200, ge=10)
    num_leaves: int = Field(8, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_boost_round: int = Field(150, ge=1)
    min_data_in_leaf: int = Field(200, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    seed: int = 0
    num_threads: int = Field(0, ge=0)


class TrainingConfig(Strict):
    cutoffs: CutoffsConfig
    # A copy of each run's training table (training-<id>.parquet) for
    # reproducing a model; None keeps none. `propensity forget` and
    # privacy.retention_days delete from it.
    snapshot_dir: ConfigPath | None = None
    lightgbm: LightGBMConfig = LightGBMConfig()
    backtest: BacktestConfig = BacktestConfig()
    promotion: PromotionConfig = PromotionConfig()
    uplift: UpliftConfig = UpliftConfig()


class MLflowConfig(Strict):
    # None -> sqlite:///<project>/mlruns/mlflow.db; env MLFLOW_TRACKING_URI wins.
    tracking_uri: str | None = None
    experiment: str = "propensity"
    # Registered model name per target is "<prefix><target>".
    model_prefix: str = ""


class FairnessConfig(Strict):
    """The fairness report of each training run (training.fairness, README:
    Fairness report): per value of each customer attribute in `segments`, score
    distribution, calibration and selection rate at the outreach threshold. It
    informs; it never changes a score.

    `bands` cuts a numeric attribute into buckets [edge, next edge) plus "<first"
    and "last+" and "missing"; a numeric segment without bands is refused at
    training time, when the customers table says which attributes are numeric.
    `threshold` None selects the out-of-time rows' top decile, the customers the
    nightly job puts in decile 1. Segments under `min_segment_size` rows are
    reported, never flagged."""

    segments: list[str] = Field(default_factory=list)
    bands: dict[str, list[float]] = Field(default_factory=dict)
    threshold: float | None = Field(None, gt=0, le=1)
    min_segment_size: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _segments_and_bands(self) -> FairnessConfig:
        if len(set(self.segments)) != len(self.segments):
            raise ValueError("segments has duplicates")
        stray = sorted(set(self.bands) - set(self.segments))
        if stray:
            raise ValueError(f"bands for attributes not in segments: {stray}")
        for name, edges in self.bands.items():
            increasing = all(b > a for a, b in zip(edges, edges[1:], strict=False))
            if not edges or not increasing or not all(map(math.isfinite, edges)):
                raise ValueError(
                    f"bands.{name} must be a non-empty list of finite, increasing edges"
                )
        return self
