"""The Spark engine: the same feature definition on a Spark session, through Ibis.

Only the connection and the loading differ from DuckDB (features.sources.load): the
definition's Ibis expressions are handed to Ibis's pyspark backend unchanged.

Three things keep Spark's answers identical to DuckDB's (STACK-NOTES):
- the session's time zone is UTC, set here explicitly (timestamps are stored as
  UTC without a zone, and Spark would otherwise read them in the JVM's zone);
- event times are truncated to whole seconds on load, as on DuckDB, so Ibis's
  `epoch_seconds`, whole seconds on Spark and fractional on DuckDB, agree;
- expressions that hold an in-memory table (the cutoffs) are run through the Ibis
  backend (`to_pyarrow`, `to_parquet_dir`), which registers it, never through
  `session.sql(con.compile(expr))`.

The input files are validated against the data contract by DuckDB on the driver
first (the same checks and messages as the embedded path; it streams the files,
so it needs no memory to speak of), then Spark reads them, each events source
with its column mapping and constant event type (data.columns, a list in
data.events), combined into one log as on DuckDB. A database source is for DuckDB
only: on Spark give Parquet or CSV files (or a folder of them).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from core.config import (
    ColumnsConfig,
    ConfigError,
    DatabaseSource,
    EventSource,
    ProjectConfig,
    Source,
    SparkConfig,
)
from features.columns import AMOUNT, CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, QUANTITY
from features.definition import FeatureSpec
from features.sources.contract import (
    EVENTS_SCHEMA,  # the events as the tasks get them: the DuckDB loader's types
    ContractError,
    Problem,
    file_format,
    list_files,
)
from features.sources.load import Dataset, EventsInput, event_sources

log = logging.getLogger(__name__)

SPARK_EVENTS_VIEW = "propensity_events_raw"
SPARK_CUSTOMERS_VIEW = "propensity_customers_raw"
# Settings every session gets (a user's engine.spark.conf may not change them).
REQUIRED_CONF = {"spark.sql.session.timeZone": "UTC"}
# How SparkDataset.build_features computes the per-customer sums: each task
# with DuckDB on its partition of the events (`duckdb`) or Spark SQL (`spark`).
SUMS_CONF = "propensity.features.sums"
SUMS_ENGINES = ("duckdb", "spark")
# DuckDB's memory limit in each task of `features_by_task` (it spills beyond it)
TASK_MEMORY_CONF = "propensity.features.task_memory"
TASK_MEMORY_DEFAULT = "1GB"
# events per task of `features_by_task` (about; the partitions are hashed by customer)
TASK_EVENTS_CONF = "propensity.features.task_events"
TASK_EVENTS = 1_000_000
# rows per Arrow batch between the JVM and a task's DuckDB (both ways)
TASK_BATCH_ROWS = 100_000
# Defaults a user's conf may override.
DEFAULT_CONF = {
    # microseconds, as DuckDB and pyarrow write them (Spark's default is the
    # legacy INT96, read back as nanoseconds)
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Parquet timestamps without a zone (the contract's: UTC) read as Spark's
    # TIMESTAMP, the type the loader casts them to anyway: no conversion
    # through java.time per event (docs/spark.md, seventh pass)
    "spark.sql.parquet.inferTimestampNTZ.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


def session(
    config: SparkConfig | None = None,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
):
    """A Spark session (the running one when there is one, as under spark-submit).

    `master` (the CLI's --spark-master) wins over `config.master`; with neither,
    Spark's own environment decides, and that is local mode by default. In local
    mode the Python workers are this interpreter, so `mlflow.pyfunc.spark_udf`
    finds the same packages.
    """
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    master = master or config.master
    builder = SparkSession.builder.appName(config.app_name)
    if master:
        builder = builder.master(master)
    settings = {**DEFAULT_CONF, **config.conf, **(conf or {}), **REQUIRED_CONF}
    if (master or "local").startswith("local"):
        # PySpark reads the workers' Python from the environment when the
        # context starts (its conf key counts under spark-submit only)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in REQUIRED_CONF.items():  # a session that already ran
        spark.conf.set(key, value)
    log.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark


def refuse_privacy(config: ProjectConfig) -> None:
    """ConfigError naming the setting when the config asks for something only
    the DuckDB loader does: pseudonyms, the suppression list, reading only some
    event types (features.sources.load.load_project). Attributes are picked by the
    definition itself on both engines."""
    from features.sources.privacy import suppressed

    asked = [
        ("privacy.pseudonymise", config.privacy.pseudonymise),
        ("the suppression list of `propensity forget`", suppressed(config.privacy)),
        ("roles.activity", config.roles.types_read() is not None),
    ]
    found = [name for name, on in asked if on]
    if found:
        raise ConfigError(
            f"engine spark: {', '.join(found)} is applied by the DuckDB loader "
            "only; use engine.kind duckdb (README: Privacy)"
        )


def connect(spark) -> ibis.BaseBackend:
    """The Ibis pyspark backend on `spark`."""
    return ibis.pyspark.connect(spark)


@dataclass
class SparkDataset:
    """Validated events (and customers) as Ibis tables on a Spark session; the
    Spark counterpart of features.sources.load.Dataset."""

    con: ibis.BaseBackend
    events: ibis.Table
    customers: ibis.Table | None
    events_files: list[Path]
    customers_files: list[Path]
    # always empty: the Spark engine refuses a suppression list (refuse_privacy)
    suppressed: frozenset[str] = frozenset()
    _stats: tuple[datetime, datetime, int] | None = field(default=None, repr=False)

    @property
    def spark(self):
        return self.con._session

    def _summary(self) -> tuple[datetime, datetime, int]:
        if self._stats is None:
            e = self.events
            row = self.con.to_pyarrow(
                e.aggregate(
                    first=e[EVENT_TIME].min(),
                    last=e[EVENT_TIME].max(),
                    rows=e.count(),
                )
            ).to_pylist()[0]
            self._stats = (row["first"], row["last"], int(row["rows"]))
        return self._stats

    def time_range(self) -> tuple[datetime, datetime]:
        first, last, _ = self._summary()
        return first, last

    def rows(self) -> int:
        return self._summary()[2]

    def fingerprint(self) -> dict[str, str | int]:
        """Rows and time range (Spark's hash differs from DuckDB's, so the
        content hash is left out rather than given a second meaning)."""
        first, last, rows = self._summary()
        return {
            "rows": rows,
            "first_event": str(first),
            "last_event": str(last),
            "engine": "spark",
        }

    def to_pyarrow(self, expr: ir.Table) -> pa.Table:
        with self._task_batches():
            return self.con.to_pyarrow(expr)

    @contextmanager
    def _task_batches(self):
        """Arrow batches of `TASK_BATCH_ROWS` rows from the JVM to the tasks of
        `features_by_task` while an expression runs (Spark reads the setting
        when the job runs, not when the DataFrame is made); restored after."""
        key = "spark.sql.execution.arrow.maxRecordsPerBatch"
        before = self.spark.conf.get(key)
        self.spark.conf.set(key, str(TASK_BATCH_ROWS))
        try:
            yield
        finally:
            self.spark.conf.set(key, before)

    def dataframe(self, expr: ir.Table):
        """`expr` as a Spark DataFrame, its timestamps without a zone.

        Through a view Ibis creates (so the expression's in-memory tables are
        registered). Ibis gives Spark its in-memory timestamps (the cutoffs) with
        the session's zone, UTC; they are cast back to the contract's type, so
        Parquet holds them as DuckDB writes them."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import TimestampType

        df = self._as_spark(expr)
        return df.select(
            *(
                F.col(f.name).cast("timestamp_ntz").alias(f.name)
                if isinstance(f.dataType, TimestampType)
                else F.col(f.name)
                for f in df.schema.fields
            )
        )

    def _as_spark(self, expr: ir.Table):
        """`expr` as a Spark DataFrame as Ibis hands it over (through a view
        Ibis creates, so its in-memory tables are registered)."""
        name = f"propensity_{uuid.uuid4().hex[:12]}"
        self.con.create_view(name, expr, overwrite=True)
        return self.spark.table(name)

    def _as_ibis(self, df) -> ir.Table:  # noqa: ANN001
        """A Spark DataFrame as an Ibis table (on a temporary view of it)."""
        name = f"propensity_{uuid.uuid4().hex[:12]}"
        df.createOrReplaceTempView(name)
        return self.con.table(name)

    def to_parquet_dir(self, expr: ir.Table, out_dir: Path) -> Path:
        """`expr` written by Spark as a folder of Parquet part files (an existing
        folder is replaced)."""
        with self._task_batches():
            self.dataframe(expr).write.mode("overwrite").parquet(str(out_dir))
        return out_dir

    def materialised(self, expr: ir.Table, out_dir: Path) -> ir.Table:
        """`expr` computed once: written to `out_dir` as Parquet and read back
        as an Ibis table on a Spark view (no in-memory table left in it, so
        later expressions on it run anywhere)."""
        self.to_parquet_dir(expr, out_dir)
        return self._as_ibis(self.spark.read.parquet(str(out_dir)))

    def events_estimate(self) -> int:
        """The number of events, from the Parquet files' footers when every
        events file is Parquet (no Spark job), else counted by Spark."""
        import pyarrow.parquet as pq

        if self.events_files and all(
            f.suffix.lower() == ".parquet" for f in self.events_files
        ):
            return sum(pq.ParquetFile(f).metadata.num_rows for f in self.events_files)
        return self.rows()

    def by_customer(self, events: ir.Table, partitions: int | None = None) -> ir.Table:
        """`events` (no in-memory table in it) hash-partitioned by customer:
        the same rows, laid out so that every later stage of the definition
        (the day tiles, grouped by customer and day; the gaps' window over
        each customer's days; the segment and per-customer sums) finds its
        rows where Spark needs them, and the plan holds one exchange of the
        events instead of two of the tiles (docs/spark.md: a customer-day has
        about 1.2 events, so tiles are nearly as many as events, and Spark
        shuffled them by (customer, day) and again by customer for the
        gaps). Spark's adaptive execution picks the number of partitions
        unless `partitions` gives it."""
        df = self._as_spark(events)
        df = (
            df.repartition(CUSTOMER_ID)
            if partitions is None
            else df.repartition(partitions, CUSTOMER_ID)
        )
        return self._as_ibis(df)

    def features_by_task(
        self,
        events: ir.Table,
        cutoffs: Sequence[datetime],
        spec: FeatureSpec,
        customers: ir.Table | None = None,
        classic: pd.DataFrame | None = None,
    ) -> ir.Table:
        """`features.definition.build_features(events, cutoffs, spec,
        customers, classic=classic)` computed by each Spark task on its
        partition's events with DuckDB, as an Ibis table on a Spark view (lazy:
        the tasks run when the caller writes or collects it, one Spark job).

        `events` must be partitioned by customer (`by_customer`): every stage
        of the definition is per customer (the sums, the cancel days, the
        reactivations, the row-wise features, the attributes' join), so a
        partition's rows are exactly its customers' rows of the whole. Spark
        reads, normalises and shuffles the events once; each task hands its
        events (Arrow batches, `mapInArrow`) to an in-memory DuckDB on
        `spark.task.cpus` threads and yields the definition's rows. The
        customers table is collected once on the driver and shipped to every
        task with the function (Spark broadcasts a large one); `classic` (the
        BG/NBD parameters, fitted on all customers) likewise (docs/spark.md,
        seventh pass)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        attributes = None
        if customers is not None:
            attributes = self.dataframe(customers).toArrow()
        compute = PartitionFeatures(
            list(cutoffs),
            spec,
            threads=int(self.spark.conf.get("spark.task.cpus", "1")),
            memory_limit=self.spark.conf.get(TASK_MEMORY_CONF, TASK_MEMORY_DEFAULT),
            customers=attributes,
            classic=classic,
        )
        schema = from_arrow_schema(compute.schema(), prefer_timestamp_ntz=True)
        # the events' times as Spark's TIMESTAMP, UTC (the session's zone): the
        # tasks' Arrow batches carry them with that zone and `PartitionFeatures`
        # drops it (no cast per event in the JVM, as `dataframe` would add)
        return self._as_ibis(self._as_spark(events).mapInArrow(compute, schema))

    def build_features(
        self,
        cutoffs: Sequence[datetime],
        spec: FeatureSpec,
        scratch: Path,
        customers: ir.Table | None = None,
        classic: pd.DataFrame | None = None,
        timings: dict[str, float] | None = None,
        sums: str | None = None,
    ) -> ir.Table:
        """`features.definition.build_features(self.events, cutoffs, spec,
        customers)`, the events read and shuffled by customer once. The caller
        removes `scratch` after the returned expression has been run.

        `sums`: how the per-customer stages run after the shuffle of the
        events by customer: `duckdb` (the default: each Spark task runs the
        definition's `build_features` on its partition with DuckDB,
        `features_by_task`; nothing is written to `scratch`, the returned
        table is computed when the caller writes it) or `spark` (the same
        definition as Spark SQL, the tile path, with the per-customer sums,
        the cancel days and the reactivation counts materialised in
        `scratch` first: Spark inlines a subquery read twice, so the events
        would be rolled up twice; `timings`, if given, gets the seconds of
        the materialised stages, `sums_s` and `cancels_s`); None reads the
        session's `propensity.features.sums` (settable in
        `engine.spark.conf`)."""
        from features.definition import (
            cancel_days,
            feature_sums,
            features_from_sums,
            reactivation_counts,
        )

        sums_engine = sums or self.spark.conf.get(SUMS_CONF, "duckdb")
        if sums_engine not in SUMS_ENGINES:
            raise ConfigError(
                f"{SUMS_CONF}: {sums_engine!r}, expected one of "
                f"{', '.join(SUMS_ENGINES)}"
            )
        if spec.classic and classic is None:
            from features.classic import fit_from_events

            classic = fit_from_events(self.events, cutoffs, spec)
        if sums_engine == "duckdb":
            # each task holds its partition's events: bound them
            per_task = int(self.spark.conf.get(TASK_EVENTS_CONF, str(TASK_EVENTS)))
            partitions = max(
                self.spark.sparkContext.defaultParallelism,
                -(-self.events_estimate() // per_task),
            )
            events = self.by_customer(self.events, partitions)
            return self.features_by_task(events, cutoffs, spec, customers, classic)
        events = self.by_customer(self.events)
        start = time.perf_counter()
        sums = self.materialised(
            feature_sums(events, cutoffs, spec, tiles=True), scratch / "sums"
        )
        middle = time.perf_counter()
        cancels = self.materialised(cancel_days(events, spec), scratch / "cancels")
        # small, and read from a small Parquet file, so Spark broadcasts it
        # into the join that adds `reactivations` (computed inline, Spark
        # cannot tell its size and shuffles the wide sums to join it)
        counts = self.materialised(
            reactivation_counts(sums, cancels), scratch / "reactivations"
        )
        if timings is not None:
            timings["sums_s"] = middle - start
            timings["cancels_s"] = time.perf_counter() - middle
        return features_from_sums(
            sums, cancels, spec, customers, None, classic, counts=counts
        )


class PartitionFeatures:
    """The function each Spark task runs (`DataFrame.mapInArrow`): its
    partition's events (Arrow batches of the contract's columns; timestamps in
    UTC, with or without the zone, given to DuckDB without it) into an
    in-memory DuckDB, `build_features(events,
    cutoffs, spec, customers, classic=classic)` of the one definition run
    there (`customers`: the whole customers table as Arrow, the attributes'
    left join keeps the partition's customers), its rows yielded as Arrow
    batches. Picklable (Spark sends it to the Python workers)."""

    def __init__(
        self,
        cutoffs: list[datetime],
        spec: FeatureSpec,
        threads: int = 1,
        memory_limit: str = TASK_MEMORY_DEFAULT,
        customers: pa.Table | None = None,
        classic: pd.DataFrame | None = None,
    ) -> None:
        self.cutoffs = cutoffs
        self.spec = spec
        self.threads = threads
        self.memory_limit = memory_limit
        self.customers = customers
        self.classic = classic

    def _features(
        self, events: pa.Table, customers: pa.Table | None
    ) -> tuple[ibis.BaseBackend, ir.Table]:
        from features.definition import build_features
        from features.sources.load import connect

        con = connect(memory_limit=self.memory_limit, threads=self.threads)
        con.raw_sql("SET enable_progress_bar = false")
        people = None if customers is None else ibis.memtable(customers)
        expr = build_features(
            ibis.memtable(events), self.cutoffs, self.spec, people, classic=self.classic
        )
        return con, expr

    def schema(self) -> pa.Schema:
        """The Arrow schema of the rows (the definition run on no events)."""
        customers = None if self.customers is None else self.customers.slice(0, 0)
        con, expr = self._features(EVENTS_SCHEMA.empty_table(), customers)
        try:
            return con.to_pyarrow(expr).schema
        finally:
            con.disconnect()

    def __call__(self, batches):
        batches = list(batches)
        if not batches or not sum(b.num_rows for b in batches):
            return
        events = pa.Table.from_batches(batches).select(EVENTS_SCHEMA.names)
        events = events.cast(EVENTS_SCHEMA)
        del batches
        con, expr = self._features(events, self.customers)
        try:
            out = con.to_pyarrow(expr)
        finally:
            con.disconnect()
        del events
        yield from out.to_batches(max_chunksize=TASK_BATCH_ROWS)


def _read(spark, files: list[Path], fmt: str, what: str):
    """The files as one Spark DataFrame (columns matched by name)."""
    if not files:
        raise ContractError([Problem(what, None, "at least one input file")])
    kind = file_format(files[0], fmt)
    paths = [str(f) for f in files]
    if kind == "parquet":
        return spark.read.option("mergeSchema", "true").parquet(*paths)
    return spark.read.option("header", "true").csv(paths)


@ibis.udf.scalar.builtin(name="trim")
def _trim_spaces(value: str) -> str:
    """Spark's `trim(str)`: leading and trailing spaces removed, nothing else,
    as DuckDB's `TRIM(x)` in the DuckDB loader (features.sources.load), so a
    tab-padded id or type stays as DuckDB keeps it. Ibis's `strip()` would
    also remove tabs and newlines, through Spark's trim with a character set,
    several times slower per row (it was about 5% of the feature job's CPU)."""


def _normalised_events(con: ibis.BaseBackend, raw: ir.Table) -> ir.Table:
    """The contract's types, as features.sources.load gives them on DuckDB: text
    ids and types without leading or trailing spaces, UTC timestamps without zone
    at whole seconds, float amounts."""
    cols = set(raw.columns)

    def number(name: str) -> ir.Value:
        if name not in cols:
            return ibis.null("float64")
        return raw[name].cast("float64")

    return raw.select(
        **{
            CUSTOMER_ID: _trim_spaces(raw[CUSTOMER_ID].cast("string")),
            EVENT_TIME: raw[EVENT_TIME].cast("timestamp").truncate("s"),
            EVENT_TYPE: _trim_spaces(raw[EVENT_TYPE].cast("string")),
            AMOUNT: number(AMOUNT),
            QUANTITY: number(QUANTITY),
        }
    )


def _check_files(source: Source | None, key: str) -> None:
    if isinstance(source, DatabaseSource):
        raise ContractError(
            [
                Problem(
                    key,
                    None,
                    f"{source} is a database source, read by the DuckDB engine "
                    "only; with engine.kind spark give Parquet or CSV files",
                )
            ]
        )


def _mapped(
    raw: ir.Table, columns: dict[str, str], constants: dict[str, str]
) -> ir.Table:
    """`raw` with the contract's names, as features.sources.contract.ColumnMap
    reads a source on DuckDB (a source column bearing a mapped contract name is
    left out; names compared without case, as both engines do)."""
    given = {*columns, *constants}
    taken = {n.lower() for n in given} | {c.lower() for c in columns.values()}
    kept = {c: raw[c] for c in raw.columns if c.lower() not in taken}
    mapped = {name: raw[column] for name, column in columns.items()}
    fixed = {name: ibis.literal(value) for name, value in constants.items()}
    return raw.select(**kept, **mapped, **fixed)


def _spark_events(
    spark, con: ibis.BaseBackend, sources: list[EventSource], fmt: str
) -> ir.Table:
    """Each events source read by Spark, mapped and normalised, then one log."""
    tables = []
    for i, entry in enumerate(sources):
        view = SPARK_EVENTS_VIEW if len(sources) == 1 else f"{SPARK_EVENTS_VIEW}_{i}"
        files = list_files(entry.source, fmt)
        _read(spark, files, fmt, str(entry)).createOrReplaceTempView(view)
        constants = {} if entry.event_type is None else {EVENT_TYPE: entry.event_type}
        raw = _mapped(con.table(view), dict(entry.columns), constants)
        tables.append(_normalised_events(con, raw))
    return tables[0] if len(tables) == 1 else ibis.union(*tables, distinct=False)


def load_spark(
    spark,
    events: EventsInput,
    customers: Source | None = None,
    *,
    fmt: str = "auto",
    as_of: datetime | None = None,
    validated: Dataset | None = None,
    columns: ColumnsConfig | None = None,
) -> SparkDataset:
    """Validate the files (DuckDB, as features.sources.load does), then read them on
    `spark` as Ibis tables of the contract's types. `validated` is the DuckDB
    dataset when the caller loaded it already. ContractError on bad input."""
    from features.sources.load import load

    sources = event_sources(events, columns)
    for i, entry in enumerate(sources):
        key = "data.events" if len(sources) == 1 else f"data.events.{i}"
        _check_files(entry.source, key)
    _check_files(customers, "data.customers")
    ds = validated or load(events, customers, fmt=fmt, as_of=as_of, columns=columns)
    if ds.subscriptions is not None:
        raise ContractError(
            [
                Problem(
                    "data.subscriptions",
                    None,
                    "subscriptions are read by the DuckDB engine only for now; "
                    "with engine.kind spark leave data.subscriptions unset",
                )
            ]
        )
    con = connect(spark)
    events_table = _spark_events(spark, con, sources, fmt)
    customers_table = None
    if customers is not None:
        _read(spark, ds.customers_files, fmt, "data.customers").createOrReplaceTempView(
            SPARK_CUSTOMERS_VIEW
        )
        raw = _mapped(
            con.table(SPARK_CUSTOMERS_VIEW),
            dict((columns or ColumnsConfig()).customers),
            {},
        )
        customers_table = raw.mutate(
            **{CUSTOMER_ID: _trim_spaces(raw[CUSTOMER_ID].cast("string"))}
        )
    log.info("Spark reads events from %s, customers from %s", events, customers)
    return SparkDataset(
        con, events_table, customers_table, ds.events_files, ds.customers_files
    )


__all__ = ["SparkDataset", "connect", "load_spark", "session"]
