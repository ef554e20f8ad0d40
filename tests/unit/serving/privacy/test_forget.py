"""Forget in each place (and its atomicity), and what runs meanwhile leave out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import load_config
from features.sources.privacy import Pseudonymiser, read_suppressed
from serving.batch.nightly import _run
from serving.online_store import open_reader
from serving.outreach.contact_log import ContactLog
from serving.privacy import forget as forget_module
from serving.privacy.forget import forget
from tests.helpers import (
    PRIVACY_KEY,
    confirm_contacts,
    online_store_of,
    privacy_project,
    score_file,
)
from training.dataset import write_snapshot


def test_forget_removes_from_each_place_and_logs_only_pseudonyms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPENSITY_PSEUDONYM_KEY", PRIVACY_KEY.decode())
    config = load_config(privacy_project(tmp_path, privacy={"pseudonymise": True}))
    p = Pseudonymiser(PRIVACY_KEY)
    a, b = p.one("A"), p.one("B")
    night = score_file(tmp_path / "scores" / "as_of=2025-06-01", [a, b, p.one("C")])
    snapshot = write_snapshot(
        pd.DataFrame({"customer_id": [a, b], "x": [1, 2]}),
        tmp_path / "snapshots",
        "t1",
        frozenset(),
    )
    online_store_of(config.online_store.path, [a, b])
    log = ContactLog(config.online_store.path.parent.parent / "contacts.sqlite")
    confirm_contacts(log, "spring", [a, b], datetime.now(UTC))

    erasure = forget(config, ["A"])

    assert erasure.customers == [a]
    assert pq.read_table(night)["customer_id"].to_pylist() == [b, p.one("C")]
    assert pq.read_table(snapshot)["customer_id"].to_pylist() == [b]
    reader = open_reader(config.online_store)
    assert reader.lookup([a, b]).keys() == {b}
    assert [c.customer for c in log.contacts()] == [b]
    assert read_suppressed(config.privacy.dir / "suppressed.txt") == {a}
    text = (config.privacy.dir / "erasures.jsonl").read_text()
    entry = json.loads(text)
    assert entry["customer"] == a and '"A"' not in text
    assert set(entry["removed"].values()) == {1}
    assert len(entry["removed"]) == 4  # scores, snapshot, online store, contacts
    # again: nothing left to remove, still suppressed once
    assert forget(config, ["A"]).rows() == 0
    assert read_suppressed(config.privacy.dir / "suppressed.txt") == {a}


def test_a_failed_rewrite_leaves_the_file_whole_and_the_customer_suppressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(privacy_project(tmp_path))
    night = score_file(tmp_path / "scores" / "as_of=2025-06-01", ["A", "B"])
    before = night.read_bytes()

    def broken(table, where, *args, **kwargs):
        Path(where).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(forget_module.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        forget(config, ["A"])
    assert night.read_bytes() == before
    assert [p.name for p in night.parent.iterdir()] == ["part-0.parquet"]
    # the list was written first: every later run leaves A out; forget again
    # finishes the job
    assert read_suppressed(config.privacy.dir / "suppressed.txt") == {"A"}
    monkeypatch.undo()
    assert forget(config, ["A"]).rows() == 1
    assert pq.read_table(night)["customer_id"].to_pylist() == ["B"]


def test_a_nightly_run_that_loaded_before_a_forget_publishes_nothing(
    tmp_path: Path,
) -> None:
    config = load_config(privacy_project(tmp_path))
    (tmp_path / "privacy").mkdir()
    (tmp_path / "privacy" / "suppressed.txt").write_text("A\n")

    class Loaded:  # a dataset loaded before A was forgotten
        suppressed = frozenset()

    with pytest.raises(RuntimeError, match="1 customer\\(s\\) were forgotten"):
        _run(config, Loaded(), None, datetime(2025, 6, 1), "run", None, False)
    assert not (tmp_path / "scores").exists()


def test_snapshots_leave_out_customers_forgotten_meanwhile(tmp_path: Path) -> None:
    path = write_snapshot(
        pd.DataFrame({"customer_id": ["A", "B"]}), tmp_path, "x", frozenset({"A"})
    )
    assert pq.read_table(path)["customer_id"].to_pylist() == ["B"]
