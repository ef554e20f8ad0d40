"""Retention: what was written more than `privacy.retention_days` days ago is
deleted, after each nightly run (under its lock), after each training run (the
snapshots, training.dataset) and by `propensity retention`.

- Score outputs: a night's folder (`as_of=YYYY-MM-DD`) goes whole, by the time
  its files were written, not by its as-of date: a backfill of an old date is
  kept as long as a fresh one. Drift reports hold no customer rows and are kept.
- The contact log: rows confirmed before the retention window, but never inside
  the frequency cap's window, which the cap needs."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.config import ProjectConfig
from features.columns import AS_OF
from serving.outreach.contact_log import open_contact_log

log = logging.getLogger(__name__)


def prune_scores(output: Path, days: int, now: float | None = None) -> list[Path]:
    """Delete the `as_of=` folders under `output` whose newest file is older
    than `days` days; the folders deleted."""
    output = Path(output)
    if not output.is_dir():
        return []
    limit = (time.time() if now is None else now) - days * 86_400
    removed = []
    for folder in sorted(output.glob(f"{AS_OF}=*")):
        stamps = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
        if folder.is_dir() and max(stamps, default=0) < limit:
            shutil.rmtree(folder)
            removed.append(folder)
            log.info("retention: deleted %s (written over %d days ago)", folder, days)
    return removed


def prune_contacts(config: ProjectConfig, now: datetime | None = None) -> int:
    """Delete contact log rows older than the retention (and the cap's window);
    how many."""
    days = config.privacy.retention_days
    if days is None:
        return 0
    cap = config.outreach.frequency_cap
    days = max(days, cap.per_days if cap is not None else 0)
    before = (now or datetime.now(UTC)) - timedelta(days=days)
    removed = sum(
        open_contact_log(config.outreach.contact_log).delete(before=before).values()
    )
    if removed:
        log.info("retention: deleted %d contact log row(s) before %s", removed, before)
    return removed
