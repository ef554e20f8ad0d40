"""Training tables: features and labels at several cutoffs (training/backtest.py
splits them out of time)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import ibis.expr.types as ir
import pandas as pd

from features.chunks import read_chunked
from features.columns import CUSTOMER_ID, CUTOFF
from features.definition import Catalogue, FeatureSpec, catalogue, features_at
from features.labels import LabelSpec, build_labels
from features.load import Dataset

log = logging.getLogger(__name__)


@dataclass
class TrainingTable:
    """Eligible (customer, cutoff) rows with features and every target's label."""

    frame: pd.DataFrame
    catalogue: Catalogue
    data_end: datetime
    cutoffs: list[datetime]


def build_training_table(
    ds: Dataset, spec: FeatureSpec, labels: LabelSpec, cutoffs: list[datetime]
) -> TrainingTable:
    """Features at every cutoff for customers eligible then, joined to their labels."""
    _, data_end = ds.time_range()
    cutoffs = [c for c in cutoffs if c <= data_end]
    if not cutoffs:
        raise ValueError(
            f"no training cutoff falls on or before the last event ({data_end})"
        )

    def build(events: ir.Table) -> ir.Table:
        feats = features_at(events, cutoffs, spec, ds.customers, ds.subscriptions)
        pairs = feats.select(CUSTOMER_ID, CUTOFF)
        labs = build_labels(events, pairs, spec, labels, ds.subscriptions)
        return feats.join(labs, [CUSTOMER_ID, CUTOFF])

    frame = read_chunked(ds, build, cutoffs=len(cutoffs)).to_pandas()
    frame = frame.sort_values([CUTOFF, CUSTOMER_ID], kind="stable").reset_index(
        drop=True
    )
    log.info("training table: %d rows over %d cutoffs", len(frame), len(cutoffs))
    return TrainingTable(frame, catalogue(spec, ds.customers), data_end, cutoffs)
