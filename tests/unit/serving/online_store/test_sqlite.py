"""The online store: written whole and swapped, read by id, reopened when replaced."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.columns import TARGETS
from serving.online_store import StoreError
from serving.online_store.sqlite import (
    SqliteStore,
    SqliteStoreWriter,
    stored_as_of,
)
from tests.helpers import SCORED_AT, frame, meta


def write(path: Path, data: pd.DataFrame, as_of: str = "2025-12-01") -> None:
    scores = {t: np.linspace(0, 1, len(data)) for t in TARGETS}
    with SqliteStoreWriter(path, meta(as_of)) as writer:
        half = len(data) // 2
        writer.append(
            data.iloc[:half], {t: s[:half] for t, s in scores.items()}, SCORED_AT
        )
        writer.append(
            data.iloc[half:], {t: s[half:] for t, s in scores.items()}, SCORED_AT
        )


def test_lookup_returns_stored_features_and_leaves_out_unknown_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "online" / "store.sqlite"
    write(path, frame(50))
    store = SqliteStore(path, required=["recency"])
    found = store.lookup(["c1", "c5", "c14", "nobody", "c1"])
    got = store.meta()
    assert set(found) == {"c1", "c5", "c14"}
    assert found["c1"].as_of == "2025-12-01"
    assert found["c1"].record == {"recency": 1.0, "plan": "pro"}
    # NaN is stored as NULL and read back as None (missing); so is a null category
    assert found["c5"].record == {"recency": None, "plan": "pro"}
    assert found["c14"].record["plan"] is None
    assert got.features == ("recency", "plan") and got.run_id == "run-1"
    assert stored_as_of(path) == "2025-12-01"


def test_lookup_of_more_ids_than_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    write(path, frame(12_000))
    ids = [f"c{i}" for i in range(0, 12_000, 1)] + ["x"]
    found = SqliteStore(path).lookup(ids)
    assert len(found) == 12_000


def test_a_replaced_store_is_picked_up_and_an_open_reader_keeps_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    write(path, frame(10))
    store = SqliteStore(path)
    before = store.lookup(["c1"])
    # a reader in another thread holds the old file open across the swap
    old_reader = SqliteStore(path)
    old_reader.lookup(["c1"])
    old_db = old_reader._local.cached[1]
    write(path, frame(10, shift=100.0), as_of="2025-12-02")
    assert old_db.execute(
        "SELECT recency FROM customers WHERE customer_id='c1'"
    ).fetchone() == (1.0,)
    after = store.lookup(["c1"])
    got = store.meta()
    assert before["c1"].record["recency"] == 1.0
    assert after["c1"].record["recency"] == 101.0
    assert after["c1"].as_of == "2025-12-02" and got.as_of == "2025-12-02"


def test_threads_read_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    write(path, frame(100))
    store = SqliteStore(path)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(200):
                found = store.lookup([f"c{i % 100}"])
                assert len(found) == 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_failed_build_leaves_the_current_store_and_no_temp_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    write(path, frame(10))
    with (
        pytest.raises(KeyError),
        SqliteStoreWriter(path, meta("2025-12-09")) as writer,
    ):
        writer.append(frame(10), {}, SCORED_AT)  # no scores: fails mid-build
    assert stored_as_of(path) == "2025-12-01"
    assert [p.name for p in tmp_path.iterdir()] == ["store.sqlite"]


def test_a_temp_file_left_by_a_killed_run_is_removed_by_the_next(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    stale = tmp_path / ".tmp-store.sqlite-deadbeef"
    stale.write_bytes(b"half a database")
    write(path, frame(3))
    assert not stale.exists()


def test_missing_store_and_missing_feature_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with pytest.raises(StoreError, match="no online store at .*propensity score"):
        SqliteStore(path).lookup(["c1"])
    write(path, frame(3))
    with pytest.raises(StoreError, match="lacks 1 feature.*'tenure'"):
        SqliteStore(path, required=["recency", "tenure"]).lookup(["c1"])
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not an online store"):
        SqliteStore(path).lookup(["c1"])


def test_delete_rewrites_the_file_without_the_rows_and_a_reader_sees_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    assert SqliteStore(path).delete(["c7"]) == {}  # no store: nothing removed
    write(path, frame(10))
    reader = SqliteStore(path)
    assert reader.lookup(["c7", "c8"]).keys() == {"c7", "c8"}
    before = path.stat().st_ino
    assert reader.delete(["c7", "c8", "nobody", "c7"]) == {"c7": 1, "c8": 1}
    assert reader.place == str(path) and path.stat().st_ino != before
    assert reader.lookup(["c7", "c8", "c9"]).keys() == {"c9"}
    # no freed page keeps the removed ids (secure_delete, VACUUM); no temp left
    data = path.read_bytes()
    assert b"c7" not in data and b"c8" not in data and b"c9" in data
    assert [p.name for p in tmp_path.iterdir()] == ["store.sqlite"]
    after = path.stat().st_ino  # nothing to delete: the file is left as it is
    assert reader.delete(["c7"]) == {} and path.stat().st_ino == after


def test_a_customer_outside_a_population_has_no_score_for_it(tmp_path: Path) -> None:
    """A NaN score (the target's population does not hold the customer) is
    stored as NULL and left out of `Found.scored`; a store of a subset of the
    targets has their score columns only."""
    path = tmp_path / "store.sqlite"
    data = frame(4)
    churn = np.array([0.1, np.nan, 0.3, np.nan])
    purchase = np.array([0.5, 0.6, 0.7, 0.8])
    two = dataclasses.replace(meta(), model_versions={"purchase": "2", "churn": "3"})
    assert two.targets == ("churn", "purchase")  # canonical order
    with SqliteStoreWriter(path, two) as writer:
        writer.append(data, {"churn": churn, "purchase": purchase}, SCORED_AT)
    found = SqliteStore(path).lookup(["c0", "c1"])
    assert found["c0"].scored == {"churn", "purchase"}
    assert found["c1"].scored == {"purchase"}
    assert found["c1"].record == {"recency": 1.0, "plan": "pro"}
    with sqlite3.connect(path) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(customers)")]
        nulls = db.execute(
            "SELECT count(*) FROM customers WHERE score_churn IS NULL"
        ).fetchone()[0]
    assert "score_service_request" not in columns and "score_purchase" in columns
    assert nulls == 2
