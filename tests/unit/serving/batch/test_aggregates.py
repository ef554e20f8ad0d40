"""The nightly aggregates the console reads: counts that add up, the top drifted
features, no NaN in the JSON, one outcome series per target, oldest first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from serving.batch import aggregates


def test_histograms_count_every_finite_score_once() -> None:
    scores = {"churn": np.array([0.0, 0.05, 0.5, 1.0, np.nan]), "purchase": np.zeros(3)}
    out = aggregates.histograms(scores, bins=4)
    assert out["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert out["counts"] == {"churn": [2, 0, 1, 1], "purchase": [3, 0, 0, 0]}


def test_drift_summary_keeps_the_verdict_and_the_top_features_in_order() -> None:
    report = {
        "level": "alert",
        "alerts": ["a"],
        "warnings": [],
        "thresholds": {"warn": 0.1, "alert": 0.25},
        "scores": [{"target": "churn", "psi": 0.01, "level": "ok", "bins": {}}],
        "features": [
            {"feature": f"f{i}", "psi": 1.0 / (i + 1), "level": "ok", "bins": {}}
            for i in range(15)
        ],
    }
    out = aggregates.drift_summary(report, top=3)
    assert [f["feature"] for f in out["features"]] == ["f0", "f1", "f2"]
    assert "bins" not in out["features"][0] and out["level"] == "alert"


def test_build_turns_nan_into_null_and_write_is_read_back(tmp_path: Path) -> None:
    doc = aggregates.build(
        as_of="2025-12-31",
        run_id="r",
        scores={"churn": np.array([0.2, np.nan])},
        bins=2,
        quantiles={"score_churn_mean": float("nan")},
        drift={
            "level": "ok",
            "alerts": [],
            "warnings": [],
            "scores": [],
            "features": [],
        },
        models={},
        outcomes={},
        campaign_readouts={"c": {"roi": float("inf")}},
    )
    assert doc["customers"] == {"churn": 1}
    path = aggregates.write(tmp_path, doc)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = aggregates.read(tmp_path)
    assert back["quantiles"]["score_churn_mean"] is None
    assert back["readouts"]["c"]["roi"] is None
    assert not list(tmp_path.glob("*.tmp*"))


def test_outcome_series_is_per_target_and_oldest_first(tmp_path: Path) -> None:
    for day, auc in (("2025-11-01", 0.7), ("2025-10-01", 0.8)):
        folder = tmp_path / f"as_of={day}"
        folder.mkdir()
        item = {
            "as_of": day,
            "target": "churn",
            "roc_auc": auc,
            "level": "ok",
            "expected": {"roc_auc": 0.75},
        }
        (folder / "churn.json").write_text(json.dumps(item))
    (tmp_path / "as_of=2025-12-01").mkdir()
    (tmp_path / "as_of=2025-12-01" / "churn.json").write_text("{broken")
    series = aggregates.outcome_series(tmp_path)
    assert [s["as_of"] for s in series["churn"]] == ["2025-10-01", "2025-11-01"]
    assert series["churn"][0]["roc_auc"] == 0.8
    assert series["churn"][0]["expected_roc_auc"] == 0.75
    assert math.isclose(series["churn"][1]["roc_auc"], 0.7)
