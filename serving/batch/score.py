"""Nightly scoring: every customer in some served target's population at an as-of
date, streamed, published atomically.

Output: Parquet under `<output>/as_of=YYYY-MM-DD/part-0.parquet`, one row per
customer in some served target's population (in no particular order), with
columns for the served targets only (those the config lists): the calibrated
probability per target (null where the target's population does not hold the
customer: churn's holds only the active, not yet churned; see
`FeatureSpec.population_name`), a decile per target (among the customers it
scored), each champion's name and version, the feature-set version,
`scored_at`, the scoring run's id and, for customers in a target's top decile,
that target's reason codes (JSON). The file's schema metadata `populations`
names each target's population. `as_of` is the partition key (Hive/Spark
convention: it lives in the path, and DuckDB, Spark and pyarrow return it as a
column). A rerun for the same date replaces the folder whole; a failure or a kill
at any moment leaves every earlier output as it was (core.atomic).

Memory stays bounded by streaming:
1. features: the engine writes them chunk by chunk (features.sources.chunks, customer
   chunks sized to DuckDB's memory limit) into a hidden scratch folder;
2. score: the parts are read back in batches of CHUNK_ROWS rows; only the
   probabilities (calibrated, and the booster's own for ranking) stay in memory,
   8 bytes per customer per target each; drift counts are taken on the way;
3. deciles from those arrays;
4. write: the parts are read again batch by batch, reason codes computed for the
   top-decile rows only, and each batch appended to the output file.

Deciles rank the booster's uncalibrated probability (the calibration map is
monotone, so this is the calibrated order, with an isotonic map's flat steps
broken by the finer score): decile = 1 + floor(10 * h / n), where h is the number
of customers with a strictly higher score and n the customers scored. Decile 1
holds the highest scores; tied customers share the better decile.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import clean_stale, exclusive, publish_dir, scratch_dir
from core.config import ProjectConfig
from features.columns import (
    AS_OF,
    CUSTOMER_ID,
    CUTOFF,
    FEATURE_SET_VERSION,
    RUN_ID,
    SCORED_AT,
    TARGETS,
    decile_column,
    model_column,
    population_column,
    reasons_column,
    version_column,
)
from features.definition import ELIGIBLE, FeatureSpec, catalogue
from features.sources.load import CUSTOMERS_VIEW, Dataset
from model.encoding import Encoding
from serving import online_store
from serving.batch.drift import DriftMonitor
from serving.batch.incremental import feature_parts
from serving.batch.progress import Progress
from serving.reasons import Reason, reasons
from serving.scoring import Champions

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
DECILES = 10
PART_FILE = "part-0.parquet"
# Debugging and testing a kill mid-write: sleep this many seconds after the first
# batch is written to the temporary output (never set in production).
PAUSE_ENV = "PROPENSITY_SCORE_PAUSE_AFTER_FIRST_WRITE"
SKIPPED_NOT_ELIGIBLE = "not_eligible"
SKIPPED_NO_EVENTS = "no_events_before_as_of"

__all__ = [
    "CHUNK_ROWS",
    "FEATURE_SET_VERSION",
    "ScoreResult",
    "deciles",
    "default_as_of",
    "output_schema",
    "partition_dir",
    "publish",
    "score",
    "staging_dir",
    "version_column",
    "writing",
]


def partition_dir(output: Path, as_of: datetime) -> Path:
    return Path(output) / f"{AS_OF}={as_of:%Y-%m-%d}"


@contextmanager
def writing(output: Path) -> Iterator[None]:
    """One writer at a time for an output folder (core.atomic.Busy otherwise),
    and a clean start: what a killed run left in the staging folder is removed.
    Hold it around `score` and whatever else the run publishes."""
    staging = staging_dir(output)
    with exclusive(staging):
        clean_stale(staging)
        yield


def staging_dir(output: Path) -> Path:
    """`.<output>-staging` beside the output folder (same file system, outside
    the dataset's tree): the lock, the scratch features and the folders being
    written, where no reader's glob of the output can see them."""
    output = Path(output).absolute()
    return output.parent / f".{output.name}-staging"


POPULATIONS_KEY = b"populations"


def output_schema(
    targets: tuple[str, ...] = TARGETS, populations: dict[str, str] | None = None
) -> pa.Schema:
    """The columns of a scores file for the served `targets`, in order; with
    `populations` (target -> population name) in the schema's metadata."""
    fields = [pa.field(CUSTOMER_ID, pa.string())]
    fields += [pa.field(t, pa.float64()) for t in targets]
    fields += [pa.field(decile_column(t), pa.int8()) for t in targets]
    for t in targets:
        fields += [
            pa.field(model_column(t), pa.string()),
            pa.field(version_column(t), pa.string()),
        ]
    fields += [
        pa.field(FEATURE_SET_VERSION, pa.string()),
        pa.field(SCORED_AT, pa.timestamp("us")),
        pa.field(RUN_ID, pa.string()),
    ]
    fields += [pa.field(reasons_column(t), pa.string()) for t in targets]
    metadata = None
    if populations is not None:
        metadata = {POPULATIONS_KEY: json.dumps(populations).encode()}
    return pa.schema(fields, metadata=metadata)


@dataclass
class ScoreResult:
    path: Path
    rows: int
    as_of: datetime
    scored_at: datetime
    # calibrated probabilities per target, in output order (NaN: outside the
    # target's population)
    scores: dict[str, np.ndarray]
    # why customers known before as_of got no row: reason -> count
    skipped: dict[str, int]
    # seconds per step: features, score, drift, reasons, write, total
    seconds: dict[str, float]
    # rows explained (top decile, summed over targets)
    reasons_rows: int
    drift: DriftMonitor
    # target -> the name of the population its scores belong to
    populations: dict[str, str] = field(default_factory=dict)
    # the online store: why it was not updated (unreachable, failed while being
    # written or swapped in), None when it was or when it was held back
    store_error: str | None = None
    # the online store was held back: fewer rows than `min_rows` (too few)
    store_held: bool = False
    # what became of the online store: updated, held back (too few), not
    # updated (store_error), kept (it holds a later date: a backfill)
    store: str = "updated"
    # the feature step: mode (incremental, rebuilt, full), reason, events read
    # (serving.batch.incremental.feature_parts)
    features: dict = field(default_factory=dict)

    def scored(self) -> dict[str, int]:
        """Customers scored per target (in its population)."""
        return {t: int(np.isfinite(v).sum()) for t, v in self.scores.items()}


def default_as_of(ds: Dataset) -> datetime:
    """Midnight after the last event's day, so every loaded event counts."""
    _, last = ds.time_range()
    return datetime(last.year, last.month, last.day) + timedelta(days=1)


def deciles(scores: np.ndarray, n: int = DECILES) -> np.ndarray:
    """1 + floor(n * h / len) per score, h = how many scores are strictly higher:
    1 is the highest tenth; equal scores share the better decile. NaN scores
    (outside the target's population) get 0 and are not counted in `len`."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros(scores.size, dtype=np.int8)
    scored = np.isfinite(scores)
    values = scores[scored]
    if values.size == 0:
        return out
    ordered = np.sort(values)
    higher = values.size - np.searchsorted(ordered, values, side="right")
    out[scored] = (1 + (n * higher) // values.size).astype(np.int8)
    return out


@dataclass
class _Scored:
    """What the score pass keeps: per target the calibrated and the raw
    probabilities of every eligible customer, in read order (NaN outside the
    target's population)."""

    calibrated: dict[str, list[np.ndarray]] = field(default_factory=dict)
    raw: dict[str, list[np.ndarray]] = field(default_factory=dict)
    not_eligible: int = 0
    seconds: float = 0.0
    drift_seconds: float = 0.0

    def joined(
        self, which: dict[str, list[np.ndarray]], targets: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        return {t: np.concatenate(which.get(t) or [np.empty(0)]) for t in targets}


def score(
    config: ProjectConfig,
    ds: Dataset,
    champions: Champions,
    as_of: datetime,
    *,
    run_id: str = "",
    progress: bool | None = None,
    min_rows: int = 0,
    full: bool = False,
) -> ScoreResult:
    """Features at `as_of` (events strictly before it), scored, published
    atomically under `config.scoring.output`; call it inside
    `writing(config.scoring.output)`. With fewer than `min_rows` rows the
    Parquet output is published but the online store is left as it is.

    The features come from the incremental feature state beside the scores
    (serving.batch.incremental: only the events after its watermark are read),
    or from a rebuild of it (`full`, or when it cannot be advanced)."""
    started = time.perf_counter()
    spec = FeatureSpec.from_config(config)
    output = Path(config.scoring.output)
    monitor = DriftMonitor(
        {t: m.metadata.get("reference") for t, m in champions.models.items()},
        populations(spec, champions),
    )
    seconds: dict[str, float] = {}
    staging = staging_dir(output)
    with scratch_dir(staging, "features") as scratch:
        t0 = time.perf_counter()
        parts, features = feature_parts(config, ds, as_of, scratch, full=full)
        seconds["features"] = time.perf_counter() - t0
        skipped = {SKIPPED_NO_EVENTS: _never_seen(ds, parts)}
        scored = _score_pass(parts, champions, monitor, progress)
        skipped[SKIPPED_NOT_ELIGIBLE] = scored.not_eligible
        seconds["score"], seconds["drift"] = scored.seconds, scored.drift_seconds
        result = publish(
            config,
            ds,
            champions,
            parts,
            scored.joined(scored.calibrated, champions.targets),
            scored.joined(scored.raw, champions.targets),
            as_of,
            run_id=run_id,
            progress=progress,
            min_rows=min_rows,
            monitor=monitor,
            skipped=skipped,
            seconds=seconds,
            started=started,
        )
        result.features = features
        return result


def populations(spec: FeatureSpec, champions: Champions) -> dict[str, str]:
    """Each served target's population name (`FeatureSpec.population_name`)."""
    return {t: spec.population_name(t) for t in champions.targets}


def publish(
    config: ProjectConfig,
    ds: Dataset,
    champions: Champions,
    parts: list[Path],
    calibrated: dict[str, np.ndarray],
    raw: dict[str, np.ndarray],
    as_of: datetime,
    *,
    run_id: str,
    progress: bool | None,
    monitor: DriftMonitor,
    min_rows: int = 0,
    skipped: dict[str, int],
    seconds: dict[str, float],
    started: float,
) -> ScoreResult:
    """Deciles of the `raw` probabilities, then the write pass over the feature
    `parts` (eligible rows in the order of `calibrated` and `raw`), published
    atomically as the as-of partition, then the online store committed. Any
    engine's scores end here, so the output is the same whichever computed them.
    Columns of the parts whose name starts with `_` are the engine's own (not
    features) and are left out.

    The online store never stops the Parquet output: when it cannot be opened,
    written or swapped in, it is left as it was (the previous night's serves)
    and `store_error` says why. With fewer than `min_rows` rows it is not
    written at all (`store_held`)."""
    output = Path(config.scoring.output)
    target_dir = partition_dir(output, as_of)
    ranks = {t: deciles(r) for t, r in raw.items()}
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    named = populations(FeatureSpec.from_config(config), champions)
    writer = _Writer(champions, config, ds, calibrated, ranks, scored_at, run_id)
    writer.populations = named
    rows = len(next(iter(calibrated.values())))
    held = rows < min_rows
    store = "held back" if held else "updated"
    if not held:
        try:
            writer.store = _store_writer(
                config, parts, champions, as_of, scored_at, run_id
            )
        except Exception as exc:  # noqa: BLE001 - any store fault: Parquet first
            writer.store_failed("opened", exc)
        if writer.store is None and writer.store_error is None:
            store = "kept: it holds a later date"
    t0 = time.perf_counter()
    try:
        with publish_dir(target_dir, staging_dir(output)) as tmp:
            writer.write(parts, tmp / PART_FILE, progress)
    except BaseException:
        writer.abort_store()
        raise
    if writer.store is not None:  # after the Parquet output is published
        try:
            writer.store.commit()
        except Exception as exc:  # noqa: BLE001 - the Parquet output stands
            writer.store_failed("swapped in", exc)
    if writer.store_error is not None:
        store = "not updated"
    seconds["write"] = time.perf_counter() - t0 - writer.reasons_seconds
    seconds["reasons"] = writer.reasons_seconds
    seconds["total"] = time.perf_counter() - started
    log.info(
        "scored %d customers as of %s into %s (skipped: %s)",
        rows,
        f"{as_of:%Y-%m-%d}",
        target_dir,
        ", ".join(f"{k} {v}" for k, v in skipped.items()),
    )
    return ScoreResult(
        target_dir,
        rows,
        as_of,
        scored_at,
        calibrated,
        skipped,
        seconds,
        writer.reasons_rows,
        monitor,
        named,
        store_error=writer.store_error,
        store_held=held,
        store=store,
    )


def _store_writer(
    config: ProjectConfig,
    parts: list[Path],
    champions: Champions,
    as_of: datetime,
    scored_at: datetime,
    run_id: str,
) -> online_store.StoreWriter | None:
    """A writer of the online store, unless it already holds a later date (a
    backfill of an old date must not replace the latest features)."""
    day = f"{as_of:%Y-%m-%d}"
    current = online_store.configured_as_of(config.online_store)
    if current is not None and current > day:
        log.info(
            "the online store holds %s, later than %s: left as it is", current, day
        )
        return None
    empty = (
        pq.read_schema(parts[0]).empty_table().to_pandas()
        if parts
        else pd.DataFrame(columns=[CUSTOMER_ID])
    )
    features = [
        c
        for c in empty.columns
        if c not in (CUSTOMER_ID, CUTOFF, ELIGIBLE)
        and not c.startswith("_")
        and c not in {population_column(t) for t in TARGETS}
    ]
    categorical = champions.categorical | {
        c for c in features if not pd.api.types.is_numeric_dtype(empty[c])
    }
    meta = online_store.StoreMeta(
        as_of=day,
        feature_set_version=champions.feature_set_version,
        written_at=scored_at.isoformat(),
        run_id=run_id or None,
        features=tuple(features),
        categorical=frozenset(categorical),
        model_versions=champions.versions,
    )
    return online_store.open_writer(config.online_store, meta)


def _batches(parts: list[Path]) -> Iterator[pd.DataFrame]:
    """The eligible and the other rows of the feature parts, CHUNK_ROWS at a time,
    always in the same order."""
    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()


def _rows(parts: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


def _never_seen(ds: Dataset, parts: list[Path]) -> int:
    """Customers in the customers table without an event before as_of."""
    if ds.customers is None or not parts:
        return 0
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
    # fetchall, not fetchone: a result left half-read on the connection blocks
    # the next statement (registering a table) on DuckDB 2.0
    ((count,),) = ds.duckdb.execute(
        f"SELECT count(DISTINCT c.{CUSTOMER_ID}) FROM {CUSTOMERS_VIEW} c ANTI JOIN "
        f"read_parquet([{files}]) f ON c.{CUSTOMER_ID} = f.{CUSTOMER_ID}"
    ).fetchall()
    return int(count)


def _score_pass(
    parts: list[Path],
    champions: Champions,
    monitor: DriftMonitor,
    bar: bool | None,
) -> _Scored:
    out = _Scored()
    progress = Progress("score", _rows(parts), "customers", bar)
    for frame in _batches(parts):
        eligible = frame[frame[ELIGIBLE]]
        out.not_eligible += len(frame) - len(eligible)
        counted: set[int] = set()
        for encoding, targets in _by_encoding(champions):
            t0 = time.perf_counter()
            matrix = encoding.to_matrix(eligible)
            inside: dict[str, np.ndarray] = {}
            for target in targets:
                model = champions.models[target]
                # each target scores the rows its population holds; NaN elsewhere
                held = eligible[population_column(target)].to_numpy(dtype=bool)
                rows = matrix if held.all() else matrix[held]
                raw = np.full(len(eligible), np.nan)
                calibrated = raw.copy()
                raw[held] = model.raw(rows)
                calibrated[held] = model.calibrator.apply(raw[held])
                out.raw.setdefault(target, []).append(raw)
                out.calibrated.setdefault(target, []).append(calibrated)
                inside[target] = held
            out.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            for target in targets:
                held = inside[target]
                monitor.add(
                    target,
                    encoding.features,
                    matrix if held.all() else matrix[held],
                    out.calibrated[target][-1][held],
                    counted,
                )
            out.drift_seconds += time.perf_counter() - t0
        progress.update(len(frame))
    progress.close()
    return out


def _by_encoding(champions: Champions) -> list[tuple[Encoding, list[str]]]:
    """Targets grouped by their champion's encoding (usually one group)."""
    groups: list[tuple[Encoding, list[str]]] = []
    for target in champions.targets:
        encoding = champions.models[target].encoding
        group = next((g for e, g in groups if e == encoding), None)
        if group is None:
            groups.append((encoding, group := []))
        group.append(target)
    return groups


class _Writer:
    """The write pass: each batch's rows with provenance and reason codes."""

    def __init__(
        self,
        champions: Champions,
        config: ProjectConfig,
        ds: Dataset,
        calibrated: dict[str, np.ndarray],
        ranks: dict[str, np.ndarray],
        scored_at: datetime,
        run_id: str,
    ) -> None:
        self.champions, self.calibrated, self.ranks = champions, calibrated, ranks
        self.scored_at, self.run_id = scored_at, run_id
        self.config = config
        self.k = config.explain.top_k
        self.exclude = frozenset(config.explain.non_actionable)
        self.method = config.scoring.reason_method
        spec = FeatureSpec.from_config(config)
        self.descriptions = {
            f.name: f.description for f in catalogue(spec, ds.customers).features
        }
        self.reasons_seconds = 0.0
        self.reasons_rows = 0
        self.populations: dict[str, str] = {}
        # the online store's writer, fed the same eligible batches (or None)
        self.store: online_store.StoreWriter | None = None
        self.store_error: str | None = None

    def store_failed(self, step: str, exc: Exception) -> None:
        """The online store failed: say so, drop it (what it built is removed),
        and carry on with the Parquet output."""
        where = config_place(self.config)
        self.store_error = (
            f"online store {where} could not be {step}: {type(exc).__name__}: "
            f"{str(exc).strip()}"
        )
        log.error("%s; the previous store is left as it was", self.store_error)
        self.abort_store()

    def abort_store(self) -> None:
        store, self.store = self.store, None
        if store is None:
            return
        try:
            store.abort()
        except Exception as exc:  # noqa: BLE001 - already failing: say, go on
            log.warning("online store: cleaning up after a failure failed: %s", exc)

    def write(self, parts: list[Path], path: Path, bar: bool | None) -> None:
        targets = self.champions.targets
        total = len(self.calibrated[targets[0]])
        progress = Progress("write", total, "customers", bar)
        schema = output_schema(targets, self.populations)
        offset = 0
        with pq.ParquetWriter(path, schema) as writer:
            for frame in _batches(parts):
                eligible = frame[frame[ELIGIBLE]].reset_index(drop=True)
                if eligible.empty:
                    continue
                rows = slice(offset, offset + len(eligible))
                writer.write_table(self.table(eligible, rows, schema))
                if self.store is not None:
                    scores = {t: self.calibrated[t][rows] for t in targets}
                    try:
                        self.store.append(eligible, scores, self.scored_at)
                    except Exception as exc:  # noqa: BLE001 - Parquet goes on
                        self.store_failed("written", exc)
                if offset == 0 and os.environ.get(PAUSE_ENV):
                    time.sleep(float(os.environ[PAUSE_ENV]))
                offset += len(eligible)
                progress.update(len(eligible))
            if offset == 0:
                writer.write_table(schema.empty_table())
        progress.close()

    def table(self, frame: pd.DataFrame, rows: slice, schema: pa.Schema) -> pa.Table:
        n = len(frame)
        models = self.champions.models
        targets = self.champions.targets
        columns: dict[str, object] = {CUSTOMER_ID: frame[CUSTOMER_ID].astype(str)}
        masks: dict[str, np.ndarray] = {}
        for t in targets:
            columns[t] = self.calibrated[t][rows]
            masks[t] = masks[decile_column(t)] = ~np.isfinite(columns[t])
        for t in targets:
            columns[decile_column(t)] = self.ranks[t][rows]
        for t in targets:
            columns[model_column(t)] = [models[t].name] * n
            columns[version_column(t)] = [models[t].version] * n
        columns[FEATURE_SET_VERSION] = [self.champions.feature_set_version] * n
        columns[SCORED_AT] = [self.scored_at] * n
        columns[RUN_ID] = [self.run_id] * n
        t0 = time.perf_counter()
        for t in targets:
            columns[reasons_column(t)] = self.reasons(t, frame, self.ranks[t][rows])
        self.reasons_seconds += time.perf_counter() - t0
        return pa.table(
            {
                f.name: pa.array(columns[f.name], f.type, mask=masks.get(f.name))
                for f in schema
            },
            schema=schema,
        )

    def reasons(
        self, target: str, frame: pd.DataFrame, ranks: np.ndarray
    ) -> list[str | None]:
        """JSON reason codes for the rows in the target's top decile, else None."""
        top = np.flatnonzero(ranks == 1)
        out: list[str | None] = [None] * len(frame)
        if top.size == 0:
            return out
        model = self.champions.models[target]
        matrix = model.encoding.to_matrix(frame.iloc[top])
        found = reasons(
            model, matrix, self.k, self.exclude, self.descriptions, self.method
        )
        for i, row in zip(top.tolist(), found, strict=True):
            out[i] = reasons_json(row)
        self.reasons_rows += int(top.size)
        return out


def config_place(config: ProjectConfig) -> str:
    """Where the configured online store is, for messages."""
    table = config.online_store.postgres
    if table is not None:
        return f"{table.uri} (table {table.table})"
    return str(config.online_store.path)


def reasons_json(found: list[Reason]) -> str:
    """One customer's reasons as a JSON list of {feature, value, contribution,
    phrase}, largest contribution first."""
    return json.dumps(
        [
            {
                "feature": r.feature,
                "value": r.value,
                "contribution": round(r.contribution, 6),
                "phrase": r.phrase,
            }
            for r in found
        ]
    )
