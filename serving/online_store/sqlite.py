"""The online store: each customer's latest features and scores, by id.

The nightly job writes it; the API's `predict_by_id` reads it. The default is one
SQLite file: a new file is built beside the old one, fsync'd and renamed over it,
so a reader sees the old store or the new one, never a half-built one. A reader
that opened the old file keeps reading it (the inode lives while it is open); the
next lookup notices the new file (a changed inode) and opens that instead, so the
API picks up a new store without a restart. `online_store.postgres` keeps the same
rows in a Postgres table instead (serving/online_postgres.py); `open_writer` and
`open_reader` pick the configured one.

Layout (format 1):
- `meta(key, value)`: `format`, `as_of`, `feature_set_version`, `written_at`,
  `run_id`, `features` (JSON list of the feature columns, in order), `categorical`
  (JSON list), `model_versions` (JSON object per target);
- `customers`: `customer_id TEXT PRIMARY KEY`, `as_of TEXT` (YYYY-MM-DD), one
  column per feature (REAL, or TEXT for categoricals, NULL when missing), and the
  nightly scores per target (`score_<target>`) with `scored_at`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import pandas as pd

from core.atomic import TMP_PREFIX, replace_file, temp_path
from core.config import OnlineStoreConfig
from features.columns import AS_OF, CUSTOMER_ID, SCORED_AT, TARGETS

log = logging.getLogger(__name__)

FORMAT = "1"
TABLE = "customers"
META = "meta"
# ids per IN (...) lookup; SQLite's default limit on bound parameters is 32766
LOOKUP_BATCH = 5_000


def score_column(target: str) -> str:
    return f"score_{target}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StoreError(RuntimeError):
    """The online store is missing or unusable; the message says which and why."""


@dataclass(frozen=True)
class StoreMeta:
    as_of: str
    feature_set_version: str
    written_at: str
    run_id: str | None
    features: tuple[str, ...]
    categorical: frozenset[str]
    model_versions: Mapping[str, str]

    def to_rows(self) -> list[tuple[str, str]]:
        return [
            ("format", FORMAT),
            ("as_of", self.as_of),
            ("feature_set_version", self.feature_set_version),
            ("written_at", self.written_at),
            ("run_id", self.run_id or ""),
            ("features", json.dumps(list(self.features))),
            ("categorical", json.dumps(sorted(self.categorical))),
            ("model_versions", json.dumps(dict(self.model_versions))),
        ]

    @classmethod
    def from_rows(cls, rows: Mapping[str, str], where: Path | str) -> StoreMeta:
        if rows.get("format") != FORMAT:
            raise StoreError(
                f"{where}: online store format {rows.get('format')!r}, expected "
                f"{FORMAT!r}: rewrite it with `propensity score`"
            )
        return cls(
            as_of=rows["as_of"],
            feature_set_version=rows["feature_set_version"],
            written_at=rows["written_at"],
            run_id=rows["run_id"] or None,
            features=tuple(json.loads(rows["features"])),
            categorical=frozenset(json.loads(rows["categorical"])),
            model_versions=json.loads(rows["model_versions"]),
        )


# -- writing ------------------------------------------------------------------


class WriterContext:
    """As a context manager, a writer commits on success and aborts on an error."""

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


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
        score_cols = [f"{_quote(score_column(t))} REAL" for t in TARGETS]
        self._db.execute(
            f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._db.execute(
            f"CREATE TABLE {TABLE} ({CUSTOMER_ID} TEXT PRIMARY KEY, {AS_OF} TEXT "
            f"NOT NULL, {', '.join(feature_cols + score_cols)}, {SCORED_AT} TEXT) "
            "WITHOUT ROWID"
        )
        self._db.executemany(f"INSERT INTO {META} VALUES (?, ?)", meta.to_rows())
        n = 2 + len(meta.features) + len(TARGETS) + 1
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


def rows(
    meta: StoreMeta,
    frame: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    scored_at: datetime,
) -> Iterator[tuple]:
    """A chunk's rows in the store's column order: id, as_of, the features, the
    scores, scored_at."""
    columns: list[Iterable] = [
        frame[CUSTOMER_ID].astype(str).tolist(),
        [meta.as_of] * len(frame),
    ]
    for name in meta.features:
        columns.append(column_values(frame[name], name in meta.categorical))
    for target in TARGETS:
        columns.append(np.asarray(scores[target], dtype=np.float64).tolist())
    columns.append([scored_at.isoformat()] * len(frame))
    return zip(*columns, strict=True)


def column_values(column: pd.Series, categorical: bool) -> list:
    """Python values SQLite stores exactly: None for missing, str for categories
    (as `Encoding.to_matrix` reads them), float otherwise."""
    if categorical:
        values = column.astype("string")
        return [None if v is pd.NA else str(v) for v in values]
    numbers = pd.to_numeric(column, errors="raise").astype("float64").to_numpy()
    return [None if v != v else v for v in numbers.tolist()]  # NaN -> NULL


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


# -- the configured store -----------------------------------------------------


def configured_as_of(config: OnlineStoreConfig) -> str | None:
    """The as-of date the configured store holds, None when it holds none."""
    if config.postgres is None:
        return stored_as_of(config.path)
    from serving.online_store.postgres import stored_meta

    meta = stored_meta(config.postgres)
    return None if meta is None else meta.as_of


class StoreWriter(Protocol):
    """What the nightly job feeds: chunks, then commit (swap in) or abort."""

    def append(
        self, frame: pd.DataFrame, scores: Mapping[str, np.ndarray], scored_at: datetime
    ) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class StoreReader(Protocol):
    """What the API reads: rows by customer id, and the store's meta."""

    def lookup(self, ids: Sequence[str]) -> dict[str, Found]: ...

    def meta(self) -> StoreMeta: ...


def open_writer(config: OnlineStoreConfig, meta: StoreMeta) -> StoreWriter:
    """A writer of the configured store: the Postgres table, else the file."""
    if config.postgres is None:
        return SqliteStoreWriter(config.path, meta)
    from serving.online_store.postgres import PostgresStoreWriter

    return PostgresStoreWriter(config.postgres, meta)


def open_reader(config: OnlineStoreConfig, required: Sequence[str] = ()) -> StoreReader:
    """A reader of the configured store; it connects at the first lookup."""
    if config.postgres is None:
        return SqliteStore(config.path, required)
    from serving.online_store.postgres import PostgresStore

    return PostgresStore(config.postgres, required)


# -- reading ------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One customer's row: the as-of date and the features as a record."""

    as_of: str
    record: dict[str, object]


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
    """Reads a store file by customer id, reopening it when it has been replaced.

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
            names = [CUSTOMER_ID, AS_OF, *meta.features]
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
        features = meta.features
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), LOOKUP_BATCH):
            batch = json.dumps(unique[start : start + LOOKUP_BATCH])
            for row in db.execute(sql, (batch,)):
                found[row[0]] = Found(row[1], dict(zip(features, row[2:], strict=True)))
        return found
