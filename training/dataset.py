"""Training tables: features and labels at several cutoffs (training/backtest.py
splits them out of time).

On DuckDB the table is built in customer chunks (features.chunks); on Spark the
same expression is written by Spark as Parquet part files, and read back here:
LightGBM trains on one machine from that table (README: Spark).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import ibis.expr.types as ir
import pandas as pd
import pyarrow.parquet as pq

from features.chunks import read_chunked
from features.columns import CUSTOMER_ID, CUTOFF
from features.definition import Catalogue, FeatureSpec, catalogue, features_at
from features.labels import LabelSpec, build_labels
from features.load import Dataset
from features.spark import SparkDataset

log = logging.getLogger(__name__)


@dataclass
class TrainingTable:
    """Eligible (customer, cutoff) rows with features and every target's label."""

    frame: pd.DataFrame
    catalogue: Catalogue
    data_end: datetime
    cutoffs: list[datetime]


def training_expr(
    events: ir.Table,
    customers: ir.Table | None,
    spec: FeatureSpec,
    labels: LabelSpec,
    cutoffs: list[datetime],
    subscriptions: ir.Table | None = None,
) -> ir.Table:
    """Features of the customers eligible at each cutoff joined to their labels:
    one expression, for any engine."""
    feats = features_at(events, cutoffs, spec, customers, subscriptions)
    pairs = feats.select(CUSTOMER_ID, CUTOFF)
    labs = build_labels(events, pairs, spec, labels, subscriptions)
    return feats.join(labs, [CUSTOMER_ID, CUTOFF])


def write_training_parquet(
    ds: SparkDataset,
    spec: FeatureSpec,
    labels: LabelSpec,
    cutoffs: list[datetime],
    out_dir: Path,
) -> Path:
    """The training table for `cutoffs`, written by Spark under `out_dir` as
    Parquet part files (replaced if present)."""
    expr = training_expr(ds.events, ds.customers, spec, labels, cutoffs)
    return ds.to_parquet_dir(expr, out_dir)


def _complete_cutoffs(ds: Dataset | SparkDataset, cutoffs: list[datetime]):
    _, data_end = ds.time_range()
    kept = [c for c in cutoffs if c <= data_end]
    if not kept:
        raise ValueError(
            f"no training cutoff falls on or before the last event ({data_end})"
        )
    return kept, data_end


def build_training_table(
    ds: Dataset | SparkDataset,
    spec: FeatureSpec,
    labels: LabelSpec,
    cutoffs: list[datetime],
    *,
    parquet_dir: Path | None = None,
) -> TrainingTable:
    """Features at every cutoff for customers eligible then, joined to their labels.

    On Spark the table goes through Parquet: `parquet_dir` keeps it (for another
    trainer, or to look at), else a temporary folder does.
    """
    cutoffs, data_end = _complete_cutoffs(ds, cutoffs)
    if isinstance(ds, SparkDataset):
        frame = _spark_frame(ds, spec, labels, cutoffs, parquet_dir)
    else:
        frame = read_chunked(
            ds,
            lambda events: training_expr(
                events, ds.customers, spec, labels, cutoffs, ds.subscriptions
            ),
            cutoffs=len(cutoffs),
        ).to_pandas()
    frame = frame.sort_values([CUTOFF, CUSTOMER_ID], kind="stable").reset_index(
        drop=True
    )
    log.info("training table: %d rows over %d cutoffs", len(frame), len(cutoffs))
    return TrainingTable(frame, catalogue(spec, ds.customers), data_end, cutoffs)


def _spark_frame(
    ds: SparkDataset,
    spec: FeatureSpec,
    labels: LabelSpec,
    cutoffs: list[datetime],
    parquet_dir: Path | None,
) -> pd.DataFrame:
    if parquet_dir is not None:
        out = write_training_parquet(ds, spec, labels, cutoffs, Path(parquet_dir))
        return pq.read_table(out).to_pandas()
    with tempfile.TemporaryDirectory(prefix="propensity-training-") as tmp:
        out = write_training_parquet(ds, spec, labels, cutoffs, Path(tmp) / "table")
        return pq.read_table(out).to_pandas()
