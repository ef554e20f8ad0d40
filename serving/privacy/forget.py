"""The right to be forgotten: `propensity forget` and the API's `/forget`.

Forgetting a customer, given the id a marketing system knows:

1. adds its stored form (the pseudonym when `privacy.pseudonymise` is on) to the
   suppression list, first, so that every later load (training, scoring, the
   online store it feeds) and every outreach leaves the customer out even if a
   later step fails; running `forget` again finishes the job;
2. removes its rows from the nightly's incremental feature state (its
   customer-day tiles and window aggregates, features.state), from the online
   store (SQLite: a copy without them, with secure_delete and VACUUM so no
   freed page keeps them, renamed over the file;
   Postgres: a DELETE), from outreach's contact log, from every score file
   under `scoring.output` and the Postgres scores table, and from every
   training snapshot under `training.snapshot_dir`; each Parquet file is
   rewritten beside itself and renamed over (write-then-rename, as the nightly
   job does), so a kill leaves every file whole, the old one or the new one;
3. appends one line per customer to the erasure log (`privacy.dir`/erasures.jsonl):
   its stored form, the time and the rows removed per place; never the raw id
   when pseudonymisation is on (with it off, the stored form is the id itself).

It holds the scoring output's lock (serving.batch.score.writing) and the snapshot
folder's, so it never interleaves with a nightly run or a snapshot being written;
a nightly run that loaded its data before a forget refuses to publish
(serving.batch.nightly). Models already trained are not retrained: the next training
run leaves the customer out.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.atomic import atomic_write, exclusive
from core.config import PrivacyConfig, ProjectConfig
from features.columns import CUSTOMER_ID
from features.sources.privacy import (
    erasure_log_path,
    parse_ids,
    pseudonymiser,
    read_suppressed,
    suppressed,
    suppression_path,
)
from serving.batch import sink
from serving.batch.score import writing
from serving.online_store import open_reader
from serving.outreach.contact_log import open_contact_log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erasure:
    """What one `forget` did: the stored forms forgotten and, per place (a file
    or table), how many rows of each were removed."""

    customers: list[str]
    removed: dict[str, dict[str, int]]
    at: str

    def rows(self) -> int:
        return sum(sum(by_id.values()) for by_id in self.removed.values())


def read_ids_file(path: Path) -> list[str]:
    """Customer ids, one per line (blank lines and `#` comments skipped)."""
    try:
        return sorted(parse_ids(Path(path).read_text()))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the ids file: {exc}") from exc


def forget(config: ProjectConfig, customer_ids: Sequence[str]) -> Erasure:
    """Forget these customers everywhere (see the module docstring)."""
    ids = [c for c in customer_ids if c]
    if not ids:
        raise ValueError("customer ids: give at least one non-empty id")
    stored = sorted(set(pseudonymiser(config.privacy).many(ids)))
    snapshots = config.training.snapshot_dir
    with ExitStack() as locks:
        locks.enter_context(writing(config.scoring.output))
        if snapshots is not None:
            locks.enter_context(exclusive(snapshots))
        before = suppressed(config.privacy)
        add_suppressed(config.privacy, stored)
        removed = _online_store(config, stored)
        removed |= _ingested(config, stored)
        removed |= _feature_state(config, stored, before)
        contacts = open_contact_log(config.outreach.contact_log).delete(stored)
        removed |= {str(config.outreach.contact_log): contacts} if contacts else {}
        removed |= remove_from_parquet(config.scoring.output, stored)
        if config.scoring.postgres is not None:
            target = config.scoring.postgres
            counts = sink.delete(target, stored)
            removed |= {f"{target.uri} {target.table}": counts} if counts else {}
        if snapshots is not None:
            removed |= remove_from_parquet(snapshots, stored)
        erasure = Erasure(stored, removed, datetime.now(UTC).isoformat())
        _log_erasure(config.privacy, erasure)
    log.info("forgot %d customer(s): %d row(s) removed", len(stored), erasure.rows())
    return erasure


def add_suppressed(privacy: PrivacyConfig, stored: Iterable[str]) -> None:
    """Add stored ids to the suppression list (a sorted file, replaced whole)."""
    path = suppression_path(privacy)
    current = read_suppressed(path)
    merged = sorted(current | set(stored))
    if len(merged) == len(current):
        return
    header = "# forgotten customers (stored ids), written by `propensity forget`\n"
    text = header + "".join(f"{s}\n" for s in merged)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def remove_from_parquet(root: Path, stored: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rewrite every Parquet file under `root` holding one of `stored` without
    those rows; per file, the rows removed per id."""
    removed: dict[str, dict[str, int]] = {}
    root = Path(root)
    if not root.is_dir():
        return removed
    wanted = pa.array(stored, pa.string())
    for path in sorted(root.rglob("*.parquet")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # staging and temporary files of a running writer
        if CUSTOMER_ID not in pq.read_schema(path).names:
            continue
        # the id column alone to look; the whole file only to rewrite
        ids = pq.read_table(path, columns=[CUSTOMER_ID])[CUSTOMER_ID]
        hit = pc.is_in(ids, value_set=wanted)
        if not pc.any(hit).as_py():
            continue
        kept = pq.read_table(path).filter(pc.invert(hit))
        atomic_write(path, lambda tmp, kept=kept: pq.write_table(kept, tmp))
        removed[str(path)] = dict(Counter(ids.filter(hit).to_pylist()))
    return removed


def _feature_state(
    config: ProjectConfig, stored: Sequence[str], before: frozenset[str]
) -> dict:
    """Erase them from the nightly's incremental feature state (its tiles,
    bucket rows and cancel days rewritten without them). A state that was
    current under the old suppression list stays current under the new one, so
    the next nightly run goes on incrementally; any other goes on being stale
    and is rebuilt."""
    from features import state as fs
    from features.sources.load import connect
    from serving.batch.incremental import state_dir, suppressed_key

    folder = state_dir(config.scoring.output)
    state = fs.open_state(folder)
    if state is None:
        return {}
    con = connect()
    try:
        tiles = state.tiles(con)
        theirs = tiles.filter(tiles._cid.isin(list(stored)))
        counts = theirs.group_by("_cid").aggregate(n=theirs.count()).execute()
        key = state.key
        if key.get("suppressed") == suppressed_key(before):
            key = {**key, "suppressed": suppressed_key(suppressed(config.privacy))}
        fs.forget(state, con, stored, key)
    finally:
        con.disconnect()
    by_id = {str(c): int(n) for c, n in zip(counts["_cid"], counts["n"], strict=True)}
    return {str(folder): by_id} if by_id else {}


def _online_store(config: ProjectConfig, stored: Sequence[str]) -> dict:
    """Delete from the configured online store (serving.online_store): the
    SQLite file rewritten without them, or a DELETE on the Postgres table."""
    store = open_reader(config.online_store)
    counts = store.delete(stored)
    return {store.place: counts} if counts else {}


def _ingested(config: ProjectConfig, stored: Sequence[str]) -> dict:
    """Erase them from real-time ingest (serving.ingest): their events in the
    event log and its sealed parts, their live rows over the online store."""
    from serving.ingest.log import FILE, EventLog, parts_dir
    from serving.online_store.live import LiveRows, live_path

    removed: dict = {}
    folder = config.ingest.log
    if (folder / FILE).exists():
        events = EventLog(folder)
        try:
            counts = events.forget(stored)
        finally:
            events.close()
        if counts:
            removed[str(folder / FILE)] = counts
    removed |= remove_from_parquet(parts_dir(folder), stored)
    rows = LiveRows(live_path(config.online_store.path))
    counts = rows.delete(stored)
    if counts:
        removed[str(rows.path)] = counts
    return removed


def _log_erasure(privacy: PrivacyConfig, erasure: Erasure) -> None:
    """One JSON line per customer, appended and fsync'd."""
    path = erasure_log_path(privacy)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for customer in erasure.customers:
        removed = {
            place: by_id[customer]
            for place, by_id in erasure.removed.items()
            if customer in by_id
        }
        entry = {"customer": customer, "at": erasure.at, "suppressed": True}
        lines.append(json.dumps({**entry, "removed": removed}) + "\n")
    with open(path, "a") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
