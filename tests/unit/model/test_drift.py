"""Binned references, PSI and the drift monitor: known values and boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.config import DriftConfig
from model.drift import Counts, Reference, bin_counts, profile, psi
from serving.batch.drift import ALERT, IGNORED, OK, WARN, DriftMonitor, level


def test_psi_of_known_shares() -> None:
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_floors_empty_bins_and_rejects_other_bins() -> None:
    assert math.isfinite(psi([0.5, 0.5], [1.0, 0.0]))
    assert psi([0.5, 0.5], [1.0, 0.0]) > 1
    with pytest.raises(ValueError, match="bins differ"):
        psi([0.5, 0.5], [1.0])


def test_a_value_on_an_edge_falls_in_the_lower_bin() -> None:
    counts = bin_counts(np.array([1.0, 1.0000001, 2.0, np.nan, -5.0]), [1.0, 2.0])
    assert counts.tolist() == [2, 2, 0, 1]  # 3 bins, then missing


def test_reference_of_deciles_and_missing() -> None:
    values = np.append(np.arange(100, dtype=float), [np.nan] * 25)
    ref = Reference.of(values)
    assert len(ref.edges) == 9 and ref.rows == 125
    assert ref.missing == pytest.approx(0.2)
    assert sum(ref.shares) + ref.missing == pytest.approx(1.0)
    assert (ref.low, ref.high) == (0.0, 99.0)
    assert Reference.from_dict(ref.to_dict()) == ref


def test_few_distinct_values_merge_their_edges() -> None:
    ref = Reference.of(np.array([0.0] * 90 + [1.0] * 10))
    assert ref.edges == (0.0,)
    assert ref.shares == pytest.approx((0.9, 0.1))


def test_categorical_gets_one_bin_per_code() -> None:
    ref = Reference.of(np.array([0.0, 1.0, 2.0, 2.0]), categories=3)
    assert ref.edges == (0.5, 1.5) and ref.categorical
    assert ref.shares == pytest.approx((0.25, 0.25, 0.5))


def test_streaming_counts_equal_one_pass_and_track_the_range() -> None:
    rng = np.random.default_rng(0)
    ref = Reference.of(rng.normal(size=5000))
    values = rng.normal(0.5, 1.5, size=3000)
    whole, parts = Counts(ref), Counts(ref)
    whole.add(values)
    for chunk in np.array_split(values, 7):
        parts.add(chunk)
    assert whole.bins.tolist() == parts.bins.tolist()
    assert whole.psi() == parts.psi() > 0.1
    assert whole.below == int((values < ref.low).sum()) > 0
    assert whole.above == int((values > ref.high).sum()) > 0


def _monitor(shift: float) -> tuple[DriftMonitor, dict]:
    rng = np.random.default_rng(1)
    features = ("a", "b")
    train = rng.normal(size=(4000, 2))
    scores = rng.uniform(size=4000)
    ref = profile(train, features, {}, scores)
    monitor = DriftMonitor({"churn": ref, "purchase": ref, "service_request": None})
    tonight = rng.normal(size=(3000, 2))
    tonight[:, 1] += shift
    counted: set[int] = set()
    for target in ("churn", "purchase"):
        monitor.add(target, features, tonight, rng.uniform(size=3000), counted)
    return monitor, ref


def test_an_unshifted_population_is_ok() -> None:
    monitor, _ = _monitor(0.0)
    report = monitor.report(DriftConfig())
    assert report["level"] == OK and report["alerts"] == []
    assert report["without_reference"] == ["service_request"]
    # a feature shared by two champions with one reference is counted once
    assert {f["feature"]: f["rows"] for f in report["features"]} == {
        "a": 3000,
        "b": 3000,
    }


def test_a_shifted_feature_alerts_and_is_named() -> None:
    monitor, _ = _monitor(1.0)
    report = monitor.report(DriftConfig(), as_of="2025-12-01")
    assert report["level"] == ALERT and report["alerts"] == ["b"]
    assert report["features"][0]["feature"] == "b"
    assert report["features"][0]["out_of_range_share"] > 0
    assert report["as_of"] == "2025-12-01"
    ignored = monitor.report(DriftConfig(ignore=["b"]))
    assert ignored["level"] == OK and ignored["features"][0]["level"] == IGNORED


def test_a_calendar_feature_is_reported_without_alerting_by_default() -> None:
    """A feature that grows with the calendar drifts by construction: reported,
    quiet unless the config asks; scores still alert."""
    monitor, _ = _monitor(1.0)
    quiet = monitor.report(DriftConfig(), calendar=["b"])
    b = next(f for f in quiet["features"] if f["feature"] == "b")
    assert quiet["level"] == OK and b["level"] == IGNORED and b["calendar"]
    assert b["psi"] > 0.25  # still measured and shown
    loud = monitor.report(DriftConfig(alert_calendar_features=True), calendar=["b"])
    assert loud["level"] == ALERT and loud["alerts"] == ["b"]


def test_the_catalogue_marks_the_features_that_grow_with_the_calendar() -> None:
    import ibis

    from features.definition import FeatureSpec, catalogue

    customers = ibis.table(
        {"customer_id": "string", "signup_time": "timestamp", "age": "int64"}
    )
    cat = catalogue(
        FeatureSpec(role_of={"buy": "purchase"}, windows_days=(30,)), customers
    )
    assert set(cat.calendar) == {
        "tenure_days",
        "days_since_first_purchase",
        "days_since_signup_time",
    }


def test_levels_at_the_thresholds() -> None:
    t = DriftConfig(warn=0.1, alert=0.25)
    assert [level(v, t) for v in (0.0999, 0.1, 0.2499, 0.25)] == [
        OK,
        WARN,
        WARN,
        ALERT,
    ]
    with pytest.raises(ValueError, match="below warn"):
        DriftConfig(warn=0.3, alert=0.2)
