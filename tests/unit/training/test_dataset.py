"""The training table's data end: a log cut at midnight keeps its last day; the
table as an MLflow dataset input."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource

from features.definition import FeatureSpec, catalogue
from features.labels import LabelSpec
from features.sources.load import load
from training.dataset import (
    TrainingTable,
    as_mlflow_input,
    build_training_table,
    data_end,
)


def _log(tmp_path: Path, last: datetime):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b"],
            "event_time": [
                datetime(2024, 6, 3),
                last,
                datetime(2024, 7, 9),
                datetime(2024, 9, 2, 8),
            ],
            "event_type": ["login", "login", "login", "buy"],
        }
    )
    frame["event_time"] = frame["event_time"].astype("datetime64[us]")
    frame.to_parquet(tmp_path / "events.parquet")
    return load(tmp_path / "events.parquet", as_of=datetime(2030, 1, 1))


def test_the_data_end_is_the_end_of_the_last_day_with_events(tmp_path: Path) -> None:
    ds = _log(tmp_path, datetime(2024, 9, 30, 23, 56))
    assert data_end(ds) == datetime(2024, 10, 1)
    labels = LabelSpec({"churn": 30, "purchase": 30, "service_request": 30})
    # the 09-01 window [09-01, 10-01) lies within a log cut at midnight
    assert labels.complete("purchase", datetime(2024, 9, 1), data_end(ds))
    assert not labels.complete("purchase", datetime(2024, 9, 2), data_end(ds))


def test_data_as_of_sets_the_data_end(tmp_path: Path) -> None:
    ds = _log(tmp_path, datetime(2024, 9, 30, 23, 56))
    through = datetime(2024, 10, 15)
    assert data_end(ds, through) == through
    table = build_training_table(
        ds,
        FeatureSpec(role_of={"buy": "purchase"}, windows_days=(30,)),
        LabelSpec({"churn": 30, "purchase": 30, "service_request": 30}),
        [datetime(2024, 9, 1), datetime(2024, 10, 1)],
        complete_through=through,
    )
    assert table.data_end == through
    assert table.cutoffs == [datetime(2024, 9, 1), datetime(2024, 10, 1)]


def test_the_midnight_end_keeps_the_last_month_as_an_origin(tmp_path: Path) -> None:
    ds = _log(tmp_path, datetime(2024, 9, 30, 23, 56))
    table = build_training_table(
        ds,
        FeatureSpec(role_of={"buy": "purchase"}, windows_days=(30,)),
        LabelSpec({"churn": 30, "purchase": 30, "service_request": 30}),
        [datetime(2024, 8, 1), datetime(2024, 9, 1)],
    )
    assert table.data_end == datetime(2024, 10, 1)
    labels = LabelSpec({"churn": 30, "purchase": 30, "service_request": 30})
    complete = [
        c for c in table.cutoffs if labels.complete("purchase", c, table.data_end)
    ]
    assert complete == [datetime(2024, 8, 1), datetime(2024, 9, 1)]


def test_each_target_trains_on_its_own_population(tmp_path: Path) -> None:
    """The training table keeps every row of some listed target's population,
    with one flag per target; `population(target)` is that target's rows, and
    `population_sizes` its rows and positives per cutoff; a lookback leaves
    older customers out."""
    ds = _log(tmp_path, datetime(2024, 9, 30, 23, 56))
    cutoffs = [datetime(2024, 8, 1), datetime(2024, 9, 1), datetime(2024, 10, 1)]
    spec = FeatureSpec(role_of={"buy": "purchase"}, windows_days=(30,))
    labels = LabelSpec({"churn": 30, "purchase": 30, "service_request": 30})
    table = build_training_table(
        ds, spec, labels, cutoffs, complete_through=datetime(2024, 11, 1)
    )
    frame = table.frame.set_index(["customer_id", "cutoff"])
    # at 09-01, a was last seen 06-03: inactive longer than the churn horizon,
    # out of churn's population, in purchase's (and its label is there)
    a = frame.loc[("a", datetime(2024, 9, 1))]
    assert not a["in_churn"] and a["in_purchase"] and a["in_service_request"]
    assert a["purchase"] == 0
    churn = table.population("churn").frame
    purchase = table.population("purchase").frame
    assert len(purchase) == len(table.frame) > len(churn)
    assert churn["in_churn"].all()
    sizes = table.population_sizes("purchase")
    assert sizes[datetime(2024, 8, 1)] == (2, 0)
    assert sizes[datetime(2024, 9, 1)] == (2, 1)  # b buys on 09-02
    only = FeatureSpec(
        role_of={"buy": "purchase"},
        windows_days=(30,),
        targets=("purchase",),
        lookback_days={"purchase": 30},
    )
    table = build_training_table(
        ds,
        only,
        LabelSpec({"purchase": 30}),
        [datetime(2024, 10, 15)],
        complete_through=datetime(2024, 11, 15),
    )
    assert list(table.frame.customer_id) == ["a"]  # b: 43 days before, out
    assert "churn" not in table.frame.columns
    assert "in_churn" not in table.frame.columns


def _table(rows: int) -> TrainingTable:
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(rows)],
            "cutoff": pd.Timestamp("2024-09-01"),
            "tenure": [float(i) for i in range(rows)],
            "churn": [i % 3 == 0 for i in range(rows)],
        }
    )
    spec = FeatureSpec(role_of={"buy": "purchase"}, windows_days=(30,))
    return TrainingTable(
        frame, catalogue(spec), datetime(2024, 10, 1), [datetime(2024, 9, 1)]
    )


def test_the_mlflow_input_names_digests_and_profiles_without_the_rows() -> None:
    source = CodeDatasetSource({"events": "events.parquet"})
    lineage = {"hash": "00ff", "rows": 10}
    dataset = as_mlflow_input(_table(2500), "training_table", source, lineage)
    entry = dataset.to_dict()
    assert entry["name"] == "training_table"
    assert len(entry["digest"]) == 16
    assert json.loads(entry["profile"]) == {"num_rows": 2500, "num_elements": 10000}
    columns = json.loads(entry["schema"])["mlflow_colspec"]
    assert [c["name"] for c in columns] == ["customer_id", "cutoff", "tenure", "churn"]
    assert json.loads(entry["source"]) == {"tags": {"events": "events.parquet"}}
    assert "c2499" not in json.dumps(entry)  # no rows, only their description
    # the same inputs give the same digest; other data, rows or names do not
    again = as_mlflow_input(_table(2500), "training_table", source, lineage)
    assert again.digest == dataset.digest
    for other in (
        as_mlflow_input(
            _table(2500), "training_table", source, {**lineage, "hash": "1"}
        ),
        as_mlflow_input(_table(2499), "training_table", source, lineage),
    ):
        assert other.digest != dataset.digest
