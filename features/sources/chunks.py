"""Running a per-customer expression in customer chunks, so memory stays bounded.

Every feature and label depends on one customer's events only, so an expression
built from a subset of the customers' events gives exactly those customers' rows.
When the events outgrow what DuckDB's memory limit holds comfortably, they are
split once by a hash of the customer id into Parquet chunk files (one pass, so time
stays linear in the events), and the expression runs on each chunk in turn, each
result written to its own Parquet part. Below that size there is one chunk and no
split. The expression itself is unchanged: Spark gets it whole.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import ibis.expr.types as ir
import pyarrow as pa

from features.columns import CUSTOMER_ID
from features.sources.load import EVENTS_VIEW, Dataset

log = logging.getLogger(__name__)

T = TypeVar("T")

# Events per GB of DuckDB memory limit that one chunk may hold: measured on the
# demo data (about one event per customer-day, the worst case for the daily
# roll-up), 5M events need about 1 GB without spilling; 2.5M per GB leaves room
# for the process around DuckDB (Python, Arrow: 200-250 MB).
EVENTS_PER_GB = 2_500_000
# Cutoffs a chunk sized by EVENTS_PER_GB holds comfortably: measured on the
# 20M-event demo under 1GB, 3 cutoffs peaked at 750 MB and 12 at 1.2 GB.
CUTOFFS_PER_CHUNK = 4
# The share of the memory limit the one-pass split into chunk files may use.
SPLIT_SHARE = 0.4
# Rows per GB of memory limit the split holds in its open parts, all parts
# together (per thread): each part is written out when it holds its share.
# DuckDB's default (524,288 rows per part) overfills the split's share at 9 parts
# and 2 threads: 20.6M events took 22 CPU-s to split under 1GB, 12-14 with parts
# of 131,072 rows (1.2M rows for the 9), as at 2M events per event.
SPLIT_ROWS_PER_GB = 1_200_000
# No fewer rows per written piece than this (Parquet row groups stay sensible).
MIN_FLUSH_ROWS = 16_384


def memory_limit_bytes(ds: Dataset) -> float:
    """DuckDB's memory limit on the dataset's connection, in bytes."""
    text = ds.duckdb.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    match = re.fullmatch(r"([\d.]+)\s*([kmgt]?)(i?)b", str(text).strip().lower())
    if not match:
        raise ValueError(f"cannot read DuckDB's memory_limit {text!r}")
    number, prefix, binary = match.groups()
    base = 1024 if binary else 1000
    return float(number) * base ** ("_kmgt".index(prefix) if prefix else 0)


def chunk_count(
    ds: Dataset, events_per_chunk: int | None = None, cutoffs: int = 1
) -> int:
    """How many customer chunks the events need under the memory limit, when each
    customer is built at `cutoffs` cutoffs (the join with the cutoffs and what
    follows grow with them: beyond CUTOFFS_PER_CHUNK, chunks shrink in step)."""
    if events_per_chunk is None:
        budget = EVENTS_PER_GB * memory_limit_bytes(ds) / 1e9
        events_per_chunk = max(1, int(budget / max(1.0, cutoffs / CUTOFFS_PER_CHUNK)))
    return max(1, math.ceil(ds.rows() / events_per_chunk))


def flush_rows(limit_bytes: float, chunks: int) -> int:
    """Rows each open part of the split holds before it is written out: the
    split's rows (`SPLIT_ROWS_PER_GB` of the memory limit) shared by the parts,
    so the buffers stay within the split's share whatever the number of chunks
    (and time per event stays flat as the events and the chunks grow)."""
    rows = SPLIT_ROWS_PER_GB * limit_bytes / 1e9 / max(1, chunks)
    return max(MIN_FLUSH_ROWS, int(rows))


@contextmanager
def customer_chunks(ds: Dataset, chunks: int) -> Iterator[list[ir.Table]]:
    """The events split into `chunks` tables by customer (the events view itself
    when one chunk); the chunk files are removed on exit."""
    if chunks <= 1:
        yield [ds.events]
        return
    with tempfile.TemporaryDirectory(prefix="propensity-chunks-") as tmp:
        out = str(Path(tmp) / "events").replace("'", "''")
        # A partitioned COPY buffers every open part up to the memory limit; with
        # less room it flushes sooner, so the split stays well below the limit
        # the chunks themselves then use.
        limit = memory_limit_bytes(ds)
        ds.duckdb.execute(f"SET memory_limit = '{int(limit * SPLIT_SHARE)}B'")
        ds.duckdb.execute(
            f"SET partitioned_write_flush_threshold = {flush_rows(limit, chunks)}"
        )
        try:
            ds.duckdb.execute(
                f"COPY (SELECT *, hash({CUSTOMER_ID}) % {chunks} AS _chunk "
                f"FROM {EVENTS_VIEW}) TO '{out}' "
                "(FORMAT parquet, PARTITION_BY (_chunk), COMPRESSION 'lz4_raw')"
            )
        finally:
            ds.duckdb.execute(f"SET memory_limit = '{int(limit)}B'")
            ds.duckdb.execute("RESET partitioned_write_flush_threshold")
        tables = []
        for folder in sorted(Path(out).glob("_chunk=*")):
            pattern = str(folder / "*.parquet")
            tables.append(ds.con.read_parquet(pattern, hive_partitioning=False))
        yield tables or [ds.events]


def write_chunked(
    ds: Dataset,
    build: Callable[[ir.Table], ir.Table],
    out_dir: Path,
    *,
    events_per_chunk: int | None = None,
    cutoffs: int = 1,
) -> list[Path]:
    """`build(events)` for each customer chunk, written to `out_dir/part-N.parquet`.

    Returns the parts written, in order; together they hold exactly the rows of
    `build(ds.events)`, in no particular order.
    """
    chunks = chunk_count(ds, events_per_chunk, cutoffs)
    out_dir.mkdir(parents=True, exist_ok=True)
    with customer_chunks(ds, chunks) as tables:

        def write(i: int, expr: ir.Table) -> Path:
            path = out_dir / f"part-{i}.parquet"
            expr.to_parquet(path)
            log.info("chunk %d/%d written to %s", i + 1, len(tables), path)
            return path

        return _pipelined(tables, build, write)


def read_chunked(
    ds: Dataset,
    build: Callable[[ir.Table], ir.Table],
    *,
    events_per_chunk: int | None = None,
    cutoffs: int = 1,
) -> pa.Table:
    """`build(events)` run chunk by chunk and gathered into one Arrow table (in
    memory: for results the caller holds anyway, such as a training table)."""
    chunks = chunk_count(ds, events_per_chunk, cutoffs)
    with customer_chunks(ds, chunks) as tables:
        results = _pipelined(tables, build, lambda _, expr: expr.to_pyarrow())
    return pa.concat_tables(results)


def _pipelined(
    tables: list[ir.Table],
    build: Callable[[ir.Table], ir.Table],
    run: Callable[[int, ir.Table], T],
) -> list[T]:
    """`run(i, build(tables[i]))` for each chunk in order, one run at a time, with
    the next chunk's expression built while the current one runs.

    Building an expression is Python (0.1-0.5 s a chunk on the demo config, the
    first compile more) and running it is DuckDB, which lets go of the GIL and
    keeps both cores busy: built one after the other, every chunk's Python left
    DuckDB's threads idle for its duration. Runs stay one at a time on the one
    connection (DuckDB's memory limit is sized for one chunk); only `build` runs
    beside them, and it touches no connection."""
    results: list[T] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk") as pool:
        running: Future[T] | None = None
        for i, events in enumerate(tables):
            expr = build(events)
            if running is not None:
                results.append(running.result())
            running = pool.submit(run, i, expr)
        if running is not None:
            results.append(running.result())
    return results


__all__ = [
    "chunk_count",
    "customer_chunks",
    "flush_rows",
    "memory_limit_bytes",
    "read_chunked",
    "write_chunked",
]
