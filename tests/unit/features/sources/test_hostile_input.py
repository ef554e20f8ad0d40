"""Hostile and broken sources: each is loaded under a documented policy or refused
with a ContractError naming the file (and the row and column when there is one),
never another exception, never a hang (docs/data.md, "Hostile input")."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.sources.contract import ContractError
from features.sources.load import load

AS_OF = datetime(2024, 6, 1)
HEADER = "customer_id,event_time,event_type,amount,quantity\n"


def write(tmp_path: Path, text: str | bytes, name: str = "events.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def problems_of(path: Path, **kwargs) -> list:
    with pytest.raises(ContractError) as info:
        load(path, as_of=AS_OF, **kwargs)
    assert str(path) in str(info.value)
    return info.value.problems


@pytest.mark.parametrize("bad", ["NaN", "nan", "inf", "-Infinity", "1e999"])
@pytest.mark.parametrize("column", ["amount", "quantity"])
def test_nan_and_infinite_numbers_in_a_csv_are_refused(
    tmp_path: Path, bad: str, column: str
) -> None:
    row = {"amount": "1.5", "quantity": "1"} | {column: bad}
    path = write(
        tmp_path,
        HEADER
        + "c1,2024-01-01,purchase,2,1\n"
        + f"c2,2024-01-02,purchase,{row['amount']},{row['quantity']}\n",
    )
    (problem,) = problems_of(path)
    assert (problem.column, problem.rows) == (column, (2,))
    assert "NaN or infinite" in problem.expected


def test_nan_and_infinite_amounts_in_parquet_are_refused(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": ["a", "b", "c"],
            "event_time": pa.array([datetime(2024, 1, 1)] * 3, pa.timestamp("us")),
            "event_type": ["purchase"] * 3,
            "amount": [1.0, float("nan"), float("-inf")],
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    (problem,) = problems_of(tmp_path / "events.parquet")
    assert (problem.column, problem.rows, problem.count) == ("amount", (2, 3), 2)


def test_nan_price_in_subscriptions_is_refused(tmp_path: Path) -> None:
    events = write(tmp_path, HEADER + "c1,2024-01-01,purchase,1,1\n")
    subs = write(
        tmp_path,
        "customer_id,plan,start_time,end_time,price,billing_period_days\n"
        "c1,basic,2024-01-01,2024-02-01,NaN,30\n",
        "subscriptions.csv",
    )
    with pytest.raises(ContractError) as info:
        load(events, as_of=AS_OF, subscriptions=subs)
    (problem,) = info.value.problems
    assert (problem.file, problem.column, problem.rows) == (subs, "price", (1,))


def test_a_subscription_starting_before_1970_is_refused(tmp_path: Path) -> None:
    events = write(tmp_path, HEADER + "c1,2024-01-01,purchase,1,1\n")
    subs = write(
        tmp_path,
        "customer_id,plan,start_time,end_time,price,billing_period_days\n"
        "c1,basic,0001-01-01,2024-02-01,10,30\n",
        "subscriptions.csv",
    )
    with pytest.raises(ContractError) as info:
        load(events, as_of=AS_OF, subscriptions=subs)
    (problem,) = info.value.problems
    assert (problem.column, problem.rows) == ("start_time", (1,))
    assert "before 1970-01-01" in problem.expected


def test_negative_quantities_and_amounts_load_as_returns(tmp_path: Path) -> None:
    # policy: a return or refund is a real event (Online Retail's cancellations)
    path = write(
        tmp_path,
        HEADER + "c1,2024-01-01,purchase,10,2\nc1,2024-01-02,purchase,-10,-2\n",
    )
    frame = load(path, as_of=AS_OF).events.to_pandas().sort_values("event_time")
    assert frame.quantity.tolist() == [2.0, -2.0]
    assert frame.amount.tolist() == [10.0, -10.0]


@pytest.mark.parametrize("stamp", ["1969-12-31 23:59:59", "1900-01-01", "0001-01-01"])
def test_events_before_1970_are_refused(tmp_path: Path, stamp: str) -> None:
    path = write(tmp_path, HEADER + "c1,2024-01-01,login,,\n" + f"c1,{stamp},login,,\n")
    (problem,) = problems_of(path)
    assert (problem.column, problem.rows) == ("event_time", (2,))
    assert "before 1970-01-01" in problem.expected


@pytest.mark.parametrize("stamp", ["2024-06-02", "9999-12-31", "294247-01-11"])
def test_events_far_in_the_future_are_refused(tmp_path: Path, stamp: str) -> None:
    path = write(tmp_path, HEADER + f"c1,{stamp},login,,\n")
    (problem,) = problems_of(path)
    assert (problem.column, problem.rows) == ("event_time", (1,))


def test_mixed_offsets_in_one_column_are_each_converted_to_utc(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "c1,2024-01-01T10:00:00+05:00,login,,\n"
        + "c2,2024-01-01T05:00:00Z,login,,\n"
        + "c3,2024-01-01 05:00:00,login,,\n"
        + "c4,2023-12-31T21:00:00-08:00,login,,\n",
    )
    frame = load(path, as_of=AS_OF).events.to_pandas()
    assert set(frame.event_time) == {pd.Timestamp("2024-01-01 05:00")}


def test_exact_duplicate_events_are_kept(tmp_path: Path) -> None:
    # policy: two identical lines may be two purchases in one second; kept
    line = "c1,2024-01-01 10:00:00,purchase,5,1\n"
    ds = load(write(tmp_path, HEADER + line + line), as_of=AS_OF)
    assert ds.rows() == 2


def test_non_utf8_bytes_name_the_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER.encode() + b"c1,2024-01-01,login,,\nc\xff\xfe2,2024-01-01,login,,\n",
    )
    (problem,) = problems_of(path)
    assert problem.file == path
    assert "not UTF-8" in problem.expected and "line 3" in problem.expected
    assert "\ufffd" not in str(problem)


def test_an_overlong_line_is_refused_without_quoting_it(tmp_path: Path) -> None:
    # DuckDB's max_line_size is 2 MB; its reader buffers at most 32 MB of a line,
    # so a multi-GB line fails the same way (checked by hand with 50 MB)
    path = tmp_path / "events.csv"
    with path.open("w") as f:
        f.write(HEADER + "c1,2024-01-01,login,,\n")
        f.write("x" * 3_000_000 + ",2024-01-01,login,,\n")
    (problem,) = problems_of(path)
    assert "longer than" in problem.expected
    assert len(str(problem)) < 500


def test_a_truncated_parquet_file_is_named(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": [f"c{i}" for i in range(1000)],
            "event_time": pa.array([datetime(2024, 1, 1)] * 1000, pa.timestamp("us")),
            "event_type": ["login"] * 1000,
        }
    )
    full = tmp_path / "full.parquet"
    pq.write_table(table, full)
    cut = tmp_path / "events.parquet"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (problem,) = problems_of(cut)
    assert problem.file == cut and "cannot be read as parquet" in problem.expected


def test_a_damaged_parquet_page_is_named(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": [f"c{i}" for i in range(5000)],
            "event_time": pa.array([datetime(2024, 1, 1)] * 5000, pa.timestamp("us")),
            "event_type": ["login"] * 5000,
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path, compression="snappy")
    data = bytearray(path.read_bytes())
    # overwrite data pages, leave the footer (metadata) intact
    for i in range(8, len(data) // 2):
        data[i] = 0xAB
    path.write_bytes(bytes(data))
    (problem,) = problems_of(path)
    assert problem.file == path and "cannot be read as parquet" in problem.expected


def test_wrong_parquet_types_are_named(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": ["a", "b"],
            "event_time": pa.array([1_700_000_000, 1_700_000_100], pa.int64()),
            "event_type": ["login", "login"],
            "amount": ["12.5", "twelve"],
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    problems = {(p.column, p.rows) for p in problems_of(path)}
    assert ("event_time", (1, 2)) in problems
    assert ("amount", (2,)) in problems


def test_numbers_as_text_in_parquet_load(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": pa.array([1, 2], pa.int64()),
            "event_time": ["2024-01-01T00:00:00Z", "2024-01-02"],
            "event_type": ["login", "login"],
            "amount": ["12.5", ""],
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    frame = load(tmp_path / "events.parquet", as_of=AS_OF).events.to_pandas()
    assert sorted(frame.customer_id) == ["1", "2"]
    assert frame.amount.isna().sum() == 1


def test_a_csv_whose_dialect_cannot_be_told_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b"customer_id,event_time,event_type,amount,D\xf3\xbd\xa9\xaf\r\n"
        b"\x87,2024-01-01T10:00:00+02:00,login,1e3,\r\n"
        b"h\xa6\x14{\xdcz,2024-01-01T10:00:00+02:00, support ,0\r\n"
        b"\xc3\xa9,2024-01-01T10:00:00+02:00, support ,,,a\r\n"
        b"c2,2024-01-01T10:00:00+02:00,purchase,1.5,\r\n"
        b" c3 ,2024-01-01,login,1e3,\r\n"
        b'42,2024-01-01, support ,1.5,,"line\nbreak"',
    )
    (problem,) = problems_of(path)
    assert problem.file == path and "expected a UTF-8 CSV" in problem.expected
    assert "line\nbreak" not in str(problem)


def test_a_late_value_of_another_type_in_a_customers_csv_is_named(
    tmp_path: Path,
) -> None:
    # DuckDB reads attribute types from the first 20,480 rows; a later text in a
    # column of numbers would fail mid-job: it is a contract problem instead
    events = write(tmp_path, HEADER + "c1,2024-01-01,login,,\n")
    lines = ["customer_id,age", *(f"c{i},{i % 90}" for i in range(100_000))]
    customers = write(tmp_path, "\n".join([*lines, "cx,unknown", ""]), "customers.csv")
    with pytest.raises(ContractError) as info:
        load(events, customers, as_of=AS_OF)
    (problem,) = info.value.problems
    assert (problem.file, problem.column, problem.rows) == (
        customers,
        "age",
        (100_001,),
    )
    assert "cx" not in str(problem)


def test_infinite_dates_and_nan_numbers_in_customers_are_named(
    tmp_path: Path,
) -> None:
    events = write(tmp_path, HEADER + "c1,2024-01-01,login,,\n")
    customers = write(
        tmp_path,
        "customer_id,signup,score\nc1,2024-01-01,1.5\nc2,inf,2.5\nc3,2024-02-01,NaN\n",
        "customers.csv",
    )
    with pytest.raises(ContractError) as info:
        load(events, customers, as_of=AS_OF)
    found = {(p.file, p.column, p.rows) for p in info.value.problems}
    assert found == {(customers, "signup", (2,)), (customers, "score", (3,))}


def test_nan_in_a_parquet_customers_attribute_is_named(tmp_path: Path) -> None:
    events = write(tmp_path, HEADER + "c1,2024-01-01,login,,\n")
    path = tmp_path / "customers.parquet"
    pq.write_table(
        pa.table({"customer_id": ["a", "b"], "income": [1.0, float("inf")]}), path
    )
    with pytest.raises(ContractError) as info:
        load(events, path, as_of=AS_OF)
    (problem,) = info.value.problems
    assert (problem.file, problem.column, problem.rows) == (path, "income", (2,))
