"""The benchmarks: tiny end-to-end runs, the equality checks, the reference SQL."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks import features as bench_features
from benchmarks.features import (
    ISSUE_KEYS,
    Job,
    JobResult,
    compare_parquet,
    format_table,
    memory_gb,
    results_record,
    run_job,
)
from benchmarks.harness import (
    DemoData,
    FeatureMismatch,
    compare_features,
    demo_spec,
    load_quietly,
    month_starts,
    run_foundation,
)
from benchmarks.sql import reference_sql
from features.definition import build_features, catalogue
from features.synthetic.demo import generate
from tests.helpers import ROOT

Compare = Callable[[pd.DataFrame, pd.DataFrame], None]

KEYS = (
    "features_s",
    "features_peak_mb",
    "sql_s",
    "sql_peak_mb",
    "features_vs_sql_ratio",
    "score_rows_per_s",
    "raw_predict_rows_per_s",
    "score_vs_raw_ratio",
    "customers",
    "events",
    "cutoffs",
    "feature_rows",
    "features_count",
    "load_s",
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C2", "C1", "C1"],
            "cutoff": pd.to_datetime(["2025-11-01", "2025-11-01", "2025-12-01"]),
            "purchase_count_7d": [1, 0, 3],
            "purchase_amount_sum_7d": [12.5, 0.0, 99.99],
            "days_since_last_cancel": pd.array([None, 4, 9], dtype="Int64"),
            "plan": ["basic", None, "pro"],
            "eligible": [True, False, True],
        }
    )


def test_small_run_writes_every_figure(tmp_path: Path) -> None:
    out = run_foundation(
        customers=300, seed=1, cutoffs=2, workdir=tmp_path / "w", results=tmp_path / "r"
    )
    written = json.loads((tmp_path / "r" / "foundation.json").read_text())
    assert written == out
    for key in KEYS:
        value = written[key]
        assert isinstance(value, int | float) and value > 0, key
    assert written["customers"] == 300 and written["cutoffs"] == 2


@pytest.fixture(params=["in memory", "parquet in DuckDB"])
def compare(request: pytest.FixtureRequest, tmp_path: Path) -> Compare:
    """compare_features, or compare_parquet on the frames written to Parquet: the
    same semantics."""
    if request.param == "in memory":
        return compare_features

    def via_parquet(left: pd.DataFrame, right: pd.DataFrame) -> None:
        paths = [tmp_path / "left.parquet", tmp_path / "right.parquet"]
        for frame, path in zip((left, right), paths, strict=True):
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        compare_parquet(*paths)

    return via_parquet


def test_equal_frames_pass_in_any_row_order(compare: Compare) -> None:
    frame = _frame()
    compare(frame, frame.iloc[::-1].reset_index(drop=True))


def test_a_float_off_by_1e_6_raises(compare: Compare) -> None:
    other = _frame()
    other.loc[2, "purchase_amount_sum_7d"] += 1e-6
    with pytest.raises(FeatureMismatch, match="purchase_amount_sum_7d"):
        compare(_frame(), other)


def test_a_float_within_1e_9_relative_passes(compare: Compare) -> None:
    other = _frame()
    other.loc[2, "purchase_amount_sum_7d"] *= 1 + 1e-12
    compare(_frame(), other)


@pytest.mark.parametrize(
    ("column", "value"),
    [("days_since_last_cancel", None), ("plan", "plus"), ("purchase_count_7d", 2)],
)
def test_a_changed_value_or_null_raises(
    compare: Compare, column: str, value: object
) -> None:
    other = _frame()
    other.loc[1, column] = value
    with pytest.raises(FeatureMismatch, match=column):
        compare(_frame(), other)


def test_other_keys_or_a_missing_row_raise(compare: Compare) -> None:
    other = _frame()
    other.loc[0, "customer_id"] = "C3"
    with pytest.raises(FeatureMismatch):
        compare(_frame(), other)
    with pytest.raises(FeatureMismatch, match="row counts differ"):
        compare(_frame(), _frame().iloc[1:])


def test_column_order_matters(compare: Compare) -> None:
    frame = _frame()
    swapped = frame[
        [
            "customer_id",
            "cutoff",
            "purchase_amount_sum_7d",
            "purchase_count_7d",
            "days_since_last_cancel",
            "plan",
            "eligible",
        ]
    ]
    with pytest.raises(FeatureMismatch, match="columns differ"):
        compare(frame, swapped)


def test_month_starts_end_on_or_before_the_last_event() -> None:
    assert month_starts(datetime(2025, 12, 30, 23, 59), 3) == [
        datetime(2025, 10, 1),
        datetime(2025, 11, 1),
        datetime(2025, 12, 1),
    ]
    assert month_starts(datetime(2025, 2, 1), 2) == [
        datetime(2025, 1, 1),
        datetime(2025, 2, 1),
    ]


# ---------------------------------------------------------------- reference SQL


def _engine_and_sql(
    events: Path, customers: Path, cutoffs: list[datetime]
) -> tuple[pa.Table, pa.Table]:
    ds = load_quietly(events, customers, datetime(2030, 1, 1))
    spec = demo_spec()
    engine = build_features(ds.events, cutoffs, spec, ds.customers).to_pyarrow()
    sql = ds.duckdb.sql(reference_sql(spec, cutoffs)).to_arrow_table()
    return engine, sql


def test_reference_sql_equals_the_engine_on_demo_data(tmp_path: Path) -> None:
    demo = generate(tmp_path, customers=200, seed=5, days=400, events_per_customer=60)
    cutoffs = [datetime(2024, 6, 1), datetime(2024, 9, 1), datetime(2025, 2, 1)]
    engine, sql = _engine_and_sql(demo.events_path, demo.customers_path, cutoffs)
    assert sql.num_rows > 400
    compare_features(engine, sql)


# Edge cases the demo data lacks: reactivations (a cancel followed on a later day
# by another event), purchases without an amount, events at and just before a
# cutoff, a customer with only a cancel, a signup after the cutoff.
EDGE_EVENTS = [
    ("A", "2024-03-01 10:00:00", "login", None, None),
    ("A", "2024-03-05 10:00:00", "cancel", None, None),
    ("A", "2024-03-05 11:00:00", "page_view", None, None),
    ("A", "2024-03-07 09:00:00", "purchase", 10.0, 2.0),
    ("A", "2024-03-07 10:00:00", "purchase", None, None),
    ("A", "2024-03-20 23:59:59", "cancel", None, None),
    ("B", "2024-03-10 00:00:00", "cancel", None, None),
    ("C", "2024-02-15 12:00:00", "purchase", None, 3.0),
    ("C", "2024-03-31 23:59:59", "support_ticket", None, None),
    ("C", "2024-04-01 00:00:00", "purchase", 5.0, 1.0),
    ("D", "2024-01-02 08:00:00", "login", None, None),
    ("D", "2024-03-15 08:00:00", "cancel", None, None),
    ("D", "2024-03-15 08:00:00", "login", None, None),
    ("D", "2024-03-16 08:00:00", "cancel", None, None),
    ("D", "2024-03-18 08:00:00", "login", None, None),
]


def _edge_files(folder: Path) -> tuple[Path, Path]:
    events = pd.DataFrame(
        EDGE_EVENTS,
        columns=["customer_id", "event_time", "event_type", "amount", "quantity"],
    )
    events["event_time"] = pd.to_datetime(events["event_time"]).astype("M8[us]")
    customers = pd.DataFrame(
        {
            "customer_id": list("ABCD"),
            "signup_time": pd.to_datetime(
                ["2024-01-01", "2024-04-01", "2023-05-05", "2024-05-01"]
            ).astype("M8[us]"),
            "plan": ["basic", None, "pro", "plus"],
            "region": ["north", "south", "east", "west"],
            "age": [30.0, None, 40.0, 50.0],
        }
    )
    paths = folder / "events.parquet", folder / "customers.parquet"
    for frame, path in zip((events, customers), paths, strict=True):
        frame.to_parquet(path, index=False)
    return paths


def test_reference_sql_in_parts_of_customers_gives_the_whole(tmp_path: Path) -> None:
    ds = load_quietly(*_edge_files(tmp_path), datetime(2030, 1, 1))
    cutoffs = [datetime(2024, 4, 1), datetime(2024, 5, 1)]
    whole = ds.duckdb.sql(reference_sql(demo_spec(), cutoffs)).to_arrow_table()
    parts = [
        ds.duckdb.sql(reference_sql(demo_spec(), cutoffs, (k, 3))).to_arrow_table()
        for k in range(3)
    ]
    assert all(p.num_rows < whole.num_rows for p in parts)
    compare_features(pa.concat_tables(parts), whole)


def test_reference_sql_equals_the_engine_on_edge_cases(tmp_path: Path) -> None:
    cutoffs = [datetime(2024, 3, 6), datetime(2024, 4, 1), datetime(2024, 5, 1)]
    engine, sql = _engine_and_sql(*_edge_files(tmp_path), cutoffs)
    compare_features(engine, sql)
    rows = {
        (r["customer_id"], r["cutoff"].strftime("%m-%d")): r for r in sql.to_pylist()
    }
    assert rows["A", "03-06"]["reactivations"] == 0  # the same day does not count
    assert rows["A", "04-01"]["reactivations"] == 1
    assert rows["D", "04-01"]["reactivations"] == 2
    assert rows["A", "04-01"]["purchase_amount_mean_30d"] == 10.0  # null left out
    assert rows["A", "04-01"]["purchase_count_30d"] == 2
    assert rows["C", "03-06"]["purchase_amount_mean_30d"] is None
    assert rows["C", "03-06"]["purchase_quantity_sum_30d"] == 3.0
    assert rows["C", "04-01"]["days_since_last_service_request"] == 0
    assert rows["C", "04-01"]["purchase_count_total"] == 1  # at the cutoff: later
    assert rows["A", "03-06"]["active_day_share_7d"] == pytest.approx(2 / 5)
    # churned (out of churn's population), still in purchase's
    assert not rows["B", "04-01"]["in_churn"] and rows["B", "04-01"]["in_purchase"]
    assert rows["B", "04-01"]["days_since_signup_time"] is None


# ---------------------------------------------------------------- features bench


def _fake_result(name: str, engine_s: float, events: int) -> JobResult:
    data = DemoData(Path("e"), Path("c"), events, datetime(2025, 12, 30), True)
    cutoffs = month_starts(data.last_event, 3)
    job = Job(name, events // 100, data, cutoffs, "1GB")
    engine = {"seconds": engine_s, "peak_mb": 900.0, "load_peak_mb": 250.0, "chunks": 4}
    sql = {"seconds": 10.0, "peak_mb": 800.0, "load_peak_mb": 240.0}
    rollup = {"seconds": engine_s / 4, "cpu_s": engine_s / 5}
    engine = {**engine, "load_s": 1.0, "cpu_s": engine_s / 2}
    return JobResult(job, engine, sql, 600, 101, 1.5, rollup)


def test_features_json_has_the_issue_keys() -> None:
    done = [
        _fake_result("reference", 8.0, 20_000_000),
        _fake_result("training_set", 30.0, 20_000_000),
        _fake_result("large", 38.0, 100_000_000),
    ]
    record = results_record(done, threads=2)
    for key in ISSUE_KEYS:
        assert isinstance(record[key], int | float), key
    assert record["reference_ratio"] == pytest.approx(0.8)
    assert record["large_s"] == 38.0 and record["features_count"] == 101
    assert record["reference_memory_limit"] == "1GB"
    assert record["goal_ratio_met"] and record["goal_peak_met"]
    assert record["goal_linear_met"]  # 38 s / 100M events < 8 s / 20M events
    assert record["reference_engine_us_per_event"] == pytest.approx(0.4)
    assert record["large_engine_us_per_event"] == pytest.approx(0.38)
    assert record["large_vs_reference_s_per_event"] == pytest.approx(0.95)
    # the roll-up a quarter of the engine's time, a fifth of its half in CPU
    assert record["engine_vs_rollup_ratio"] == pytest.approx(4.0)
    assert record["engine_vs_rollup_cpu_ratio"] == pytest.approx(2.5)
    assert not record["goal_rollup_met"]
    json.dumps(record)  # serialisable as it is
    table = format_table(done, record)
    assert "training_set" in table and "0.80x" in table
    assert "(2.50x in process CPU)" in table and "0.38 us per event" in table


def test_a_skipped_large_job_is_written_as_null() -> None:
    record = results_record([_fake_result("reference", 12.0, 20_000_000)])
    assert record["large_s"] is None and record["large_skipped"]
    assert record["goal_ratio_met"] is False
    assert "goal_linear_met" not in record


def test_a_failed_side_is_reported_not_timed() -> None:
    reference = _fake_result("reference", 8.0, 20_000_000)
    large = _fake_result("large", 38.0, 100_000_000)
    failed = {"error": "OutOfMemoryException: ...", "peak_mb": 1200.0}
    large = JobResult(large.job, failed, large.sql)
    record = results_record([reference, large])
    assert record["large_s"] is None and record["large_ratio"] is None
    assert record["large_engine_error"].startswith("OutOfMemoryException")
    assert record["large_peak_mb"] == 1200.0 and record["large_sql_s"] == 10.0
    assert not record["goal_large_finished"] and not record["goal_linear_met"]
    assert not record["goal_peak_met"] and record["goal_ratio_met"]
    assert "large: engine FAILED: OutOfMemoryException" in format_table(
        [reference, large], record
    )


def test_a_job_runs_engine_sql_and_comparison_in_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, customers = _edge_files(tmp_path)
    data = DemoData(events, customers, len(EDGE_EVENTS), datetime(2024, 4, 1), True)
    job = Job("reference", 4, data, [datetime(2024, 4, 1)], "500MB")
    monkeypatch.setattr(bench_features, "EVENTS_PER_SQL_PART_PER_GB", 12)
    assert job.sql_parts == 3  # the SQL writes 3 parts, compared as one table
    done = run_job(job, tmp_path / "w")
    ds = load_quietly(events, customers, datetime(2030, 1, 1))
    assert done.features == len(catalogue(demo_spec(), ds.customers).names)
    assert done.rows == 4
    assert done.engine["peak_mb"] > 0 and done.sql["seconds"] > 0
    assert not list((tmp_path / "w").glob("features-*"))  # compared, removed


@pytest.mark.parametrize(
    ("limit", "gb"), [("600MB", 0.6), ("1GB", 1.0), ("2 GiB", 2 * 1.024**3)]
)
def test_memory_limits_read_as_duckdb_reads_them(limit: str, gb: float) -> None:
    assert memory_gb(limit) == pytest.approx(gb)


def test_the_sql_needs_more_parts_for_more_events_per_memory() -> None:
    def parts(events: int, limit: str) -> int:
        data = DemoData(Path("e"), Path("c"), events, datetime(2025, 12, 30), True)
        return Job("x", 1, data, [], limit).sql_parts

    assert parts(20_600_000, "1GB") == 1
    assert parts(20_600_000, "600MB") == 2
    assert parts(102_600_000, "1GB") == 5


def test_the_cli_and_make_target_run_the_features_bench(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import benchmarks.features
    import benchmarks.harness
    from benchmarks.__main__ import main

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        benchmarks.features,
        "run_features",
        lambda **kw: calls.append(("features", kw)),
    )
    monkeypatch.setattr(
        benchmarks.harness,
        "run_foundation",
        lambda **kw: calls.append(("foundation", kw)),
    )
    assert main(["features", "--customers", "300", "--skip-large"]) == 0
    (suite, args), *_ = calls
    assert suite == "features" and args["customers"] == 300 and args["skip_large"]
    assert main([]) == 0 and main(["foundation"]) == 0  # the default suite
    assert [suite for suite, _ in calls[1:]] == ["foundation", "foundation"]
    assert calls[1][1] == calls[2][1] and calls[1][1]["customers"] == 200_000
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^bench-features: .*## .+\n((?:\t.*\n)+)", makefile, re.M)
    assert target and "$(BENCH) features" in target.group(1)
    assert "--skip-large" in target.group(1)
