"""The event log's append: a batch in one statement, every value read back as
it was written."""

from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path

import numpy as np

from serving.ingest.log import EventLog

AWKWARD = [
    0.1,
    12.34,
    1 / 3,
    -2.5e-7,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,
    1.7976931348623157e308,
    9007199254740993.0,
    1e16,
    123456789.12345679,
    -0.0,
]


def _bits(x: float | None) -> int | None:
    """The double's bits; -0.0 as 0.0: SQLite stores a REAL without a fraction
    as an integer, so -0.0 reads back as 0.0 however it is inserted (as it did
    with a bound parameter)."""
    return None if x is None else struct.unpack("<q", struct.pack("<d", x + 0.0))[0]


def test_appended_rows_read_back_bit_for_bit(tmp_path: Path) -> None:
    """Amounts and quantities of every kind of double (random bit patterns,
    subnormals, the largest), absent ones, and ids of any text come back
    exactly as they went in, in the batch's order."""
    rng = np.random.default_rng(7)
    doubles = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64).view("<f8")
    doubles = [float(x) for x in doubles if np.isfinite(x)] + AWKWARD
    log = EventLog(tmp_path / "log")
    rows, stored = [], []
    for i, x in enumerate(doubles):
        amount = None if i % 7 == 3 else x
        quantity = doubles[-1 - i] if i % 5 else None
        event_id = f"é-日本-\"{i}\"-\\n-'x'"
        when = datetime(2026, 1, 2, 3, 4, 5, i % 1_000_000)
        rows.append(("raw", when, "purchase", amount, quantity, event_id))
        stored.append(f"cid-{i % 97}")
    added = log.append(rows, stored)
    assert len(added) == len(rows)
    back, _ = log.live_since(0, datetime(2026, 1, 1))
    assert len(back) == len(rows)
    for row, sid, got in zip(rows, stored, back, strict=True):
        assert got[0] == sid
        assert datetime.fromisoformat(got[1]) == row[1]
        assert got[2] == row[2]
        assert _bits(got[3]) == _bits(row[3]), (got[3], row[3])
        assert _bits(got[4]) == _bits(row[4]), (got[4], row[4])
    ids = [r[0] for r in log.db().execute("SELECT event_id FROM events ORDER BY seq")]
    assert ids == [r[5] for r in rows]


def test_a_repeated_batch_adds_nothing_and_a_repeated_id_counts_once(
    tmp_path: Path,
) -> None:
    log = EventLog(tmp_path / "log")
    when = datetime(2026, 1, 2, 3, 4, 5)
    rows = [
        ("a", when, "login", None, None, "e1"),
        ("b", when, "purchase", 3.5, 1.0, "e2"),
        ("a", when, "login", None, None, "e1"),  # repeated within the batch
    ]
    assert [r[5] for r in log.append(rows, ["s1", "s2", "s1"])] == ["e1", "e2"]
    assert log.append(rows, ["s1", "s2", "s1"]) == []
    assert log.count() == 2
