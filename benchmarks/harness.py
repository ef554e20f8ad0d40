"""Foundation benchmark: our feature definition and scoring path against references.

Two comparisons on the same synthetic data, in the same run:

- features: `build_features` (the one Ibis definition, on DuckDB) against the
  hand-written DuckDB SQL of `benchmarks.sql` (the same columns). Each runs in
  its own child process, one after the other, so each peak memory is its own. The
  two feature tables must be equal (a benchmark of unequal results is meaningless).
- scoring: `Champions.predict_frame` (encoding, 3 predicts, calibration) against
  raw `booster.predict` of the same 3 boosters on a prebuilt float64 matrix.

`run_foundation` prints a side-by-side table and writes `foundation.json`. Children
run as `python -m benchmarks.harness _child <kind> <args-json>` and print one JSON line.

Peak memory is the process's own high-water mark (VmHWM). `ru_maxrss` is also
reported, but on Linux a child's `ru_maxrss` starts at its parent's peak RSS (the
kernel keeps the larger of the pre-exec image and the new one), so it overstates a
child's memory whenever the parent was ever bigger than the child.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.atomic import atomic_write
from features.columns import (
    CHURN,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    PURCHASE,
    SERVICE_REQUEST,
    TARGETS,
)

if TYPE_CHECKING:
    import pandas as pd

    from core.config import LightGBMConfig
    from features.definition import FeatureSpec
    from features.sources.load import Dataset
    from serving.scoring import Champions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEYS: tuple[str, ...] = (CUSTOMER_ID, CUTOFF)
FLOAT_TOLERANCE = 1e-9
REPETITIONS = 3
TRAIN_ROUNDS = 100
RESULTS_FILE = "foundation.json"
DEMO_CONFIG = PROJECT_ROOT / "propensity.yaml"


class FeatureMismatch(ValueError):
    """The engine's features and the reference SQL's differ."""


class ChildFailed(RuntimeError):
    """A bench child exited with an error; `result` holds what it reported (its
    error and its peak memory) when it could still report."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class DemoData:
    """The benchmark's input files and what they hold."""

    events_path: Path
    customers_path: Path
    events: int
    last_event: datetime
    reused: bool


# ---------------------------------------------------------------- the demo setup


def demo_spec() -> FeatureSpec:
    """The feature spec of the demo config (propensity.yaml), which the reference
    SQL follows: without the feature groups (features.behaviour and
    features.classic), which the hand-written SQL does not have."""
    import dataclasses

    from core.config import load_config
    from features.definition import FeatureSpec

    spec = FeatureSpec.from_config(load_config(DEMO_CONFIG))
    return dataclasses.replace(spec, behaviour=False, classic=False)


def month_starts(last: datetime, count: int) -> list[datetime]:
    """The last `count` month starts (midnight on the 1st) on or before `last`."""
    year, month = last.year, last.month
    out = []
    for _ in range(count):
        out.append(datetime(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return sorted(out)


def as_of_for(last_event: datetime) -> datetime:
    """The load as-of: the last event, rounded up to a whole second."""
    if last_event.microsecond:
        return last_event.replace(microsecond=0) + timedelta(seconds=1)
    return last_event


def ensure_data(workdir: Path, customers: int, seed: int) -> DemoData:
    """Demo data in `workdir/demo-<customers>-<seed>/`, generated unless present."""
    out = workdir / f"demo-{customers}-{seed}"
    events_path, customers_path = out / "events.parquet", out / "customers.parquet"
    reused = events_path.is_file() and customers_path.is_file()
    if reused:
        print(f"reusing demo data in {out}", flush=True)
    else:
        print(f"generating demo data in {out} ...", flush=True)
        args = {
            "out_dir": str(out),
            "customers": customers,
            "seed": seed,
            "cwd": str(workdir),
        }
        child = run_child("generate", args)
        print(
            f"generated {child['events']:,} events in {child['seconds']:.1f} s",
            flush=True,
        )
    events, last = _events_facts(events_path)
    return DemoData(events_path, customers_path, events, last, reused)


def _events_facts(events_path: Path) -> tuple[int, datetime]:
    """Row count and last event time of an events Parquet file."""
    import duckdb

    with duckdb.connect() as con:
        rows, last = con.execute(
            f"SELECT count(*), max({EVENT_TIME}) FROM read_parquet(?)",
            [str(events_path)],
        ).fetchone()
    return int(rows), last


# ---------------------------------------------------------------- children


def run_child(
    kind: str, args: dict[str, Any], module: str = "benchmarks.harness"
) -> dict[str, Any]:
    """Run one child job of `module` (whose `__main__` calls `child_main`) in a
    fresh Python process; return its JSON line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])
    )
    cwd = Path(args.get("cwd", PROJECT_ROOT))
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", module, "_child", kind, json.dumps(args)]
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or not lines:
        error = result.get("error") or f"stdout: {proc.stdout[-2000:]}"
        raise ChildFailed(
            f"bench child {kind!r} failed (exit {proc.returncode}): {error}", result
        )
    return result


def peak_memory_mb() -> tuple[float, float]:
    """(VmHWM, ru_maxrss) of this process in MB; VmHWM falls back to ru_maxrss."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return maxrss, maxrss
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024, maxrss
    return maxrss, maxrss


def load_quietly(
    events: Path,
    customers: Path,
    as_of: datetime,
    memory_limit: str | None = None,
    threads: int | None = None,
    subscriptions: Path | None = None,
    pseudonym_key: str | None = None,
) -> Dataset:
    """`features.sources.load.load` on a connection without DuckDB's progress bar
    (DuckDB's
    defaults unless `memory_limit` / `threads` are given), with pseudonyms keyed
    by `pseudonym_key` when given."""
    from features.sources.load import connect, load
    from features.sources.privacy import Pseudonymiser

    con = connect(memory_limit, threads)
    con.con.execute("SET enable_progress_bar = false")
    return load(
        events,
        customers,
        as_of=as_of,
        con=con,
        subscriptions=subscriptions,
        pseudonyms=Pseudonymiser(pseudonym_key.encode()) if pseudonym_key else None,
    )


def _child_generate(args: dict[str, Any]) -> dict[str, Any]:
    from features.synthetic.demo import generate

    start = time.perf_counter()
    summary = generate(
        Path(args["out_dir"]), customers=args["customers"], seed=args["seed"]
    )
    return {"seconds": time.perf_counter() - start, "events": summary.events}


def _child_load(args: dict[str, Any]) -> tuple[Dataset, dict[str, float]]:
    """Load (and validate) the data; its time and the peak memory so far."""
    start = time.perf_counter()
    ds = load_quietly(
        Path(args["events"]),
        Path(args["customers"]),
        datetime.fromisoformat(args["as_of"]),
        memory_limit=args.get("memory_limit"),
        threads=args.get("threads"),
        pseudonym_key=args.get("pseudonym_key"),
    )
    facts = {"load_s": time.perf_counter() - start, "load_peak_mb": peak_memory_mb()[0]}
    return ds, facts


def _child_engine(args: dict[str, Any]) -> dict[str, Any]:
    """build_features on DuckDB for every customer seen before each cutoff, run the
    way training and the nightly job run it (in customer chunks when the events
    outgrow the memory limit), written as Parquet parts under `out`."""
    from features.definition import build_features
    from features.sources.chunks import write_chunked

    ds, facts = _child_load(args)
    cutoffs = [datetime.fromisoformat(c) for c in args["cutoffs"]]
    spec = demo_spec()
    start, cpu = time.perf_counter(), time.process_time()
    parts = write_chunked(
        ds,
        lambda events: build_features(events, cutoffs, spec, ds.customers),
        Path(args["out"]),
        cutoffs=len(cutoffs),
    )
    return {
        "seconds": time.perf_counter() - start,
        # every thread of this process (DuckDB's included): a figure the
        # other processes on the machine hardly change
        "cpu_s": time.process_time() - cpu,
        "chunks": len(parts),
        **facts,
    }


def _child_sql(args: dict[str, Any]) -> dict[str, Any]:
    """The hand-written reference query on the same views, COPY'd to Parquet: to
    the file `out`, or with `parts` n > 1, one part of the customers after the
    other, each to `out/part-<k>.parquet`."""
    from benchmarks.sql import reference_sql

    ds, facts = _child_load(args)
    cutoffs = [datetime.fromisoformat(c) for c in args["cutoffs"]]
    n = int(args.get("parts", 1))
    out = Path(args["out"])
    targets = [out] if n == 1 else [out / f"part-{k}.parquet" for k in range(n)]
    if n > 1:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for k, target in enumerate(targets):
        query = reference_sql(demo_spec(), cutoffs, (k, n))
        path = str(target).replace("'", "''")
        ds.duckdb.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")
    return {"seconds": time.perf_counter() - start, **facts}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "generate": _child_generate,
    "engine": _child_engine,
    "sql": _child_sql,
}


def child_main(
    argv: list[str],
    children: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = CHILDREN,
    module: str = "benchmarks.harness",
) -> int:
    """`_child <kind> <args-json>`: run the job, print one JSON line (with memory)."""
    if len(argv) != 3 or argv[0] != "_child" or argv[1] not in children:
        print(
            f"usage: python -m {module} _child {{{','.join(children)}}} ARGS_JSON",
            file=sys.stderr,
        )
        return 2
    try:
        result = children[argv[1]](json.loads(argv[2]))
    except Exception as exc:  # report it (with the peak so far), then fail
        peak, maxrss = peak_memory_mb()
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(
            json.dumps({"error": error, "peak_mb": peak, "ru_maxrss_mb": maxrss}),
            flush=True,
        )
        raise
    result["peak_mb"], result["ru_maxrss_mb"] = peak_memory_mb()
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- equality


def compare_features(
    left: pa.Table | pd.DataFrame, right: pa.Table | pd.DataFrame
) -> None:
    """Raise FeatureMismatch unless both tables hold the same features.

    Same column names in the same order, same (customer_id, cutoff) rows, nulls in
    the same places, integers/strings/booleans/timestamps exactly equal and floats
    within 1e-9 (absolute, or relative above 1). Rows are compared sorted by key.
    """
    left, right = _as_table(left), _as_table(right)
    if left.column_names != right.column_names:
        raise FeatureMismatch(
            f"columns differ:\n  engine: {left.column_names}\n"
            f"  reference: {right.column_names}"
        )
    if left.num_rows != right.num_rows:
        raise FeatureMismatch(
            f"row counts differ: {left.num_rows:,} vs {right.num_rows:,}"
        )
    order = [(k, "ascending") for k in KEYS]
    left, right = left.sort_by(order), right.sort_by(order)
    for name in left.column_names:
        bad = _differing_rows(name, left[name], right[name])
        if bad.size:
            raise FeatureMismatch(_mismatch_message(name, bad, left, right))


def _as_table(data: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)


def value_kind(dtype: pa.DataType) -> str:
    """The kind of values a column holds, as the comparisons see it: integer,
    float, string, or the type itself."""
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "float"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return str(dtype)


def _differing_rows(name: str, a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Row positions where a and b differ (values, nulls or kind of type)."""
    if value_kind(a.type) != value_kind(b.type):
        raise FeatureMismatch(
            f"column {name!r}: types differ: engine {a.type}, reference {b.type}"
        )
    null_a = pc.is_null(a, nan_is_null=True).to_numpy(zero_copy_only=False)
    null_b = pc.is_null(b, nan_is_null=True).to_numpy(zero_copy_only=False)
    if value_kind(a.type) == "float":
        x = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
        y = pc.cast(b, pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            scale = np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
            unequal = ~(np.abs(x - y) <= FLOAT_TOLERANCE * scale)
    else:
        equal = pc.fill_null(pc.equal(a, b), True).to_numpy(zero_copy_only=False)
        unequal = ~equal
    return np.flatnonzero((null_a != null_b) | (unequal & ~null_a & ~null_b))


def _mismatch_message(
    name: str, bad: np.ndarray, left: pa.Table, right: pa.Table
) -> str:
    lines = [
        f"engine and reference SQL differ in column {name!r} "
        f"on {bad.size:,} row(s), e.g.:"
    ]
    for i in bad[:5].tolist():
        key = ", ".join(str(left[k][i].as_py()) for k in KEYS)
        ours, theirs = left[name][i].as_py(), right[name][i].as_py()
        lines.append(f"  ({key}): engine={ours!r} reference={theirs!r}")
    return "\n".join(lines)


# ---------------------------------------------------------------- scoring


def fit_champions(ds: Dataset, frame: pd.DataFrame, cutoff: datetime) -> Champions:
    """Small LightGBM models per target, trained on the eligible rows at `cutoff`."""
    import ibis
    import lightgbm as lgb

    from features.definition import ELIGIBLE, catalogue
    from features.labels import LabelSpec, build_labels
    from model.encoding import Encoding
    from model.registry import RegisteredModel
    from serving.scoring import Champions
    from training.calibrate import fit as fit_calibrator
    from training.model import lgb_params

    spec = demo_spec()
    cat = catalogue(spec, ds.customers)
    train = frame[(frame[CUTOFF] == cutoff) & frame[ELIGIBLE]]
    if train.empty:
        raise ValueError(
            f"no eligible customers at the training cutoff {cutoff:%Y-%m-%d}"
        )
    horizons = {t: spec.churn_horizon_days for t in (CHURN, PURCHASE, SERVICE_REQUEST)}
    pairs = ibis.memtable(train[[CUSTOMER_ID, CUTOFF]])
    labels = build_labels(
        ds.events, pairs, spec, LabelSpec(horizons, spec.churn_definition)
    )
    train = train.merge(labels.to_pyarrow().to_pandas(), on=[CUSTOMER_ID, CUTOFF])
    encoding = Encoding.fit(train, cat.names, cat.categorical)
    x = encoding.to_matrix(train)
    params = lgb_params(_lgb_config())
    meta = {"feature_set_version": cat.version()}
    models = {}
    for target in TARGETS:
        data = lgb.Dataset(
            x,
            train[target].to_numpy(),
            feature_name=cat.names,
            categorical_feature=encoding.categorical,
        )
        booster = lgb.train(params, data, num_boost_round=TRAIN_ROUNDS)
        # served probabilities go through a calibration map: time it too (an
        # isotonic map, the larger of the two, fitted in-sample: only its cost
        # matters here)
        y = train[target].to_numpy()
        calibration = fit_calibrator("isotonic", booster.predict(x), y).to_dict()
        models[target] = RegisteredModel(
            target, "1", booster, encoding, {**meta, "calibration": calibration}, None
        )
    return Champions(models)


def _lgb_config() -> LightGBMConfig:
    from core.config import LightGBMConfig

    return LightGBMConfig(num_leaves=31, num_boost_round=TRAIN_ROUNDS)


def best_seconds(job: Callable[[], object], repetitions: int = REPETITIONS) -> float:
    """The fastest of `repetitions` runs of `job`."""
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def time_scoring(frame: pd.DataFrame, champions: Champions) -> tuple[float, float]:
    """Rows/s of our scoring path (encoding, 3 predicts, calibration) and of raw
    booster.predict on the same rows."""
    from serving.batch.score import CHUNK_ROWS

    starts = range(0, len(frame), CHUNK_ROWS)

    def ours() -> None:
        for s in starts:
            champions.predict_frame(frame.iloc[s : s + CHUNK_ROWS])

    models = list(champions.models.values())
    matrices = {id(m.encoding): m.encoding.to_matrix(frame) for m in models}

    def raw() -> None:
        for s in starts:
            for m in models:
                m.booster.predict(matrices[id(m.encoding)][s : s + CHUNK_ROWS])

    rows = len(frame)
    return rows / best_seconds(ours), rows / best_seconds(raw)


# ---------------------------------------------------------------- the run


def run_foundation(
    customers: int, seed: int, cutoffs: int, workdir: Path, results: Path
) -> dict[str, float]:
    """Run the foundation benchmark, print the table, write results/foundation.json."""
    workdir, results = Path(workdir).resolve(), Path(results)
    data = ensure_data(workdir, customers, seed)
    cuts = month_starts(data.last_event, cutoffs)
    engine, sql, paths = _run_feature_children(data, cuts, workdir)
    engine_table, sql_table = (
        pq.read_table(paths["engine"]),
        pq.read_table(paths["sql"]),
    )
    compare_features(engine_table, sql_table)
    del sql_table
    score, raw, train_cutoff = _score(data, engine_table, cuts)
    out = {
        "customers": customers,
        "events": data.events,
        "cutoffs": len(cuts),
        "feature_rows": engine_table.num_rows,
        "features_count": engine_table.num_columns - len(KEYS) - 1,
        "load_s": engine["load_s"],
        "features_s": engine["seconds"],
        "features_peak_mb": engine["peak_mb"],
        "features_ru_maxrss_mb": engine["ru_maxrss_mb"],
        "sql_s": sql["seconds"],
        "sql_peak_mb": sql["peak_mb"],
        "sql_ru_maxrss_mb": sql["ru_maxrss_mb"],
        "sql_load_s": sql["load_s"],
        "features_vs_sql_ratio": engine["seconds"] / sql["seconds"],
        "peak_mb_vs_sql_ratio": engine["peak_mb"] / sql["peak_mb"],
        "score_rows": engine_table.num_rows,
        "score_rows_per_s": score,
        "raw_predict_rows_per_s": raw,
        "score_vs_raw_ratio": score / raw,
    }
    print(format_table(out, cuts, train_cutoff))
    write_json(results / RESULTS_FILE, out)
    return out


def child_args(data: DemoData, cuts: list[datetime], workdir: Path) -> dict[str, Any]:
    """What every feature child reads: the data, its as-of, the cutoffs."""
    return {
        "events": str(data.events_path),
        "customers": str(data.customers_path),
        "as_of": as_of_for(data.last_event).isoformat(),
        "cutoffs": [c.isoformat() for c in cuts],
        "cwd": str(workdir),
    }


def _run_feature_children(
    data: DemoData, cuts: list[datetime], workdir: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Path]]:
    """The engine child, then the SQL child (never both at once)."""
    base = child_args(data, cuts, workdir)
    paths = {kind: workdir / f"features-{kind}.parquet" for kind in ("engine", "sql")}
    for path in paths.values():
        # the engine writes a folder of parts when it runs in chunks
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    runs = {}
    for kind, path in paths.items():
        print(f"features: running {kind} ...", flush=True)
        runs[kind] = run_child(kind, {**base, "out": str(path)})
    return runs["engine"], runs["sql"], paths


def _score(
    data: DemoData, features: pa.Table, cuts: list[datetime]
) -> tuple[float, float, datetime]:
    """Train small champions, then time our scoring path and raw predict on all rows."""
    ds = load_quietly(data.events_path, data.customers_path, as_of_for(data.last_event))
    horizon = timedelta(days=demo_spec().churn_horizon_days)
    complete = [c for c in cuts if c + horizon <= data.last_event]
    train_cutoff = min(complete or cuts)
    frame = features.to_pandas()
    print(
        f"scoring: training on {train_cutoff:%Y-%m-%d}, timing {len(frame):,} rows ...",
        flush=True,
    )
    champions = fit_champions(ds, frame, train_cutoff)
    score, raw = time_scoring(frame, champions)
    return score, raw, train_cutoff


def format_table(
    r: dict[str, float], cuts: list[datetime], train_cutoff: datetime
) -> str:
    """The side-by-side table printed at the end of a run."""
    dates = ", ".join(f"{c:%Y-%m-%d}" for c in cuts)
    head = (
        f"foundation benchmark: {int(r['customers']):,} customers, "
        f"{int(r['events']):,} events, {int(r['cutoffs'])} cutoffs ({dates})"
    )
    rows = [
        ("", "propensity", "reference (same run)", "ratio"),
        (
            "features",
            f"{r['features_s']:.1f} s",
            f"hand-written SQL {r['sql_s']:.1f} s",
            f"{r['features_vs_sql_ratio']:.2f}x",
        ),
        (
            "features peak memory",
            f"{r['features_peak_mb']:.0f} MB",
            f"hand-written SQL {r['sql_peak_mb']:.0f} MB",
            f"{r['peak_mb_vs_sql_ratio']:.2f}x",
        ),
        (
            "scoring (3 targets)",
            f"{r['score_rows_per_s'] / 1000:.0f}k rows/s",
            f"raw booster.predict {r['raw_predict_rows_per_s'] / 1000:.0f}k rows/s",
            f"{r['score_vs_raw_ratio']:.2f}x",
        ),
    ]
    body = [f"{a:<22}{b:>14}   {c:<38}{d:>6}" for a, b, c, d in rows]
    notes = (
        f"{int(r['feature_rows']):,} feature rows x {int(r['features_count'])} "
        f"features, identical from both; load + validation {r['load_s']:.1f} s "
        "(not counted); "
        f"models trained at {train_cutoff:%Y-%m-%d}, {TRAIN_ROUNDS} rounds; "
        f"best of {REPETITIONS} for scoring"
    )
    return "\n".join([head, *body, notes])


def write_json(path: Path, data: dict[str, float]) -> None:
    """Write `data` as JSON atomically (core.atomic.atomic_write)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
