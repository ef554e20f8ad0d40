"""Each bad input gets an error naming the file, column, rows and what was expected."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from features.sources.contract import ContractError, close_match
from features.sources.load import load

GOOD = (
    "customer_id,event_time,event_type,amount\n"
    "c1,2024-01-01 10:00:00,login,\n"
    "c2,2024-01-02T11:00:00Z,purchase,9.5\n"
)
AS_OF = datetime(2024, 6, 1)


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path, **kwargs) -> list:
    with pytest.raises(ContractError) as info:
        load(path, as_of=AS_OF, **kwargs)
    return info.value.problems


def test_good_csv_loads_with_utc_timestamps(tmp_path: Path) -> None:
    ds = load(write(tmp_path, GOOD), as_of=AS_OF)
    frame = ds.events.to_pandas().sort_values("customer_id")
    assert list(frame.columns) == [
        "customer_id",
        "event_time",
        "event_type",
        "amount",
        "quantity",
    ]
    assert frame.event_time.tolist() == [
        pd.Timestamp("2024-01-01 10:00"),
        pd.Timestamp("2024-01-02 11:00"),
    ]
    assert frame.amount.isna().tolist() == [True, False]
    assert frame.quantity.isna().all()


def test_offset_timestamps_are_converted_to_utc(tmp_path: Path) -> None:
    text = "customer_id,event_time,event_type\nc1,2024-01-01 10:00:00+02:00,login\n"
    frame = load(write(tmp_path, text), as_of=AS_OF).events.to_pandas()
    assert frame.event_time[0] == pd.Timestamp("2024-01-01 08:00")


def test_misnamed_column_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,event_tim,event_type\nc1,2024-01-01,login\n")
    (problem,) = problems_of(path)
    assert problem.file == path and problem.column == "event_time"
    assert "missing" in problem.expected and "'event_tim'" in problem.expected


def test_a_column_sharing_only_a_suffix_gets_no_suggestion(tmp_path: Path) -> None:
    """`store_id` is not `customer_id` misspelt: no "did you mean" for it."""
    path = write(tmp_path, "store_id,event_time,event_type\nc1,2024-01-01,login\n")
    (problem,) = problems_of(path)
    assert problem.column == "customer_id"
    assert "did you mean" not in problem.expected


@pytest.mark.parametrize(
    ("wanted", "present", "suggested"),
    [
        ("customer_id", ["store_id", "household_id"], None),
        ("customer_id", ["cust_id"], "cust_id"),
        ("customer_id", ["Customer-ID"], "Customer-ID"),
        ("event_time", ["event_ts", "timestamp"], "event_ts"),
        ("event_time", ["timestamp"], None),
        ("start_time", ["start_date"], "start_date"),
    ],
)
def test_only_close_matches_are_suggested(
    wanted: str, present: list[str], suggested: str | None
) -> None:
    assert close_match(wanted, present) == suggested


def test_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,event_time\nc1,2024-01-01\n")
    (problem,) = problems_of(path)
    assert (
        problem.column == "event_type"
        and "required column is missing" in problem.expected
    )


def test_unparseable_timestamps_list_first_five_rows_and_count(tmp_path: Path) -> None:
    rows = ["c1,2024-01-01,login"] + [f"c{i},not a time,login" for i in range(7)]
    rows.insert(3, "c9,2024-02-30 10:00:00,login")  # no such day
    path = write(
        tmp_path, "customer_id,event_time,event_type\n" + "\n".join(rows) + "\n"
    )
    (problem,) = problems_of(path)
    assert problem.column == "event_time"
    assert problem.rows == (2, 3, 4, 5, 6) and problem.count == 8
    assert "expected a timestamp" in problem.expected
    message = str(ContractError([problem]))
    assert str(path) in message and "rows 2, 3, 4, 5, 6 (8 rows in all)" in message


def test_empty_file(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, ""))
    assert "empty" in problem.expected


def test_header_only_file(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "customer_id,event_time,event_type\n"))
    assert "no rows" in problem.expected


def test_non_numeric_amount(tmp_path: Path) -> None:
    text = GOOD + "c3,2024-01-03 00:00:00,purchase,12 EUR\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.column == "amount" and problem.rows == (3,)
    assert "not numeric" in problem.expected


def test_missing_customer_id(tmp_path: Path) -> None:
    text = GOOD + ",2024-01-03 00:00:00,login,\n  ,2024-01-03 00:00:00,login,\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.column == "customer_id" and problem.rows == (3, 4)


def test_events_in_the_future_of_the_as_of_date(tmp_path: Path) -> None:
    text = GOOD + "c3,2024-06-01 00:00:01,login,\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.column == "event_time" and problem.rows == (3,)
    assert "future" in problem.expected and "2024-06-01 00:00:00" in problem.expected


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    text = GOOD + ",not a time,login,x\n"
    columns = {p.column for p in problems_of(write(tmp_path, text))}
    assert columns == {"customer_id", "event_time", "amount"}


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", None, "c"],
            "event_time": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "event_type": ["login"] * 3,
        }
    )
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    (problem,) = problems_of(path)
    assert (
        problem.file == path
        and problem.column == "customer_id"
        and problem.rows == (2,)
    )


def test_folder_of_files_names_the_bad_file(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    write(folder, GOOD, "a.csv")
    bad = write(folder, GOOD + "c3,yesterday,login,\n", "b.csv")
    (problem,) = problems_of(folder)
    assert problem.file == bad and problem.rows == (3,)
    ok = tmp_path / "ok"
    ok.mkdir()
    write(ok, GOOD, "a.csv")
    write(ok, GOOD.replace("c1", "c3"), "b.csv")
    assert load(ok, as_of=AS_OF).events.count().to_pyarrow().as_py() == 4


def test_missing_path(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.parquet")
    assert "not found" in problem.expected


def test_customers_with_repeated_ids(tmp_path: Path) -> None:
    events = write(tmp_path, GOOD)
    customers = write(tmp_path, "customer_id,plan\nc1,basic\nc1,pro\n", "customers.csv")
    (problem,) = problems_of(events, customers=customers)
    assert (
        problem.file == customers
        and problem.rows == (1, 2)
        and "repeated" in problem.expected
    )
