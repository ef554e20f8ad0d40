"""Nightly scoring on Spark: the same output as serving.batch.score, computed by Spark.

1. features: the one definition at the as-of date, run by Spark through Ibis;
2. score: each champion's model, as registered in MLflow, applied by
   `mlflow.pyfunc.spark_udf` to the features encoded in Spark exactly as
   `Encoding.to_matrix` encodes them (feature order, categorical codes, unknown
   as missing); the booster's probabilities come back as columns;
3. drift: every feature's counts in its reference's bins, one Spark aggregation;
4. Spark writes features and probabilities to scratch Parquet parts; the driver
   calibrates (the calibration map is a few numbers), takes deciles and writes
   the partition through `serving.batch.score.publish`: the same schema, reason codes,
   partitioning, atomic commit and online store as the embedded path.

The scores' own drift counts are taken on the driver, where the calibrated
scores are; they are three columns.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from core.atomic import scratch_dir
from core.config import ProjectConfig
from features.columns import CUSTOMER_ID, population_column
from features.definition import ELIGIBLE, FeatureSpec, build_features
from features.sources.spark import SparkDataset
from model.blend import blend_raw
from model.drift import Counts
from model.encoding import Encoding
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


def model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def with_scores(df, models: dict[str, tuple[str, Encoding]]):
    """`df` with each target's booster probability in `_raw_<target>`: the MLflow
    model at its URI (`models:/NAME/VERSION` needs the tracking URI set, or a
    local model folder) applied by spark_udf to the features in its encoding."""
    import mlflow.pyfunc

    for target, (uri, encoding) in models.items():
        udf = mlflow.pyfunc.spark_udf(
            df.sparkSession, uri, result_type="double", env_manager="local"
        )
        df = df.withColumn(raw_column(target), udf(*encoded_columns(df, encoding)))
    return df


def champion_models(champions: Champions) -> dict[str, tuple[str, Encoding]]:
    """Each target's registered champion: its URI and encoding."""
    return {
        t: (model_uri(m.name, m.version), m.encoding)
        for t, m in champions.models.items()
    }


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
            build_features(ds.events, [as_of], spec, ds.customers), scratch / "f"
        )
        seconds["features"] = time.perf_counter() - t0
        frame = spark.read.parquet(str(features_dir))
        skipped = {SKIPPED_NO_EVENTS: _never_seen(ds, frame)}
        t0 = time.perf_counter()
        eligible = frame.filter(frame[ELIGIBLE])
        spark_drift_counts(eligible, monitor, champions)
        seconds["drift"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored_dir = scratch / "scored"
        with_scores(frame, champion_models(champions)).write.parquet(str(scored_dir))
        parts = sorted(scored_dir.glob("*.parquet"))
        raw, not_eligible = _raw_scores(parts, champions.targets, champions)
        calibrated = {}
        for t in champions.targets:
            calibrated[t] = np.full(len(raw[t]), np.nan)
            held = np.isfinite(raw[t])
            calibrated[t][held] = champions.models[t].calibrator.apply(raw[t][held])
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


def _raw_scores(
    parts: list[Path], targets: tuple[str, ...], champions: Champions | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """The eligible rows' served raw probabilities (the booster's, through a
    champion's blend when it has one: model.blend), in the parts' order (the
    order the write pass reads; NaN where the target's population does not hold
    the row), and how many rows were not eligible."""
    raw: dict[str, list[np.ndarray]] = {t: [] for t in targets}
    not_eligible = 0
    flags = [population_column(t) for t in targets]
    columns = [ELIGIBLE, *flags, *(raw_column(t) for t in targets)]
    blended = {
        t: champions.models[t]
        for t in targets
        if champions is not None and champions.models[t].blend is not None
    }
    for model in blended.values():
        columns += [f for f in model.encoding.features if f not in columns]
    for part in parts:
        table = pq.read_table(part, columns=columns).to_pandas()
        keep = table[ELIGIBLE].to_numpy(dtype=bool)
        not_eligible += int((~keep).sum())
        for t in targets:
            values = table[raw_column(t)].to_numpy(dtype=np.float64, na_value=np.nan)
            if t in blended:
                model = blended[t]
                values = blend_raw(model.blend, values, model.encoding.to_matrix(table))
            held = table[population_column(t)].to_numpy(dtype=bool)
            raw[t].append(np.where(held, values, np.nan)[keep])
    return {t: np.concatenate(v or [np.empty(0)]) for t, v in raw.items()}, not_eligible


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
    "champion_models",
    "encoded_columns",
    "score_spark",
    "spark_drift_counts",
    "with_scores",
]
