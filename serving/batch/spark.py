"""Nightly scoring on Spark: the same output as serving.batch.score, computed by Spark.

1. features: the one definition at the as-of date, run by Spark through Ibis,
   written to scratch Parquet parts;
2. score: the champions (loaded from MLflow on the driver) broadcast to the
   Python workers; Spark tasks read the feature parts' row groups themselves
   (`score_files`: no rows through the JVM and Arrow) and apply them exactly
   as `Champions.predict_frame` applies them in process (`Encoding.to_matrix`,
   the booster or its blend, the calibration map), writing each target's raw
   and calibrated probabilities beside each part, row for row. `with_scores`
   does the same as one pandas UDF over a DataFrame;
3. drift: every feature's counts in its reference's bins, one Spark aggregation;
4. the driver takes deciles and writes the partition through
   `serving.batch.score.publish` from the feature parts and their scores:
   the same schema, reason codes, partitioning, atomic commit and online store
   as the embedded path.

The scores' own drift counts are taken on the driver, where the calibrated
scores are; they are three columns.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.atomic import scratch_dir
from core.config import ProjectConfig
from features.columns import CUSTOMER_ID, population_column
from features.definition import ELIGIBLE, FeatureSpec
from features.sources.spark import SparkDataset
from model.drift import Counts
from model.encoding import Encoding
from model.registry import RegisteredModel
from serving.batch.drift import DriftMonitor
from serving.batch.score import (
    SKIPPED_NO_EVENTS,
    SKIPPED_NOT_ELIGIBLE,
    ScoreResult,
    populations,
    publish,
    staging_dir,
)
from serving.scoring import Champions

log = logging.getLogger(__name__)

RAW_PREFIX = "_raw_"
# Columns binned per Spark aggregation: with all ~100 in one, the generated code
# passes the JVM's 64 KB method limit and Spark falls back to interpreting it.
DRIFT_COLUMNS_PER_PASS = 24


def raw_column(target: str) -> str:
    return f"{RAW_PREFIX}{target}"


def encoded_columns(df, encoding: Encoding) -> list:
    """Spark columns in the encoding's feature order, as `Encoding.to_matrix`
    builds them: doubles, categorical values as their vocabulary codes, unknown
    or missing as null (LightGBM's missing)."""
    from pyspark.sql import functions as F

    out = []
    for name in encoding.features:
        column = df[name]
        vocab = encoding.vocabularies.get(name)
        if vocab is None:
            out.append(column.cast("double").alias(name))
            continue
        text = column.cast("string")
        code = F.lit(None).cast("double")
        for i, value in reversed(list(enumerate(vocab))):
            code = F.when(text == F.lit(value), F.lit(float(i))).otherwise(code)
        out.append(code.alias(name))
    return out


SCORE_PREFIX = "_score_"
# rows per Arrow batch handed to the scoring UDF (Spark's default is 10,000):
# LightGBM's predict has a fixed cost per call, so fewer, larger batches
SCORE_BATCH_ROWS = 50_000
# the champions unpickled in this (worker) process, by a token made with their
# broadcast: each Python worker loads them once, whatever the number of tasks
# and batches it runs
_LOADED: dict[str, dict[str, RegisteredModel]] = {}


def score_column(target: str) -> str:
    return f"{SCORE_PREFIX}{target}"


def _loaded(broadcast, token: str) -> dict[str, RegisteredModel]:
    models = _LOADED.get(token)
    if models is None:
        models = _LOADED[token] = broadcast.value
    return models


def _scored_frame(
    models: dict[str, RegisteredModel], frame: pd.DataFrame, threads: int = 0
) -> pd.DataFrame:
    """Each target's raw and calibrated probability for `frame`'s rows, as
    `Champions.predict_frame` computes them (each model's `Encoding.to_matrix`,
    its booster or blend, its calibration), one matrix per distinct encoding."""
    built: list[tuple[Encoding, np.ndarray]] = []
    raw = {}
    for target, model in models.items():
        matrix = next((m for e, m in built if e == model.encoding), None)
        if matrix is None:
            matrix = model.encoding.to_matrix(frame)
            built.append((model.encoding, matrix))
        raw[target] = model.raw(matrix, threads)
    out = {}
    for target, model in models.items():
        out[raw_column(target)] = raw[target]
        out[score_column(target)] = model.calibrator.apply(raw[target])
    return pd.DataFrame(out)


def _score_batches(broadcast, token: str, features: list[str], batches):
    """The pandas UDF's body: each Arrow batch of feature columns scored as
    `Champions.predict_frame` scores a frame, through the model package."""
    models = _loaded(broadcast, token)
    for columns in batches:
        frame = pd.concat(
            [c.rename(n) for c, n in zip(columns, features, strict=True)], axis=1
        )
        yield _scored_frame(models, frame)


def with_scores(df, champions: Champions):
    """`df` with each champion's served probability before calibration in
    `_raw_<target>` (the booster's, or its blend's) and calibrated in
    `_score_<target>`: one pandas UDF over the features every champion reads
    (sent to Python once, as Arrow batches), the champions broadcast once and
    loaded once per Python worker; the same numbers as `Champions.predict_frame`
    in process."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import DoubleType, StructField, StructType

    spark = df.sparkSession
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", SCORE_BATCH_ROWS)
    features = champions.feature_names
    broadcast = spark.sparkContext.broadcast(dict(champions.models))
    token = uuid.uuid4().hex
    fields = []
    for target in champions.models:
        fields += [
            StructField(raw_column(target), DoubleType()),
            StructField(score_column(target), DoubleType()),
        ]
    schema = StructType(fields)

    def scores(batches):
        return _score_batches(broadcast, token, features, batches)

    # pandas_udf reads the UDF's kind from its hints: batches of a tuple of
    # Series in, DataFrames out (called once per partition, so per task)
    scores.__annotations__ = {
        "batches": Iterator[tuple[pd.Series, ...]],
        "return": Iterator[pd.DataFrame],
    }
    udf = pandas_udf(scores, schema)
    packed = "_propensity_scores"
    out = df.withColumn(packed, udf(*(F.col(f) for f in features)))
    return out.select(
        *df.columns, *(F.col(f"{packed}.{f.name}").alias(f.name) for f in fields)
    )


def score_files(
    spark, parts: list[Path], champions: Champions, out: Path
) -> list[Path]:
    """Score Parquet files of feature rows on Spark's Python workers, reading the
    files themselves: the (file, row group) units split into as many tasks as
    Spark has task slots, each unit's feature columns read with pyarrow and
    scored, writing each target's raw and
    calibrated probability (`_raw_<target>`, `_score_<target>`, as
    `with_scores` gives them) to its own Parquet file in `out`, the same rows
    in the same order. Returns the score files, one per entry of `parts`, in
    that order (several row groups' files are concatenated on the way back).

    The features never pass through the JVM (no rows to Arrow and back: that
    conversion took more CPU than the scoring itself); the executors must read
    `parts` and write `out` at the same paths as the driver, as the nightly's
    scratch parts already need. Each task's LightGBM uses `spark.task.cpus`
    threads (one by default), so the tasks running at once do not each start
    one OpenMP thread per core."""
    import pyarrow as pa

    out.mkdir(parents=True, exist_ok=True)
    groups = [
        (str(part), group)
        for part in parts
        for group in range(pq.ParquetFile(part).metadata.num_row_groups)
    ]
    units = [(n, path, group) for n, (path, group) in enumerate(groups)]
    features = champions.feature_names
    broadcast = spark.sparkContext.broadcast(dict(champions.models))
    token = uuid.uuid4().hex
    threads = int(spark.conf.get("spark.task.cpus", "1") or 1)
    target = str(out)
    columns = [c for t in champions.models for c in (raw_column(t), score_column(t))]

    def run(unit_iter):
        models = _loaded(broadcast, token)
        for n, path, group in unit_iter:
            table = pq.ParquetFile(path).read_row_group(group, columns=features)
            if table.num_rows:
                scored = _scored_frame(models, table.to_pandas(), threads)
            else:  # LightGBM refuses an empty matrix
                scored = pd.DataFrame({c: np.empty(0) for c in columns})
            pq.write_table(
                pa.Table.from_pandas(scored, preserve_index=False),
                f"{target}/{n:06d}.parquet",
            )
            yield n

    if units:
        # as many tasks as task slots: each task costs its scheduling and a
        # round trip to a Python worker, and the units are of like sizes
        slots = max(1, min(len(units), spark.sparkContext.defaultParallelism))
        rdd = spark.sparkContext.parallelize(units, slots)
        done = rdd.mapPartitions(run).collect()
        if sorted(done) != list(range(len(units))):
            raise RuntimeError(
                f"scoring returned units {done}, not 0..{len(units) - 1}"
            )
    # the units' files back to one score file per part (row groups in order)
    files: list[Path] = []
    for k, part in enumerate(parts):
        mine = [u for u in units if u[1] == str(part)]
        path = out / f"part-{k:06d}.parquet"
        if len(mine) == 1:
            (out / f"{mine[0][0]:06d}.parquet").rename(path)
        else:
            tables = [pq.read_table(out / f"{n:06d}.parquet") for n, _, _ in mine]
            schema = pa.schema([(c, pa.float64()) for c in columns])
            pq.write_table(
                pa.concat_tables(tables) if tables else schema.empty_table(), path
            )
            for n, _, _ in mine:
                (out / f"{n:06d}.parquet").unlink()
        files.append(path)
    return files


def spark_drift_counts(df, monitor: DriftMonitor, champions: Champions) -> None:
    """Add every monitored feature's bin counts over `df`'s rows in each
    target's population to `monitor`, in one Spark aggregation; each shared
    Counts (shared only by targets of one population) is fed once."""
    from pyspark.sql import functions as F

    unique: dict[int, tuple[Counts, object, str]] = {}
    for target, per_feature in monitor.features.items():
        encoding = champions.models[target].encoding
        by_name = dict(
            zip(encoding.features, encoded_columns(df, encoding), strict=True)
        )
        for name, counts in per_feature.items():
            if id(counts) not in unique and name in by_name:
                unique[id(counts)] = (counts, by_name[name], population_column(target))
    if not unique:
        return
    items = list(unique.values())
    entries = []
    for key, (counts, column, flag) in enumerate(items):
        ref = counts.reference
        missing = column.isNull() | F.isnan(column)
        index = sum(
            (F.when(column > F.lit(e), 1).otherwise(0) for e in ref.edges), F.lit(0)
        )
        bin_ = F.when(missing, F.lit(len(ref.edges) + 1)).otherwise(index)
        side = F.lit(0)
        if ref.low is not None and not ref.categorical:
            side = (
                F.when(missing, 0)
                .when(column < F.lit(ref.low), 1)
                .when(column > F.lit(ref.high), 2)
                .otherwise(0)
            )
        entry = F.struct(F.lit(key).alias("k"), bin_.alias("b"), side.alias("s"))
        # null outside the target's population: dropped after the explode
        entries.append(F.when(df[flag], entry))
    rows = []
    for start in range(0, len(entries), DRIFT_COLUMNS_PER_PASS):
        group = entries[start : start + DRIFT_COLUMNS_PER_PASS]
        rows += (
            df.select(F.explode(F.array(*group)).alias("e"))
            .filter(F.col("e").isNotNull())
            .groupBy("e.k", "e.b", "e.s")
            .count()
            .collect()
        )
    for key, bin_, side, n in rows:
        counts = items[key][0]
        counts.bins[bin_] += n
        if side == 1:
            counts.below += n
        elif side == 2:
            counts.above += n


def score_spark(
    config: ProjectConfig,
    ds: SparkDataset,
    champions: Champions,
    as_of: datetime,
    *,
    run_id: str = "",
    progress: bool | None = None,
    min_rows: int = 0,
) -> ScoreResult:
    """`serving.batch.score.score` on Spark; call it inside `writing(output)` with the
    MLflow tracking URI set (the models are read from the registry)."""
    started = time.perf_counter()
    spec = FeatureSpec.from_config(config)
    output = Path(config.scoring.output)
    spark = ds.spark
    monitor = DriftMonitor(
        {t: m.metadata.get("reference") for t, m in champions.models.items()},
        populations(spec, champions),
    )
    seconds: dict[str, float] = {}
    with scratch_dir(staging_dir(output), "spark") as scratch:
        t0 = time.perf_counter()
        features_dir = ds.to_parquet_dir(
            ds.build_features([as_of], spec, scratch / "stages", ds.customers),
            scratch / "f",
        )
        seconds["features"] = time.perf_counter() - t0
        frame = spark.read.parquet(str(features_dir))
        skipped = {SKIPPED_NO_EVENTS: _never_seen(ds, frame)}
        t0 = time.perf_counter()
        eligible = frame.filter(frame[ELIGIBLE])
        spark_drift_counts(eligible, monitor, champions)
        seconds["drift"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        parts = sorted(features_dir.glob("*.parquet"))
        scores = score_files(spark, parts, champions, scratch / "scores")
        raw, calibrated, not_eligible = _read_scores(parts, scores, champions.targets)
        for target, counts in monitor.scores.items():
            scores = calibrated[target]
            counts.add(scores[np.isfinite(scores)])
        seconds["score"] = time.perf_counter() - t0
        skipped[SKIPPED_NOT_ELIGIBLE] = not_eligible
        return publish(
            config,
            ds,
            champions,
            parts,
            calibrated,
            raw,
            as_of,
            run_id=run_id,
            progress=progress,
            min_rows=min_rows,
            monitor=monitor,
            skipped=skipped,
            seconds=seconds,
            started=started,
        )


def _read_scores(
    parts: list[Path], scores: list[Path], targets: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """The eligible rows' served raw and calibrated probabilities (as
    `score_files` wrote them, one score file per feature part, row for row), in
    the parts' order (the order the write pass reads; NaN where the target's
    population does not hold the row), and how many rows were not eligible."""
    raw: dict[str, list[np.ndarray]] = {t: [] for t in targets}
    calibrated: dict[str, list[np.ndarray]] = {t: [] for t in targets}
    not_eligible = 0
    flags = [population_column(t) for t in targets]
    columns = [c for t in targets for c in (raw_column(t), score_column(t))]
    for part, score in zip(parts, scores, strict=True):
        table = pq.read_table(part, columns=[ELIGIBLE, *flags]).to_pandas()
        values = pq.read_table(score, columns=columns).to_pandas()
        if len(values) != len(table):
            raise RuntimeError(
                f"{score}: {len(values)} scores for the {len(table)} rows of {part}"
            )
        keep = table[ELIGIBLE].to_numpy(dtype=bool)
        not_eligible += int((~keep).sum())
        for t in targets:
            held = table[population_column(t)].to_numpy(dtype=bool)
            for out, column in ((raw, raw_column(t)), (calibrated, score_column(t))):
                got = values[column].to_numpy(dtype=np.float64, na_value=np.nan)
                out[t].append(np.where(held, got, np.nan)[keep])

    def joined(values: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {t: np.concatenate(v or [np.empty(0)]) for t, v in values.items()}

    return joined(raw), joined(calibrated), not_eligible


def _never_seen(ds: SparkDataset, features) -> int:
    """Customers in the customers table without an event before as_of."""
    if ds.customers is None:
        return 0
    # no in-memory table in this expression, so its SQL runs as it is
    customers = ds.spark.sql(ds.con.compile(ds.customers.select(CUSTOMER_ID)))
    return int(
        customers.join(features.select(CUSTOMER_ID), CUSTOMER_ID, "left_anti")
        .distinct()
        .count()
    )


__all__ = [
    "encoded_columns",
    "score_files",
    "score_spark",
    "spark_drift_counts",
    "with_scores",
]
