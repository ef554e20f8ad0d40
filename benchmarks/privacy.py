"""Privacy benchmark: what pseudonyms and forgetting cost.

On the foundation benchmark's data (the demo generator, 200k customers by
default), in the same run:

- features with pseudonyms: the reference feature job (`build_features` at the
  last cutoffs, in customer chunks as training and the nightly job run it) with
  `privacy.pseudonymise` on, against the same job without pseudonyms and against
  the hand-written DuckDB SQL (`benchmarks.sql`). Each runs in a child process
  of its own. The pseudonymised features must equal the plain ones once the plain
  ids are hashed in Python (so the SQL HMAC is checked on every customer).
- forget: `serving.privacy.forget.forget` of 100 customers from a nightly score file of
  every customer and its online store, against the bare rewrite of the same file
  with pyarrow (read, filter, write) and the bare SQLite copy of the store.

Figures go to `bench/results/privacy.json`.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.harness import (
    child_args,
    compare_features,
    ensure_data,
    month_starts,
    run_child,
    write_json,
)
from features.columns import CUSTOMER_ID, TARGETS
from features.sources.privacy import Pseudonymiser

RESULTS_FILE = "privacy.json"
# a fixed benchmark key (the figures do not depend on it)
BENCH_KEY = "bench-pseudonym-key-7c1e4a9d2b6f3085"
FORGOTTEN = 100


def run_privacy(
    customers: int, seed: int, cutoffs: int, workdir: Path, results: Path
) -> dict[str, float]:
    """Run the benchmark, print the table, write results/privacy.json."""
    workdir, results = Path(workdir).resolve(), Path(results)
    data = ensure_data(workdir, customers, seed)
    cuts = month_starts(data.last_event, cutoffs)
    base = child_args(data, cuts, workdir)
    runs, tables = {}, {}
    for kind, child, extra in (
        ("plain", "engine", {}),
        ("pseudonymised", "engine", {"pseudonym_key": BENCH_KEY}),
        ("sql", "sql", {}),
    ):
        out = workdir / f"privacy-{kind}.parquet"
        _remove(out)
        print(f"features: running {kind} ...", flush=True)
        runs[kind] = run_child(child, {**base, **extra, "out": str(out)})
        tables[kind] = pq.read_table(out)
    plain = tables["plain"]
    hashed = Pseudonymiser(BENCH_KEY.encode()).many(plain[CUSTOMER_ID].to_pylist())
    expected = plain.set_column(0, CUSTOMER_ID, pa.array(hashed, pa.string()))
    compare_features(tables["pseudonymised"], expected)
    forget_s, rewrite_s, store_copy_s = time_forget(plain, workdir / "privacy-forget")
    out = {
        "customers": customers,
        "events": data.events,
        "feature_rows": plain.num_rows,
        "features_plain_s": runs["plain"]["seconds"],
        "features_pseudonymised_s": runs["pseudonymised"]["seconds"],
        "sql_s": runs["sql"]["seconds"],
        "pseudonymised_vs_plain_ratio": runs["pseudonymised"]["seconds"]
        / runs["plain"]["seconds"],
        "pseudonymised_vs_sql_ratio": runs["pseudonymised"]["seconds"]
        / runs["sql"]["seconds"],
        "features_pseudonymised_peak_mb": runs["pseudonymised"]["peak_mb"],
        "features_plain_peak_mb": runs["plain"]["peak_mb"],
        "forget_customers": FORGOTTEN,
        "forget_s": forget_s,
        "bare_rewrite_s": rewrite_s,
        "bare_store_copy_s": store_copy_s,
        "forget_vs_bare_ratio": forget_s / (rewrite_s + store_copy_s),
    }
    print(format_table(out))
    write_json(results / RESULTS_FILE, out)
    return out


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def time_forget(features: pa.Table, root: Path) -> tuple[float, float, float]:
    """`forget` of FORGOTTEN customers from one night's scores of every customer
    (and its online store), against the bare pyarrow rewrite and SQLite copy."""
    from core.config import ProjectConfig
    from serving.online_store import StoreMeta
    from serving.online_store.sqlite import SqliteStoreWriter
    from serving.privacy.forget import forget

    _remove(root)
    last = pc.max(features["cutoff"])
    night = features.filter(pc.equal(features["cutoff"], last))
    ids = night[CUSTOMER_ID].to_pylist()
    rng = np.random.default_rng(0)
    scores = pa.table({CUSTOMER_ID: ids, **{t: rng.random(len(ids)) for t in TARGETS}})
    part = root / "scores" / "as_of=2030-01-01" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(scores, part)
    store = root / "online" / "store.sqlite"
    names = [n for n in night.column_names if n not in (CUSTOMER_ID, "cutoff")]
    numeric = [n for n in names if pa.types.is_floating(night[n].type)]
    meta = StoreMeta(
        "2030-01-01", "bench", "now", None, tuple(numeric), frozenset(), {}
    )
    frame = night.select([CUSTOMER_ID, *numeric]).to_pandas()
    frame["as_of"] = "2030-01-01"
    with SqliteStoreWriter(store, meta) as writer:
        writer.append(
            frame, {t: scores[t].to_numpy() for t in TARGETS}, datetime.now(UTC)
        )
    config = ProjectConfig.model_validate(
        {
            "data": {"events": str(root / "none.parquet")},
            "training": {"cutoffs": {"start": "2030-01-01"}},
            "scoring": {"output": str(root / "scores")},
            "online_store": {"path": str(store)},
            "outreach": {"contact_log": str(root / "contacts.sqlite")},
            "privacy": {"dir": str(root / "privacy")},
        }
    )
    gone = [str(i) for i in rng.choice(ids, FORGOTTEN, replace=False)]
    start = time.perf_counter()
    forget(config, gone)
    forget_s = time.perf_counter() - start

    start = time.perf_counter()
    table = pq.read_table(part)
    keep = pc.invert(pc.is_in(table[CUSTOMER_ID], pa.array(gone[:1])))
    pq.write_table(table.filter(keep), root / "bare.parquet")
    rewrite_s = time.perf_counter() - start
    start = time.perf_counter()
    src = sqlite3.connect(store)
    dst = sqlite3.connect(root / "bare.sqlite")
    src.backup(dst)
    src.close()
    dst.close()
    return forget_s, rewrite_s, time.perf_counter() - start


def format_table(r: dict[str, Any]) -> str:
    head = (
        f"privacy benchmark: {int(r['customers']):,} customers, "
        f"{int(r['events']):,} events, {int(r['feature_rows']):,} feature rows"
    )
    rows = [
        ("", "propensity", "reference (same run)", "ratio"),
        (
            "features, pseudonymised",
            f"{r['features_pseudonymised_s']:.1f} s",
            f"same job, plain ids {r['features_plain_s']:.1f} s",
            f"{r['pseudonymised_vs_plain_ratio']:.2f}x",
        ),
        (
            "",
            "",
            f"hand-written SQL {r['sql_s']:.1f} s",
            f"{r['pseudonymised_vs_sql_ratio']:.2f}x",
        ),
        (
            f"forget {int(r['forget_customers'])} customers",
            f"{r['forget_s']:.2f} s",
            "bare rewrite + store copy "
            f"{r['bare_rewrite_s'] + r['bare_store_copy_s']:.2f} s",
            f"{r['forget_vs_bare_ratio']:.2f}x",
        ),
    ]
    body = [f"{a:<26}{b:>10}   {c:<38}{d:>6}" for a, b, c, d in rows]
    return "\n".join(
        [head, *body, "pseudonymised features equal the plain ones, ids hashed"]
    )
