"""The optional Postgres sink: a night's scores upserted into one table.

The table (created when missing) has the Parquet file's columns plus `as_of`, and
the primary key (customer_id, as_of). Everything happens in one transaction: the
rows are streamed with COPY into a temporary table, batch by batch from the
published Parquet file, then inserted or updated by key, and the date's rows no
longer in the output (a rerun on changed data) are deleted; a failure at any point
rolls it all back, so readers see the previous night's rows or the new ones. The
connection goes through libpq (psycopg2), which reads PGUSER, PGPASSWORD (or
~/.pgpass) from the environment: the URI holds no credentials.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from core.config import ScoresTable
from features.columns import AS_OF, CUSTOMER_ID, TARGETS, reasons_column
from serving.online_store.postgres import delete_customers

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000
_REASONS = {reasons_column(t) for t in TARGETS}


def column_type(name: str, dtype: pa.DataType) -> str:
    """The Postgres type of an output column."""
    if name in _REASONS:
        return "jsonb"
    if pa.types.is_floating(dtype):
        return "double precision"
    if pa.types.is_integer(dtype):
        return "smallint" if dtype.bit_width <= 16 else "bigint"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date(dtype):
        return "date"
    return "text"


def create_sql(table: str, schema: pa.Schema) -> str:
    columns = [f'"{f.name}" {column_type(f.name, f.type)}' for f in schema]
    columns.insert(1, f'"{AS_OF}" date NOT NULL')
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, "
        f'PRIMARY KEY ("{CUSTOMER_ID}", "{AS_OF}"))'
    )


def upsert(parquet: Path, as_of: date, sink: ScoresTable) -> int:
    """Upsert the rows of one night's Parquet file; return how many."""
    import psycopg2  # only runs with a sink need it

    source = pq.ParquetFile(parquet)
    schema = source.schema_arrow
    names = [CUSTOMER_ID, AS_OF, *[n for n in schema.names if n != CUSTOMER_ID]]
    quoted = ", ".join(f'"{n}"' for n in names)
    updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in names[2:])
    rows = 0
    con = psycopg2.connect(sink.uri, connect_timeout=10)
    try:
        with con, con.cursor() as cur:  # one transaction: commit or roll back
            cur.execute(create_sql(sink.table, schema))
            cur.execute(
                f"CREATE TEMP TABLE _incoming ON COMMIT DROP AS "
                f"SELECT {quoted} FROM {sink.table} WITH NO DATA"
            )
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                table = pa.Table.from_batches([batch])
                table = table.add_column(
                    1, AS_OF, pa.array([as_of] * table.num_rows, pa.date32())
                ).select(names)
                buf = io.BytesIO()
                pcsv.write_csv(table, buf)
                buf.seek(0)
                cur.copy_expert(
                    f"COPY _incoming ({quoted}) FROM STDIN WITH (FORMAT csv, "
                    "HEADER true)",
                    buf,
                )
                rows += table.num_rows
            cur.execute(
                f"INSERT INTO {sink.table} ({quoted}) SELECT {quoted} FROM _incoming "
                f'ON CONFLICT ("{CUSTOMER_ID}", "{AS_OF}") DO UPDATE SET {updates}'
            )
            cur.execute(
                f'DELETE FROM {sink.table} t WHERE t."{AS_OF}" = %s AND NOT EXISTS '
                f'(SELECT 1 FROM _incoming i WHERE i."{CUSTOMER_ID}" = '
                f't."{CUSTOMER_ID}")',
                (as_of,),
            )
    finally:
        con.close()
    log.info("upserted %d rows as of %s into %s", rows, as_of, sink.table)
    return rows


def delete(sink: ScoresTable, ids: Sequence[str]) -> dict[str, int]:
    """Forget: DELETE the rows of customers `ids` from the scores table; the rows
    removed per id (no table: none)."""
    import psycopg2

    con = psycopg2.connect(sink.uri, connect_timeout=10)
    try:
        counts = delete_customers(con, sink.table, ids)
    finally:
        con.close()
    log.info(
        "scores %s: %d row(s) of forgotten customers deleted",
        sink.table,
        sum(counts.values()),
    )
    return counts
