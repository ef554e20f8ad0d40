"""Pure pieces of the nightly job: deciles, reason-code JSON, stale folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.atomic import Busy, clean_stale, exclusive, publish_dir, scratch_dir
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


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from core.atomic import exclusive\n"
            f"with exclusive({str(tmp_path)!r}):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="another run is writing"), exclusive(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(tmp_path), publish_dir(tmp_path / "out") as tmp:  # free again
        (tmp / "a").write_text("1")
    assert (tmp_path / "out" / "a").read_text() == "1"
