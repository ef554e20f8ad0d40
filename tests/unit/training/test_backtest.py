"""Rolling origins: which cutoffs each origin trains, stops and is scored on."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.config import BacktestConfig, LightGBMConfig
from features.columns import CHURN, CUSTOMER_ID, CUTOFF
from features.definition import Catalogue, Feature
from features.labels import LabelSpec
from training.backtest import CALIBRATED, MODEL, TargetSkipped, plan, run
from training.dataset import TrainingTable

LABELS = LabelSpec({CHURN: 30, "purchase": 30, "service_request": 30})
CUTOFFS = [datetime(2025, m, 1) for m in range(1, 11)]
FEATURES = ("days_since_last_event", "tenure_days", "signal", "noise")


def table(cutoffs=CUTOFFS, customers: int = 400, seed: int = 0) -> TrainingTable:
    """Synthetic rows: churn depends on `signal` and recency, per cutoff."""
    rng = np.random.default_rng(seed)
    parts = []
    for c in cutoffs:
        signal = rng.normal(size=customers)
        recency = rng.exponential(20, customers)
        logit = 1.5 * signal + 0.03 * recency - 2
        parts.append(
            pd.DataFrame(
                {
                    CUSTOMER_ID: [f"C{i}" for i in range(customers)],
                    CUTOFF: c,
                    "days_since_last_event": recency,
                    "tenure_days": recency + rng.exponential(100, customers),
                    "signal": signal,
                    "noise": rng.normal(size=customers),
                    CHURN: (
                        rng.uniform(size=customers) < 1 / (1 + np.exp(-logit))
                    ).astype(int),
                }
            )
        )
    catalogue = Catalogue(tuple(Feature(f, None, None, f) for f in FEATURES))
    return TrainingTable(
        pd.concat(parts, ignore_index=True),
        catalogue,
        datetime(2025, 10, 31),
        list(cutoffs),
    )


def test_origins_are_the_latest_complete_cutoffs_and_never_see_past_them() -> None:
    p = plan(table(), CHURN, LABELS, origins=4)
    h = timedelta(days=30)
    # 2025-10-01 + 30 days = 10-31: complete; every origin is a complete cutoff
    assert [f.origin for f in p.folds] == CUTOFFS[-4:]
    assert p.final_cutoffs == CUTOFFS
    for fold in p.folds:
        assert fold.stop_cutoff + h <= fold.origin
        assert all(c + h <= fold.stop_cutoff for c in fold.fit_cutoffs)
        # every cutoff whose window ends by the origin trains (fit or stop)
        assert fold.train_cutoffs == [c for c in CUTOFFS if c + h <= fold.origin]


def test_too_few_cutoffs_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs 4 origins .* the cutoffs give 3"):
        plan(table(CUTOFFS[-3:]), CHURN, LABELS, origins=4)
    with pytest.raises(
        ValueError, match="origin 2025-07-01 needs two earlier.*found 1"
    ):
        plan(table(CUTOFFS[-5:]), CHURN, LABELS, origins=4)


def test_a_single_class_origin_is_dropped_and_named() -> None:
    """An origin whose rows hold one class is no origin: the next earlier complete
    cutoff takes its place, and the plan says which was dropped and why."""
    t = table()
    t.frame.loc[t.frame[CUTOFF] == CUTOFFS[-1], CHURN] = 0
    p = plan(t, CHURN, LABELS, origins=4)
    assert [f.origin for f in p.folds] == CUTOFFS[-5:-1]
    assert p.dropped_lines() == [
        "churn: dropped 2025-10-01: churn's rows hold a single class "
        "(400 rows, 0 positive)"
    ]


def test_single_class_fitting_rows_skip_the_target_with_its_counts() -> None:
    t = table()
    t.frame.loc[t.frame[CUTOFF] <= CUTOFFS[4], CHURN] = 0
    with pytest.raises(TargetSkipped, match="fitting rows for origin .* single") as e:
        plan(t, CHURN, LABELS, origins=4)
    skipped = e.value
    assert skipped.target == CHURN
    # rows and positives of every cutoff, the early ones with none
    assert list(skipped.counts) == CUTOFFS
    assert (skipped.counts[CUTOFFS[0]].rows, skipped.counts[CUTOFFS[0]].positives) == (
        400,
        0,
    )
    positives = skipped.counts[CUTOFFS[-1]].positives
    assert 0 < positives < 400
    assert "2025-01-01 400 rows/0 positive" in str(skipped)
    assert f"2025-10-01 400 rows/{positives} positive" in str(skipped)


def test_run_scores_model_and_baselines_on_the_same_origin_rows() -> None:
    t = table()
    p = plan(t, CHURN, LABELS, origins=4)
    bt = run(
        t,
        p,
        LightGBMConfig(num_boost_round=60, early_stopping_rounds=10, num_threads=1),
        BacktestConfig(origins=4, baseline_max_rows=1000),
    )
    assert [o.origin for o in bt.origins] == CUTOFFS[-4:]
    for k, (o, m) in enumerate(zip(bt.origins, bt.metrics, strict=True)):
        assert o.n == (t.frame[CUTOFF] == o.origin).sum()
        assert set(m) == {MODEL, "recency", "logreg"} | ({CALIBRATED} if k else set())
        # the signal is learnable: the model beats ranking by recency alone
        assert m[MODEL]["roc_auc"] > m["recency"]["roc_auc"]
    assert bt.calibration.method in ("none", "isotonic", "platt")
    assert [e["origin"] for e in bt.evidence()] == [
        c.strftime("%Y-%m-%d") for c in CUTOFFS[-4:]
    ]
    s = bt.summary(MODEL)
    assert s["roc_auc_std"] >= 0 and 0.5 < s["roc_auc_mean"] < 1


def test_the_served_candidate_is_chosen_on_the_origins_and_never_below_a_baseline() -> (
    None
):
    from training.backtest import BLEND, LOGREG, MONOTONE, RECENT, final_blend

    t = table()
    p = plan(t, CHURN, LABELS, origins=3)
    config = BacktestConfig(
        origins=3,
        baseline_max_rows=1000,
        tree_variants=["monotone", "recent"],
        serve="auto",
    )
    bt = run(
        t,
        p,
        LightGBMConfig(num_boost_round=60, early_stopping_rounds=10, num_threads=1),
        config,
    )
    s = bt.selection
    assert s is not None
    assert set(bt.origins[0].candidates) == {MODEL, MONOTONE, RECENT, LOGREG, BLEND}
    assert s.chosen in {s.trees, BLEND, LOGREG}
    for o in bt.origins:  # the served predictions are the chosen candidate's
        np.testing.assert_array_equal(o.predictions[MODEL], o.candidates[s.chosen])
    served = bt.summary(MODEL)["roc_auc_mean"]
    for baseline in ("recency", "logreg"):
        assert served >= bt.summary(baseline)["roc_auc_mean"] - 1e-12, baseline
    assert s.figures[s.chosen]["auc"] == pytest.approx(served)
    margin = bt.margin(200, 0.95)
    assert margin["margin_baseline"] in {"recency", "logreg"}
    low, point = margin["margin_roc_auc_ci_low"], margin["margin_roc_auc"]
    assert low <= point <= margin["margin_roc_auc_ci_high"]
    rows = t.frame[t.frame[CUTOFF].isin(p.final_cutoffs)]
    from model.encoding import Encoding

    encoding = Encoding.fit(rows, list(FEATURES), [])
    blend = final_blend(bt, encoding, rows, CHURN, config)
    assert (blend is None) == (s.chosen == s.trees)


def linear_table(customers: int = 200, weak: int = 12, seed: int = 0) -> TrainingTable:
    """Rows where a logistic regression ranks better than trees: churn's logit is
    the sum of many weak features (recency and tenure are noise)."""
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(weak)]
    parts = []
    for c in CUTOFFS:
        x = rng.normal(size=(customers, weak))
        recency = rng.exponential(20, customers)
        logit = 0.35 * x.sum(axis=1) - 1.5
        parts.append(
            pd.DataFrame(
                {
                    CUSTOMER_ID: [f"C{i}" for i in range(customers)],
                    CUTOFF: c,
                    **{n: x[:, i] for i, n in enumerate(names)},
                    "days_since_last_event": recency,
                    "tenure_days": recency + 100,
                    CHURN: (
                        rng.uniform(size=customers) < 1 / (1 + np.exp(-logit))
                    ).astype(int),
                }
            )
        )
    features = (*names, "days_since_last_event", "tenure_days")
    return TrainingTable(
        pd.concat(parts, ignore_index=True),
        Catalogue(tuple(Feature(f, None, None, f) for f in features)),
        datetime(2025, 10, 31),
        list(CUTOFFS),
    )


def test_by_default_the_champion_is_never_below_a_baseline_it_could_serve() -> None:
    """Where the trees alone rank below the logistic regression in the backtest,
    the default configuration serves the blend or the regression, so the served
    model's mean AUC reaches every baseline's on its own origins (issue 17: "the
    champion is never worse than a baseline in its own backtest")."""
    from training.backtest import BLEND, LOGREG

    t = linear_table()
    p = plan(t, CHURN, LABELS, origins=2)
    bt = run(
        t,
        p,
        LightGBMConfig(num_boost_round=60, early_stopping_rounds=10, num_threads=1),
        BacktestConfig(origins=2, baseline_max_rows=1000),  # serve: the default
    )
    s = bt.selection
    assert set(bt.origins[0].candidates) == {MODEL, LOGREG, BLEND}
    # the trees alone would have been below the logistic regression
    assert s.figures[MODEL]["auc"] < s.figures["baseline_logreg"]["auc"]
    assert s.chosen in (BLEND, LOGREG)
    served = bt.summary(MODEL)["roc_auc_mean"]
    for baseline in ("recency", "logreg"):
        assert served >= bt.summary(baseline)["roc_auc_mean"], baseline


def test_the_configured_trees_alone_when_serve_is_lightgbm() -> None:
    from training.backtest import BLEND, LOGREG

    t = table(customers=200)
    p = plan(t, CHURN, LABELS, origins=2)
    config = BacktestConfig(origins=2, baseline_max_rows=1000, serve="lightgbm")
    bt = run(
        t,
        p,
        LightGBMConfig(num_boost_round=30, early_stopping_rounds=5, num_threads=1),
        config,
    )
    assert set(bt.origins[0].candidates) == {MODEL, LOGREG, BLEND}
    # the configured trees, whatever the figures say
    assert bt.selection.chosen == MODEL and bt.selection.stacker is None
