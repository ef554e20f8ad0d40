"""The nightly run: score, report drift, fill the sink, record it all.

Wiring around `serving.batch.score.score`, like `training.train` around the backtest:

1. an MLflow run in the `<experiment>.scoring` experiment (its id is stamped on
   every output row), tagged `kind=scoring`, `as_of`;
2. `score` writes and publishes the Parquet partition;
3. the drift report (serving.batch.drift) goes to `<output>/_drift/as_of=DATE/`
   (drift.json, drift.html; published atomically too) and to the run;
4. the optional Postgres sink is upserted;
5. outcome monitoring (serving.monitoring.outcome_runs) evaluates every newly
   matured score date against its realised labels;
6. the run gets rows scored (in all, and per served target: its population)
   and skipped (by reason), score quantiles and histograms per target, each
   target's population name, seconds per step, model versions, drift figures;
   the status file `<output>/_last_run.json` says how the run ended (with each
   target's population and rows scored).

Guards:
- too few: a run scoring no one, or fewer than `scoring.min_scored_ratio` of
  the last good run's customers (its date and count are carried in the status
  file as `baseline`; without one, the latest other as-of folder's row count),
  publishes its Parquet output for a look (the status file says
  `scored_too_few`) but leaves the online store and the Postgres sink as they
  were, and exits SCORED_TOO_FEW; the baseline stays the last good run's;
- the online store or the sink unreachable or failing: the Parquet output is
  published all the same, the status file and the MLflow run name what failed;
- a run killed earlier (its MLflow run left RUNNING, its process gone on this
  host: tags `pid` and `host`, or the status file) is marked FAILED with a tag
  `failed.reason` by the next run.

Exit codes (`core.exitcodes.ExitCode`): OK (0) done; DRIFT_ALERT (3) scores
written, drift alert; SINK_FAILED (4) scores written, the Postgres sink failed;
OUTCOME_ALERT (8) scores written, a matured date missed its AUC or ECE bar;
SCORED_TOO_FEW (9) see above; STORE_FAILED (10) scores written, the online store
not updated; FAILED (1) in the status file of a run that failed. One code per
run, the first that applies in the order 9, 10, 4, 3, 8 (tonight's output
before last month's); the status file names every alert. The CLI adds USAGE
(2: config or data contract error).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.atomic import Busy, atomic_write, publish_dir
from core.config import ProjectConfig
from core.exitcodes import ExitCode
from features.columns import AS_OF
from features.definition import FeatureSpec, catalogue
from features.sources.load import Dataset
from features.sources.privacy import suppressed
from features.sources.spark import SparkDataset
from serving.batch import aggregates, drift_report
from serving.batch.drift import ALERT
from serving.batch.score import (
    PART_FILE,
    ScoreResult,
    score,
    staging_dir,
    writing,
)
from serving.monitoring.outcome_runs import (
    nightly_check,
    nightly_summary,
    nightly_tags,
)
from serving.privacy.retention import prune_contacts, prune_scores
from serving.scoring import Champions

log = logging.getLogger(__name__)

STATUS_FILE = "_last_run.json"
DRIFT_DIR = "_drift"
KIND_SCORING = "scoring"
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
HISTOGRAM_BINS = 20


def scoring_experiment(config: ProjectConfig) -> str:
    return f"{config.mlflow.experiment}.scoring"


@dataclass(frozen=True)
class NightlyResult:
    score: ScoreResult
    run_id: str
    drift: dict
    drift_dir: Path
    sink_rows: int | None
    sink_error: str | None
    exit_code: ExitCode
    # serving.monitoring.outcome_runs' status (level, alerts, evaluated, ...)
    outcomes: dict | None = None
    # too few scored: the figures and the message (None: enough)
    too_few: dict | None = None
    # the last good run the count was held against (as_of, rows_scored, run_id)
    baseline: dict | None = None


def run_nightly(
    config: ProjectConfig,
    ds: Dataset | SparkDataset,
    champions: Champions,
    as_of: datetime,
    tracking_uri: str,
    *,
    progress: bool | None = None,
) -> NightlyResult:
    """Score `as_of` and record the run; see the module docstring."""
    from mlflow.tracking import MlflowClient

    from model.registry import configure

    experiment_id = configure(tracking_uri, scoring_experiment(config))
    client = MlflowClient(tracking_uri, tracking_uri)
    day = f"{as_of:%Y-%m-%d}"
    output = Path(config.scoring.output)
    run = client.create_run(
        experiment_id,
        run_name=f"score-{day}",
        tags={
            "kind": KIND_SCORING,
            AS_OF: day,
            # so that the next run can tell this one was killed
            "pid": str(os.getpid()),
            "host": socket.gethostname(),
            "output": str(output.absolute()),
        },
    )
    run_id = run.info.run_id
    previous = (
        (output / STATUS_FILE).read_bytes()
        if (output / STATUS_FILE).is_file()
        else None
    )
    last = _parse(previous)
    baseline = find_baseline(output, last, day)
    status = {
        "state": "running",
        AS_OF: day,
        "run_id": run_id,
        "tracking_uri": tracking_uri,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": _now(),
        # the last good run, carried on until a run scores enough
        "baseline": baseline,
    }
    write_status(output, status)
    try:
        with writing(output):
            try:  # under the lock: no other run of this output is alive
                mark_killed_runs(client, experiment_id, run_id, last)
            except Exception as exc:  # noqa: BLE001 - bookkeeping, not the run
                log.warning("marking killed scoring runs failed: %s", exc)
            result = _run(
                config, ds, champions, as_of, run_id, client, progress, baseline
            )
    except Busy:  # another run is writing: its status stands, this run never began
        client.set_terminated(run_id, "KILLED")
        if previous is not None:
            atomic_write(output / STATUS_FILE, lambda tmp: tmp.write_bytes(previous))
        raise
    except BaseException as exc:
        client.set_terminated(run_id, "FAILED")
        error = f"{type(exc).__name__}: {exc}"
        write_status(
            output,
            {
                **status,
                "state": "failed",
                "exit_code": int(ExitCode.FAILED),
                "error": error,
            },
        )
        raise
    summary = {**status, **_summary(result), "finished_at": _now()}
    if result.too_few is None:
        summary["baseline"] = {
            AS_OF: day,
            "rows_scored": result.score.rows,
            "run_id": run_id,
        }
    write_status(output, summary)
    client.set_terminated(run_id, "FINISHED")
    return result


def _parse(raw: bytes | None) -> dict | None:
    if raw is None:
        return None
    try:
        status = json.loads(raw)
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def find_baseline(output: Path, last: dict | None, day: str) -> dict | None:
    """The run tonight's count is held against: the last good run as the status
    file carries it (`baseline`), else the latest as-of folder other than
    `day` (its row count from the Parquet footers), else None (a first run)."""
    if last is not None and isinstance(last.get("baseline"), dict):
        return last["baseline"]
    import pyarrow.parquet as pq

    folders = sorted(
        p
        for p in Path(output).glob(f"{AS_OF}=*")
        if p.is_dir() and p.name != f"{AS_OF}={day}"
    )
    for folder in reversed(folders):
        try:
            rows = sum(
                pq.ParquetFile(f).metadata.num_rows for f in folder.glob("*.parquet")
            )
        except Exception as exc:  # noqa: BLE001 - an unreadable folder: older one
            log.warning("%s: unreadable, not a baseline: %s", folder, exc)
            continue
        return {AS_OF: folder.name.split("=", 1)[1], "rows_scored": rows}
    return None


def min_rows(baseline: dict | None, ratio: float) -> int:
    """The fewest customers a run may score: at least one, and at least `ratio`
    of the baseline's count."""
    if baseline is None:
        return 1
    return max(1, math.ceil(ratio * int(baseline["rows_scored"])))


def too_few(rows: int, baseline: dict | None, ratio: float, day: str) -> dict | None:
    """Why `rows` scored as of `day` are too few (figures and a message), or
    None when they are enough."""
    bar = min_rows(baseline, ratio)
    if rows >= bar:
        return None
    if baseline is None:
        why = f"scored {rows} customers as of {day}, no earlier run to compare with"
    else:
        run = f", MLflow run {baseline['run_id']}" if baseline.get("run_id") else ""
        why = (
            f"scored {rows:,} customers as of {day}; the last good run (as of "
            f"{baseline[AS_OF]}{run}) scored {baseline['rows_scored']:,}: at least "
            f"{bar:,} expected (scoring.min_scored_ratio {ratio:g})"
        )
    return {
        "rows_scored": rows,
        "min_rows": bar,
        "min_scored_ratio": ratio,
        "baseline": baseline,
        "message": (
            f"{why}. The Parquet output is published for a look; the online store "
            "and the Postgres sink are left as they were. A stale or truncated "
            "events file? To accept the count, lower scoring.min_scored_ratio and "
            "rerun."
        ),
    }


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (ours cannot be an earlier run:
    a recycled pid, as in a restarted container, reads as gone)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def mark_killed_runs(
    client, experiment_id: str, current: str, last: dict | None = None
) -> list[str]:
    """Mark FAILED, with a tag `failed.reason`, every scoring run other than
    `current` left RUNNING by a process that is gone from this host (its `pid`
    and `host` tags, or the status file `last` for runs without them). Runs of
    other hosts are left alone: their process cannot be checked from here.
    Returns the ids marked."""
    host = socket.gethostname()
    candidates: dict[str, tuple[str, str]] = {}
    runs = client.search_runs(
        [experiment_id],
        f"attributes.status = 'RUNNING' and tags.kind = '{KIND_SCORING}'",
        max_results=1000,
    )
    for run in runs:
        tags = run.data.tags
        if run.info.run_id != current and "pid" in tags and "host" in tags:
            candidates[run.info.run_id] = (tags["host"], tags["pid"])
    if (
        last is not None
        and last.get("state") == "running"
        and last.get("run_id")
        and last["run_id"] != current
        and last["run_id"] not in candidates
    ):
        try:
            if client.get_run(last["run_id"]).info.status == "RUNNING":
                candidates[last["run_id"]] = (str(last.get("host")), str(last["pid"]))
        except Exception as exc:  # noqa: BLE001 - e.g. a run deleted since
            log.info("status file's run %s not found: %s", last["run_id"], exc)
    marked = []
    for run_id, (where, pid) in candidates.items():
        if where != host or not pid.isdigit() or _alive(int(pid)):
            continue
        reason = (
            f"process {pid} on {host} ended without finishing the run (killed, or "
            f"the machine stopped); marked failed by run {current} at {_now()}"
        )
        client.set_tag(run_id, "failed.reason", reason)
        client.set_terminated(run_id, "FAILED")
        log.warning("scoring run %s: %s", run_id, reason)
        marked.append(run_id)
    return marked


def _run(
    config: ProjectConfig,
    ds: Dataset | SparkDataset,
    champions: Champions,
    as_of: datetime,
    run_id: str,
    client,
    progress: bool | None,
    baseline: dict | None = None,
) -> NightlyResult:
    started = time.perf_counter()
    forgotten = suppressed(config.privacy) - ds.suppressed
    if forgotten:  # under the output's lock, which forget holds while it works
        raise RuntimeError(
            f"{len(forgotten)} customer(s) were forgotten after this run loaded its "
            "data; nothing was published: run it again"
        )
    scorer = score
    if isinstance(ds, SparkDataset):
        from serving.batch.spark import score_spark as scorer
    ratio = config.scoring.min_scored_ratio
    result = scorer(
        config,
        ds,
        champions,
        as_of,
        run_id=run_id,
        progress=progress,
        min_rows=min_rows(baseline, ratio),
    )
    day = f"{as_of:%Y-%m-%d}"
    few = too_few(result.rows, baseline, ratio, day)
    if few is not None:
        log.error("%s", few["message"])
    calendar = catalogue(FeatureSpec.from_config(config), ds.customers).calendar
    report = result.drift.report(
        config.scoring.drift, calendar, as_of=day, run_id=run_id
    )
    drift_dir = Path(config.scoring.output) / DRIFT_DIR / f"{AS_OF}={day}"
    with publish_dir(drift_dir, staging_dir(config.scoring.output)) as tmp:
        drift_report.write(report, tmp)
    sink_rows, sink_error = None, None
    if config.scoring.postgres is not None and few is None:
        from serving.batch.sink import upsert

        try:
            sink_rows = upsert(
                result.path / PART_FILE, as_of.date(), config.scoring.postgres
            )
        except Exception as exc:  # the scores are published: say so, exit 4
            sink_error = f"{type(exc).__name__}: {str(exc).strip()}"
            log.error("Postgres sink %s failed: %s", config.scoring.postgres, exc)
    outcomes = nightly_check(config, ds, client.tracking_uri)
    code = (
        ExitCode.SCORED_TOO_FEW
        if few is not None
        else ExitCode.STORE_FAILED
        if result.store_error
        else ExitCode.SINK_FAILED
        if sink_error
        else ExitCode.DRIFT_ALERT
        if report["level"] == ALERT
        else ExitCode.OUTCOME_ALERT
        if outcomes["alerts"]
        else ExitCode.OK
    )
    if config.privacy.retention_days is not None:
        prune_scores(config.scoring.output, config.privacy.retention_days)
        prune_contacts(config)
    out = NightlyResult(
        result,
        run_id,
        report,
        drift_dir,
        sink_rows,
        sink_error,
        code,
        outcomes,
        few,
        baseline,
    )
    _record(client, config, champions, out, drift_dir, time.perf_counter() - started)
    try:
        _write_aggregates(config, ds, champions, out, client)
    except Exception as exc:  # noqa: BLE001 - the console's figures, not the run
        log.warning("the console's aggregates were not written: %s", exc)
    return out


def _write_aggregates(
    config: ProjectConfig,
    ds: Dataset | SparkDataset,
    champions: Champions,
    out: NightlyResult,
    client,
) -> None:
    """`<output>/_aggregates.json` for the console (serving.batch.aggregates)."""
    from model.registry import promotion_history
    from serving.monitoring.outcome_runs import outcomes_dir

    r = out.score
    models = {}
    for target in champions.targets:
        model = champions.models[target]
        models[target] = {
            **aggregates.model_summary(model),
            "promotions": promotion_history(
                client, config.mlflow.experiment, model.name
            ),
        }
    readouts = {} if isinstance(ds, SparkDataset) else aggregates.readouts(config, ds)
    doc = aggregates.build(
        as_of=f"{r.as_of:%Y-%m-%d}",
        run_id=out.run_id,
        scores=r.scores,
        bins=HISTOGRAM_BINS,
        quantiles=_distribution(r.scores),
        drift=out.drift,
        models=models,
        outcomes=aggregates.outcome_series(outcomes_dir(config)),
        campaign_readouts=readouts,
    )
    aggregates.write(config.scoring.output, doc)


def _record(
    client,
    config: ProjectConfig,
    champions: Champions,
    out: NightlyResult,
    drift_dir: Path,
    seconds: float,
) -> None:
    """Params, metrics, tags and artifacts of the scoring run."""
    from mlflow.entities import Metric, Param, RunTag

    r = out.score
    stamp = int(time.time() * 1000)
    params = {
        AS_OF: f"{r.as_of:%Y-%m-%d}",
        "output": str(r.path),
        "feature_set_version": champions.feature_set_version,
        "reason_method": config.scoring.reason_method,
        "postgres_table": config.scoring.postgres.table
        if config.scoring.postgres
        else "",
        **{f"{t}_model": champions.models[t].name for t in champions.targets},
        **{f"{t}_model_version": champions.versions[t] for t in champions.targets},
        **{f"{t}_population": name for t, name in r.populations.items()},
    }
    metrics = {
        "rows_scored": r.rows,
        **{f"rows_scored_{t}": n for t, n in r.scored().items()},
        **{f"rows_skipped_{k}": v for k, v in r.skipped.items()},
        "reasons_rows": r.reasons_rows,
        "duration_s": seconds,
        **{f"step_{k}_s": v for k, v in r.seconds.items()},
        **_distribution(r.scores),
        **_drift_metrics(out.drift),
    }
    if out.sink_rows is not None:
        metrics["postgres_rows"] = out.sink_rows
    tags = {
        "exit_code": str(int(out.exit_code)),
        "drift.level": out.drift["level"],
        "drift.alerts": ", ".join(out.drift["alerts"])[:4000],
        **({"sink.error": out.sink_error[:4000]} if out.sink_error else {}),
        **(
            {"store.error": r.store_error[:4000]}
            if r.store_error
            else {"store": "held back: too few scored"}
            if r.store_held
            else {}
        ),
        **({"scored_too_few": out.too_few["message"][:4000]} if out.too_few else {}),
        **nightly_tags(out.outcomes),
    }
    client.log_batch(
        out.run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.log_dict(
        out.run_id,
        aggregates.histograms(r.scores, HISTOGRAM_BINS),
        "score_histograms.json",
    )
    client.log_artifacts(out.run_id, str(drift_dir), "drift")


def _distribution(scores: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for target, values in scores.items():
        values = values[np.isfinite(values)]  # NaN: outside the population
        if values.size == 0:
            continue
        out[f"score_{target}_mean"] = float(values.mean())
        for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
            out[f"score_{target}_p{round(q * 100):02d}"] = float(v)
    return out


def _drift_metrics(report: dict) -> dict[str, float]:
    out = {f"drift_psi_score_{s['target']}": s["psi"] for s in report["scores"]}
    out["drift_alerts"] = len(report["alerts"])
    out["drift_warnings"] = len(report["warnings"])
    if report["features"]:
        out["drift_max_feature_psi"] = report["features"][0]["psi"]
    return out


def _summary(out: NightlyResult) -> dict:
    r = out.score
    return {
        "state": "finished",
        "exit_code": int(out.exit_code),
        "rows_scored": r.rows,
        # per served target: its population's name and the customers it scored
        "populations": {
            t: {"population": name, "rows_scored": r.scored()[t]}
            for t, name in r.populations.items()
        },
        "rows_skipped": r.skipped,
        "seconds": {k: round(v, 3) for k, v in r.seconds.items()},
        "output": str(r.path),
        "drift_level": out.drift["level"],
        "drift_alerts": out.drift["alerts"],
        "drift_report": str(out.drift_dir / drift_report.HTML_FILE),
        "postgres_rows": out.sink_rows,
        "postgres_error": out.sink_error,
        # the online store: updated, held back (too few), not updated (why in
        # online_store_error) or kept (a backfill: it holds a later date)
        "online_store": r.store,
        "online_store_error": r.store_error,
        "scored_too_few": out.too_few,
        **nightly_summary(out.outcomes),
    }


def record_failure(output: Path, error: str, exit_code: int, **context: str) -> None:
    """The status of a run that failed before it began (bad data, no champion);
    the last good run (`baseline`) is carried on."""
    path = Path(output) / STATUS_FILE
    last = _parse(path.read_bytes()) if path.is_file() else None
    write_status(
        Path(output),
        {
            "state": "failed",
            **context,
            "baseline": (last or {}).get("baseline"),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "finished_at": _now(),
            "exit_code": int(exit_code),
            "error": error,
        },
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_status(output: Path, status: dict) -> None:
    """`<output>/_last_run.json`, replaced atomically (a temp file, then rename)."""
    text = json.dumps(status, indent=2) + "\n"
    atomic_write(Path(output) / STATUS_FILE, lambda tmp: tmp.write_text(text))


def read_status(output: Path) -> dict | None:
    """The last run's status; a `running` run whose process is gone on this host
    reads as `interrupted` (killed, or the machine stopped)."""
    path = Path(output) / STATUS_FILE
    if not path.is_file():
        return None
    status = json.loads(path.read_text())
    if status.get("state") == "running" and status.get("host") == socket.gethostname():
        try:
            os.kill(int(status["pid"]), 0)
        except ProcessLookupError:
            status["state"] = "interrupted"
        except PermissionError:
            pass
    return status
