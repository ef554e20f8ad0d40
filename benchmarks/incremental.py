"""Incremental benchmark: the nightly feature step from the incremental feature
state (features.state) against the full rebuild, in the same run.

Not a test: `python -m benchmarks incremental [--customers N]` (`make
bench-incremental`), by default 1,000,000 customers and about 100M events of the
demo generator (the same cached files as `make bench-batch`). The history is
every event before the last event's day; the new day is that day (about 0.14% of
the events). Child processes, one after the other, each under DuckDB's memory
limit:

- state: the state built at the start of the new day from the history (what the
  previous night left; `features.state.rebuild` in customer chunks), timed for
  information;
- incremental: what `propensity score` does with a state: read the events after
  its watermark, advance it to the day after, compute the feature rows from it
  and write them (timed; its peak memory is `peak_mb`);
- full: the full rebuild at the same date, `build_features` in customer chunks
  as the nightly ran it before the state (timed, the reference);
- compare: both outputs equal (same rows, counts exactly, floats to 1e-9).

Figures go to `bench/results/incremental.json`: `incremental_vs_full_ratio` (goal
<= 0.1), `peak_mb` (goal <= 2048), `incremental_s`, `full_s`, `state_rebuild_s`,
`identical_output`. The ingest figures (`ingest_http_events_per_s`,
`ingest_stream_events_per_s`, `freshness_p99_s`, `by_id_p99_ratio_under_ingest`)
come from benchmarks.ingest, run after this part (or alone with
`--ingest-only`), merged into the same file.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CHILDREN,
    FeatureMismatch,
    as_of_for,
    child_main,
    ensure_data,
    load_quietly,
    run_child,
)
from benchmarks.ingest import merge_json

MODULE = "benchmarks.incremental"


def _state_dir(out: Path) -> Path:
    """Where the nightly keeps the state of output folder `out`."""
    from serving.batch.incremental import state_dir

    return state_dir(out)


RESULTS_FILE = "incremental.json"
MEMORY_LIMIT = "1GB"
THREADS = 2
RATIO_GOAL = 0.1
PEAK_GOAL_MB = 2048.0


def run_incremental(
    *,
    customers: int,
    seed: int,
    workdir: Path,
    results: Path,
    memory_limit: str = MEMORY_LIMIT,
    threads: int = THREADS,
) -> dict[str, Any]:
    data = ensure_data(workdir.absolute(), customers, seed)
    last = data.last_event
    new_day = datetime(last.year, last.month, last.day)
    as_of = new_day + timedelta(days=1)
    out = workdir.absolute() / f"incremental-{customers}-{seed}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(_state_dir(out), ignore_errors=True)
    out.mkdir(parents=True)
    args = {
        "events": str(data.events_path),
        "customers": str(data.customers_path),
        "load_as_of": as_of_for(last).isoformat(),
        "memory_limit": memory_limit,
        "threads": threads,
        "state": str(_state_dir(out)),
        "watermark": new_day.isoformat(),
        "as_of": as_of.isoformat(),
        "cwd": str(out),
    }
    print(f"state at {new_day:%Y-%m-%d} from the history ...", flush=True)
    state = run_child("state", args, MODULE)
    print(f"incremental step to {as_of:%Y-%m-%d} ...", flush=True)
    inc = run_child("incremental", {**args, "out": str(out / "incremental")}, MODULE)
    print("full rebuild ...", flush=True)
    full = run_child("full", {**args, "out": str(out / "full")}, MODULE)
    print("comparing ...", flush=True)
    same = run_child(
        "compare",
        {**args, "left": str(out / "incremental"), "right": str(out / "full")},
        MODULE,
    )
    record = {
        "customers": customers,
        "events": data.events,
        "events_new_day": inc["events_new"],
        "state_rebuild_s": state["seconds"],
        "incremental_s": inc["seconds"],
        "full_s": full["seconds"],
        "incremental_vs_full_ratio": inc["seconds"] / full["seconds"],
        "peak_mb": inc["peak_mb"],
        "full_peak_mb": full["peak_mb"],
        "state_peak_mb": state["peak_mb"],
        "identical_output": same["identical"],
        "rows": same["rows"],
        "memory_limit": memory_limit,
        "threads": threads,
    }
    record["goals"] = {
        "incremental_vs_full_ratio": record["incremental_vs_full_ratio"] <= RATIO_GOAL,
        "peak_mb": record["peak_mb"] <= PEAK_GOAL_MB,
        "identical_output": bool(same["identical"]),
    }
    print(format_table(record, same.get("message")))
    # merged: the ingest part (benchmarks.ingest) writes its own keys there
    merge_json(results / RESULTS_FILE, record)
    return record


def format_table(r: dict[str, Any], mismatch: str | None = None) -> str:
    def verdict(key: str) -> str:
        return "met" if r["goals"][key] else "NOT met"

    lines = [
        f"customers {r['customers']:,}, events {r['events']:,}, new day "
        f"{r['events_new_day']:,} events (DuckDB {r['memory_limit']}, "
        f"{r['threads']} threads)",
        f"  incremental feature step {r['incremental_s']:8.2f} s   full rebuild "
        f"{r['full_s']:8.2f} s   ratio {r['incremental_vs_full_ratio']:.4f} "
        f"(goal <= {RATIO_GOAL}: {verdict('incremental_vs_full_ratio')})",
        f"  identical output: {'yes' if r['identical_output'] else 'NO'} "
        f"({r['rows']:,} rows) ({verdict('identical_output')})"
        + (f": {mismatch}" if mismatch else ""),
        f"  peak memory, incremental {r['peak_mb']:8.0f} MB (goal <= "
        f"{PEAK_GOAL_MB:.0f}: {verdict('peak_mb')}); full rebuild "
        f"{r['full_peak_mb']:.0f} MB; state build {r['state_peak_mb']:.0f} MB",
        f"  state build from the history (what earlier nights leave): "
        f"{r['state_rebuild_s']:.2f} s",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- children


def _load(args: dict[str, Any]):
    return load_quietly(
        Path(args["events"]),
        Path(args["customers"]),
        datetime.fromisoformat(args["load_as_of"]),
        memory_limit=args["memory_limit"],
        threads=args["threads"],
    )


def _child_state(args: dict[str, Any]) -> dict[str, Any]:
    from features import state as fs
    from features.definition import FeatureSpec
    from features.sources.chunks import chunk_count, customer_chunks
    from serving.batch.incremental import nightly_key

    ds = _load(args)
    config = _config(args)
    spec = FeatureSpec.from_config(config)
    start = time.perf_counter()
    with customer_chunks(ds, chunk_count(ds)) as tables:
        fs.rebuild(
            Path(args["state"]),
            ds.con,
            tables,
            datetime.fromisoformat(args["watermark"]),
            spec,
            nightly_key(config, ds, spec),
        )
    return {"seconds": time.perf_counter() - start}


def _config(args: dict[str, Any]):
    from benchmarks.harness import DEMO_CONFIG
    from core.config import load_config

    return load_config(DEMO_CONFIG)


def _child_incremental(args: dict[str, Any]) -> dict[str, Any]:
    """The nightly's feature step with a state (serving.batch.incremental)."""
    from serving.batch.incremental import INCREMENTAL, feature_parts

    ds = _load(args)
    config = _config(args)
    # the scores folder whose state (beside it) the state child built
    scoring = config.scoring.model_copy(update={"output": Path(args["cwd"])})
    config = config.model_copy(update={"scoring": scoring})
    start = time.perf_counter()
    _, info = feature_parts(
        config, ds, datetime.fromisoformat(args["as_of"]), Path(args["out"])
    )
    seconds = time.perf_counter() - start
    if info["mode"] != INCREMENTAL:
        raise RuntimeError(f"the state was not advanced: {info['reason']}")
    return {"seconds": seconds, "events_new": info["events_read"]}


def _child_full(args: dict[str, Any]) -> dict[str, Any]:
    from features.definition import FeatureSpec, build_features
    from features.sources.chunks import write_chunked

    ds = _load(args)
    spec = FeatureSpec.from_config(_config(args))
    as_of = datetime.fromisoformat(args["as_of"])
    start = time.perf_counter()
    write_chunked(
        ds,
        lambda events: build_features(events, [as_of], spec, ds.customers),
        Path(args["out"]),
    )
    return {"seconds": time.perf_counter() - start}


def _child_compare(args: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.features import compare_parquet

    try:
        rows, _ = compare_parquet(
            Path(args["left"]),
            Path(args["right"]),
            args["memory_limit"],
            args["threads"],
        )
    except FeatureMismatch as exc:
        return {"identical": False, "rows": 0, "message": str(exc)[:2000]}
    return {"identical": True, "rows": rows}


CHILDREN_INCREMENTAL = {
    **CHILDREN,
    "state": _child_state,
    "incremental": _child_incremental,
    "full": _child_full,
    "compare": _child_compare,
}

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], CHILDREN_INCREMENTAL, MODULE))
