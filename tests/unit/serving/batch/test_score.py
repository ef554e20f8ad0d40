"""Pure pieces of the nightly job: deciles, reason-code JSON, stale folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.atomic import clean_stale, scratch_dir
from serving.batch.score import deciles, reasons_json
from serving.reasons import Reason


def test_deciles_of_distinct_scores_are_tenths() -> None:
    scores = np.arange(100, dtype=float)
    d = deciles(scores)
    assert d[99] == 1 and d[90] == 1 and d[89] == 2 and d[0] == 10
    assert np.bincount(d)[1:].tolist() == [10] * 10


def test_tied_scores_share_the_better_decile() -> None:
    d = deciles(np.array([5.0, 5.0, 5.0, 1.0, 0.0]))
    # nothing above the three fives: decile 1; 3 of 5 above 1.0: 1 + 30 // 5
    assert d.tolist() == [1, 1, 1, 7, 9]


def test_deciles_of_nothing_and_of_one() -> None:
    assert deciles(np.array([])).size == 0
    assert deciles(np.array([0.3])).tolist() == [1]


def test_reasons_json_keeps_order_and_values() -> None:
    found = [
        Reason("plan", "basic", 0.5, "plan is basic"),
        Reason("days_since_last_event", None, 0.25, "no event on record"),
    ]
    assert json.loads(reasons_json(found)) == [
        {
            "feature": "plan",
            "value": "basic",
            "contribution": 0.5,
            "phrase": "plan is basic",
        },
        {
            "feature": "days_since_last_event",
            "value": None,
            "contribution": 0.25,
            "phrase": "no event on record",
        },
    ]


def test_clean_stale_removes_only_hidden_temporary_folders(tmp_path: Path) -> None:
    for name in (".tmp-as_of=2025-12-01-abcd1234", ".old-x-1", "as_of=2025-12-01"):
        (tmp_path / name).mkdir()
    (tmp_path / "_drift").mkdir()
    removed = clean_stale(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".old-x-1",
        ".tmp-as_of=2025-12-01-abcd1234",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_drift", "as_of=2025-12-01"]


def test_scratch_dir_is_hidden_and_removed(tmp_path: Path) -> None:
    with scratch_dir(tmp_path, "features") as scratch:
        assert scratch.name.startswith(".tmp-features-") and scratch.is_dir()
    assert list(tmp_path.iterdir()) == []


def test_deciles_leave_out_scores_outside_the_population() -> None:
    """NaN (outside the target's population) gets 0, and the others are ranked
    among themselves only."""
    d = deciles(np.array([np.nan, 0.9, 0.1, np.nan, 0.5]))
    assert d.tolist() == [0, 1, 7, 0, 4]
    assert deciles(np.array([np.nan])).tolist() == [0]
