"""Reading a table or query from a database (Postgres, a DuckDB file) into DuckDB.

The rows stream as Arrow record batches (Postgres through ADBC's libpq driver,
which reads with COPY) into a temporary DuckDB table, numbered 1, 2, ... in the
order the database returned them, so that contract problems can name rows. DuckDB
holds the table within `engine.memory_limit`, spilling to disk beyond it.
Credentials never pass through here: libpq reads PGUSER, PGPASSWORD, ~/.pgpass...
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa

from core.config import DUCKDB_SCHEME, DatabaseSource
from features.sources.contract import ROW, ContractError, Problem

log = logging.getLogger(__name__)


def select_sql(source: DatabaseSource) -> str:
    """The query that reads the source (table names are checked by the config)."""
    return f"SELECT * FROM {source.table}" if source.table else str(source.query)


@contextmanager
def _batches(source: DatabaseSource) -> Iterator[pa.RecordBatchReader]:
    if source.scheme == DUCKDB_SCHEME:
        con = duckdb.connect(str(source.duckdb_path), read_only=True)
        try:
            yield con.sql(select_sql(source)).to_arrow_reader()
        finally:
            con.close()
        return
    from adbc_driver_postgresql import dbapi  # only Postgres sources need it

    with dbapi.connect(source.uri) as con, con.cursor() as cursor:
        cursor.execute(select_sql(source))
        yield cursor.fetch_record_batch()


def _numbered(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The batches with a 1-based ROW column appended, in arrival order."""

    def batches() -> Iterator[pa.RecordBatch]:
        start = 1
        for batch in reader:
            rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
            yield batch.append_column(ROW, pa.array(rows))
            start += batch.num_rows

    schema = reader.schema.append(pa.field(ROW, pa.int64()))
    return pa.RecordBatchReader.from_batches(schema, batches())


def stage(con: duckdb.DuckDBPyConnection, source: DatabaseSource, table: str) -> None:
    """Copy the source's rows into the temporary table `table`, with a ROW column.

    ContractError naming the source when it cannot be read (no such table, bad
    query, server unreachable).
    """
    from adbc_driver_manager import Error as AdbcError

    try:
        with _batches(source) as reader:
            con.register("__incoming", _numbered(reader))
            try:
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM __incoming"
                )
            finally:
                con.unregister("__incoming")
    except (duckdb.Error, AdbcError) as exc:
        reason = str(exc).strip().splitlines()[0]
        problem = Problem(str(source), None, f"cannot be read: {reason}")
        raise ContractError([problem]) from exc
    log.info("staged %s into %s", source, table)


__all__ = ["select_sql", "stage"]
