"""The live rows of the online store: customers whose features real-time
ingest (serving.ingest) refreshed since the nightly run wrote the store.

The nightly store is never changed in place (a SQLite file swapped whole, or a
Postgres table renamed into place); ingest writes its rows to a small SQLite
file beside it (`<online_store.path>` with `.live` before the suffix, WAL, one
row per customer: the features as JSON, the targets whose population holds the
customer, the newest event's time as `as_of`), each batch in one transaction. A
row counts only over the nightly contents it was computed on (`base`: their run
id and as-of date): when the nightly run swaps in a new store, the live rows of
the old one are ignored until ingest rewrites them on the new one. Readers look
the live rows up after the nightly ones (`overlay`). `propensity forget`
deletes from it too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from serving.online_store.base import Found, StoreMeta

TABLE = "live"


def live_path(store_path: Path) -> Path:
    path = Path(store_path)
    return path.with_name(f"{path.stem}.live{path.suffix or '.sqlite'}")


def base_of(meta: StoreMeta) -> str:
    """What live rows are computed on: the nightly run and date."""
    return f"{meta.run_id}@{meta.as_of}"


class LiveRows:
    """The live rows file; one connection per thread. Missing file: no rows."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._base: str | None = None

    def _db(self, create: bool = False) -> sqlite3.Connection | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            stamp = None
        db = getattr(self._local, "db", None)
        if db is not None and stamp == self._local.stamp:
            return db
        if db is not None:  # removed or replaced (a test, an operator): reopen
            db.close()
            self._local.db = None
        if not create and stamp is None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (customer_id TEXT PRIMARY KEY, "
            "base TEXT NOT NULL, as_of TEXT NOT NULL, record TEXT NOT NULL, "
            "scored TEXT NOT NULL, scores TEXT NOT NULL) WITHOUT ROWID"
        )
        self._local.db = db
        st = os.stat(self.path)
        self._local.stamp = (st.st_dev, st.st_ino)
        return db

    def write(self, base: str, rows: Sequence[tuple]) -> None:
        """Upsert rows (stored id, as_of, record, scored targets, nightly
        scores) computed on `base`, in one transaction."""
        db = self._db(create=True)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (c, base, a, json.dumps(r), json.dumps(s), json.dumps(x))
                    for c, a, r, s, x in rows
                ],
            )
            if base != self._base:  # rows of an older nightly store: gone
                db.execute(f"DELETE FROM {TABLE} WHERE base != ?", (base,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._base = base

    def lookup(self, base: str, ids: Sequence[str]) -> dict[str, Found]:
        db = self._db()
        if db is None:
            return {}
        try:
            rows = db.execute(
                f"SELECT customer_id, as_of, record, scored, scores FROM {TABLE} "
                "WHERE base = ? AND customer_id IN (SELECT value FROM json_each(?))",
                (base, json.dumps(list(ids))),
            ).fetchall()
        except sqlite3.OperationalError:  # created between our check and now
            return {}
        return {
            c: Found(a, json.loads(r), frozenset(json.loads(s)), json.loads(x))
            for c, a, r, s, x in rows
        }

    def delete(self, ids: Sequence[str]) -> dict[str, int]:
        db = self._db()
        if db is None:
            return {}
        db.execute("PRAGMA secure_delete = ON")
        wanted = json.dumps(list(ids))
        found = db.execute(
            f"SELECT customer_id FROM {TABLE} WHERE customer_id IN "
            "(SELECT value FROM json_each(?))",
            (wanted,),
        ).fetchall()
        db.execute(
            f"DELETE FROM {TABLE} WHERE customer_id IN "
            "(SELECT value FROM json_each(?))",
            (wanted,),
        )
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {c: 1 for (c,) in found}


def overlay(found: dict[str, Found], live: Mapping[str, Found]) -> dict[str, Found]:
    """The nightly rows with the live ones over them."""
    if not live:
        return found
    return {**found, **live}
