"""The online store as a Postgres table (`online_store.postgres`), the option to
the SQLite file for services on several machines.

Same interface (serving.online_store.base) and columns as the SQLite store
(serving/online_store/sqlite.py). A run builds
`<table>__new` and commits it, then swaps it in with two renames in one short
transaction, with the meta table's rows replaced in the same transaction: a
query sees the old table or the new one, never a half-built one, and a reader
needs no restart (each lookup names the table afresh). A run killed while
building leaves `<table>__new` behind; the next run drops it first. Credentials
come from libpq's environment (PGUSER, PGPASSWORD or ~/.pgpass), never the URI.
`delete` (for `propensity forget`) is a DELETE on the live table.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from core.config import OnlineTable
from features.columns import AS_OF, CUSTOMER_ID, SCORED_AT, TARGETS
from serving.online_store.base import (
    Found,
    StoreError,
    StoreMeta,
    WriterContext,
    rows,
    score_column,
)

log = logging.getLogger(__name__)

NEW, OLD, META = "__new", "__old", "__meta"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(name: str, suffix: str = "") -> str:
    """A (schema-qualified) table name with a suffix on its last part, quoted."""
    *schema, table = name.split(".")
    return ".".join([*map(_q, schema), _q(table + suffix)])


def _connect(target: OnlineTable):
    import psycopg2

    try:
        return psycopg2.connect(target.uri, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise StoreError(
            f"online store {target.uri} (table {target.table}): cannot connect: "
            f"{str(exc).strip()}"
        ) from exc


def _text(value: object) -> str:
    """One COPY text-format field: \\N for NULL, escapes for the rest."""
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value)
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


class PostgresStoreWriter(WriterContext):
    """Builds `<table>__new`; `commit` swaps it in. Same interface as
    SqliteStoreWriter (append, commit, abort, a context manager)."""

    def __init__(self, target: OnlineTable, meta: StoreMeta) -> None:
        self.target = target
        self.meta = meta
        self.rows = 0
        self._con = _connect(target)
        new = _table(target.table, NEW)
        columns = [f"{_q(CUSTOMER_ID)} text PRIMARY KEY", f"{_q(AS_OF)} text NOT NULL"]
        columns += [
            f"{_q(f)} {'text' if f in meta.categorical else 'double precision'}"
            for f in meta.features
        ]
        columns += [f"{_q(score_column(t))} double precision" for t in meta.targets]
        columns.append(f"{_q(SCORED_AT)} text")
        with self._con, self._con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {new}")
            cur.execute(f"CREATE TABLE {new} ({', '.join(columns)})")

    def append(
        self,
        frame: pd.DataFrame,
        scores: Mapping[str, np.ndarray],
        scored_at: datetime,
    ) -> None:
        """Add a chunk: its customers' features and their nightly scores."""
        buf = io.StringIO()
        for row in rows(self.meta, frame, scores, scored_at):
            buf.write("\t".join(map(_text, row)))
            buf.write("\n")
        buf.seek(0)
        with self._con, self._con.cursor() as cur:
            cur.copy_expert(f"COPY {_table(self.target.table, NEW)} FROM STDIN", buf)
        self.rows += len(frame)

    def commit(self) -> None:
        table = self.target.table
        meta = _table(table, META)
        with self._con, self._con.cursor() as cur:  # one transaction
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text)"
            )
            cur.execute(f"DELETE FROM {meta}")
            cur.executemany(f"INSERT INTO {meta} VALUES (%s, %s)", self.meta.to_rows())
            cur.execute(f"DROP TABLE IF EXISTS {_table(table, OLD)}")
            cur.execute(
                f"ALTER TABLE IF EXISTS {_table(table)} RENAME TO "
                f"{_q(table.split('.')[-1] + OLD)}"
            )
            cur.execute(
                f"ALTER TABLE {_table(table, NEW)} RENAME TO {_q(table.split('.')[-1])}"
            )
            cur.execute(f"DROP TABLE IF EXISTS {_table(table, OLD)}")
        self._con.close()
        log.info(
            "online store %s: %d customers as of %s", table, self.rows, self.meta.as_of
        )

    def abort(self) -> None:
        try:
            self._con.rollback()
            with self._con, self._con.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {_table(self.target.table, NEW)}")
        finally:
            self._con.close()


def stored_meta(target: OnlineTable) -> StoreMeta | None:
    """The meta of the table's current contents, None when there is none."""
    import psycopg2

    con = _connect(target)
    try:
        with con, con.cursor() as cur:
            cur.execute(f"SELECT key, value FROM {_table(target.table, META)}")
            rows = dict(cur.fetchall())
    except psycopg2.errors.UndefinedTable:
        return None
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        # the server dropped the connection mid-query: a 503, not a 500
        raise StoreError(
            f"online store {target.uri} (table {target.table}): connection lost "
            f"reading its meta: {str(exc).strip()}"
        ) from exc
    finally:
        con.close()
    return StoreMeta.from_rows(rows, target.table) if rows else None


class PostgresStore:
    """Reads the table by customer id; one connection per thread (autocommit),
    reconnecting once when the server dropped it; a server still unreachable
    then is a StoreError (the API's 503), never a crash. Deletes customers from
    it (`delete`, for `propensity forget`)."""

    def __init__(self, target: OnlineTable, required: Sequence[str] = ()) -> None:
        self.target = target
        self.required = tuple(required)
        self._local = threading.local()
        self._sql = (
            f"SELECT * FROM {_table(target.table)} WHERE {_q(CUSTOMER_ID)} = ANY(%s)"
        )

    def _con(self):
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = _connect(self.target)
            con.autocommit = True
            self._local.con = con
        return con

    def meta(self) -> StoreMeta:
        meta = stored_meta(self.target)
        if meta is None:
            raise self._missing()
        return meta

    def _missing(self) -> StoreError:
        return StoreError(
            f"no online store in table {self.target.table} at {self.target.uri}: "
            "run the nightly job (`propensity score`) first"
        )

    def lookup(self, ids: Sequence[str]) -> dict[str, Found]:
        """The rows of those ids the table holds (absent ids are left out)."""
        import psycopg2

        unique = list(dict.fromkeys(ids))
        for attempt in (1, 2):
            try:
                with self._con().cursor() as cur:
                    cur.execute(self._sql, (unique,))
                    names = [d.name for d in cur.description]
                    rows = cur.fetchall()
                break
            except psycopg2.errors.UndefinedTable as exc:
                raise self._missing() from exc
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self._local.con = None  # a dropped connection: once more
                if attempt == 2:  # the server is gone: a 503, not a 500
                    raise StoreError(
                        f"online store {self.target.uri} (table {self.target.table})"
                        f": connection lost: {str(exc).strip()}"
                    ) from exc
        scores = {score_column(t): t for t in TARGETS}
        skip = {CUSTOMER_ID, AS_OF, SCORED_AT, *scores}
        features = [(i, n) for i, n in enumerate(names) if n not in skip]
        scored = [(i, scores[n]) for i, n in enumerate(names) if n in scores]
        lacking = [f for f in self.required if f not in {n for _, n in features}]
        if lacking:
            raise StoreError(
                f"online store table {self.target.table} lacks {len(lacking)} "
                f"feature(s) the champions read, e.g. {lacking[0]!r}: rerun "
                "`propensity score`"
            )
        at, cid = names.index(AS_OF), names.index(CUSTOMER_ID)
        return {
            row[cid]: Found(
                row[at],
                {n: row[i] for i, n in features},
                frozenset(t for i, t in scored if row[i] is not None),
                {t: row[i] for i, t in scored if row[i] is not None},
            )
            for row in rows
        }

    @property
    def place(self) -> str:
        return f"{self.target.uri} {self.target.table}"

    def delete(self, ids: Sequence[str]) -> dict[str, int]:
        """DELETE the rows of `ids` from the live table, in one transaction of
        a connection of its own; the rows removed per id. No table: none."""
        con = _connect(self.target)
        try:
            counts = delete_customers(con, _table(self.target.table), ids)
        finally:
            con.close()
        log.info(
            "online store %s: %d row(s) of forgotten customers deleted",
            self.target.table,
            sum(counts.values()),
        )
        return counts


def delete_customers(con, table: str, ids: Sequence[str]) -> dict[str, int]:  # noqa: ANN001
    """DELETE the rows of customers `ids` from `table` (as SQL names it) in one
    transaction on `con`; the rows removed per id. A missing table removes none.
    The online store's and the scores sink's tables both forget this way."""
    with con, con.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(
            f"DELETE FROM {table} WHERE {_q(CUSTOMER_ID)} = ANY(%s) "
            f"RETURNING {_q(CUSTOMER_ID)}",
            (list(ids),),
        )
        return dict(Counter(row[0] for row in cur.fetchall()))
