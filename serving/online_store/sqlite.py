"""The online store as one SQLite file (the default; the interface is in
serving.online_store.base).

The nightly job writes it; the API's `predict_by_id` reads it. A new file is
built beside the old one, fsync'd and renamed over it (core.atomic.replace_file),
so a reader sees the old store or the new one, never a half-built one. A reader
that opened the old file keeps reading it (the inode lives while it is open); the
next lookup notices the new file (a changed inode) and opens that instead, so the
API picks up a new store without a restart. `delete` (for `propensity forget`)
copies the file without the customers' rows, with secure_delete and VACUUM so no
freed page keeps them, and renames the copy over the file the same way.
`online_store.postgres` keeps the same rows in a Postgres table instead
(serving/online_store/postgres.py); `open_writer` and `open_reader` pick the
configured one.

Layout (format 1):
- `meta(key, value)`: `format`, `as_of`, `feature_set_version`, `written_at`,
  `run_id`, `features` (JSON list of the feature columns, in order), `categorical`
  (JSON list), `model_versions` (JSON object per target);
- `customers`: `customer_id TEXT PRIMARY KEY`, `as_of TEXT` (YYYY-MM-DD), one
  column per feature (REAL, or TEXT for categoricals, NULL when missing), and the
  nightly scores per scored target (`score_<target>`; NULL where the target's
  population does not hold the customer) with `scored_at`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import TMP_PREFIX, atomic_write, replace_file, temp_path
from features.columns import AS_OF, CUSTOMER_ID, SCORED_AT
from serving.online_store.base import (
    Found,
    StoreError,
    StoreMeta,
    WriterContext,
    rows,
    score_column,
)

log = logging.getLogger(__name__)

TABLE = "customers"
META = "meta"
# ids per IN (...) lookup; SQLite's default limit on bound parameters is 32766
LOOKUP_BATCH = 5_000


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- writing ------------------------------------------------------------------


class SqliteStoreWriter(WriterContext):
    """Builds a new store file beside `path`; `commit` swaps it into place.

    Use as a context manager: leaving it by an exception (or a kill) leaves the
    current store untouched; a stale temporary file is removed by the next writer.
    """

    def __init__(self, path: Path, meta: StoreMeta) -> None:
        self.path = Path(path)
        self.meta = meta
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(self.path)
        self.tmp = temp_path(self.path)
        self.rows = 0
        self._db = sqlite3.connect(self.tmp, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("BEGIN")
        feature_cols = [
            f"{_quote(f)} {'TEXT' if f in meta.categorical else 'REAL'}"
            for f in meta.features
        ]
        score_cols = [f"{_quote(score_column(t))} REAL" for t in meta.targets]
        self._db.execute(
            f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._db.execute(
            f"CREATE TABLE {TABLE} ({CUSTOMER_ID} TEXT PRIMARY KEY, {AS_OF} TEXT "
            f"NOT NULL, {', '.join(feature_cols + score_cols)}, {SCORED_AT} TEXT) "
            "WITHOUT ROWID"
        )
        self._db.executemany(f"INSERT INTO {META} VALUES (?, ?)", meta.to_rows())
        n = 2 + len(meta.features) + len(meta.targets) + 1
        self._insert = f"INSERT INTO {TABLE} VALUES ({', '.join('?' * n)})"

    def append(
        self,
        frame: pd.DataFrame,
        scores: Mapping[str, np.ndarray],
        scored_at: datetime,
    ) -> None:
        """Add a chunk: its customers' features and their nightly scores."""
        self._db.executemany(self._insert, rows(self.meta, frame, scores, scored_at))
        self.rows += len(frame)

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()
        replace_file(self.tmp, self.path)
        log.info(
            "online store %s: %d customers as of %s",
            self.path,
            self.rows,
            self.meta.as_of,
        )

    def abort(self) -> None:
        try:
            self._db.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    for stale in path.parent.glob(f"{TMP_PREFIX}{path.name}-*"):
        log.warning("removing %s, left by an interrupted run", stale)
        stale.unlink(missing_ok=True)


def stored_as_of(path: Path) -> str | None:
    """The as-of date of the store at `path`, None when there is none."""
    if not Path(path).exists():
        return None
    try:
        db, meta = _open(Path(path))
    except (StoreError, sqlite3.Error):
        return None
    db.close()
    return meta.as_of


# -- reading ------------------------------------------------------------------


def _open(path: Path) -> tuple[sqlite3.Connection, StoreMeta]:
    # immutable: the file is never changed in place (only replaced), so SQLite
    # can skip locking; check_same_thread off: one connection per thread anyway
    db = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro&immutable=1",
        uri=True,
        check_same_thread=False,
    )
    try:
        rows = dict(db.execute(f"SELECT key, value FROM {META}").fetchall())
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path}: not an online store ({exc})") from exc
    return db, StoreMeta.from_rows(rows, path)


class SqliteStore:
    """Reads a store file by customer id, reopening it when it has been replaced;
    deletes customers from it (`delete`, for `propensity forget`).

    Thread-safe: each thread keeps its own connection to the file it last saw.
    """

    def __init__(self, path: Path, required: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.required = tuple(required)
        self._local = threading.local()

    def _current(self) -> tuple[sqlite3.Connection, StoreMeta, str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            raise StoreError(
                f"no online store at {self.path}: run the nightly job "
                "(`propensity score`) first"
            ) from exc
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        cached = getattr(self._local, "cached", None)
        if cached is None or cached[0] != key:
            db, meta = _open(self.path)
            lacking = [f for f in self.required if f not in meta.features]
            if lacking:
                db.close()
                raise StoreError(
                    f"{self.path}: the online store (feature set "
                    f"{meta.feature_set_version}) lacks {len(lacking)} feature(s) the "
                    f"champions read, e.g. {lacking[0]!r}: rerun `propensity score`"
                )
            scores = [score_column(t) for t in meta.targets]
            names = [CUSTOMER_ID, AS_OF, *meta.features, *scores]
            sql = (
                f"SELECT {', '.join(map(_quote, names))} FROM {TABLE} "
                f"WHERE {CUSTOMER_ID} IN (SELECT value FROM json_each(?))"
            )
            if cached is not None:
                cached[1].close()
            cached = (key, db, meta, sql)
            self._local.cached = cached
        return cached[1], cached[2], cached[3]

    def meta(self) -> StoreMeta:
        return self._current()[1]

    def lookup(self, ids: Sequence[str]) -> dict[str, Found]:
        """The rows of those ids the store holds (absent ids are left out)."""
        db, meta, sql = self._current()
        found: dict[str, Found] = {}
        features, targets = meta.features, meta.targets
        n = 2 + len(features)
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), LOOKUP_BATCH):
            batch = json.dumps(unique[start : start + LOOKUP_BATCH])
            for row in db.execute(sql, (batch,)):
                scores = {
                    t: v
                    for t, v in zip(targets, row[n : n + len(targets)], strict=True)
                    if v is not None
                }
                found[row[0]] = Found(
                    row[1],
                    dict(zip(features, row[2:n], strict=True)),
                    frozenset(scores),
                    scores,
                )
        return found

    @property
    def place(self) -> str:
        return str(self.path)

    def delete(self, ids: Sequence[str]) -> dict[str, int]:
        """Remove the rows of `ids`: the file is copied without them, their freed
        pages zeroed (secure_delete) and dropped (VACUUM), and the copy renamed
        over the file (core.atomic.atomic_write), so a reader sees the old file
        or the new one and no page of the new one holds them. Untouched when none
        of them has a row; the rows removed per id."""
        if not self.path.exists():
            return {}
        wanted = json.dumps(list(dict.fromkeys(ids)))
        with closing(_read_only(self.path)) as db:
            counts = dict(
                db.execute(
                    f"SELECT {CUSTOMER_ID}, count(*) FROM {TABLE} WHERE {CUSTOMER_ID} "
                    "IN (SELECT value FROM json_each(?)) GROUP BY 1",
                    (wanted,),
                ).fetchall()
            )
        if counts:
            atomic_write(self.path, lambda tmp: _copy_without(self.path, tmp, ids))
            log.info(
                "online store %s: %d row(s) of forgotten customers deleted",
                self.path,
                sum(counts.values()),
            )
        return counts


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _copy_without(path: Path, tmp: Path, ids: Sequence[str]) -> None:
    """The store at `path` copied to `tmp` without the rows of `ids`, their
    freed pages zeroed (secure_delete) and dropped (VACUUM)."""
    with (
        closing(_read_only(path)) as src,
        closing(sqlite3.connect(tmp, isolation_level=None)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA secure_delete = ON")
        dst.executemany(
            f"DELETE FROM {TABLE} WHERE {CUSTOMER_ID} = ?", [(c,) for c in ids]
        )
        dst.execute("VACUUM")
