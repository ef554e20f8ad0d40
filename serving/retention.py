"""Retention: score outputs written more than `privacy.retention_days` days ago
are deleted, after each nightly run (under its lock) and by `propensity
retention`. A night's folder (`as_of=YYYY-MM-DD`) goes whole, by the time its
files were written, not by its as-of date: a backfill of an old date is kept as
long as a fresh one. Drift reports hold no customer rows and are kept."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from features.columns import AS_OF

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
