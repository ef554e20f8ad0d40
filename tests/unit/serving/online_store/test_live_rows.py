"""The live rows file's layout: a row of a wide feature set fits in its page."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from serving.online_store.live import TABLE, LiveRows


def test_a_live_row_of_a_hundred_features_fits_in_its_leaf_page(
    tmp_path: Path,
) -> None:
    """~1.1 KB rows (as the bench's: 100 numbers, three targets) would each
    spill into an overflow page of their own in 4 KiB pages (two pages written
    per upsert); the file's pages stay well under one per row."""
    rows = LiveRows(tmp_path / "store.live.sqlite")
    n = 300
    numbers = np.arange(100, dtype="float64").tobytes()
    targets = ["churn", "purchase", "service_request"]
    scored = json.dumps(targets)
    scores = json.dumps({t: 0.123456789012345 for t in targets})
    rows.write(
        "run@2025-12-31",
        [
            (f"{i:064x}", "2026-01-01T05:00:00", numbers, '["a"]', scored, scores)
            for i in range(n)
        ],
    )
    db = sqlite3.connect(rows.path)
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (count,) = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    assert count == n
    assert pages < n / 3, f"{pages} pages for {n} rows: rows spill out of their leaves"
