"""The fairness report on hand-built arrays: selection-rate ratios and the
four-fifths flag, the calibration flag at twice the overall ECE, tiny segments,
band labels, and the refusal of segments the customers table cannot give."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, FairnessConfig
from training import plots
from training.fairness import (
    MISSING,
    THRESHOLD_CONFIG,
    THRESHOLD_TOP_DECILE,
    assess,
    band_labels,
    band_names,
    check_segments,
    segment_values,
    top_decile_threshold,
)


def _selection(selected: dict[str, tuple[int, int]]):
    """Scores 0.9 (selected at threshold 0.5) or 0.1, per segment (selected, n);
    outcomes equal to the selection, so every segment is calibrated alike."""
    p, labels = [], []
    for segment, (hits, n) in selected.items():
        p += [0.9] * hits + [0.1] * (n - hits)
        labels += [segment] * n
    p = np.array(p)
    return p, (p > 0.5).astype(int), {"region": np.array(labels, dtype=object)}


def _row(report, segment: str) -> dict:
    return next(r for r in report.segments if r["segment"] == segment)


def test_half_the_selection_rate_is_flagged_four_fifths_exactly_is_not() -> None:
    p, y, segments = _selection({"north": (4, 10), "south": (2, 10), "east": (5, 10)})
    settings = FairnessConfig(segments=["region"], threshold=0.5, min_segment_size=5)
    report = assess(p, y, segments, settings)
    assert report.threshold == 0.5 and report.threshold_source == THRESHOLD_CONFIG
    east, north, south = (_row(report, s) for s in ("east", "north", "south"))
    assert [r["segment"] for r in report.segments] == ["east", "north", "south"]
    assert east["selection_rate"] == pytest.approx(0.5)
    assert east["selection_ratio"] == pytest.approx(1.0)
    assert north["selection_ratio"] == pytest.approx(0.8)
    assert not north["four_fifths"]
    assert south["selection_ratio"] == pytest.approx(0.4)
    assert south["four_fifths"]
    assert report.flagged == ["region=south (four_fifths)"]
    assert report.count("four_fifths") == 1 and report.count("calibration") == 0


def test_tiny_segments_are_reported_never_flagged_nor_the_reference() -> None:
    p, y, segments = _selection({"north": (5, 10), "south": (1, 10), "tiny": (3, 3)})
    report = assess(p, y, segments, FairnessConfig(threshold=0.5, min_segment_size=5))
    tiny, south = _row(report, "tiny"), _row(report, "south")
    # the reference is north (0.5), not the tiny segment's 1.0
    assert tiny["small"] and tiny["selection_ratio"] == pytest.approx(2.0)
    assert south["selection_ratio"] == pytest.approx(0.2) and south["four_fifths"]
    small = assess(p, y, segments, FairnessConfig(threshold=0.5))  # default 50
    assert all(r["small"] for r in small.segments)
    assert small.flagged == []


def _calibration(calibrated_rows: int):
    """Segment a: `calibrated_rows` rows at p=0.15 with 15% positives (ECE 0);
    segment b: 100 rows at p=0.55 with 65% positives (ECE 0.1). The two fall in
    different bins, so the overall ECE is 0.1 * 100 / (rows + 100)."""
    n_a = calibrated_rows
    p = np.r_[np.full(n_a, 0.15), np.full(100, 0.55)]
    y = np.r_[np.arange(n_a) < 0.15 * n_a, np.arange(100) < 65].astype(int)
    labels = np.array(["a"] * n_a + ["b"] * 100, dtype=object)
    return p, y, {"plan": labels}


def test_calibration_flag_above_twice_the_overall_ece_not_at_it() -> None:
    settings = FairnessConfig(threshold=0.5, min_segment_size=10)
    at = assess(*_calibration(100), settings)  # overall 0.05, b exactly twice
    assert at.overall["ece"] == pytest.approx(0.05)
    assert _row(at, "b")["ece"] == pytest.approx(0.1)
    assert _row(at, "a")["ece"] == pytest.approx(0.0)
    assert not _row(at, "b")["calibration"]
    above = assess(*_calibration(300), settings)  # overall 0.025, b four times
    assert above.overall["ece"] == pytest.approx(0.025)
    assert _row(above, "b")["calibration"]
    assert above.count("calibration") == 1
    # a (never selected at 0.5, b always) is flagged by the four-fifths rule
    assert above.flagged == ["plan=a (four_fifths)", "plan=b (calibration)"]


def test_score_distribution_and_positive_rate_per_segment() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1])
    segments = {"plan": np.array(["x"] * 5 + ["y"], dtype=object)}
    report = assess(p, y, segments, FairnessConfig(threshold=0.45))
    x = _row(report, "x")
    assert x["n"] == 5 and x["positives"] == 2 and x["positive_rate"] == 0.4
    assert x["mean_score"] == pytest.approx(0.3)
    assert x["score_p10"] == pytest.approx(0.14)
    assert x["score_p50"] == pytest.approx(0.3)
    assert x["score_p90"] == pytest.approx(0.46)
    assert x["selection_rate"] == pytest.approx(0.2)
    assert report.overall["selection_rate"] == pytest.approx(2 / 6)
    assert set(report.curves) == {"plan=x", "plan=y"}


def test_default_threshold_is_the_nightly_top_decile() -> None:
    p = np.linspace(0.01, 0.2, 20)  # 20 distinct scores: the top 2 are decile 1
    assert top_decile_threshold(p) == pytest.approx(p[-2])
    ties = np.r_[np.full(5, 0.9), np.full(15, 0.1)]  # tied scores share decile 1
    assert top_decile_threshold(ties) == 0.9
    y = (p > 0.1).astype(int)
    report = assess(p, y, {"plan": np.array(["a"] * 20)}, FairnessConfig())
    assert report.threshold_source == THRESHOLD_TOP_DECILE
    assert report.overall["selection_rate"] == pytest.approx(0.1)


def test_band_labels_with_missing() -> None:
    assert band_names([18, 30, 45, 60]) == ["<18", "18-29", "30-44", "45-59", "60+"]
    assert band_names([0.5, 1]) == ["<0.5", "0.5-<1", "1+"]
    ages = pd.Series([17.0, 18.0, 29.0, 30.0, 59.0, 60.0, 90.0, None])
    assert list(band_labels(ages, [18, 30, 45, 60])) == [
        "<18",
        "18-29",
        "18-29",
        "30-44",
        "45-59",
        "60+",
        "60+",
        MISSING,
    ]


def test_segments_in_band_order_missing_last_and_numbers_need_bands() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    y = np.array([0, 1, 0, 1])
    ages = np.array([70.0, np.nan, 20.0, 40.0])
    settings = FairnessConfig(segments=["age"], bands={"age": [30, 60]})
    report = assess(p, y, {"age": ages}, settings)
    assert [r["segment"] for r in report.segments] == ["<30", "30-59", "60+", MISSING]
    regions = np.array(["b", None, "a", "b"], dtype=object)
    report = assess(p, y, {"region": regions}, settings)
    assert [r["segment"] for r in report.segments] == ["a", "b", MISSING]
    with pytest.raises(ValueError, match=r"fairness.bands.age"):
        assess(p, y, {"age": ages}, FairnessConfig())


def test_scores_are_not_changed() -> None:
    p, y, segments = _selection({"north": (4, 10), "south": (2, 10)})
    before = p.copy()
    assess(p, y, segments, FairnessConfig(threshold=0.5, min_segment_size=5))
    assert np.array_equal(p, before)


def test_the_figure_draws_every_attribute() -> None:
    p, y, segments = _selection({"north": (4, 10), "south": (2, 10)})
    segments["plan"] = np.array(["x", "y"] * 10, dtype=object)
    report = assess(p, y, segments, FairnessConfig(threshold=0.5, min_segment_size=5))
    figure = plots.fairness(report.segments, report.curves)
    assert len(figure.axes) == 4
    with pytest.raises(ValueError, match="no segment rows"):
        plots.fairness([], {})


def _customers():
    return ibis.memtable(
        pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3"],
                "signup_time": pd.to_datetime(["2024-01-01"] * 3),
                "plan": ["basic", "pro", None],
                "age": [25.0, None, 61.0],
            }
        )
    )


def test_segments_the_customers_table_cannot_give_are_refused() -> None:
    customers = _customers()
    check_segments(customers, FairnessConfig())  # no segments: nothing to check
    check_segments(
        customers, FairnessConfig(segments=["plan", "age"], bands={"age": [30]})
    )
    with pytest.raises(ConfigError, match=r"fairness.segments.*\['tier'\].*'plan'"):
        check_segments(customers, FairnessConfig(segments=["plan", "tier"]))
    with pytest.raises(ConfigError, match=r"fairness.segments: 'age' is numeric"):
        check_segments(customers, FairnessConfig(segments=["age"]))
    with pytest.raises(ConfigError, match=r"fairness.segments: 'signup_time'"):
        check_segments(customers, FairnessConfig(segments=["signup_time"]))
    with pytest.raises(ConfigError, match=r"fairness.segments.*no customers table"):
        check_segments(None, FairnessConfig(segments=["plan"]))


def test_segment_values_from_the_rows_or_the_customers_table() -> None:
    rows = pd.DataFrame({"plan": ["pro", "basic"]})  # plan is a model feature
    values = segment_values(["c2", "c1"], rows, _customers(), ["age", "plan"])
    assert list(values) == ["age", "plan"]
    assert list(values["plan"]) == ["pro", "basic"]
    assert np.isnan(values["age"][0]) and values["age"][1] == 25.0
