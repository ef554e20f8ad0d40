"""Sources: a hive-partitioned folder and a DuckDB database file (table or query)
give the same events as the single Parquet file; a DB table's problems name it."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from cli.main import main
from core.config import DatabaseSource
from features.columns import CUSTOMER_ID, EVENT_COLUMNS, EVENT_TIME, EVENT_TYPE
from features.sources.contract import ContractError
from features.sources.load import load, load_customers
from features.synthetic.demo import DemoSummary, generate
from tests.helpers import write_config

AS_OF = datetime(2030, 1, 1)
ORDER = [CUSTOMER_ID, EVENT_TIME, EVENT_TYPE]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate(tmp_path_factory.mktemp("demo"), customers=40, seed=3, days=70)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, demo: DemoSummary) -> Path:
    """A DuckDB file holding the demo's events and customers as tables."""
    path = tmp_path_factory.mktemp("db") / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        for name, src in (
            ("events", demo.events_path),
            ("customers", demo.customers_path),
        ):
            con.execute(f"CREATE TABLE {name} AS FROM read_parquet('{src}')")
        con.execute(
            "CREATE TABLE bad_events AS FROM (VALUES ('c1', '2024-01-01', 'login'), "
            "('c2', '2024-01-02', 'login'), (NULL, 'soon', 'login')) "
            "t(customer_id, event_time, event_type)"
        )
    return path


def events_of(ds) -> pd.DataFrame:
    return ds.events.to_pandas().sort_values(ORDER).reset_index(drop=True)


def customers_of(ds) -> pd.DataFrame:
    return ds.customers.to_pandas().sort_values(CUSTOMER_ID).reset_index(drop=True)


def test_hive_partitioned_folder_equals_the_single_file(
    tmp_path: Path, demo: DemoSummary
) -> None:
    table = pq.read_table(demo.events_path)
    stamps = table[EVENT_TIME]
    table = table.append_column("year", pc.year(stamps))
    table = table.append_column("month", pc.month(stamps))
    folder = tmp_path / "events"
    pds.write_dataset(
        table,
        folder,
        format="parquet",
        partitioning=["year", "month"],
        partitioning_flavor="hive",
    )
    assert (folder / "year=2024" / "month=1").is_dir()
    expected = events_of(load(demo.events_path, as_of=AS_OF))
    got = events_of(load(folder, as_of=AS_OF))
    assert list(got.columns) == list(EVENT_COLUMNS)  # year and month dropped
    pd.testing.assert_frame_equal(got, expected)


def test_a_contract_column_can_come_from_the_partition_folder(
    tmp_path: Path, demo: DemoSummary
) -> None:
    folder = tmp_path / "events"
    pds.write_dataset(
        pq.read_table(demo.events_path),
        folder,
        format="parquet",
        partitioning=[EVENT_TYPE],
        partitioning_flavor="hive",
    )
    assert (folder / "event_type=login").is_dir()
    expected = events_of(load(demo.events_path, as_of=AS_OF))
    pd.testing.assert_frame_equal(events_of(load(folder, as_of=AS_OF)), expected)


def test_customers_partition_folders_are_not_attributes(
    tmp_path: Path, demo: DemoSummary
) -> None:
    part = tmp_path / "customers" / "region_code=7"
    part.mkdir(parents=True)
    pq.write_table(pq.read_table(demo.customers_path), part / "part.parquet")
    got = load_customers(tmp_path / "customers").to_pandas()
    assert "region_code" not in got.columns
    assert len(got) == 40


@pytest.mark.parametrize(
    "events",
    [{"table": "events"}, {"query": "SELECT * FROM events WHERE amount IS NOT NULL"}],
)
def test_duckdb_file_table_and_query_equal_parquet(
    demo: DemoSummary, warehouse: Path, events: dict[str, str]
) -> None:
    uri = f"duckdb:{warehouse}"
    ds = load(
        DatabaseSource(uri=uri, **events),
        DatabaseSource(uri=uri, table="customers"),
        as_of=AS_OF,
    )
    expected = load(demo.events_path, demo.customers_path, as_of=AS_OF)
    want = events_of(expected)
    if "query" in events:
        want = want[want.amount.notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(events_of(ds), want)
    pd.testing.assert_frame_equal(customers_of(ds), customers_of(expected))
    assert ds.events_files == [] and ds.fingerprint()["rows"] == len(want)


def test_a_db_table_problem_names_the_table_column_and_row(warehouse: Path) -> None:
    source = DatabaseSource(uri=f"duckdb:{warehouse}", table="bad_events")
    with pytest.raises(ContractError) as info:
        load(source, as_of=AS_OF)
    problems = {p.column: p for p in info.value.problems}
    assert set(problems) == {CUSTOMER_ID, EVENT_TIME}
    assert problems[CUSTOMER_ID].rows == (3,) and problems[EVENT_TIME].rows == (3,)
    message = str(info.value)
    assert f"duckdb:{warehouse}, table bad_events, column 'event_time', rows 3" in (
        message
    )


def test_query_rows_are_positions_in_the_result(warehouse: Path) -> None:
    query = "SELECT * FROM bad_events ORDER BY customer_id NULLS FIRST"
    source = DatabaseSource(uri=f"duckdb:{warehouse}", query=query)
    with pytest.raises(ContractError) as info:
        load(source, as_of=AS_OF)
    assert {p.rows for p in info.value.problems} == {(1,)}
    assert f"query {query!r}" in str(info.value)


def test_a_missing_table_is_a_contract_error_naming_it(warehouse: Path) -> None:
    source = DatabaseSource(uri=f"duckdb:{warehouse}", table="analytics.nope")
    with pytest.raises(ContractError) as info:
        load(source, as_of=AS_OF)
    (problem,) = info.value.problems
    assert problem.file == f"duckdb:{warehouse}, table analytics.nope"
    assert "cannot be read" in problem.expected and "nope" in problem.expected


def test_features_list_reads_customers_from_a_database(
    tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(tmp_path / "p.yaml", tmp_path / "unused", None)
    text = config.read_text().replace(
        "customers: null",
        f"customers: {{uri: 'duckdb:{warehouse.name}', table: customers}}",
    )
    config.write_text(text)
    (tmp_path / warehouse.name).symlink_to(warehouse)  # relative to the config
    assert main(["--config", str(config), "features", "list"]) == 0
    assert "customer attribute plan (categorical)" in capsys.readouterr().out


def test_compiled_sql_is_reused_across_connections_with_this_calls_own_tables() -> None:
    """`connect`'s connections share compiled SQL by the expression's structure:
    the same build over other data and other cutoffs (an in-memory table with a
    random name) compiles once and still reads this call's tables."""
    import ibis

    from features.sources import load as loading

    def build(values: list[int], cuts: list[int]) -> list[int]:
        con = loading.connect(threads=1)
        try:
            rows = ", ".join(f"({v})" for v in values)
            con.raw_sql(f"CREATE TABLE t AS SELECT * FROM (VALUES {rows}) AS x(v)")
            t = con.table("t")
            c = ibis.memtable(pd.DataFrame({"c": cuts}))
            joined = t.cross_join(c)
            counted = (
                joined.filter(joined.v < joined.c)
                .group_by("c")
                .aggregate(n=ibis._.count())
            )
            return counted.order_by("c").n.to_pandas().tolist()
        finally:
            con.disconnect()

    loading._COMPILED.clear()
    assert build([1, 2, 3], [2, 4]) == [1, 3]
    compiled = len(loading._COMPILED)
    assert compiled >= 1
    assert build([5, 6, 7, 8], [6, 9]) == [1, 4]
    assert build([1, 1, 9], [10, 2]) == [2, 3]
    assert len(loading._COMPILED) == compiled


def test_the_same_build_over_other_files_at_other_dates_compiles_once(
    tmp_path: Path,
) -> None:
    """Dates given as literals (an as-of date, a day) and the views Ibis names at
    random (`read_parquet`) stand in by their place: the same build over another
    file at other dates reuses the compiled SQL, with this call's dates and file."""
    import ibis

    from features.sources import load as loading

    def build(times: list[str], as_of: datetime, day: date) -> tuple[int, int]:
        path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.parquet"
        pd.DataFrame({"ts": pd.to_datetime(times)}).to_parquet(path)
        con = loading.connect(threads=1)
        try:
            t = con.read_parquet(path)
            before = t.filter(t.ts < ibis.literal(as_of)).count()
            on_or_after = t.filter(t.ts.date() >= ibis.literal(day)).count()
            return int(before.execute()), int(on_or_after.execute())
        finally:
            con.disconnect()

    loading._COMPILED.clear()
    times = ["2025-01-01 10:00", "2025-02-01 00:00", "2025-03-05 00:00"]
    assert build(times, datetime(2025, 2, 1), date(2025, 3, 5)) == (1, 1)
    compiled = len(loading._COMPILED)
    assert compiled >= 2
    assert build(times, datetime(2025, 3, 1), date(2025, 1, 1)) == (2, 3)
    assert build(times[:1], datetime(2026, 1, 1, 12), date(2025, 1, 2)) == (1, 0)
    assert len(loading._COMPILED) == compiled


def test_a_query_holding_its_connection_is_compiled_but_not_kept() -> None:
    """An expression on `con.sql(...)` holds the connection: the memo leaves it
    out, so no closed connection is kept alive by a key."""
    from features.sources import load as loading

    loading._COMPILED.clear()
    con = loading.connect(threads=1)
    try:
        table = con.sql("SELECT 1 AS v UNION ALL SELECT 2", schema={"v": "int32"})
        assert "UNION ALL" in con.compile(table.v.sum())
        assert len(loading._COMPILED) == 0
    finally:
        con.disconnect()
