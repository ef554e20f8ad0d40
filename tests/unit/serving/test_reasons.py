"""Reason codes: SHAP top-k towards the positive class, decoded values, phrases."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from core.config import load_config
from features.definition import FeatureSpec, catalogue
from features.sources.load import load
from features.synthetic.demo import generate
from model.encoding import Encoding
from model.registry import RegisteredModel
from serving.reasons import TEMPLATES, phrase, reasons, template_key, top_columns
from tests.helpers import ROOT

FEATURES = ("days_since_last_purchase", "purchase_count_30d", "plan", "age")
PLANS = ("basic", "plus", "pro")


@pytest.fixture(scope="module")
def model() -> RegisteredModel:
    """Churn driven by days since the last purchase, less by the plan; age is
    noise."""
    rng = np.random.default_rng(3)
    n = 3000
    days = rng.integers(0, 120, n).astype(float)
    days[rng.random(n) < 0.05] = np.nan
    count = rng.poisson(2, n).astype(float)
    plan = rng.integers(0, 3, n).astype(float)
    age = rng.integers(18, 80, n).astype(float)
    logit = (np.nan_to_num(days, nan=150) - 60) / 15 + (plan == 0) * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    x = np.column_stack([days, count, plan, age])
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 0}
    data = lgb.Dataset(x, y, feature_name=list(FEATURES), categorical_feature=["plan"])
    booster = lgb.train(params, data, num_boost_round=60)
    return RegisteredModel(
        "churn", "1", booster, Encoding(FEATURES, {"plan": PLANS}), {}, None
    )


ROWS = np.array(
    [
        [100.0, 0.0, 0.0, 30.0],  # lapsed, basic plan: likely to churn
        [np.nan, 1.0, 2.0, 50.0],  # never purchased: likely to churn
        [1.0, 6.0, 2.0, 40.0],  # active: little pushes churn up
    ]
)


def test_top_reason_is_the_driver_with_decoded_values(model: RegisteredModel) -> None:
    out = reasons(model, ROWS, k=3)
    first = out[0][0]
    assert first.feature == "days_since_last_purchase"
    assert first.value == 100.0 and first.phrase == "no purchase for 100 days"
    assert out[1][0].value is None
    assert out[1][0].phrase == "no purchase on record"
    plan = [r for r in out[0] if r.feature == "plan"]
    assert plan and plan[0].value == "basic" and plan[0].phrase == "plan is basic"


def test_only_positive_contributions_largest_first(model: RegisteredModel) -> None:
    contrib = model.booster.predict(ROWS, pred_contrib=True)
    raw = model.booster.predict(ROWS, raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), raw)
    for row, found in zip(contrib, reasons(model, ROWS, k=4), strict=True):
        positive = sorted((c for c in row[:-1] if c > 0), reverse=True)
        assert [r.contribution for r in found] == pytest.approx(positive)
        assert all(r.contribution > 0 for r in found)


def test_k_and_exclude(model: RegisteredModel) -> None:
    assert all(len(found) <= 1 for found in reasons(model, ROWS, k=1))
    assert reasons(model, ROWS, k=0) == [[], [], []]
    out = reasons(model, ROWS, k=3, exclude={"days_since_last_purchase", "unknown"})
    assert all(r.feature != "days_since_last_purchase" for f in out for r in f)
    assert reasons(model, ROWS[:0], k=3) == []


def test_invalid_input_is_named(model: RegisteredModel) -> None:
    with pytest.raises(ValueError, match="matrix: expected 4 columns"):
        reasons(model, ROWS[:, :3], k=3)
    with pytest.raises(ValueError, match="k: must be >= 0"):
        reasons(model, ROWS, k=-1)


def test_top_columns_breaks_ties_by_column_order() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, -1.0, 5.0, 5.0, 4.0]])
    assert top_columns(scores, 2).tolist() == [[1, 2], [2, 3]]
    assert top_columns(scores, 5).tolist() == [[1, 2, 4, 3, 0], [2, 3, 4, 0, 1]]


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("days_since_last_purchase", 45.0, "no purchase for 45 days"),
        ("days_since_last_service_request", 1.0, "no service request for 1 day"),
        ("purchase_count_30d", 0.0, "0 purchases in the last 30 days"),
        ("cancel_count_7d", 1.0, "1 cancellation in the last 7 days"),
        ("tenure_days", 412.0, "customer for 412 days"),
        ("active_day_share_90d", 0.1, "active on 10% of days in the last 90 days"),
        (
            "event_count_ratio_30d",
            0.4,
            "events in the last 30 days at 0.4x the 30 days before",
        ),
        (
            "purchase_count_diff_90d",
            -3.0,
            "3 purchases fewer in the last 90 days than in the 90 days before",
        ),
        (
            "purchase_amount_sum_30d",
            1234.5,
            "purchases totalling 1,234 in the last 30 days",
        ),
        ("purchase_amount_mean_30d", None, "no purchase amounts in the last 30 days"),
        ("days_since_signup_time", 30.0, "signup_time 30 days ago"),
        ("age", 34.0, "age: 34"),
        ("purchase_count_30d", None, "purchase_count_30d: missing"),
    ],
)
def test_phrases(feature: str, value: float | None, words: str) -> None:
    assert phrase(feature, value) == words


def test_fallback_uses_the_description() -> None:
    assert (
        phrase("age", 34.5, "customer attribute age") == "customer attribute age: 34.5"
    )


def test_every_demo_feature_has_words(tmp_path: Path) -> None:
    summary = generate(tmp_path, customers=50, seed=1, days=60)
    ds = load(summary.events_path, summary.customers_path, as_of=datetime(2030, 1, 1))
    spec = FeatureSpec.from_config(load_config(ROOT / "propensity.yaml"))
    # with the subscription features too, as a config with subscriptions has them,
    # and the feature groups, each with words whether the config turns it on
    spec = dataclasses.replace(
        spec, subscriptions=True, classic=True, behaviour=True, trends=True
    )
    features = catalogue(spec, ds.customers).features
    used = set()
    for f in features:
        for value in [None, "pro"] if f.categorical else [None, 0.0, 1.0, 37.5]:
            words = phrase(f.name, value, f.description)
            assert words and "None" not in words and "nan" not in words
        if f.source is None and not f.categorical:  # a template per event feature
            assert template_key(f.name) is not None, f.name
            used.add(template_key(f.name)[0])
    assert used == set(TEMPLATES)
    assert len(features) > 90


def test_path_method_finds_the_same_driver(model: RegisteredModel) -> None:
    out = reasons(model, ROWS, k=3, method="path")
    assert out[0][0].feature == "days_since_last_purchase"
    assert all(r.contribution > 0 for found in out for r in found)


def test_champions_explain_records_per_target(model: RegisteredModel) -> None:
    from serving.scoring import Champions

    champions = Champions({"churn": model, "purchase": model})
    records = [
        {"days_since_last_purchase": 100, "purchase_count_30d": 0, "plan": "basic"}
        | {"age": 30},
        {"days_since_last_purchase": None, "purchase_count_30d": 1, "plan": "pro"}
        | {"age": 50},
    ]
    out = champions.explain_records(records, k=2, exclude={"age"})
    assert set(out) == {"churn", "purchase"} and out["churn"] == out["purchase"]
    assert out["churn"] == reasons(model, ROWS[:2], k=2, exclude={"age"})
