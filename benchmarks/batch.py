"""Batch benchmark: the nightly job end to end on synthetic data at scale.

Not a test: `python -m benchmarks batch [--customers N]` (`make bench-batch`), by
default 1,000,000 customers and about 100M events of the demo generator
(`features.synthetic.demo`, generated once into the work folder and reused, as
the features
benchmark does). Three child processes, one after the other:

- generate: the demo data, unless present;
- train: three small LightGBM champions (100 rounds, 31 leaves, an isotonic
  calibration map) fitted at the latest complete monthly cutoff on a sample of
  about 50,000 customers, with the drift reference the training run keeps; the
  same models are timed computing reason codes both ways (TreeSHAP and the path
  attribution) on 2,000 rows; saved as files;
- score: the nightly job as `propensity score` runs it, without MLflow: load and
  validate, `serving.batch.score.score` (features in customer chunks under DuckDB's
  memory limit, scoring, deciles, reason codes for the top deciles, the Parquet
  file published atomically) and the drift report, timed from start to end. Raw
  `booster.predict` is timed by the benchmark itself: each champion's booster is
  wrapped (`TimedBooster`) so that the score pass's own plain predict calls, on
  the very matrices it builds, add up their seconds. Its peak resident memory
  (VmHWM) is the job's.

Figures go to `bench/results/batch.json`: `customers`, `end_to_end_customers_per_s`,
`score_rows_per_s` (encoding, 3 predicts, calibration), `raw_predict_rows_per_s`,
`score_vs_raw_ratio` (goal >= 0.7), `peak_mb` (goal <= 2048), `reasons_rows_per_s`
(rows explained per second, the configured method), and the rest below.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    CHILDREN,
    DEMO_CONFIG,
    as_of_for,
    child_main,
    demo_spec,
    ensure_data,
    load_quietly,
    month_starts,
    run_child,
    write_json,
)

MODULE = "benchmarks.batch"
RESULTS_FILE = "batch.json"
MEMORY_LIMIT = "1GB"
THREADS = 2
TRAIN_CUSTOMERS = 50_000
EXPLAIN_ROWS = 2_000
PEAK_GOAL_MB = 2048.0
RATIO_GOAL = 0.7


def run_batch(
    customers: int,
    seed: int,
    workdir: Path,
    results: Path,
    memory_limit: str = MEMORY_LIMIT,
    threads: int = THREADS,
) -> dict[str, Any]:
    """Generate (or reuse) the data, train, score; print and write batch.json."""
    workdir, results = Path(workdir).resolve(), Path(results)
    data = ensure_data(workdir, customers, seed)
    models = workdir / f"batch-models-{customers}-{seed}"
    base = {
        "events": str(data.events_path),
        "customers": str(data.customers_path),
        "as_of": as_of_for(data.last_event).isoformat(),
        "memory_limit": memory_limit,
        "threads": threads,
        "models": str(models),
        "cwd": str(workdir),
    }
    print(f"batch: training champions on a sample of {customers:,} ...", flush=True)
    trained = run_child("train", base, MODULE)
    output = workdir / f"batch-scores-{customers}-{seed}"
    print(f"batch: scoring {customers:,} customers end to end ...", flush=True)
    scored = run_child("score", {**base, "output": str(output)}, MODULE)
    from serving.batch.incremental import state_dir
    from serving.batch.score import staging_dir

    for path in (output, staging_dir(output), state_dir(output)):
        shutil.rmtree(path, ignore_errors=True)
    record = results_record(customers, data.events, trained, scored)
    print(format_table(record))
    write_json(results / RESULTS_FILE, record)
    return record


def results_record(
    customers: int, events: int, trained: dict[str, Any], scored: dict[str, Any]
) -> dict[str, Any]:
    rows = scored["rows_scored"]
    s = scored["seconds"]
    out = {
        "customers": customers,
        "events": events,
        "rows_scored": rows,
        "rows_skipped": sum(scored["skipped"].values()),
        "end_to_end_s": scored["end_to_end_s"],
        "end_to_end_customers_per_s": customers / scored["end_to_end_s"],
        "load_s": scored["load_s"],
        "features_s": s["features"],
        "score_s": s["score"],
        "score_rows_per_s": rows / s["score"] if s["score"] else None,
        "raw_predict_s": scored["raw_predict_s"],
        "raw_predict_rows_per_s": rows / scored["raw_predict_s"]
        if scored["raw_predict_s"]
        else None,
        "drift_s": s["drift"] + scored["drift_report_s"],
        "write_s": s["write"],
        "reasons_s": s["reasons"],
        "reasons_rows": scored["reasons_rows"],
        "reasons_rows_per_s": scored["reasons_rows"] / s["reasons"]
        if s["reasons"]
        else None,
        "reasons_method": scored["reasons_method"],
        "reasons_shap_rows_per_s": trained["shap_rows_per_s"],
        "reasons_path_rows_per_s": trained["path_rows_per_s"],
        "peak_mb": scored["peak_mb"],
        "memory_limit": scored["memory_limit"],
        "threads": scored["threads"],
        "trees_per_model": trained["trees"],
        "features_count": trained["features"],
        "train_customers": trained["train_rows"],
        "peak_goal_mb": PEAK_GOAL_MB,
        "ratio_goal": RATIO_GOAL,
    }
    ratio = (
        out["score_rows_per_s"] / out["raw_predict_rows_per_s"]
        if out["score_rows_per_s"] and out["raw_predict_rows_per_s"]
        else None
    )
    out["score_vs_raw_ratio"] = ratio
    out["goal_ratio_met"] = ratio is not None and ratio >= RATIO_GOAL
    out["goal_peak_met"] = out["peak_mb"] <= PEAK_GOAL_MB
    return out


def format_table(r: dict[str, Any]) -> str:
    def per_s(value: float | None) -> str:
        return "-" if value is None else f"{value / 1000:,.1f}k/s"

    lines = [
        f"batch benchmark: {r['customers']:,} customers, {r['events']:,} events, "
        f"{r['rows_scored']:,} scored ({r['rows_skipped']:,} skipped), DuckDB "
        f"memory_limit {r['memory_limit']}, {r['threads']} threads",
        f"  end to end        {r['end_to_end_s']:8.1f} s  "
        f"{per_s(r['end_to_end_customers_per_s'])} customers "
        f"(load {r['load_s']:.1f} s, features {r['features_s']:.1f} s, "
        f"drift {r['drift_s']:.1f} s, write {r['write_s']:.1f} s)",
        f"  scoring step      {r['score_s']:8.1f} s  {per_s(r['score_rows_per_s'])}"
        f" rows; raw booster.predict {per_s(r['raw_predict_rows_per_s'])} on the "
        f"same matrices: {r['score_vs_raw_ratio']:.2f}x "
        f"(goal >= {RATIO_GOAL}: {'met' if r['goal_ratio_met'] else 'NOT met'})",
        f"  reason codes      {r['reasons_s']:8.1f} s  "
        f"{per_s(r['reasons_rows_per_s'])} rows ({r['reasons_rows']:,} top-decile "
        f"rows, {r['reasons_method']}); on {EXPLAIN_ROWS:,} rows: shap "
        f"{per_s(r['reasons_shap_rows_per_s'])}, path "
        f"{per_s(r['reasons_path_rows_per_s'])}",
        f"  peak memory       {r['peak_mb']:8.0f} MB (goal <= {PEAK_GOAL_MB:.0f}: "
        f"{'met' if r['goal_peak_met'] else 'NOT met'})",
        f"  models: {r['trees_per_model']} trees x 31 leaves, "
        f"{r['features_count']} features, trained on {r['train_customers']:,} rows",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- children


def demo_config(args: dict[str, Any]):
    """The demo config on the benchmark's data, engine settings and output."""
    from core.config import load_config

    config = load_config(DEMO_CONFIG)
    return config.model_copy(
        update={
            "data": config.data.model_copy(
                update={
                    "events": Path(args["events"]),
                    "customers": Path(args["customers"]),
                }
            ),
            "engine": config.engine.model_copy(
                update={
                    "memory_limit": args["memory_limit"],
                    "threads": args["threads"],
                }
            ),
            "scoring": config.scoring.model_copy(
                update={"output": Path(args.get("output", "scores"))}
            ),
            "online_store": config.online_store.model_copy(
                update={"path": Path(args.get("output", "scores")) / "online.sqlite"}
            ),
        }
    )


def _load(args: dict[str, Any]):
    """The benchmark's data, validated, under its DuckDB settings."""
    return load_quietly(
        Path(args["events"]),
        Path(args["customers"]),
        datetime.fromisoformat(args["as_of"]),
        args["memory_limit"],
        args["threads"],
    )


def _child_train(args: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.harness import fit_champions
    from features.columns import CUSTOMER_ID
    from features.definition import build_features
    from model.drift import profile

    ds = _load(args)
    _, last = ds.time_range()
    horizon = timedelta(days=demo_spec().churn_horizon_days)
    cutoff = max(c for c in month_starts(last, 3) if c + horizon <= last)
    customers = ds.customers.count().execute()
    every = max(1, customers // TRAIN_CUSTOMERS)
    events = ds.events.filter(ds.events[CUSTOMER_ID].hash() % every == 0)
    frame = build_features(events, [cutoff], demo_spec(), ds.customers).to_pandas()
    champions = fit_champions(ds, frame, cutoff)
    out = Path(args["models"])
    out.mkdir(parents=True, exist_ok=True)
    rows = frame[frame["eligible"]]
    timings = {"shap": 0.0, "path": 0.0}
    for target, model in champions.models.items():
        matrix = model.encoding.to_matrix(rows)
        model.metadata["reference"] = profile(
            matrix,
            model.encoding.features,
            model.encoding.vocabularies,
            model.predict(matrix),
            cutoff=f"{cutoff:%Y-%m-%d}",
        )
        model.booster.save_model(str(out / f"{target}.txt"))
        meta = {**model.metadata, "encoding": model.encoding.to_dict()}
        (out / f"{target}.json").write_text(json.dumps(meta))
        sample = matrix[:EXPLAIN_ROWS]
        for method in timings:
            timings[method] += _explain_seconds(model, sample, method)
    n = 3 * min(EXPLAIN_ROWS, len(rows))
    first = next(iter(champions.models.values()))
    return {
        "train_rows": len(rows),
        "cutoff": f"{cutoff:%Y-%m-%d}",
        "trees": first.booster.num_trees(),
        "features": len(first.encoding.features),
        "shap_rows_per_s": n / timings["shap"],
        "path_rows_per_s": n / timings["path"],
    }


def _explain_seconds(model, matrix: np.ndarray, method: str) -> float:
    from serving.reasons import reasons

    reasons(model, matrix[:10], 3, method=method)  # warm (the path table)
    start = time.perf_counter()
    reasons(model, matrix, 3, method=method)
    return time.perf_counter() - start


def load_champions(folder: Path):
    """The champions `_child_train` saved."""
    import lightgbm as lgb

    from features.columns import TARGETS
    from model.encoding import Encoding
    from model.registry import RegisteredModel
    from serving.scoring import Champions

    models = {}
    for target in TARGETS:
        meta = json.loads((folder / f"{target}.json").read_text())
        booster = lgb.Booster(model_file=str(folder / f"{target}.txt"))
        encoding = Encoding.from_dict(meta["encoding"])
        models[target] = RegisteredModel(target, "1", booster, encoding, meta, None)
    return Champions(models)


class TimedBooster:
    """A LightGBM booster whose plain `predict(matrix)` calls add up their
    seconds: the raw predict time of the score pass on its own matrices, measured
    without a hook in the production code. Other calls (pred_contrib, pred_leaf
    for reason codes, dump_model, feature_name...) pass through untimed."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.seconds = 0.0

    def predict(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return self.booster.predict(data, *args, **kwargs)
        start = time.perf_counter()
        out = self.booster.predict(data)
        self.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)


def time_raw_predict(champions: Any) -> list[TimedBooster]:
    """Wrap every champion's booster in a TimedBooster; return the wrappers."""
    timed = []
    for model in champions.models.values():
        model.booster = TimedBooster(model.booster)
        timed.append(model.booster)
    return timed


def _child_score(args: dict[str, Any]) -> dict[str, Any]:
    from serving.batch import drift_report
    from serving.batch.score import default_as_of, score, writing

    start = time.perf_counter()
    config = demo_config(args)
    ds = _load(args)
    champions = load_champions(Path(args["models"]))
    timed = time_raw_predict(champions)
    as_of = default_as_of(ds)
    load_s = time.perf_counter() - start
    with writing(config.scoring.output):
        result = score(config, ds, champions, as_of, progress=False)
        t0 = time.perf_counter()
        report = result.drift.report(config.scoring.drift)
        drift_report.write(report, Path(args["output"]) / "_drift")
        report_s = time.perf_counter() - t0
    return {
        "end_to_end_s": time.perf_counter() - start,
        "load_s": load_s,
        "rows_scored": result.rows,
        "skipped": result.skipped,
        "seconds": result.seconds,
        "raw_predict_s": sum(b.seconds for b in timed),
        "reasons_rows": result.reasons_rows,
        "reasons_method": config.scoring.reason_method,
        "drift_report_s": report_s,
        "drift_level": report["level"],
        "memory_limit": args["memory_limit"],
        "threads": args["threads"],
    }


CHILDREN_BATCH = {**CHILDREN, "train": _child_train, "score": _child_score}

__all__ = [
    "TimedBooster",
    "demo_config",
    "load_champions",
    "results_record",
    "run_batch",
    "time_raw_predict",
]

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], CHILDREN_BATCH, MODULE))
