"""The nightly run's feature step from the incremental feature state
(features.state), kept beside the scores in `<scoring.output>-state`.

- The state is usable (built under the same key, its events before the watermark
  the same as the files'): only the events in `[watermark, as_of)` are read, the
  state is advanced to `as_of` and the features come from it;
- otherwise (`--full`, no state yet, a changed feature definition or setting, a
  changed data or privacy config, a changed suppression list, events before the
  watermark added or removed in the files): the state is rebuilt from every event,
  customer chunk by customer chunk, and the features come from the rebuild; the
  reason is logged and returned;
- an as-of before the state's watermark (a backfill) is computed in full from the
  events, the state left as it is.

Either way the feature parts equal `build_features(events, [as_of])`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime
from pathlib import Path

from core.config import ProjectConfig
from features import state as fs
from features.classic import fit_from_events
from features.columns import EVENT_TIME
from features.definition import (
    FeatureSpec,
    build_features,
    catalogue,
    features_from_sums,
)
from features.sources.chunks import chunk_count, customer_chunks, write_chunked
from features.sources.load import Dataset
from features.sources.privacy import pseudonymiser

log = logging.getLogger(__name__)

STATE_SUFFIX = "-state"
INCREMENTAL, REBUILT, FULL = "incremental", "rebuilt", "full"


def state_dir(output: Path) -> Path:
    """Where the nightly keeps its feature state: a folder beside the scores
    folder (`scores` -> `scores-state`), not inside it, so that a reader of the
    scores as a hive dataset (`scores/**/*.parquet`) finds only scores."""
    output = Path(output)
    return output.parent / f"{output.name}{STATE_SUFFIX}"


def suppressed_key(ids) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def nightly_key(config: ProjectConfig, ds: Dataset, spec: FeatureSpec) -> dict:
    """What the nightly's state is valid under (features.state.state_key)."""
    settings = {
        "data": config.data.model_dump(mode="json", exclude={"as_of"}),
        "privacy": config.privacy.model_dump(mode="json"),
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return fs.state_key(
        spec,
        catalogue(spec, ds.customers).version(),
        {
            "config": hashlib.sha256(text.encode()).hexdigest()[:16],
            "suppressed": suppressed_key(ds.suppressed),
            # the pseudonym key itself (the config names only where it is): a
            # keyed hash of a fixed text, so the key is never written
            "pseudonyms": pseudonymiser(config.privacy).one("propensity-state")[:16],
        },
    )


def feature_parts(
    config: ProjectConfig,
    ds: Dataset,
    as_of: datetime,
    scratch: Path,
    *,
    full: bool = False,
) -> tuple[list[Path], dict]:
    """The feature parts at `as_of` in `scratch`, and what was done: `mode`
    (incremental, rebuilt, full), `reason` (why not incremental), `events_read`,
    the `watermark` advanced from, `seconds`. Call it under the output's lock."""
    started = time.perf_counter()
    spec = FeatureSpec.from_config(config)
    folder = state_dir(config.scoring.output)
    state = fs.open_state(folder)
    key = nightly_key(config, ds, spec)
    reason = "--full asked for a rebuild" if full else fs.stale_reason(state, key)
    if reason is None and as_of < state.watermark:
        params = fit_from_events(ds.events, [as_of], spec) if spec.classic else None
        parts = write_chunked(
            ds,
            lambda events: build_features(
                events, [as_of], spec, ds.customers, ds.subscriptions, params
            ),
            scratch,
        )
        why = (
            f"as of {as_of:%Y-%m-%d}, before the feature state's "
            f"{state.watermark:%Y-%m-%d}: computed in full, the state left as it is"
        )
        log.info("%s", why)
        return parts, _info(FULL, why, ds.rows(), state.watermark, started)
    if reason is None:
        reason = _changed_before(ds, state)
    if reason is None:
        return _advance(config, ds, state, as_of, spec, scratch, started)
    log.warning("feature state rebuilt: %s", reason)
    parts = _rebuild(ds, folder, as_of, spec, key, scratch)
    return parts, _info(REBUILT, reason, ds.rows(), None, started)


def _changed_before(ds: Dataset, state: fs.FeatureState) -> str | None:
    """Why the files no longer hold the state's events before its watermark
    (late events appended, events removed), or None. Counted as all events less
    those at or after the watermark and those without a time: Parquet's
    metadata answers the first, its row groups' statistics skip all but the
    newest for the others (counting the events before the mark read the
    time of every event: 0.8 s at 100M)."""
    mark = state.watermark
    events, at = ds.events, ds.events[EVENT_TIME]
    count = int(events.count().execute())
    for outside in (at >= mark, at.isnull()):
        count -= int(events.filter(outside).count().execute())
    if count == state.events:
        return None
    return (
        f"the events before the state's watermark {mark:%Y-%m-%d} changed in the "
        f"files: {count:,} now, {state.events:,} in the state (late events added "
        "to the files, or events removed)"
    )


def _advance(
    config: ProjectConfig,
    ds: Dataset,
    state: fs.FeatureState,
    as_of: datetime,
    spec: FeatureSpec,
    scratch: Path,
    started: float,
) -> tuple[list[Path], dict]:
    events = ds.events
    mark = state.watermark
    new = events.filter((events[EVENT_TIME] >= mark) & (events[EVENT_TIME] < as_of))
    part = scratch / "part-0.parquet"
    scratch.mkdir(parents=True, exist_ok=True)
    # the feature rows written by the advance itself, right after the sums (a
    # row per customer in any order: scores are read by key)
    done = fs.advance(
        state,
        ds.con,
        new,
        as_of,
        spec,
        late=config.features.late_events,
        rows_to=part,
        customers=ds.customers,
        subscriptions=ds.subscriptions,
    )
    log.info(
        "feature state advanced from %s to %s with %d new events",
        f"{mark:%Y-%m-%d}",
        f"{as_of:%Y-%m-%d}",
        done.events,
    )
    return [part], _info(INCREMENTAL, None, done.events, mark, started)


def _rebuild(
    ds: Dataset,
    folder: Path,
    as_of: datetime,
    spec: FeatureSpec,
    key: dict,
    scratch: Path,
) -> list[Path]:
    """The state rebuilt from every event, chunk by chunk, and each chunk's
    feature part computed from its customer sums as they are written."""
    scratch.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    # the classic models fitted on every customer: a chunk holds some of them
    params = fit_from_events(ds.events, [as_of], spec) if spec.classic else None

    def features(i, sums, cancels) -> None:
        path = scratch / f"part-{i}.parquet"
        features_from_sums(
            sums, cancels, spec, ds.customers, ds.subscriptions, params
        ).to_parquet(path)
        parts.append(path)

    with customer_chunks(ds, chunk_count(ds)) as tables:
        fs.rebuild(folder, ds.con, tables, as_of, spec, key, on_chunk=features)
    return parts


def _info(
    mode: str,
    reason: str | None,
    events: int,
    watermark: datetime | None,
    started: float,
) -> dict:
    return {
        "mode": mode,
        "reason": reason,
        "events_read": int(events),
        "watermark": None if watermark is None else f"{watermark:%Y-%m-%d}",
        "seconds": round(time.perf_counter() - started, 3),
    }
