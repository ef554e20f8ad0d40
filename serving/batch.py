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
from features.columns import AS_OF, CUSTOMER_ID, SCORED_AT, TARGETS
from features.config import ProjectConfig
from features.definition import FeatureSpec, features_at
from features.load import Dataset
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
                table = score_table(chunk, champions, scored_at)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
                bar.update(len(chunk))
            bar.close()
        finally:
            if writer is not None:
                writer.close()
    log.info(
        "scored %d customers as of %s into %s",
        len(frame),
        f"{as_of:%Y-%m-%d}",
        target_dir,
    )
    return ScoreResult(target_dir, len(frame), as_of)


def score_table(
    chunk: pd.DataFrame, champions: Champions, scored_at: datetime
) -> pa.Table:
    """One output table for a frame of features: probabilities and provenance."""
    probs = (
        champions.predict_frame(chunk)
        if len(chunk)
        else {t: np.empty(0) for t in TARGETS}
    )
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
