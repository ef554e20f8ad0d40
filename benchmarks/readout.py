"""Readout benchmark: a campaign readout at scale against hand-written SQL, and
the readouts of a real randomised experiment (Hillstrom).

Not a test: `python -m benchmarks readout [--customers N]` (`make bench-readout`),
by default 1,000,000 customers and about 100M events of the demo generator
(generated once into the work folder and reused, as the batch benchmark does).

- The campaign: every customer of the data is in it (1,000,000 contacted at the
  default), confirmed 61 days before the last event (so its 30-day churn window
  is mature), split 50/50 by a hash, each with a random score at selection (so the
  readout's deciles are computed). Its contact log, an SQLite file of the
  contact log's schema, is written once into the work folder and reused.
- `readout`: `serving.outreach.readout.readout` on the churn target, as
  `propensity campaigns report` runs it (without MLflow), in a child process:
  the contact log read, the outcome per customer by the churn label, revenue,
  the sums per group and decile in DuckDB, the statistics.
- `sql`: the same readout written by hand as one DuckDB query (below), in another
  child on the same data and views, with the same contact log read and the same
  statistics (serving.outreach.readout.compare on its sums), so the two differ only
  in how the outcome is computed.

Both load and validate the data first (timed apart, as `load_s`), run under the
same DuckDB settings (memory limit, threads), and time their readout
REPETITIONS times (the best counts); the two must agree exactly on every group's
customers and outcomes and on revenue within float rounding. Goals: readout time
<= 1.5x the SQL's, peak memory (the readout child's VmHWM) <= 2 GB.

Then the Hillstrom experiment (`../shared/data/hillstrom`) is imported as
`propensity import hillstrom` does and read out as the campaigns docs do (visits
with `--outcome-event visit`, conversions, spend), beside the reference figures of
its README; and the uplift comparison on it (`benchmarks.uplift`) when present.

Figures go to `bench/results/readout.json`: `readout_s`, `sql_s`,
`readout_vs_sql_ratio`, `peak_mb`, `sql_peak_mb`, `load_s`, `contacts_read_s`,
`customers`, `events`, `hillstrom_<campaign>_<outcome>_treatment_rate`, ...
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    CHILDREN,
    PROJECT_ROOT,
    as_of_for,
    child_main,
    ensure_data,
    load_quietly,
    run_child,
    write_json,
)

MODULE = "benchmarks.readout"
RESULTS_FILE = "readout.json"
CAMPAIGN = "bench-readout"
CONTROL_SHARE = 0.5
BEFORE_END_DAYS = 61
MEMORY_LIMIT = "1GB"
THREADS = 2
REPETITIONS = 2
RATIO_GOAL = 1.5
PEAK_GOAL_MB = 2048.0
DATA = PROJECT_ROOT.parent / "shared" / "data"
# ../shared/data/hillstrom/README.md: visit, conversion (%), spend per customer
HILLSTROM_REFERENCE = {
    "mens": {"visit": 18.28, "conversion": 1.253, "spend": 1.423},
    "womens": {"visit": 15.14, "conversion": 0.884, "spend": 1.077},
    "control": {"visit": 10.62, "conversion": 0.573, "spend": 0.653},
}


def run_readout(
    customers: int,
    seed: int,
    workdir: Path,
    results: Path,
    data_dir: Path = DATA,
    memory_limit: str = MEMORY_LIMIT,
    threads: int = THREADS,
    skip_hillstrom: bool = False,
) -> dict[str, Any]:
    """Generate (or reuse) the data and the contact log, time both readouts, read
    Hillstrom out; print and write readout.json."""
    workdir, results = Path(workdir).resolve(), Path(results)
    data = ensure_data(workdir, customers, seed)
    log, start, contacted = ensure_contacts(workdir, data, customers, seed)
    base = {
        "events": str(data.events_path),
        "customers": str(data.customers_path),
        "as_of": as_of_for(data.last_event).isoformat(),
        "contact_log": str(log),
        "memory_limit": memory_limit,
        "threads": threads,
        "cwd": str(workdir),
    }
    print(f"readout: {contacted:,} contacted, {data.events:,} events ...", flush=True)
    sql = run_child("sql", base, MODULE)
    ours = run_child("readout", base, MODULE)
    agree(ours["sums"], sql["sums"])
    record = {
        "customers": contacted,
        "events": data.events,
        "confirmed_at": start.isoformat(),
        "readout_s": ours["seconds"],
        "sql_s": sql["seconds"],
        "readout_vs_sql_ratio": ours["seconds"] / sql["seconds"],
        "contacts_read_s": ours["contacts_read_s"],
        "load_s": ours["load_s"],
        "peak_mb": ours["peak_mb"],
        "sql_peak_mb": sql["peak_mb"],
        "memory_limit": memory_limit,
        "threads": threads,
        "treatment_rate": ours["treatment_rate"],
        "control_rate": ours["control_rate"],
        "ratio_goal": RATIO_GOAL,
        "peak_goal_mb": PEAK_GOAL_MB,
    }
    record["goal_ratio_met"] = record["readout_vs_sql_ratio"] <= RATIO_GOAL
    record["goal_peak_met"] = record["peak_mb"] <= PEAK_GOAL_MB
    if not skip_hillstrom:
        record.update(hillstrom_readouts(data_dir, workdir / "hillstrom"))
        record.update(uplift_figures(data_dir))
    print(format_table(record))
    write_json(results / RESULTS_FILE, record)
    return record


def ensure_contacts(
    workdir: Path, data: Any, customers: int, seed: int
) -> tuple[Path, datetime, int]:
    """The benchmark campaign's contact log (every customer of the data), written
    unless present: (its path, the confirmation, customers contacted)."""
    import pyarrow.parquet as pq

    from features.columns import CUSTOMER_ID
    from serving.outreach.contact_log import ContactLog
    from serving.outreach.selection import CONTROL, TREATMENT

    last = data.last_event
    start = datetime(last.year, last.month, last.day) - timedelta(days=BEFORE_END_DAYS)
    path = workdir / f"readout-contacts-{customers}-{seed}.sqlite"
    log = ContactLog(path)
    found = log.campaign(CAMPAIGN)
    if found is not None:
        print(f"reusing the contact log {path}", flush=True)
        return path, start, found.treatment + found.control
    print(f"writing the contact log {path} ...", flush=True)
    ids = pq.read_table(data.customers_path, columns=[CUSTOMER_ID])[CUSTOMER_ID]
    ids = ids.to_pylist()
    rng = np.random.default_rng(seed)
    control = rng.random(len(ids)) < CONTROL_SHARE
    scores = rng.random(len(ids)).round(6)
    rows = [
        (c, CONTROL if k else TREATMENT, float(s))
        for c, k, s in zip(ids, control, scores, strict=True)
    ]
    with log.confirming(CAMPAIGN, now=start.replace(tzinfo=UTC)) as tx:
        tx.record("churn", rows, control_share=CONTROL_SHARE, contact_cost=0.1)
    return path, start, len(rows)


def agree(ours: list[dict], sql: list[dict]) -> None:
    """The two readouts' sums per (group, decile) are the same (revenue within
    float rounding); AssertionError naming the first difference."""

    def keyed(rows: list[dict]) -> dict:
        return {(r["contact_group"], r["decile"]): r for r in rows}

    a, b = keyed(ours), keyed(sql)
    if a.keys() != b.keys():
        raise AssertionError(f"groups differ: {sorted(a.keys() ^ b.keys())[:5]}")
    for key, row in a.items():
        for column in ("n", "outcomes", "scored"):
            if int(row[column]) != int(b[key][column]):
                raise AssertionError(
                    f"{key} {column}: readout {row[column]}, SQL {b[key][column]}"
                )
        for column in ("revenue", "squares", "score_sum"):
            x, y = float(row[column] or 0), float(b[key][column] or 0)
            if abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
                raise AssertionError(f"{key} {column}: readout {x}, SQL {y}")


def hillstrom_readouts(data_dir: Path, out: Path) -> dict[str, Any]:
    """Hillstrom imported as `propensity import hillstrom` does and read out:
    per campaign (mens, womens) and outcome (visit, conversion) the treatment
    and control rates and the lift with its interval, and spend per customer;
    beside the README's reference figures. Empty when the data is missing."""
    from cli.main import main as cli
    from core.config import load_config
    from features.sources.load import connect, load_project
    from serving.outreach.readout import readout

    source = Path(data_dir) / "hillstrom" / "hillstrom.csv"
    if not source.is_file():
        print(f"hillstrom: {source} not found, skipped", flush=True)
        return {"hillstrom_skipped": f"{source} not found"}
    started = time.perf_counter()
    if cli(["import", "hillstrom", str(source), "--out", str(out)]) != 0:
        raise RuntimeError(f"importing {source} failed")
    config = load_config(out / "propensity.yaml")
    ds = load_project(config, con=connect(None, None))
    figures: dict[str, Any] = {}
    for name in ("mens", "womens"):
        for outcome, types in (("visit", ["visit"]), ("conversion", [])):
            found = readout(config, ds, f"hillstrom-{name}", event_types=types)
            prefix = f"hillstrom_{name}_{outcome}"
            groups, lift = found["groups"], found["lift"]["outcome"]["absolute"]
            figures[f"{prefix}_treatment_rate"] = groups["treatment"]["rate"]["value"]
            figures[f"{prefix}_control_rate"] = groups["control"]["rate"]["value"]
            figures[f"{prefix}_lift"] = lift["value"]
            figures[f"{prefix}_lift_low"] = lift["low"]
            figures[f"{prefix}_lift_high"] = lift["high"]
            spend = groups["treatment"]["revenue_per_customer"]["value"]
            figures[f"hillstrom_{name}_spend_per_customer"] = spend
            figures["hillstrom_control_spend_per_customer"] = groups["control"][
                "revenue_per_customer"
            ]["value"]
    figures["hillstrom_readouts_s"] = time.perf_counter() - started
    figures["hillstrom_reproduces_reference"] = hillstrom_matches(figures)
    return figures


def hillstrom_matches(f: dict[str, Any]) -> bool:
    """The readouts round to the README's figures (visit to 2 decimals of a
    percent, conversion to 3, spend to 3)."""
    ok = True
    for name in ("mens", "womens"):
        ref, control = HILLSTROM_REFERENCE[name], HILLSTROM_REFERENCE["control"]
        ok &= (
            round(100 * f[f"hillstrom_{name}_visit_treatment_rate"], 2) == ref["visit"]
        )
        ok &= (
            round(100 * f[f"hillstrom_{name}_visit_control_rate"], 2)
            == control["visit"]
        )
        ok &= (
            round(100 * f[f"hillstrom_{name}_conversion_treatment_rate"], 3)
            == ref["conversion"]
        )
        ok &= (
            round(100 * f[f"hillstrom_{name}_conversion_control_rate"], 3)
            == control["conversion"]
        )
        ok &= round(f[f"hillstrom_{name}_spend_per_customer"], 3) == ref["spend"]
    ok &= round(f["hillstrom_control_spend_per_customer"], 3) == control["spend"]
    return bool(ok)


def uplift_figures(data_dir: Path) -> dict[str, Any]:
    """THE ONE PLACE the uplift comparison plugs in: issue 19 part 3's
    `benchmarks.uplift.hillstrom_comparison(data_dir)` (Qini and uplift@30% of
    the uplift model, ranking by probability and random targeting on Hillstrom's
    women's e-mail visits, means over hash splits). Without that module (part 3
    not merged), a note instead of the figures."""
    try:
        from benchmarks.uplift import hillstrom_comparison
    except ImportError:
        print("uplift: benchmarks/uplift.py not present, skipped", flush=True)
        return {"hillstrom_uplift_skipped": "benchmarks/uplift.py not present"}
    return hillstrom_comparison(Path(data_dir))


def format_table(r: dict[str, Any]) -> str:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        f"readout benchmark: {r['customers']:,} contacted customers, "
        f"{r['events']:,} events, DuckDB memory_limit {r['memory_limit']}, "
        f"{r['threads']} threads (best of {REPETITIONS}; load and validation "
        f"{r['load_s']:.1f} s apart)",
        f"  readout          {r['readout_s']:8.1f} s   hand-written SQL "
        f"{r['sql_s']:.1f} s: {r['readout_vs_sql_ratio']:.2f}x (goal <= "
        f"{RATIO_GOAL}: {met(r['goal_ratio_met'])}); of which reading the "
        f"contact log {r['contacts_read_s']:.1f} s (both)",
        f"  peak memory      {r['peak_mb']:8.0f} MB  (SQL {r['sql_peak_mb']:.0f} MB;"
        f" goal <= {PEAK_GOAL_MB:.0f}: {met(r['goal_peak_met'])})",
        f"  churn rate       treatment {100 * r['treatment_rate']:.3f}%, control "
        f"{100 * r['control_rate']:.3f}% (same in both)",
    ]
    if "hillstrom_mens_visit_treatment_rate" in r:
        lines.append("  hillstrom (readout vs the README's reference):")
        for name in ("mens", "womens"):
            ref = HILLSTROM_REFERENCE[name]
            for outcome, digits in (("visit", 2), ("conversion", 3)):
                p = f"hillstrom_{name}_{outcome}"
                t, c = 100 * r[p + "_treatment_rate"], 100 * r[p + "_control_rate"]
                low, high = 100 * r[p + "_lift_low"], 100 * r[p + "_lift_high"]
                lines.append(
                    f"    {name:6} {outcome:10} treatment {t:.{digits}f}% (ref "
                    f"{ref[outcome]}%), control {c:.{digits}f}% (ref "
                    f"{HILLSTROM_REFERENCE['control'][outcome]}%), lift "
                    f"{100 * r[p + '_lift']:+.3f} pts [{low:+.3f}, {high:+.3f}]"
                )
            spend = r[f"hillstrom_{name}_spend_per_customer"]
            lines.append(
                f"    {name:6} spend      {spend:.3f} per customer (ref "
                f"{ref['spend']}), control "
                f"{r['hillstrom_control_spend_per_customer']:.3f} (ref "
                f"{HILLSTROM_REFERENCE['control']['spend']})"
            )
        lines.append(
            "    reproduces the reference: "
            + met(bool(r["hillstrom_reproduces_reference"]))
        )
    if "hillstrom_womens_visit_qini_uplift" in r:
        lines.append(
            "  hillstrom uplift (womens visits, Qini, mean over splits): uplift "
            f"{r['hillstrom_womens_visit_qini_uplift']:.4f}, probability "
            f"{r['hillstrom_womens_visit_qini_probability']:.4f}, random "
            f"{r['hillstrom_womens_visit_qini_random']:.4f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- children


def _config(args: dict[str, Any]):
    """The batch benchmark's config (the demo config on the benchmark's data and
    engine settings) with the campaign's contact log."""
    from benchmarks.batch import demo_config

    config = demo_config(args)
    log = config.outreach.model_copy(update={"contact_log": Path(args["contact_log"])})
    return config.model_copy(update={"outreach": log})


def _load(args: dict[str, Any]):
    start = time.perf_counter()
    ds = load_quietly(
        Path(args["events"]),
        Path(args["customers"]),
        datetime.fromisoformat(args["as_of"]),
        args["memory_limit"],
        args["threads"],
    )
    return ds, time.perf_counter() - start


def _best(job) -> tuple[float, Any]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(REPETITIONS):
        start = time.perf_counter()
        out = job()
        best = min(best, time.perf_counter() - start)
    return best, out


def _child_readout(args: dict[str, Any]) -> dict[str, Any]:
    """The readout as the CLI runs it, and its sums per (group, decile)."""
    import serving.outreach.readout as module

    config = _config(args)
    ds, load_s = _load(args)
    as_of = datetime.fromisoformat(args["as_of"])
    sums: list[dict] = []
    group_sums = module.group_sums

    def keep(outcomes):  # noqa: ANN001, ANN202 - the sums, for the agreement check
        rows = group_sums(outcomes)
        sums[:] = rows
        return rows

    module.group_sums = keep
    seconds, report = _best(lambda: module.readout(config, ds, CAMPAIGN, as_of=as_of))
    start = time.perf_counter()
    module.open_contact_log(config.outreach.contact_log).selected(CAMPAIGN)
    return {
        "seconds": seconds,
        "load_s": load_s,
        "contacts_read_s": time.perf_counter() - start,
        "sums": sums,
        "treatment_rate": report["groups"]["treatment"]["rate"]["value"],
        "control_rate": report["groups"]["control"]["rate"]["value"],
    }


def reference_sql(
    start: datetime, horizon_days: int, purchase: list, cancel: list
) -> str:
    """The churn readout by hand: per (group, decile) the customers, outcomes
    (no non-cancel event in the window, or a cancel), revenue (purchase amounts)
    and its squares, the score's sum and count, over `selected` and `events`."""

    def types(names: list) -> str:
        return ", ".join("'" + n.replace("'", "''") + "'" for n in names) or "NULL"

    end = start + timedelta(days=horizon_days)
    return f"""
    WITH ranked AS (
        SELECT customer_id, contact_group, score,
            CASE WHEN score IS NULL THEN NULL ELSE 1 + (10 * (row_number() OVER (
                ORDER BY score DESC NULLS LAST, customer_id) - 1))
                // count(score) OVER () END AS decile
        FROM selected
    ), per AS (
        SELECT e.customer_id,
            count(*) FILTER (WHERE e.event_type NOT IN ({types(cancel)})) AS active,
            count(*) FILTER (WHERE e.event_type IN ({types(cancel)})) AS cancels,
            sum(e.amount) FILTER (WHERE e.event_type IN ({types(purchase)})) AS revenue
        FROM events e SEMI JOIN selected s ON e.customer_id = s.customer_id
        WHERE e.event_time >= TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'
          AND e.event_time < TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'
        GROUP BY e.customer_id
    ), outcomes AS (
        SELECT r.contact_group, r.decile, r.score,
            CASE WHEN coalesce(p.active, 0) = 0 OR coalesce(p.cancels, 0) > 0
                THEN 1 ELSE 0 END AS outcome,
            coalesce(p.revenue, 0.0) AS revenue
        FROM ranked r LEFT JOIN per p ON r.customer_id = p.customer_id
    )
    SELECT contact_group, decile, count(*) AS n, sum(outcome) AS outcomes,
        sum(revenue) AS revenue, sum(revenue * revenue) AS squares,
        sum(score) AS score_sum, count(score) AS scored
    FROM outcomes GROUP BY contact_group, decile
    """


def _child_sql(args: dict[str, Any]) -> dict[str, Any]:
    """The hand-written readout: the same contact log read, one query, the same
    statistics on its sums."""
    from serving.outreach.contact_log import open_contact_log
    from serving.outreach.readout import _grouped, compare, parse_stamp, selected_table

    config = _config(args)
    ds, load_s = _load(args)
    con = ds.duckdb
    roles = config.roles
    horizon = config.targets.horizon("churn")

    def job() -> dict:
        log = open_contact_log(config.outreach.contact_log)
        campaign = log.campaign(CAMPAIGN)
        con.register("selected", selected_table(log.selected(CAMPAIGN)))
        query = reference_sql(
            parse_stamp(campaign.confirmed_at), horizon, roles.purchase, roles.cancel
        )
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        con.unregister("selected")
        return {"rows": rows, "figures": compare(_grouped(rows), CONTROL_SHARE, 0.1)}

    seconds, out = _best(job)
    return {"seconds": seconds, "load_s": load_s, "sums": out["rows"]}


CHILDREN_READOUT = {**CHILDREN, "readout": _child_readout, "sql": _child_sql}

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], CHILDREN_READOUT, MODULE))
