"""Spark benchmark: the reference feature job and scoring, Spark local vs embedded.

On the same demo data (200k customers, about 20M events by default, 3 monthly
cutoffs):

- features: the one definition on DuckDB (in a child process, as
  the foundation bench runs it) and on Spark (local mode, `--spark-master`), each
  written as Parquet; the two outputs must be equal (`compare_parquet`: integers
  exactly, floats to 1e-9) or the figures are not reported;
- scoring: small LightGBM champions fitted on the DuckDB features, then the rows
  of the last cutoff scored in process (`Champions.predict_frame`: encoding,
  3 predicts, calibration) and on Spark by the nightly's path,
  `serving.batch.spark.score_files` (the rows as one Parquet part of 50k-row
  row groups; Spark's Python tasks read them with pyarrow, score them with the
  champions broadcast and loaded once per Python worker, the same encoding and
  calibration, and write the scores beside the part); beside it, not in the
  goal's ratio, `serving.batch.spark.with_scores` (one pandas UDF over a cached
  DataFrame of the same rows, results dropped by Spark's `noop` sink).

Figures go to `spark.json`: `spark_features_s`, `duckdb_features_s`,
`spark_score_rows_per_s`, `embedded_score_rows_per_s` and their ratios (the
goals' figures: wall time, the JVM already running). Beside them, not in the
ratios: the pandas UDF's scoring (`spark_udf_score_rows_per_s`,
`score_ratio_embedded_over_spark_udf`), the JVM's start-up
(`spark_session_start_s`, session creation, which
the DuckDB child has no counterpart of), the feature job's stages on Spark
(`spark_sums_s`, `spark_cancels_s`, `spark_from_sums_s`; with `--sums spark`
only: the default is one Spark job, each task's rows by DuckDB) and CPU seconds of
each engine's feature job (`spark_features_cpu_s`: the JVM process and its
Python workers, which run the sums' DuckDB in the tasks;
`spark_features_jvm_cpu_s`: the JVM alone; `duckdb_features_cpu_s`: the child
process), which other agents' load on a shared machine changes far less than
wall time.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.features import compare_parquet
from benchmarks.harness import (
    as_of_for,
    best_seconds,
    demo_spec,
    ensure_data,
    fit_champions,
    load_quietly,
    month_starts,
    run_child,
    time_scoring,
    write_json,
)
from features.columns import CUTOFF

log = logging.getLogger(__name__)

RESULTS_FILE = "spark.json"
SPARK_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",  # no port taken on a shared machine
    "spark.driver.memory": "4g",
}
SCORE_REPETITIONS = 3


def run_spark(
    customers: int,
    seed: int,
    cutoffs: int,
    workdir: Path,
    results: Path,
    master: str = "local[2]",
    threads: int = 2,
    sums: str = "duckdb",
) -> dict[str, Any]:
    """Run both jobs, print the side-by-side table, write spark.json; return it."""
    from features.sources.spark import load_spark, session

    workdir = workdir.resolve()  # the children run in it
    load_start = os.getloadavg()[0]
    workdir.mkdir(parents=True, exist_ok=True)
    data = ensure_data(workdir, customers, seed)
    cuts = month_starts(data.last_event, cutoffs)
    as_of = as_of_for(data.last_event)
    duck_out, spark_out = workdir / "spark-duckdb-features", workdir / "spark-features"
    for path in (duck_out, spark_out):
        shutil.rmtree(path, ignore_errors=True)
    print(f"features on DuckDB ({threads} threads) ...", flush=True)
    duck = run_child(
        "engine",
        {
            "events": str(data.events_path),
            "customers": str(data.customers_path),
            "as_of": as_of.isoformat(),
            "cutoffs": [c.isoformat() for c in cuts],
            "out": str(duck_out),
            "threads": threads,
            "cwd": str(workdir),
        },
    )
    print(f"features on Spark ({master}) ...", flush=True)
    start = time.perf_counter()
    spark = session(master=master, conf=SPARK_CONF)
    session_start_s = time.perf_counter() - start
    jvm_cpu, spark_cpu = _jvm_cpu_seconds()
    ds = load_quietly(data.events_path, data.customers_path, as_of, threads=threads)
    start = time.perf_counter()
    sds = load_spark(spark, data.events_path, data.customers_path, validated=ds)
    spark_load_s = time.perf_counter() - start
    stages, timings = workdir / "spark-stages", {}
    cpu_before, all_before, start = jvm_cpu(), spark_cpu(), time.perf_counter()
    built = sds.build_features(
        cuts, demo_spec(), stages, sds.customers, timings=timings, sums=sums
    )
    sds.to_parquet_dir(built, spark_out)
    spark_features_s = time.perf_counter() - start
    # the Spark SQL path's materialised stages; the task path is one job
    sums_s, cancels_s = timings.get("sums_s"), timings.get("cancels_s")
    jvm_cpu_s = jvm_cpu() - cpu_before
    spark_cpu_s = spark_cpu() - all_before
    shutil.rmtree(stages, ignore_errors=True)
    rows, features = compare_parquet(duck_out, spark_out, threads=threads)
    print(f"equal: {rows:,} rows x {features} features", flush=True)
    embedded, on_spark, scored, udf = _score(ds, spark, duck_out, cuts, workdir)
    record = {
        "customers": customers,
        "events": data.events,
        "cutoffs": len(cuts),
        "feature_rows": rows,
        "features": features,
        "spark_master": master,
        "spark_version": spark.version,
        "spark_sums": sums,
        "duckdb_threads": threads,
        "duckdb_features_s": duck["seconds"],
        "duckdb_features_cpu_s": duck.get("cpu_s"),
        "duckdb_load_s": duck["load_s"],
        "duckdb_peak_mb": duck["peak_mb"],
        "spark_features_s": spark_features_s,
        "spark_sums_s": sums_s,
        "spark_cancels_s": cancels_s,
        "spark_from_sums_s": (
            None if sums_s is None else spark_features_s - sums_s - cancels_s
        ),
        "spark_features_jvm_cpu_s": jvm_cpu_s,
        "spark_features_cpu_s": spark_cpu_s,
        "spark_session_start_s": session_start_s,
        "spark_load_s": spark_load_s,
        "features_ratio_spark_over_duckdb": spark_features_s / duck["seconds"],
        "features_cpu_ratio_spark_over_duckdb": (
            spark_cpu_s / duck["cpu_s"] if duck.get("cpu_s") else None
        ),
        "load_average_1m_start": load_start,
        "load_average_1m": os.getloadavg()[0],
        "score_rows": scored,
        "embedded_score_rows_per_s": embedded,
        "spark_score_rows_per_s": on_spark,
        "score_ratio_embedded_over_spark": embedded / on_spark,
        "spark_udf_score_rows_per_s": udf,
        "score_ratio_embedded_over_spark_udf": embedded / udf,
    }
    spark.stop()
    print(format_table(record))
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / RESULTS_FILE, record)
    print(f"figures in {results / RESULTS_FILE}")
    return record


def _jvm_cpu_seconds():
    """Two functions giving the CPU seconds (user + system) so far of the
    local JVM (the java process PySpark started under this one) and of the
    JVM with its Python workers (`pyspark.daemon` and the workers it forks,
    which run the tasks' Python, e.g. the sums' DuckDB); both give 0.0 when
    there is no local JVM, as with a remote master. The workers are reused
    across tasks but exit when idle, so summing the live
    processes and the daemon's reaped children counts them."""
    import psutil

    jvms = [p for p in psutil.Process().children(recursive=True) if "java" in p.name()]
    if not jvms:
        return (lambda: 0.0), (lambda: 0.0)

    def jvm() -> float:
        times = jvms[0].cpu_times()
        return times.user + times.system

    def with_workers() -> float:
        # the daemon (a child of the JVM) reaps the workers it forks, so its
        # children_* times hold the exited workers, and live ones are read
        total = jvm()
        for daemon in jvms[0].children():
            try:
                t = daemon.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
                for worker in daemon.children(recursive=True):
                    w = worker.cpu_times()
                    total += w.user + w.system
            except psutil.Error:
                continue
        return total

    return jvm, with_workers


def _score(ds, spark, features_dir: Path, cuts, workdir: Path):
    """(embedded rows/s, Spark rows/s, rows, pandas-UDF rows/s) on the last
    cutoff's rows."""
    from features.definition import ELIGIBLE
    from serving.batch.spark import SCORE_BATCH_ROWS, score_files, with_scores

    table = pq.read_table(features_dir)
    horizon = timedelta(days=demo_spec().churn_horizon_days)
    complete = [c for c in cuts if c + horizon <= ds.time_range()[1]]
    champions = fit_champions(ds, table.to_pandas(), min(complete or cuts))
    last = table.filter(pc.equal(table[CUTOFF], cuts[-1]))
    last = last.filter(last[ELIGIBLE])
    frame = last.to_pandas()
    print(f"scoring {len(frame):,} rows in process and on Spark ...", flush=True)
    embedded, _ = time_scoring(frame, champions)
    rows_dir = workdir / "spark-score-rows"
    shutil.rmtree(rows_dir, ignore_errors=True)
    rows_dir.mkdir(parents=True)
    # row groups of the size Spark hands the scoring UDF a batch of (the
    # nightly's feature parts are Spark's own, row groups up to 128 MB)
    part = rows_dir / "part-0.parquet"
    pq.write_table(last, part, row_group_size=SCORE_BATCH_ROWS)
    # the nightly's path (score_spark): the tasks read the feature parts and
    # write the scores beside them
    out = workdir / "spark-scores"

    def files() -> None:
        shutil.rmtree(out, ignore_errors=True)
        score_files(spark, [part], champions, out)

    on_spark = len(frame) / best_seconds(files, SCORE_REPETITIONS)
    # the pandas UDF over a cached DataFrame (Spark's `noop` sink), for
    # comparison: the rows go through the JVM to Arrow and back
    df = spark.read.parquet(str(rows_dir)).cache()
    df.count()
    scored = with_scores(df, champions)
    seconds = best_seconds(
        lambda: scored.write.format("noop").mode("overwrite").save(),
        SCORE_REPETITIONS,
    )
    df.unpersist()
    return embedded, on_spark, len(frame), len(frame) / seconds


def format_table(r: dict[str, Any]) -> str:
    lines = [
        f"reference job: {r['customers']:,} customers, {r['events']:,} events, "
        f"{r['cutoffs']} cutoffs ({r['feature_rows']:,} feature rows)",
        f"{'':28} {'Spark ' + r['spark_master']:>18} {'DuckDB/in-process':>18} "
        f"{'ratio':>7}",
        f"{'features (s)':28} {r['spark_features_s']:18.1f} "
        f"{r['duckdb_features_s']:18.1f} "
        f"{r['features_ratio_spark_over_duckdb']:6.1f}x",
        f"{'  CPU of the feature job (s)':28} {r['spark_features_cpu_s']:18.1f} "
        f"{r['duckdb_features_cpu_s'] or 0:18.1f} "
        f"{r['features_cpu_ratio_spark_over_duckdb'] or 0:6.1f}x",
        f"{'    of which the JVM (s)':28} {r['spark_features_jvm_cpu_s']:18.1f}",
        f"{'  Spark stages (s)':28} sums ({r['spark_sums']}) "
        f"{r['spark_sums_s']:.1f}, cancel days "
        f"{r['spark_cancels_s']:.1f}, features from sums "
        f"{r['spark_from_sums_s']:.1f}"
        if r.get("spark_sums_s") is not None
        else f"{'  Spark stages':28} one job: the events shuffled by customer, "
        "each task's rows by DuckDB",
        f"{'  JVM start-up (s, not timed)':28} {r['spark_session_start_s']:18.1f}",
        f"{'scoring, 3 models (rows/s)':28} {r['spark_score_rows_per_s']:18,.0f} "
        f"{r['embedded_score_rows_per_s']:18,.0f} "
        f"{r['score_ratio_embedded_over_spark']:6.1f}x",
        f"{'  as a pandas UDF (rows/s)':28} {r['spark_udf_score_rows_per_s']:18,.0f} "
        f"{'':18} {r['score_ratio_embedded_over_spark_udf']:6.1f}x",
        f"load average (1 min) at the start / end: "
        f"{r.get('load_average_1m_start') or 0:.1f} / {r['load_average_1m']:.1f} "
        f"on {os.cpu_count()} cores",
    ]
    return "\n".join(lines)


__all__ = ["format_table", "run_spark"]
