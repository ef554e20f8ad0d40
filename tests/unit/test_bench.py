"""The foundation benchmark: a tiny end-to-end run and its equality check."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from serving.bench import (
    FeatureMismatch,
    compare_features,
    month_starts,
    run_foundation,
)

KEYS = (
    "features_s",
    "features_peak_mb",
    "sql_s",
    "sql_peak_mb",
    "features_vs_sql_ratio",
    "score_rows_per_s",
    "raw_predict_rows_per_s",
    "score_vs_raw_ratio",
    "customers",
    "events",
    "cutoffs",
    "feature_rows",
    "features_count",
    "load_s",
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C2", "C1", "C1"],
            "cutoff": pd.to_datetime(["2025-11-01", "2025-11-01", "2025-12-01"]),
            "purchase_count_7d": [1, 0, 3],
            "purchase_amount_sum_7d": [12.5, 0.0, 99.99],
            "days_since_last_cancel": pd.array([None, 4, 9], dtype="Int64"),
            "plan": ["basic", None, "pro"],
            "eligible": [True, False, True],
        }
    )


def test_small_run_writes_every_figure(tmp_path: Path) -> None:
    out = run_foundation(
        customers=300, seed=1, cutoffs=2, workdir=tmp_path / "w", results=tmp_path / "r"
    )
    written = json.loads((tmp_path / "r" / "foundation.json").read_text())
    assert written == out
    for key in KEYS:
        value = written[key]
        assert isinstance(value, int | float) and value > 0, key
    assert written["customers"] == 300 and written["cutoffs"] == 2


def test_equal_frames_pass_in_any_row_order() -> None:
    frame = _frame()
    compare_features(frame, frame.iloc[::-1].reset_index(drop=True))


def test_a_float_off_by_1e_6_raises() -> None:
    other = _frame()
    other.loc[2, "purchase_amount_sum_7d"] += 1e-6
    with pytest.raises(FeatureMismatch, match="purchase_amount_sum_7d"):
        compare_features(_frame(), other)


@pytest.mark.parametrize(
    ("column", "value"),
    [("days_since_last_cancel", None), ("plan", "plus"), ("purchase_count_7d", 2)],
)
def test_a_changed_value_or_null_raises(column: str, value: object) -> None:
    other = _frame()
    other.loc[1, column] = value
    with pytest.raises(FeatureMismatch, match=column):
        compare_features(_frame(), other)


def test_column_order_matters() -> None:
    frame = _frame()
    swapped = frame[
        [
            "customer_id",
            "cutoff",
            "purchase_amount_sum_7d",
            "purchase_count_7d",
            "days_since_last_cancel",
            "plan",
            "eligible",
        ]
    ]
    with pytest.raises(FeatureMismatch, match="columns differ"):
        compare_features(frame, swapped)


def test_month_starts_end_on_or_before_the_last_event() -> None:
    assert month_starts(datetime(2025, 12, 30, 23, 59), 3) == [
        datetime(2025, 10, 1),
        datetime(2025, 11, 1),
        datetime(2025, 12, 1),
    ]
    assert month_starts(datetime(2025, 2, 1), 2) == [
        datetime(2025, 1, 1),
        datetime(2025, 2, 1),
    ]
