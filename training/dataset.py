"""Training tables: features and labels at several cutoffs (training/backtest.py
splits them out of time).

On DuckDB the table is built in customer chunks (features.sources.chunks); on Spark the
same expression is written by Spark as Parquet part files, and read back here:
LightGBM trains on one machine from that table (README: Spark).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature

from core.atomic import atomic_write
from features.classic import fit_from_events
from features.columns import CUSTOMER_ID, CUTOFF, population_column
from features.definition import Catalogue, FeatureSpec, catalogue, features_at
from features.labels import LabelSpec, build_labels, data_end
from features.sources.chunks import read_chunked
from features.sources.load import Dataset
from features.sources.spark import SparkDataset

log = logging.getLogger(__name__)


@dataclass
class TrainingTable:
    """(customer, cutoff) rows in some listed target's population, with features,
    one population flag per listed target (`in_<target>`) and each listed
    target's label. A target is trained and tested on its own rows only
    (`population`)."""

    frame: pd.DataFrame
    catalogue: Catalogue
    data_end: datetime
    cutoffs: list[datetime]

    def population(self, target: str) -> TrainingTable:
        """The table of the rows in `target`'s population."""
        flag = population_column(target)
        if flag not in self.frame.columns:
            raise ValueError(
                f"{target}: the training table has no population flag {flag!r} "
                "(the target is not listed under targets:)"
            )
        rows = self.frame[self.frame[flag].to_numpy(dtype=bool)]
        return TrainingTable(
            rows.reset_index(drop=True), self.catalogue, self.data_end, self.cutoffs
        )

    def population_sizes(self, target: str) -> dict[datetime, tuple[int, int]]:
        """Per cutoff: rows in the target's population and positives among them
        (positives count only where the label is there)."""
        frame = self.population(target).frame
        out = {}
        for cutoff in self.cutoffs:
            rows = frame[frame[CUTOFF] == cutoff]
            out[cutoff] = (len(rows), int(rows[target].sum()))
        return out


# rows the logged dataset's schema is read from (dtypes decide it; reading every
# row of a large table would cost minutes, see as_mlflow_input)
SCHEMA_ROWS = 1000


class TableDataset(MetaDataset):
    """A training table as MLflow sees it: name, digest, source, schema and
    row count, without the rows (MetaDataset plus the profile PandasDataset
    would show)."""

    def __init__(
        self,
        source: DatasetSource,
        name: str,
        digest: str,
        frame: pd.DataFrame,
    ) -> None:
        self._profile = {"num_rows": len(frame), "num_elements": int(frame.size)}
        schema = infer_signature(frame.head(SCHEMA_ROWS)).inputs
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict[str, int]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def as_mlflow_input(
    table: TrainingTable,
    name: str,
    source: DatasetSource,
    lineage: dict[str, object],
) -> TableDataset:
    """`table` as an MLflow dataset input (`mlflow.log_input`), cheap on any size.

    MLflow's own `from_pandas` hashes the first 10,000 rows and infers the schema
    from every row (minutes on two million rows); here the digest hashes what the
    table is made of (`lineage`: the data fingerprint, feature set version,
    cutoffs, population) with its shape and columns, so the same inputs give the
    same digest, and the schema comes from the first rows' dtypes."""
    frame = table.frame
    described = {
        **{k: str(v) for k, v in lineage.items()},
        "cutoffs": [f"{c:%Y-%m-%d}" for c in table.cutoffs],
        "feature_set_version": table.catalogue.version(),
        "shape": list(frame.shape),
        "columns": [str(c) for c in frame.columns],
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    return TableDataset(source, name, digest[:16], frame)


def training_expr(
    events: ir.Table,
    customers: ir.Table | None,
    spec: FeatureSpec,
    labels: LabelSpec,
    cutoffs: list[datetime],
    subscriptions: ir.Table | None = None,
    classic: pd.DataFrame | None = None,
) -> ir.Table:
    """Features of the customers in some listed target's population at each
    cutoff (with the population flags) joined to their labels: one expression,
    for any engine. `classic`: the classic models' parameters fitted on every
    customer (features.classic), when `events` holds only some of them."""
    feats = features_at(events, cutoffs, spec, customers, subscriptions, classic)
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


def _complete_cutoffs(
    ds: Dataset | SparkDataset,
    cutoffs: list[datetime],
    complete_through: datetime | None,
):
    end = data_end(ds, complete_through)
    kept = [c for c in cutoffs if c <= end]
    if not kept:
        raise ValueError(
            f"no training cutoff falls on or before the data's end ({end})"
        )
    return kept, end


def build_training_table(
    ds: Dataset | SparkDataset,
    spec: FeatureSpec,
    labels: LabelSpec,
    cutoffs: list[datetime],
    *,
    parquet_dir: Path | None = None,
    complete_through: datetime | None = None,
) -> TrainingTable:
    """Features at every cutoff for the customers in some listed target's
    population then (flags `in_<target>` say which), joined to their labels.

    A label counts only where its window lies within the data (`data_end`:
    `complete_through`, the config's `data.as_of`, or the end of the last day with
    events). On Spark the table goes through Parquet: `parquet_dir` keeps it (for
    another trainer, or to look at), else a temporary folder does.
    """
    cutoffs, end = _complete_cutoffs(ds, cutoffs, complete_through)
    if isinstance(ds, SparkDataset):
        frame = _spark_frame(ds, spec, labels, cutoffs, parquet_dir)
    else:
        # fitted once on every customer: the chunks hold some of them each
        params = fit_from_events(ds.events, cutoffs, spec) if spec.classic else None
        frame = read_chunked(
            ds,
            lambda events: training_expr(
                events, ds.customers, spec, labels, cutoffs, ds.subscriptions, params
            ),
            cutoffs=len(cutoffs),
        ).to_pandas()
    frame = frame.sort_values([CUTOFF, CUSTOMER_ID], kind="stable").reset_index(
        drop=True
    )
    log.info("training table: %d rows over %d cutoffs", len(frame), len(cutoffs))
    return TrainingTable(frame, catalogue(spec, ds.customers), end, cutoffs)


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


SNAPSHOT_PREFIX = "training-"


@contextmanager
def snapshot_lock(folder: Path) -> Iterator[None]:
    """`folder/.lock`, waited for: `propensity forget` holds it while it rewrites
    the snapshots (core.atomic.exclusive takes the same lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_snapshot(
    frame: pd.DataFrame, folder: Path, training_id: str, suppressed: frozenset[str]
) -> Path:
    """The training table as `folder/training-<id>.parquet`, written beside and
    renamed into place, without customers on the suppression list as it stands
    now (they may have been forgotten while the table was built)."""
    folder = Path(folder)
    with snapshot_lock(folder):
        if suppressed:
            frame = frame[~frame[CUSTOMER_ID].isin(suppressed)]
        path = folder / f"{SNAPSHOT_PREFIX}{training_id}.parquet"
        table = pa.Table.from_pandas(frame, preserve_index=False)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    log.info("training snapshot %s: %d rows", path, len(frame))
    return path


def prune_snapshots(folder: Path, days: int, now: float | None = None) -> list[Path]:
    """Delete the snapshots written more than `days` days ago (by mtime)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    limit = (time.time() if now is None else now) - days * 86_400
    removed = []
    with snapshot_lock(folder):
        for path in sorted(folder.glob(f"{SNAPSHOT_PREFIX}*.parquet")):
            if path.stat().st_mtime < limit:
                path.unlink()
                removed.append(path)
    for path in removed:
        log.info("retention: deleted %s (older than %d days)", path, days)
    return removed
