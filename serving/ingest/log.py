"""The event log of ingested events: a SQLite file (`<ingest.log>/events.sqlite`,
WAL, fsync'd at each commit) that the live layer reads, sealed by the nightly
run into Parquet parts (`<ingest.log>/parts/part-<n>.parquet`) that the loader
reads beside the configured events sources, so no event lives only in the live
layer and each is read once.

- `append` adds a batch in one transaction, durable when it returns; an event
  whose `event_id` the log already holds is dropped (a replayed stream entry, a
  retried request), so each event is in the log once;
- `seal(until)` marks the unsealed events before `until` with the next part
  number, commits, then writes each marked part that has no file yet
  (core.atomic): a kill between the two leaves the rows marked and the part is
  written by the next seal, never twice;
- `forget(ids)` deletes customers' events from the file (secure_delete) and the
  parts.

Rows hold stored ids (pseudonyms when `privacy.pseudonymise` is on), like
every other output: the loader adds the parts to the events as they are
(features.sources.load, `stored_events`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_write
from core.config import ProjectConfig
from features.columns import AMOUNT, CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, QUANTITY

log = logging.getLogger(__name__)

FILE = "events.sqlite"
PARTS = "parts"
EVENT_ID = "event_id"
PART_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (EVENT_TIME, pa.timestamp("us")),
        (EVENT_TYPE, pa.string()),
        (AMOUNT, pa.float64()),
        (QUANTITY, pa.float64()),
        (EVENT_ID, pa.string()),
    ]
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {CUSTOMER_ID} TEXT NOT NULL,
    {EVENT_TIME} TEXT NOT NULL,
    {EVENT_TYPE} TEXT NOT NULL,
    {AMOUNT} REAL,
    {QUANTITY} REAL,
    {EVENT_ID} TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    part INTEGER
);
CREATE INDEX IF NOT EXISTS events_customer ON events ({CUSTOMER_ID});
CREATE INDEX IF NOT EXISTS events_unsealed ON events (part) WHERE part IS NULL;
"""
# a batch's rows inserted by one statement over one JSON array of them:
# `executemany` releases and takes back the interpreter lock around each row's
# step, and in the API worker every take-back waits for, then interrupts, the
# event loop serving the requests (events logged at 5,000/s, predict_by_id's p99
# 11.8-12.5 ms this way against 7.9-9.1 ms with one statement, the posters
# falling behind their pace; docs/ingest.md). Numbers round-trip exactly
# (Python writes the shortest text that reads back as the same double, SQLite
# reads it correctly rounded: tests/unit/serving/ingest/test_log.py)
_INSERT = (
    f"INSERT INTO events ({CUSTOMER_ID}, {EVENT_TIME}, {EVENT_TYPE}, {AMOUNT}, "
    f"{QUANTITY}, {EVENT_ID}, received_at) SELECT value ->> 0, value ->> 1, "
    "value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 "
    "FROM json_each(?) ORDER BY key"
)


def parts_dir(folder: Path) -> Path:
    return Path(folder) / PARTS


def sealed_parts(folder: Path) -> list[Path]:
    """The sealed parts the nightly run reads."""
    return sorted(parts_dir(folder).glob("part-*.parquet"))


class EventLog:
    """The log in `folder`; one connection per thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / FILE
        self._local = threading.local()
        db = self.db()
        db.executescript(_SCHEMA)

    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # durable at each commit
            self._local.db = db
        return db

    def append(self, rows: Sequence[tuple], stored: Sequence[str]) -> list[tuple]:
        """Add events (customer_id, event_time, event_type, amount, quantity,
        event_id) with their stored ids; returns those added (event ids not
        already in the log, the first of a repeated one), durable on return."""
        db = self.db()
        now = datetime.now().isoformat(timespec="milliseconds")
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = json.dumps([r[5] for r in rows])
            known = {
                i
                for (i,) in db.execute(
                    f"SELECT {EVENT_ID} FROM events WHERE {EVENT_ID} IN "
                    "(SELECT value FROM json_each(?))",
                    (ids,),
                )
            }
            added, seen = [], set(known)
            for row, sid in zip(rows, stored, strict=True):
                if row[5] in seen:
                    continue
                seen.add(row[5])
                added.append((sid, row[1].isoformat(sep=" "), *row[2:], now))
            if added:  # one statement, not one per row (`_INSERT`)
                db.execute(_INSERT, (json.dumps(added, allow_nan=False),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return added

    def live(self, stored: Iterable[str], watermark: datetime) -> list[tuple]:
        """The events of these customers the nightly state does not hold:
        unsealed, or at or after its watermark. Rows: stored id, event_time,
        event_type, amount, quantity."""
        sql = (
            f"SELECT {CUSTOMER_ID}, {EVENT_TIME}, {EVENT_TYPE}, {AMOUNT}, "
            f"{QUANTITY} FROM events WHERE {CUSTOMER_ID} IN "
            "(SELECT value FROM json_each(?)) AND "
            f"(part IS NULL OR {EVENT_TIME} >= ?)"
        )
        mark = watermark.isoformat(sep=" ")
        return self.db().execute(sql, (json.dumps(list(stored)), mark)).fetchall()

    def live_since(self, seq: int, watermark: datetime) -> tuple[list[tuple], int]:
        """`live` of every customer, only the rows added after row number
        `seq` (rows are numbered in commit order: one writer at a time), and
        the last row number read (`seq` when none)."""
        sql = (
            f"SELECT seq, {CUSTOMER_ID}, {EVENT_TIME}, {EVENT_TYPE}, {AMOUNT}, "
            f"{QUANTITY} FROM events WHERE seq > ? AND "
            f"(part IS NULL OR {EVENT_TIME} >= ?) ORDER BY seq"
        )
        db = self.db()
        db.execute("BEGIN")  # one snapshot: the rows and the last number agree
        try:
            rows = db.execute(sql, (seq, watermark.isoformat(sep=" "))).fetchall()
            (last,) = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        finally:
            db.execute("COMMIT")
        return [r[1:] for r in rows], max(seq, last)

    def live_customers(self, watermark: datetime) -> list[str]:
        """Every customer with an event the nightly state does not hold."""
        rows = self.db().execute(
            f"SELECT DISTINCT {CUSTOMER_ID} FROM events WHERE part IS NULL OR "
            f"{EVENT_TIME} >= ?",
            (watermark.isoformat(sep=" "),),
        )
        return [r[0] for r in rows]

    def count(self) -> int:
        return self.db().execute("SELECT count(*) FROM events").fetchone()[0]

    def seal(self, until: datetime) -> list[Path]:
        """Seal the unsealed events before `until` into a new part; write every
        marked part that has no file yet. Returns the parts written."""
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            (last,) = db.execute("SELECT coalesce(max(part), 0) FROM events").fetchone()
            db.execute(
                f"UPDATE events SET part = ? WHERE part IS NULL AND {EVENT_TIME} < ?",
                (last + 1, until.isoformat(sep=" ")),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        written = []
        folder = parts_dir(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        for (part,) in db.execute(
            "SELECT DISTINCT part FROM events WHERE part IS NOT NULL ORDER BY 1"
        ).fetchall():
            path = folder / f"part-{part:06d}.parquet"
            if path.exists():
                continue
            rows = db.execute(
                f"SELECT {CUSTOMER_ID}, {EVENT_TIME}, {EVENT_TYPE}, {AMOUNT}, "
                f"{QUANTITY}, {EVENT_ID} FROM events WHERE part = ? ORDER BY seq",
                (part,),
            ).fetchall()
            cols = list(zip(*rows, strict=True))
            table = pa.table(
                [
                    pa.array(cols[0], pa.string()),
                    pa.array([datetime.fromisoformat(t) for t in cols[1]]).cast(
                        pa.timestamp("us")
                    ),
                    pa.array(cols[2], pa.string()),
                    pa.array(cols[3], pa.float64()),
                    pa.array(cols[4], pa.float64()),
                    pa.array(cols[5], pa.string()),
                ],
                schema=PART_SCHEMA,
            )
            atomic_write(path, lambda tmp, t=table: pq.write_table(t, tmp))
            written.append(path)
            log.info("event log: %d ingested event(s) sealed into %s", len(rows), path)
        return written

    def forget(self, stored: Sequence[str]) -> dict[str, int]:
        """Delete these customers' events (stored ids), their freed pages
        zeroed; the events removed per id."""
        db = self.db()
        db.execute("PRAGMA secure_delete = ON")
        args = (json.dumps(list(stored)),)
        where = f"{CUSTOMER_ID} IN (SELECT value FROM json_each(?))"
        db.execute("BEGIN IMMEDIATE")
        counts = dict(
            db.execute(
                f"SELECT {CUSTOMER_ID}, count(*) FROM events WHERE {where} GROUP BY 1",
                args,
            ).fetchall()
        )
        db.execute(f"DELETE FROM events WHERE {where}", args)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def seal_for_nightly(config: ProjectConfig) -> list[Path]:
    """What `propensity score` does before it loads the data: the unsealed
    events up to `data.as_of` (default now) sealed into a part it then reads."""
    if not (Path(config.ingest.log) / FILE).exists():
        return []
    until = config.data.as_of or datetime.now(UTC).replace(tzinfo=None)
    events = EventLog(config.ingest.log)
    try:
        return events.seal(until)
    finally:
        events.close()
