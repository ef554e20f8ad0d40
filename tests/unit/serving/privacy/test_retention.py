"""Retention: outputs deleted by write time, the contact log kept inside the cap's
window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from core.config import load_config
from serving.outreach.contact_log import ContactLog
from serving.privacy.retention import prune_contacts, prune_scores
from tests.helpers import (
    age_path,
    confirm_contacts,
    privacy_project,
    score_file,
)
from training.dataset import prune_snapshots, write_snapshot


def test_retention_deletes_by_write_time_not_by_as_of(tmp_path: Path) -> None:
    old = score_file(tmp_path / "scores" / "as_of=2025-06-02", ["A"]).parent
    backfill = score_file(tmp_path / "scores" / "as_of=2020-01-01", ["A"]).parent
    age_path(old, 31)
    age_path(backfill, 29)
    assert prune_scores(tmp_path / "scores", 30) == [old]
    assert backfill.exists() and not old.exists()

    snaps = tmp_path / "snapshots"
    stale = write_snapshot(
        pd.DataFrame({"customer_id": ["A"]}), snaps, "1", frozenset()
    )
    fresh = write_snapshot(
        pd.DataFrame({"customer_id": ["A"]}), snaps, "2", frozenset()
    )
    age_path(stale, 31)
    assert prune_snapshots(snaps, 30) == [stale]
    assert fresh.exists()


def test_contact_log_retention_keeps_the_cap_window(tmp_path: Path) -> None:
    config = load_config(
        privacy_project(
            tmp_path,
            privacy={"retention_days": 10},
            outreach={"frequency_cap": {"max_contacts": 1, "per_days": 30}},
        )
    )
    log = ContactLog(tmp_path / "contacts.sqlite")
    now = datetime.now(UTC)
    confirm_contacts(log, "old", ["A"], now - timedelta(days=40))
    confirm_contacts(log, "inside-cap", ["A"], now - timedelta(days=20))
    assert prune_contacts(config, now) == 1
    assert [c.campaign_id for c in log.contacts()] == ["inside-cap"]
