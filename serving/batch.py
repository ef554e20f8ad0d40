"""Nightly scoring: every eligible customer at an as-of date, written atomically.

Output: Parquet under `<output>/as_of=YYYY-MM-DD/` with one row per customer: the
three probabilities, each model's version, the feature-set version and
`scored_at`; `as_of` is the partition key (Hive/Spark convention: it lives in the
path, and every dataset reader - DuckDB, Spark, pyarrow - returns it as a
column). A rerun for the same date replaces the folder whole; a failed run leaves
every earlier output as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.chunks import read_chunked
from features.columns import AS_OF, CUSTOMER_ID, CUTOFF, SCORED_AT, TARGETS
from features.config import ProjectConfig
from features.definition import FeatureSpec, features_at
from features.load import Dataset
from serving import online_store
from serving.atomic import publish_dir
from serving.predictor import Champions

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
FEATURE_SET_VERSION = "feature_set_version"


def version_column(target: str) -> str:
    return f"{target}_model_version"


def partition_dir(output: Path, as_of: datetime) -> Path:
    return Path(output) / f"{AS_OF}={as_of:%Y-%m-%d}"


@dataclass(frozen=True)
class ScoreResult:
    path: Path
    rows: int
    as_of: datetime


def default_as_of(ds: Dataset) -> datetime:
    """Midnight after the last event's day, so every loaded event counts."""
    _, last = ds.time_range()
    return datetime(last.year, last.month, last.day) + timedelta(days=1)


def score(
    config: ProjectConfig,
    ds: Dataset,
    champions: Champions,
    as_of: datetime,
    *,
    progress: bool | None = None,
) -> ScoreResult:
    """Features at `as_of` (events strictly before it), scored, published atomically."""
    spec = FeatureSpec.from_config(config)
    feats = read_chunked(
        ds, lambda events: features_at(events, [as_of], spec, ds.customers)
    )
    frame = feats.sort_by(CUSTOMER_ID).to_pandas()
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    target_dir = partition_dir(config.scoring.output, as_of)
    store = _store_writer(config, frame, champions, as_of, scored_at)
    with publish_dir(target_dir) as tmp:
        path = tmp / "part-0.parquet"
        writer = None
        try:
            bar = tqdm(
                total=len(frame),
                unit="customers",
                disable=None if progress is None else not progress,
            )
            for start in range(0, max(len(frame), 1), CHUNK_ROWS):
                chunk = frame.iloc[start : start + CHUNK_ROWS]
                probs = _predict(chunk, champions)
                table = score_table(chunk, champions, scored_at, probs)
                if store is not None:
                    store.append(chunk, probs, scored_at)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
                bar.update(len(chunk))
            bar.close()
        except BaseException:
            if store is not None:
                store.abort()
            raise
        finally:
            if writer is not None:
                writer.close()
    if store is not None:
        store.commit()
    log.info(
        "scored %d customers as of %s into %s",
        len(frame),
        f"{as_of:%Y-%m-%d}",
        target_dir,
    )
    return ScoreResult(target_dir, len(frame), as_of)


def _store_writer(
    config: ProjectConfig,
    frame: pd.DataFrame,
    champions: Champions,
    as_of: datetime,
    scored_at: datetime,
) -> online_store.SqliteStoreWriter | None:
    """A writer of the online store, unless it already holds a later date (a
    backfill of an old date must not replace the latest features)."""
    path = config.online_store.path
    day = f"{as_of:%Y-%m-%d}"
    current = online_store.stored_as_of(path)
    if current is not None and current > day:
        log.info(
            "online store %s holds %s, later than %s: left as it is", path, current, day
        )
        return None
    features = [c for c in frame.columns if c not in (CUSTOMER_ID, CUTOFF)]
    categorical = champions.categorical | {
        c for c in features if not pd.api.types.is_numeric_dtype(frame[c])
    }
    meta = online_store.StoreMeta(
        as_of=day,
        feature_set_version=champions.feature_set_version,
        written_at=scored_at.isoformat(),
        run_id=None,
        features=tuple(features),
        categorical=frozenset(categorical),
        model_versions=champions.versions,
    )
    return online_store.SqliteStoreWriter(path, meta)


def _predict(chunk: pd.DataFrame, champions: Champions) -> dict[str, np.ndarray]:
    if not len(chunk):
        return {t: np.empty(0) for t in TARGETS}
    return champions.predict_frame(chunk)


def score_table(
    chunk: pd.DataFrame,
    champions: Champions,
    scored_at: datetime,
    probs: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """One output table for a frame of features: probabilities (computed here
    unless given) and provenance."""
    if probs is None:
        probs = _predict(chunk, champions)
    n = len(chunk)
    columns: dict[str, pa.Array] = {
        CUSTOMER_ID: pa.array(chunk[CUSTOMER_ID].astype(str), pa.string())
    }
    for target in TARGETS:
        columns[target] = pa.array(probs[target], pa.float64())
    for target in TARGETS:
        columns[version_column(target)] = pa.array(
            [champions.versions[target]] * n, pa.string()
        )
    columns[FEATURE_SET_VERSION] = pa.array(
        [champions.feature_set_version] * n, pa.string()
    )
    columns[SCORED_AT] = pa.array([scored_at] * n, pa.timestamp("us"))
    return pa.table(columns)
