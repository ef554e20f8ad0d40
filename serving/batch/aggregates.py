"""The small aggregates the web console shows, written by the nightly run.

The console (serving.console) must render each page in milliseconds on a base of
millions of customers, so it never reads the scores: the nightly run, which has
them in memory, writes `<scoring.output>/_aggregates.json` (atomically, beside
the status file `_last_run.json`) with

- `histograms`: per served target the counts of tonight's scores in 20 equal
  bins of [0, 1] (the same figures the scoring run logs to MLflow), and each
  target's mean and quantiles;
- `drift`: the level, alerts and warnings, each score's PSI and the most
  drifted features (`TOP_FEATURES`);
- `models`: per target the champion that scored (name, version, run, trained
  at, calibration method, backtest means and per-origin figures, the
  calibration map sampled on a grid) and its promotion history;
- `outcomes`: the realised figures of every matured score date so far (from
  serving.monitoring's `_outcomes/as_of=DATE/<target>.json`), oldest first;
- `readouts`: each confirmed campaign's readout (serving.outreach.readout), or
  the error that stopped it.

A failure here is logged and leaves the run's outcome alone: the aggregates are
bookkeeping for people, not the run's product.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.atomic import atomic_write
from core.config import ProjectConfig
from features.columns import AS_OF

log = logging.getLogger(__name__)

AGGREGATES_FILE = "_aggregates.json"
TOP_FEATURES = 10
CALIBRATION_GRID = 21
# the realised figures kept per matured (date, target)
OUTCOME_KEYS = (
    "roc_auc",
    "log_loss",
    "ece",
    "lift_top_decile",
    "positive_rate",
    "mean_score",
    "n",
    "positives",
    "level",
)


def histograms(scores: dict[str, np.ndarray], bins: int) -> dict:
    """Per target: counts of the finite scores in `bins` equal bins of [0, 1]."""
    edges = np.linspace(0, 1, bins + 1)
    return {
        "edges": edges.tolist(),
        "counts": {
            t: np.histogram(v[np.isfinite(v)], edges)[0].tolist()
            for t, v in scores.items()
        },
    }


def drift_summary(report: dict, top: int = TOP_FEATURES) -> dict:
    """The drift report's verdict, its scores' PSI and its `top` features."""
    keep = ("psi", "level", "rows", "missing_share", "out_of_range_share")
    return {
        "level": report["level"],
        "alerts": report["alerts"],
        "warnings": report["warnings"],
        "thresholds": report.get("thresholds"),
        "scores": [
            {"target": s["target"], **{k: s.get(k) for k in keep}}
            for s in report["scores"]
        ],
        "features": [
            {"feature": f["feature"], **{k: f.get(k) for k in keep}}
            for f in report["features"][:top]
        ],
    }


def model_summary(model, grid: int = CALIBRATION_GRID) -> dict:  # noqa: ANN001
    """A champion (model.registry.RegisteredModel) as the Models page shows it:
    what it is, its backtest figures, and its calibration map on a grid."""
    meta = model.metadata
    raw = np.linspace(0, 1, grid)
    calibration = meta.get("calibration")
    return {
        "name": model.name,
        "version": str(model.version),
        "run_id": model.run_id,
        "trained_at": meta.get("trained_at"),
        "horizon_days": meta.get("horizon_days"),
        "feature_set_version": meta.get("feature_set_version"),
        "calibration": calibration.get("method")
        if isinstance(calibration, dict)
        else calibration,
        "metrics": meta.get("metrics") or {},
        "backtest": meta.get("backtest") or [],
        "calibration_curve": {
            "raw": raw.tolist(),
            "served": np.asarray(model.calibrator.apply(raw), dtype=float).tolist(),
        },
    }


def outcome_series(folder: Path) -> dict[str, list[dict]]:
    """Per target, the realised figures of each matured score date, oldest
    first, from `<folder>/as_of=DATE/<target>.json`."""
    out: dict[str, list[dict]] = {}
    for path in sorted(folder.glob(f"{AS_OF}=*/*.json")):
        try:
            item = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("outcome file %s unreadable: %s", path, exc)
            continue
        out.setdefault(item.get("target", path.stem), []).append(
            {
                AS_OF: item.get(AS_OF),
                **{k: item.get(k) for k in OUTCOME_KEYS},
                "expected_roc_auc": (item.get("expected") or {}).get("roc_auc"),
            }
        )
    return out


def readouts(config: ProjectConfig, ds) -> dict[str, dict]:  # noqa: ANN001
    """Each confirmed campaign's readout, or {"error": ...} naming what failed."""
    from serving.outreach.contact_log import open_contact_log
    from serving.outreach.readout import readout

    out: dict[str, dict] = {}
    for c in open_contact_log(config.outreach.contact_log).campaigns():
        try:
            out[c.campaign_id] = readout(config, ds, c.campaign_id)
        except Exception as exc:  # noqa: BLE001 - one campaign, not the run
            out[c.campaign_id] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def write(output: Path, aggregates: dict) -> Path:
    """`<output>/_aggregates.json`, replaced atomically."""
    path = Path(output) / AGGREGATES_FILE
    text = json.dumps(aggregates, allow_nan=False, default=_plain) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def read(output: Path) -> dict | None:
    path = Path(output) / AGGREGATES_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")


def build(
    *,
    as_of: str,
    run_id: str,
    scores: dict[str, np.ndarray],
    bins: int,
    quantiles: dict[str, float],
    drift: dict,
    models: dict[str, dict],
    outcomes: dict[str, list[dict]],
    campaign_readouts: dict[str, dict],
) -> dict:
    """The aggregates document (see the module docstring)."""
    doc = {
        AS_OF: as_of,
        "run_id": run_id,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "customers": {t: int(np.isfinite(v).sum()) for t, v in scores.items()},
        "histograms": histograms(scores, bins),
        "quantiles": quantiles,
        "drift": drift_summary(drift),
        "models": models,
        "outcomes": outcomes,
        "readouts": campaign_readouts,
    }
    return _finite(doc)  # type: ignore[return-value]


def _finite(value: object) -> object:
    """NaN and infinities (no JSON for them) as None, all the way down."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
