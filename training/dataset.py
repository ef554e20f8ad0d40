"""Training tables: features and labels at several cutoffs, split out of time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis.expr.types as ir
import pandas as pd

from features.chunks import read_chunked
from features.columns import CUSTOMER_ID, CUTOFF, TARGETS
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
        feats = features_at(events, cutoffs, spec, ds.customers)
        labs = build_labels(events, feats.select(CUSTOMER_ID, CUTOFF), spec, labels)
        return feats.join(labs, [CUSTOMER_ID, CUTOFF])

    frame = read_chunked(ds, build, cutoffs=len(cutoffs)).to_pandas()
    frame = frame.sort_values([CUTOFF, CUSTOMER_ID], kind="stable").reset_index(
        drop=True
    )
    log.info("training table: %d rows over %d cutoffs", len(frame), len(cutoffs))
    return TrainingTable(frame, catalogue(spec, ds.customers), data_end, cutoffs)


@dataclass(frozen=True)
class Split:
    target: str
    train: pd.DataFrame
    valid: pd.DataFrame
    train_cutoffs: list[datetime]
    valid_cutoff: datetime


def out_of_time_split(table: TrainingTable, target: str, labels: LabelSpec) -> Split:
    """Validate on the latest cutoff whose horizon is complete; train on earlier cutoffs
    whose label windows end on or before it, so no training label sees past it."""
    assert target in TARGETS
    horizon = timedelta(days=labels.horizons[target])
    complete = [c for c in table.cutoffs if labels.complete(target, c, table.data_end)]
    if not complete:
        raise ValueError(
            f"{target}: no cutoff has a complete {horizon.days}-day horizon "
            f"before {table.data_end}"
        )
    valid_cutoff = max(complete)
    train_cutoffs = [c for c in complete if c + horizon <= valid_cutoff]
    if not train_cutoffs:
        raise ValueError(
            f"{target}: no training cutoff ends its {horizon.days}-day window by the "
            f"validation cutoff {valid_cutoff:%Y-%m-%d}; add earlier cutoffs"
        )
    cut = table.frame[CUTOFF]
    train = table.frame[cut.isin(train_cutoffs)]
    valid = table.frame[cut == valid_cutoff]
    for name, part in (("training", train), ("validation", valid)):
        if part[target].nunique() < 2:
            raise ValueError(
                f"{target}: the {name} rows hold a single class; cannot train"
            )
    return Split(target, train, valid, train_cutoffs, valid_cutoff)
