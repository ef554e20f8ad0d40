"""Outcome monitoring: the nightly scores of a date beside what then happened.

A score date (`<scoring.output>/as_of=DATE/part-0.parquet`, serving.batch.score)
matures for a target once the target's label window lies within the data:
`as_of + horizon <= data_end` (features.labels: `LabelSpec.complete`, which adds
the grace period of contract churn; `data_end` is the config's data.as_of, else
the end of the last day with events). Then, per target present in the file's
columns:

1. the scored customers with a score for the target (a null score is a customer
   outside the target's population) get their realised label from the events by
   the one label definition (features.labels.build_labels over the pairs
   (customer_id, cutoff = as_of)): what the model was trained to predict;
2. customers in a treatment group of any campaign confirmed in
   [as_of, as_of + horizon) are left out (their outcome was changed on purpose;
   the contact log, serving.outreach.contact_log) and counted;
3. customers with no event before as_of in the data are left out and counted:
   forgotten since (the suppression list), or scored under other ids. The scores
   and the events carry the same stored ids (pseudonyms when pseudonymisation is
   on), so normally none is; when most are, the date is not evaluated
   (`ids_mismatch`: scored under another pseudonym key?);
4. the figures of serving.monitoring.realised on the rest.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.config import ProjectConfig
from features.columns import (
    AS_OF,
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    RUN_ID,
    TARGETS,
    model_column,
    version_column,
)
from features.definition import FeatureSpec
from features.labels import LabelSpec, build_labels, data_end
from features.sources.load import Dataset
from serving.batch.score import PART_FILE, POPULATIONS_KEY
from serving.monitoring.realised import realised
from serving.outreach.contact_log import ContactLog

log = logging.getLogger(__name__)

# more than this share of a date's scored ids unknown to the events: not evaluated
MAX_UNKNOWN_SHARE = 0.5
_DAY = re.compile(rf"^{AS_OF}=(\d{{4}}-\d{{2}}-\d{{2}})$")


@dataclass(frozen=True)
class ScoreDate:
    as_of: datetime
    path: Path

    @property
    def day(self) -> str:
        return f"{self.as_of:%Y-%m-%d}"


def score_dates(output: Path, since: datetime | None = None) -> list[ScoreDate]:
    """The published score dates under `output`, oldest first (from `since` on)."""
    found = []
    for folder in sorted(Path(output).glob(f"{AS_OF}=*")):
        match = _DAY.match(folder.name)
        if not match or not (folder / PART_FILE).is_file():
            continue
        as_of = datetime.fromisoformat(match.group(1))
        if since is None or as_of >= since:
            found.append(ScoreDate(as_of, folder / PART_FILE))
    return found


def scoring_run(path: Path) -> str:
    """The id of the scoring run that wrote the file (its `run_id` column; ""
    when it has none): a date scored again is other scores, evaluated again."""
    if RUN_ID not in pq.read_schema(path).names:
        return ""
    found = pc.unique(pq.read_table(path, columns=[RUN_ID])[RUN_ID]).to_pylist()
    return ",".join(sorted(str(r) for r in found if r)) if found else ""


def populations(path: Path) -> dict[str, str]:
    """Each target's population name, as the scoring run recorded it in the
    file's schema metadata (none in files written before populations)."""
    raw = (pq.read_schema(path).metadata or {}).get(POPULATIONS_KEY)
    return json.loads(raw) if raw else {}


def naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def outcome_end(config: ProjectConfig, ds: Dataset) -> datetime:
    """What the data are complete through (naive UTC, the views' convention)."""
    return naive_utc(data_end(ds, config.data.as_of))


def targets_in(path: Path) -> list[str]:
    """The targets the score file holds: a score column and its model version."""
    names = set(pq.read_schema(path).names)
    return [t for t in TARGETS if t in names and version_column(t) in names]


def days_to_mature(labels: LabelSpec, target: str) -> int:
    days = labels.horizons[target]
    if target == CHURN and labels.churn_definition == CONTRACT:
        days += labels.grace_days
    return days


def maturity(
    labels: LabelSpec, targets: list[str], as_of: datetime, end: datetime
) -> tuple[list[str], dict[str, int]]:
    """The targets whose label window has passed by `end`, and the days still to
    wait for the others."""
    mature, waiting = [], {}
    for t in targets:
        if labels.complete(t, as_of, end):
            mature.append(t)
        else:
            known = as_of + timedelta(days=days_to_mature(labels, t))
            waiting[t] = max(1, -(-(known - end) // timedelta(days=1)))
    return mature, waiting


def _labelled(
    ds: Dataset,
    scores: pa.Table,
    as_of: datetime,
    spec: FeatureSpec,
    labels: LabelSpec,
    targets: list[str],
) -> pa.Table:
    """Per scored customer: the realised label of each target and whether the
    events know the customer before as_of (`_seen`)."""
    pairs = ibis.memtable(
        pa.table(
            {
                CUSTOMER_ID: scores[CUSTOMER_ID],
                CUTOFF: pa.array([as_of] * scores.num_rows, pa.timestamp("us")),
            }
        )
    )
    built = build_labels(ds.events, pairs, spec, labels, ds.subscriptions)
    ev = ds.events
    seen = (
        ev.filter(ev[EVENT_TIME] < as_of)
        .select(_sid=ev[CUSTOMER_ID])
        .semi_join(pairs, ev[CUSTOMER_ID] == pairs[CUSTOMER_ID])
        .distinct()
    )
    out = built.left_join(seen, built[CUSTOMER_ID] == seen._sid)
    return out.select(CUSTOMER_ID, *targets, _seen=out._sid.notnull()).to_pyarrow()


def evaluate(
    config: ProjectConfig,
    ds: Dataset,
    date: ScoreDate,
    targets: list[str],
) -> dict:
    """The realised figures of `targets` (mature ones, present in the file) on one
    score date: {as_of, targets: {target: {...}}, notes}. Per target: the model
    and version that scored, the figures (serving.monitoring.realised), the
    customers scored, left out (treatment, unknown id) and evaluated."""
    spec, labels = FeatureSpec.from_config(config), LabelSpec.from_config(config)
    columns = [CUSTOMER_ID]
    for t in targets:
        columns += [t, model_column(t), version_column(t)]
    scores = pq.read_table(date.path, columns=columns)
    labelled = _labelled(ds, scores, date.as_of, spec, labels, targets)
    by_id = {c: i for i, c in enumerate(labelled[CUSTOMER_ID].to_pylist())}
    ids = scores[CUSTOMER_ID].to_pylist()
    row = np.array([by_id[c] for c in ids], dtype=np.int64)
    seen = labelled["_seen"].to_numpy(zero_copy_only=False)[row]
    report: dict = {
        AS_OF: date.day,
        "path": str(date.path),
        "score_run_id": scoring_run(date.path),
        "targets": {},
    }
    unknown = int((~seen).sum())
    if scores.num_rows and unknown / scores.num_rows > MAX_UNKNOWN_SHARE:
        report["ids_mismatch"] = (
            f"{unknown:,} of {scores.num_rows:,} scored customers have no event "
            f"before {date.day} in the data: scored under other ids (another "
            "pseudonym key?); not evaluated"
        )
        return report
    contacts = ContactLog(config.outreach.contact_log)
    named = populations(date.path)
    id_array = np.asarray(ids, dtype=object)
    for t in targets:
        horizon = timedelta(days=labels.horizons[t])
        start = date.as_of.replace(tzinfo=UTC)
        treated = contacts.treated(start, start + horizon)
        p = scores[t].to_numpy(zero_copy_only=False).astype(float)
        scored = ~np.isnan(p)
        in_treatment = (
            np.isin(id_array, list(treated))
            if treated
            else np.zeros(len(ids), dtype=bool)
        )
        keep = scored & seen & ~in_treatment
        y = labelled[t].to_numpy(zero_copy_only=False)[row]
        report["targets"][t] = {
            "model": _one(scores[model_column(t)], scored),
            "model_version": _one(scores[version_column(t)], scored),
            "population": named.get(t),
            "horizon_days": labels.horizons[t],
            "window": {
                "start": date.as_of.isoformat(),
                "end": (date.as_of + horizon).isoformat(),
            },
            "scored": int(scored.sum()),
            "left_out": {
                "treatment": int((scored & in_treatment).sum()),
                "unknown_id": int((scored & ~seen).sum()),
            },
            **realised(y[keep], p[keep]),
        }
    if unknown:
        report["notes"] = [
            f"{unknown:,} scored customer(s) have no event before {date.day} in "
            "the data (forgotten since, or other ids): left out"
        ]
    return report


def _one(column: pa.ChunkedArray, rows: np.ndarray) -> str | None:
    """The most frequent value among `rows` (one champion scores a date)."""
    values = np.asarray(column.to_pylist(), dtype=object)[rows]
    if values.size == 0:
        return None
    found, counts = np.unique(values.astype(str), return_counts=True)
    return str(found[np.argmax(counts)])
