"""Features benchmark: the engine against the hand-written SQL on three jobs.

Each job builds the whole catalogue for every customer seen before each cutoff,
once with `build_features` (the engine) and once with the hand-written DuckDB SQL
of `benchmarks.sql`, on the same loaded views and with the same DuckDB settings
(threads and an explicit memory limit, so DuckDB spills to disk rather than
growing). Both write Parquet (nothing is held in memory), each in its own fresh
child process, one at a time, so each peak resident memory (VmHWM) is its own.
The two outputs are then compared in a third child, in DuckDB (a FULL OUTER JOIN
on the keys with a tolerance predicate per column: the large job's 3M rows of 100
columns would not fit in memory), with the semantics of
`benchmarks.harness.compare_features`; a job's figures are kept only for equal results.
A side that fails (DuckDB out of memory, say) is reported as failed, with its error
and its peak memory, and the run goes on.

The SQL runs one part of the customers after the other (a hash of the id) when a
job has more than `EVENTS_PER_SQL_PART_PER_GB` events per GB of its memory limit:
as a single query its hash aggregates (the roll-up per customer and day has 25
aggregates) neither fit nor spill beyond about that with 2 threads (DuckDB 2.0.1:
20M events ran under 700MB and 1GB but not under 600MB, 100M events not under 1GB).
Features are per customer, so the parts together are the whole result.

Jobs, on demo data (`features.synthetic.demo.generate`, about 100 events per customer):

- reference: `customers` (200k: 20M events), the last 3 monthly cutoffs;
- training_set: the same data, the last 12 monthly cutoffs;
- large: `large_customers` (1M: 100M events), the last 3 monthly cutoffs.

Goals (issue 3): engine time <= 1.0x the SQL on the reference job; peak resident
memory <= 1 GB (1024 MB) on every job; time growing no worse than linearly with
events (the large job's engine seconds per event against the reference job's;
within 10% counts as linear, given the timing noise of a shared machine).

Each job also times the floor of any feature pass over its events (issue 20): the
customer-day roll-up (`day_tiles`) of the same events (those before the last
cutoff), on the same views and settings, each tile's every column reduced to one
row (a fourth child; not written: its rows outnumber the features' many times).
Goal: the engine within 3x of it on the reference job (`rollup_s`,
`engine_vs_rollup_ratio`; per job `<job>_rollup_s`, `<job>_engine_vs_rollup_ratio`),
with both children's process CPU beside (`<job>_engine_cpu_s`,
`<job>_rollup_cpu_s`, `<job>_engine_vs_rollup_cpu_ratio`, headline
`engine_vs_rollup_cpu_ratio`): the figure a loaded machine changes least.
Linearity: each job's `<job>_engine_us_per_event`; the large job's over the
reference job's is `large_vs_reference_s_per_event` (goal within 1.1x).

`run_features` prints a table and writes `features.json`: per job `<job>_events`,
`<job>_cutoffs`, `<job>_rows`, `<job>_engine_s`, `<job>_sql_s`, `<job>_ratio`
(engine / SQL time), `<job>_engine_peak_mb`, `<job>_sql_peak_mb`, events per second
and load times, plus the headline keys of the issue (`reference_engine_s`,
`reference_sql_s`, `reference_ratio`, `reference_peak_mb`, `training_set_s`,
`large_s`, `large_peak_mb`, `features_count`) and the DuckDB settings used.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.harness import (
    CHILDREN,
    FLOAT_TOLERANCE,
    KEYS,
    ChildFailed,
    DemoData,
    FeatureMismatch,
    as_of_for,
    child_main,
    ensure_data,
    month_starts,
    run_child,
    value_kind,
    write_json,
)
from features.columns import TARGETS, population_column

MODULE = "benchmarks.features"
RESULTS_FILE = "features.json"
# Every job runs under the issue's 1GB DuckDB memory limit. It bounds DuckDB's
# buffer pool, not the process (Python and Arrow add 200-350 MB): the engine sizes
# its customer chunks to stay well inside it (features/chunks.py), the SQL runs in
# parts of customers when it must (see EVENTS_PER_SQL_PART_PER_GB).
MEMORY_LIMIT = "1GB"
LARGE_MEMORY_LIMIT = "1GB"
THREADS = 2
PEAK_GOAL_MB = 1024.0
RATIO_GOAL = 1.0
LINEAR_SLACK = 1.10
ROLLUP_GOAL = 3.0
EVENTS_PER_SQL_PART_PER_GB = 25_000_000
JOB_NAMES = ("reference", "training_set", "large")
ISSUE_KEYS = (
    "reference_engine_s",
    "reference_sql_s",
    "reference_ratio",
    "reference_peak_mb",
    "training_set_s",
    "large_s",
    "large_peak_mb",
    "features_count",
)


@dataclass(frozen=True)
class Job:
    name: str
    customers: int
    data: DemoData
    cutoffs: list[datetime]
    memory_limit: str

    @property
    def sql_parts(self) -> int:
        """Parts of customers the SQL needs to fit in the memory limit."""
        per_part = EVENTS_PER_SQL_PART_PER_GB * memory_gb(self.memory_limit)
        return max(1, math.ceil(self.data.events / per_part))


def memory_gb(limit: str) -> float:
    """A DuckDB memory limit ('600MB', '1GB', '2GiB') in GB."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B)\s*", limit, re.I)
    if not match:
        raise ValueError(f"not a memory limit: {limit!r} (e.g. 700MB, 1GB)")
    unit = match.group(2).upper()
    base = 1024 if "I" in unit else 1000
    return float(match.group(1)) * base ** ("KMGT".index(unit[0]) + 1) / 1e9


@dataclass(frozen=True)
class JobResult:
    """One job's figures: the engine and SQL children's JSON lines (with an
    `error` instead of `seconds` for a side that failed) and, when both ran and
    were compared equal, the rows and features."""

    job: Job
    engine: dict[str, Any]
    sql: dict[str, Any]
    rows: int | None = None
    features: int | None = None
    compare_s: float | None = None
    rollup: dict[str, Any] | None = None

    @property
    def compared(self) -> bool:
        return self.rows is not None


# ---------------------------------------------------------------- the run


def run_features(
    customers: int,
    large_customers: int,
    seed: int,
    workdir: Path,
    results: Path,
    cutoffs: int = 3,
    training_cutoffs: int = 12,
    skip_large: bool = False,
    memory_limit: str = MEMORY_LIMIT,
    large_memory_limit: str = LARGE_MEMORY_LIMIT,
    threads: int = THREADS,
) -> dict[str, Any]:
    """Run the jobs, print the table, write results/features.json; return it.
    Demo data is generated (in a child) unless present in `workdir`."""
    workdir, results = Path(workdir).resolve(), Path(results)
    data = ensure_data(workdir, customers, seed)
    last = data.last_event
    jobs = [
        Job("reference", customers, data, month_starts(last, cutoffs), memory_limit),
        Job(
            "training_set",
            customers,
            data,
            month_starts(last, training_cutoffs),
            memory_limit,
        ),
    ]
    if not skip_large:
        large = ensure_data(workdir, large_customers, seed)
        cuts = month_starts(large.last_event, cutoffs)
        jobs.append(Job("large", large_customers, large, cuts, large_memory_limit))
    done = [run_job(job, workdir, threads) for job in jobs]
    record = results_record(done, threads, seed)
    print(format_table(done, record))
    write_json(results / RESULTS_FILE, record)
    return record


def run_job(job: Job, workdir: Path, threads: int = THREADS) -> JobResult:
    """Engine, then SQL, then their comparison: three children, one at a time,
    each with the job's DuckDB settings. FeatureMismatch if the results differ."""
    settings = {"memory_limit": job.memory_limit, "threads": threads}
    base = {
        "events": str(job.data.events_path),
        "customers": str(job.data.customers_path),
        "as_of": as_of_for(job.data.last_event).isoformat(),
        "cutoffs": [c.isoformat() for c in job.cutoffs],
        "cwd": str(workdir),
        **settings,
    }
    # the engine writes a folder of parts (one per customer chunk); the SQL a file,
    # or a folder of parts when it runs in parts
    sql = f"features-{job.name}-sql" + ("" if job.sql_parts > 1 else ".parquet")
    paths = {"engine": workdir / f"features-{job.name}-engine", "sql": workdir / sql}
    extra = {"engine": {}, "sql": {"parts": job.sql_parts}}
    runs = {}
    for kind, path in paths.items():
        _remove(path)
        print(f"{job.name}: running {kind} ...", flush=True)
        runs[kind] = _run_side(kind, {**base, **extra[kind], "out": str(path)})
        print(f"{job.name}: {kind} {_outcome(runs[kind])}", flush=True)
    if any("error" in run for run in runs.values()):
        for path in paths.values():
            _remove(path)
        return JobResult(job, runs["engine"], runs["sql"])
    print(f"{job.name}: running the customer-day roll-up ...", flush=True)
    rollup = _run_side("rollup", base)
    print(f"{job.name}: roll-up {_outcome(rollup)}", flush=True)
    print(f"{job.name}: comparing ...", flush=True)
    compared = run_child(
        "compare",
        {"left": str(paths["engine"]), "right": str(paths["sql"]), **base},
        MODULE,
    )
    if compared["mismatch"]:
        raise FeatureMismatch(f"{job.name} job: {compared['mismatch']}")
    for path in paths.values():  # equal: the outputs have served
        _remove(path)
    return JobResult(
        job,
        runs["engine"],
        runs["sql"],
        compared["rows"],
        compared["features"],
        compared["seconds"],
        rollup,
    )


def _run_side(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """The child's JSON line; on failure its error and peak memory, if known."""
    try:
        return run_child(kind, args, MODULE)
    except ChildFailed as exc:
        return {"peak_mb": None, **exc.result, "error": str(exc)}


def _outcome(run: dict[str, Any]) -> str:
    peak = "?" if run.get("peak_mb") is None else f"{run['peak_mb']:.0f}"
    if "error" in run:
        return f"FAILED (peak {peak} MB): {run['error']}"
    return f"{run['seconds']:.1f} s, peak {peak} MB"


def _remove(path: Path) -> None:
    """Remove an output: a Parquet file, or a folder of parts."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- equality


def compare_parquet(
    left: Path, right: Path, memory_limit: str | None = None, threads: int | None = None
) -> tuple[int, int]:
    """Raise FeatureMismatch unless two Parquet feature tables hold the same
    features; return (rows, features). `compare_features`' semantics, in DuckDB:
    same columns in the same order and kinds, the same unique (customer_id, cutoff)
    keys, nulls (and NaN) in the same places, floats within 1e-9 (absolute, or
    relative above 1), every other type exactly equal."""

    files = [_parquet_files(Path(p)) for p in (left, right)]
    schemas = [pq.read_schema(f[0]) for f in files]
    names = schemas[0].names
    if names != schemas[1].names:
        raise FeatureMismatch(
            f"columns differ:\n  engine: {names}\n  reference: {schemas[1].names}"
        )
    for name in names:
        types = [s.field(name).type for s in schemas]
        if value_kind(types[0]) != value_kind(types[1]):
            raise FeatureMismatch(
                f"column {name!r}: types differ: engine {types[0]}, "
                f"reference {types[1]}"
            )
    from features.sources.load import connect

    con = connect(memory_limit, threads).con
    con.execute("SET enable_progress_bar = false")
    _views(con, *files)
    rows = _unique_rows(con)
    floats = {n for n in names if value_kind(schemas[0].field(n).type) == "float"}
    unequal = {n: _unequal(n, n in floats) for n in names if n not in KEYS}
    on = " AND ".join(f"l.{k} = r.{k}" for k in KEYS)
    one_side = " OR ".join(f"{t}.{k} IS NULL" for t in ("l", "r") for k in KEYS)
    counts = con.execute(
        f"SELECT count(*) FILTER (WHERE {one_side}), "
        + ", ".join(f"count(*) FILTER (WHERE {cond})" for cond in unequal.values())
        + f" FROM l FULL OUTER JOIN r ON {on}"
    ).fetchone()
    if counts[0]:
        raise FeatureMismatch(
            f"keys differ: {counts[0]:,} (customer_id, cutoff) row(s) in one only"
        )
    for (name, cond), bad in zip(unequal.items(), counts[1:], strict=True):
        if bad:
            raise FeatureMismatch(_mismatch_message(con, name, cond, bad))
    # neither the keys nor the population flags (in_<target>, eligible) are features
    not_features = {"eligible", *(population_column(t) for t in TARGETS)}
    flags = [n for n in names if n in not_features]
    return rows, len(names) - len(KEYS) - len(flags)


def _parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or the part files of a folder."""
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no Parquet files in {path}")
    return files


def _views(con: Any, left: list[Path], right: list[Path]) -> None:
    for alias, files in (("l", left), ("r", right)):
        quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE VIEW {alias} AS SELECT * FROM read_parquet([{quoted}])")


def _unique_rows(con: Any) -> int:
    """Row count of both tables, equal and with unique keys."""
    keys = ", ".join(KEYS)
    (n_l, k_l), (n_r, k_r) = (
        con.execute(
            f"SELECT count(*), count(DISTINCT ({keys})) FROM {alias}"
        ).fetchone()
        for alias in ("l", "r")
    )
    if n_l != n_r:
        raise FeatureMismatch(f"row counts differ: {n_l:,} vs {n_r:,}")
    if k_l != n_l or k_r != n_r:
        raise FeatureMismatch(
            f"repeated (customer_id, cutoff) keys: {n_l - k_l:,} in the engine's, "
            f"{n_r - k_r:,} in the reference's"
        )
    return int(n_l)


def _unequal(name: str, is_float: bool) -> str:
    """A predicate true where l and r differ in column `name` (after the join)."""
    a, b = f'l."{name}"', f'r."{name}"'
    if not is_float:
        return f"{a} IS DISTINCT FROM {b}"
    null_a, null_b = (f"({x} IS NULL OR isnan({x}))" for x in (a, b))
    close = f"abs({a} - {b}) <= {FLOAT_TOLERANCE!r} * greatest(1.0, abs({a}), abs({b}))"
    return f"({null_a} <> {null_b} OR NOT ({null_a} OR {close}))"


def _mismatch_message(con: Any, name: str, cond: str, bad: int) -> str:
    keys = ", ".join(f"l.{k}" for k in KEYS)
    examples = con.execute(
        f'SELECT {keys}, l."{name}", r."{name}" FROM l JOIN r USING '
        f"({', '.join(KEYS)}) WHERE {cond} ORDER BY {keys} LIMIT 5"
    ).fetchall()
    lines = [
        f"engine and reference SQL differ in column {name!r} on {bad:,} row(s), e.g.:"
    ]
    for *key, ours, theirs in examples:
        lines.append(
            f"  ({', '.join(map(str, key))}): engine={ours!r} reference={theirs!r}"
        )
    return "\n".join(lines)


def _child_rollup(args: dict[str, Any]) -> dict[str, Any]:
    """The customer-day roll-up (`day_tiles`) of the events the engine reads
    (before the last cutoff), on the same views, every column reduced to one
    row: the floor of any pass that builds features from them."""
    from benchmarks.harness import _child_load, demo_spec
    from features.columns import EVENT_TIME
    from features.definition import day_tiles

    ds, facts = _child_load(args)
    last = max(datetime.fromisoformat(c) for c in args["cutoffs"])
    events = ds.events.filter(ds.events[EVENT_TIME] < last)
    tiles = day_tiles(events, demo_spec())
    # every column of every tile read once, so none is optimised away; the
    # result is one row (the engine writes its features, far fewer than tiles)
    total = tiles.aggregate(
        _tiles=tiles.count(), **{f"_{c}": tiles[c].max() for c in tiles.columns}
    )
    start, cpu = time.perf_counter(), time.process_time()
    tiles_count = int(total.execute()["_tiles"][0])
    return {
        "seconds": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,  # as the engine child's cpu_s
        "tiles": tiles_count,
        **facts,
    }


def _child_compare(args: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        rows, features = compare_parquet(
            Path(args["left"]),
            Path(args["right"]),
            args.get("memory_limit"),
            args.get("threads"),
        )
    except FeatureMismatch as exc:
        return {"mismatch": str(exc), "seconds": time.perf_counter() - start}
    return {
        "mismatch": None,
        "rows": rows,
        "features": features,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------- the figures


def results_record(
    done: list[JobResult], threads: int = THREADS, seed: int = 0
) -> dict[str, Any]:
    """The figures for features.json: per job, the issue's headline keys, goals.
    A side that failed has null figures and an `_error`; a skipped job, nulls."""
    compared = [r.features for r in done if r.compared]
    out: dict[str, Any] = {
        "threads": threads,
        "seed": seed,
        "features_count": compared[0] if compared else None,
        "peak_goal_mb": PEAK_GOAL_MB,
        "ratio_goal": RATIO_GOAL,
        "sql_part_events_per_gb": EVENTS_PER_SQL_PART_PER_GB,
    }
    for r in done:
        out.update(_job_figures(r))
    ran = {r.job.name for r in done}
    for name in JOB_NAMES:
        if name not in ran:
            out.update({f"{name}_engine_s": None, f"{name}_skipped": True})
    out["reference_peak_mb"] = out.get("reference_engine_peak_mb")
    out["training_set_s"] = out.get("training_set_engine_s")
    out["training_set_peak_mb"] = out.get("training_set_engine_peak_mb")
    out["large_s"] = out.get("large_engine_s")
    out["large_peak_mb"] = out.get("large_engine_peak_mb")
    out["rollup_s"] = out.get("reference_rollup_s")
    out["engine_vs_rollup_ratio"] = out.get("reference_engine_vs_rollup_ratio")
    out["engine_vs_rollup_cpu_ratio"] = out.get("reference_engine_vs_rollup_cpu_ratio")
    out.update(_goals(out, ran))
    return out


def _job_figures(r: JobResult) -> dict[str, Any]:
    n, events = r.job.name, r.job.data.events
    out: dict[str, Any] = {
        f"{n}_customers": r.job.customers,
        f"{n}_memory_limit": r.job.memory_limit,
        f"{n}_events": events,
        f"{n}_cutoffs": len(r.job.cutoffs),
        f"{n}_sql_parts": r.job.sql_parts,
        f"{n}_rows": r.rows,
        f"{n}_results_equal": True if r.compared else None,
        f"{n}_engine_chunks": r.engine.get("chunks"),
        f"{n}_compare_s": r.compare_s,
        f"{n}_load_s": r.engine.get("load_s", r.sql.get("load_s")),
    }
    for side, run in (("engine", r.engine), ("sql", r.sql)):
        seconds = run.get("seconds")
        out[f"{n}_{side}_s"] = seconds
        out[f"{n}_{side}_peak_mb"] = run.get("peak_mb")
        out[f"{n}_{side}_load_peak_mb"] = run.get("load_peak_mb")
        out[f"{n}_{side}_events_per_s"] = events / seconds if seconds else None
        if "error" in run:
            out[f"{n}_{side}_error"] = run["error"]
    both = out[f"{n}_engine_s"] and out[f"{n}_sql_s"]
    out[f"{n}_ratio"] = out[f"{n}_engine_s"] / out[f"{n}_sql_s"] if both else None
    engine_s = out[f"{n}_engine_s"]
    out[f"{n}_engine_us_per_event"] = engine_s / events * 1e6 if engine_s else None
    rollup = (r.rollup or {}).get("seconds")
    out[f"{n}_rollup_s"] = rollup
    out[f"{n}_engine_vs_rollup_ratio"] = (
        engine_s / rollup if rollup and engine_s else None
    )
    # process CPU (DuckDB's threads included) of both: what other processes on a
    # shared machine change least
    cpu, rollup_cpu = r.engine.get("cpu_s"), (r.rollup or {}).get("cpu_s")
    out[f"{n}_engine_cpu_s"], out[f"{n}_rollup_cpu_s"] = cpu, rollup_cpu
    out[f"{n}_engine_vs_rollup_cpu_ratio"] = (
        cpu / rollup_cpu if cpu and rollup_cpu else None
    )
    return out


def _goals(out: dict[str, Any], ran: set[str]) -> dict[str, Any]:
    """Each goal: met (true), not met (false) or not measured (absent)."""
    goals: dict[str, Any] = {}
    if "reference" in ran:
        ratio = out["reference_ratio"]
        goals["goal_ratio_met"] = ratio is not None and ratio <= RATIO_GOAL
        floor = out.get("reference_engine_vs_rollup_ratio")
        goals["goal_rollup_met"] = floor is not None and floor <= ROLLUP_GOAL
    peaks = [out[f"{name}_engine_peak_mb"] for name in ran]
    finished = all(out[f"{name}_engine_s"] is not None for name in ran)
    goals["goal_peak_met"] = bool(peaks) and finished and max(peaks) <= PEAK_GOAL_MB
    if "large" in ran:
        goals["goal_large_finished"] = out["large_engine_s"] is not None
    if {"reference", "large"} <= ran:
        growth = None
        if out["reference_engine_s"] and out["large_engine_s"]:
            per_event = {
                n: out[f"{n}_engine_s"] / out[f"{n}_events"]
                for n in ("reference", "large")
            }
            growth = per_event["large"] / per_event["reference"]
        goals["large_vs_reference_s_per_event"] = growth
        goals["goal_linear_met"] = growth is not None and growth <= LINEAR_SLACK
    return goals


def format_table(done: list[JobResult], record: dict[str, Any]) -> str:
    """The table printed at the end of a run, with failures and goals below it."""
    head = (
        "features benchmark: engine (build_features) vs hand-written DuckDB SQL, "
        f"{record['features_count'] or '?'} features, "
        f"DuckDB threads {record['threads']}; "
        "results compared equal wherever both finished"
    )
    cols = (
        f"{'job':<13}{'events':>12}{'cutoffs':>8}{'rows':>11}{'limit':>7}"
        f"{'engine s':>10}{'SQL s':>8}{'ratio':>7}{'engine MB':>10}{'SQL MB':>8}"
        f"{'engine ev/s':>13}{'SQL ev/s':>10}"
    )
    lines = [head, cols]
    for r in done:
        n = r.job.name

        def cell(key: str, spec: str, width: int, n: str = n) -> str:
            value = record[f"{n}_{key}"]
            text = "-" if value is None else format(value, spec)
            return f"{text:>{width}}"

        lines.append(
            f"{n:<13}{record[f'{n}_events']:>12,}{record[f'{n}_cutoffs']:>8}"
            f"{cell('rows', ',', 11)}{record[f'{n}_memory_limit']:>7}"
            f"{cell('engine_s', '.1f', 10)}{cell('sql_s', '.1f', 8)}"
            f"{cell('ratio', '.2f', 6)}x"
            f"{cell('engine_peak_mb', '.0f', 10)}{cell('sql_peak_mb', '.0f', 8)}"
            f"{_millions(record[f'{n}_engine_events_per_s']):>13}"
            f"{_millions(record[f'{n}_sql_events_per_s']):>10}"
        )
    for r in done:
        n = r.job.name
        if record.get(f"{n}_rollup_s"):
            cpu = record.get(f"{n}_engine_vs_rollup_cpu_ratio")
            lines.append(
                f"{n}: customer-day roll-up of the same events "
                f"{record[f'{n}_rollup_s']:.1f} s; engine "
                f"{record[f'{n}_engine_s']:.1f} s = "
                f"{record[f'{n}_engine_vs_rollup_ratio']:.2f}x the roll-up"
                + ("" if cpu is None else f" ({cpu:.2f}x in process CPU)")
            )
        if record.get(f"{n}_engine_us_per_event"):
            lines.append(
                f"{n}: engine {record[f'{n}_engine_us_per_event']:.2f} us per event"
            )
        if r.job.sql_parts > 1:
            lines.append(f"{n}: the SQL ran in {r.job.sql_parts} parts of customers")
        for side in ("engine", "sql"):
            if f"{n}_{side}_error" in record:
                lines.append(f"{n}: {side} FAILED: {record[f'{n}_{side}_error']}")
    return "\n".join([*lines, *_goal_lines(record)])


def _millions(per_s: float | None) -> str:
    return "-" if per_s is None else f"{per_s / 1e6:.2f}M"


def _goal_lines(record: dict[str, Any]) -> list[str]:
    def verdict(key: str) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[record.get(key)]

    growth = record.get("large_vs_reference_s_per_event")
    detail = (
        "" if growth is None else f" (s per event, large vs reference: {growth:.2f}x)"
    )
    return [
        f"goal: engine <= {RATIO_GOAL:.1f}x SQL on the reference job: "
        f"{verdict('goal_ratio_met')}",
        f"goal: engine <= {ROLLUP_GOAL:.0f}x the customer-day roll-up on the "
        f"reference job: {verdict('goal_rollup_met')}",
        f"goal: engine peak memory <= {PEAK_GOAL_MB:.0f} MB on every job: "
        f"{verdict('goal_peak_met')}",
        f"goal: the large job finishes: {verdict('goal_large_finished')}",
        f"goal: engine time linear in events{detail}: {verdict('goal_linear_met')}",
    ]


CHILDREN_FEATURES = {**CHILDREN, "compare": _child_compare, "rollup": _child_rollup}

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], CHILDREN_FEATURES, MODULE))
