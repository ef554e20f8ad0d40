"""The subscriptions table: validated like events, loaded beside them, optional."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from core.config import ConfigError, load_config
from features.columns import (
    AUTO_RENEW,
    BILLING_PERIOD_DAYS,
    END_TIME,
    PLAN,
    PRICE,
    START_TIME,
    SUBSCRIPTION_COLUMNS,
)
from features.sources.contract import ContractError
from features.sources.load import load
from tests.helpers import ROOT

EVENTS = "customer_id,event_time,event_type\nc1,2024-01-01 10:00:00,login\n"
AS_OF = datetime(2024, 6, 1)
HEADER = "customer_id,plan,start_time,end_time,price,billing_period_days\n"


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_subs(tmp_path: Path, text: str):
    events = write(tmp_path, EVENTS, "events.csv")
    subs = write(tmp_path, text, "subscriptions.csv")
    return load(events, as_of=AS_OF, subscriptions=subs)


def problems_of(tmp_path: Path, text: str) -> list:
    with pytest.raises(ContractError) as info:
        load_subs(tmp_path, text)
    return info.value.problems


def test_good_subscriptions_load_with_every_contract_column(tmp_path: Path) -> None:
    text = (
        "customer_id,plan,start_time,end_time,mrr,billing_period_months,auto_renew\n"
        "c1,basic,2024-01-01,2024-02-01,10,1,true\n"
        "c1,pro,2024-02-01,,20,12,\n"
    )
    ds = load_subs(tmp_path, text)
    frame = ds.subscriptions.to_pandas().sort_values(START_TIME)
    assert list(frame.columns) == list(SUBSCRIPTION_COLUMNS)
    assert frame[PRICE].tolist() == [10.0, 20.0]  # mrr read as the price
    assert frame[BILLING_PERIOD_DAYS].tolist() == [30.0, 365.0]  # months as days
    assert frame[END_TIME].isna().tolist() == [False, True]  # open term
    assert bool(frame[AUTO_RENEW].iloc[0]) is True
    assert pd.isna(frame[AUTO_RENEW].iloc[1])
    assert frame[PLAN].tolist() == ["basic", "pro"]


def test_without_subscriptions_the_dataset_has_none(tmp_path: Path) -> None:
    ds = load(write(tmp_path, EVENTS, "events.csv"), as_of=AS_OF)
    assert ds.subscriptions is None and ds.subscriptions_files == []


def test_inverted_period_names_file_row_and_column(tmp_path: Path) -> None:
    text = (
        HEADER
        + "c1,basic,2024-01-01,2024-02-01,10,30\nc2,basic,2024-03-01,2024-02-01,10,30\n"
    )
    (problem,) = problems_of(tmp_path, text)
    assert problem.file.name == "subscriptions.csv"
    assert problem.column == END_TIME
    assert problem.rows == (2,)
    assert "not after start_time" in str(problem)


def test_overlapping_terms_are_reported(tmp_path: Path) -> None:
    text = (
        HEADER
        + "c1,basic,2024-01-01,2024-03-01,10,30\n"
        + "c1,pro,2024-02-15,2024-04-01,20,30\n"  # starts before row 1 ends
        + "c2,basic,2024-01-01,,10,30\n"  # open
        + "c2,basic,2024-05-01,2024-06-01,10,30\n"  # after an open term
        + "c3,basic,2024-01-01,2024-02-01,10,30\n"
        + "c3,basic,2024-02-01,2024-03-01,10,30\n"  # contiguous: fine
    )
    (problem,) = problems_of(tmp_path, text)
    assert problem.column == START_TIME
    assert problem.rows == (2, 4)
    assert "overlaps" in problem.expected


def test_bad_values_are_each_named(tmp_path: Path) -> None:
    text = (
        "customer_id,plan,start_time,end_time,price,billing_period_days,auto_renew\n"
        ",basic,2024-01-01,,10,30,yes\n"
        "c2,,soon,,ten,0,maybe\n"
    )
    found = {(p.column, p.rows) for p in problems_of(tmp_path, text)}
    assert found == {
        ("customer_id", (1,)),
        (PLAN, (2,)),
        (START_TIME, (2,)),
        (PRICE, (2,)),
        (BILLING_PERIOD_DAYS, (2,)),
        (AUTO_RENEW, (2,)),
    }


def test_missing_price_and_period_name_the_accepted_columns(tmp_path: Path) -> None:
    text = "customer_id,plan,start_time,end_time\nc1,basic,2024-01-01,\n"
    problems = problems_of(tmp_path, text)
    messages = " ".join(str(p) for p in problems)
    assert "'price' or 'mrr'" in messages
    assert "'billing_period_days' or 'billing_period_months'" in messages


def test_contract_churn_needs_a_subscriptions_table(tmp_path: Path) -> None:
    config = tmp_path / "propensity.yaml"
    config.write_text(
        "data: {events: events.csv}\n"
        "targets: {churn: {definition: contract}}\n"
        "training: {cutoffs: {start: 2024-01-01, end: 2024-03-01}}\n"
    )
    with pytest.raises(ConfigError, match="data.subscriptions"):
        load_config(config)
    config.write_text(
        "data: {events: events.csv, subscriptions: subs}\n"
        "targets: {churn: {definition: contract, grace_days: 14}}\n"
        "training: {cutoffs: {start: 2024-01-01, end: 2024-03-01}}\n"
    )
    loaded = load_config(config)
    assert loaded.data.subscriptions == tmp_path / "subs"
    assert loaded.targets.churn.grace_days == 14


def test_without_subscriptions_the_feature_set_version_is_unchanged() -> None:
    """The demo config (no subscriptions) keeps the catalogue, and so the
    feature-set version, it had before subscriptions existed; with them the
    subscription features follow every other feature."""
    import dataclasses

    from features.definition import FeatureSpec, catalogue

    root = ROOT
    spec = FeatureSpec.from_config(load_config(root / "propensity.yaml"))
    assert spec.subscriptions is False
    # without the feature groups (features.classic, features.behaviour), which
    # came after subscriptions
    spec = dataclasses.replace(spec, classic=False, behaviour=False)
    plain = catalogue(spec)
    assert plain.version() == "d697472fcb1b" and len(plain.names) == 93
    with_subs = catalogue(dataclasses.replace(spec, subscriptions=True))
    assert with_subs.names[:93] == plain.names
    assert all(n.startswith("sub_") for n in with_subs.names[93:])
    assert with_subs.version() != plain.version()


# -- items: a base plan with add-ons or seats, one row each, read as one term --

ITEMS = (
    HEADER
    + "c1,pro,2024-01-01,2024-02-01,50,30\n"
    + "c1,extra_storage,2024-01-01,2024-02-01,80,30\n"  # dearer than the base
    + "c1,seats,2024-01-01,2024-02-01,20,30\n"
    + "c1,pro,2024-02-01,2024-03-01,50,30\n"  # renewed without add-ons
    + "c2,basic,2024-01-01,,10,30\n"  # open, one item
)


def _terms(tmp_path: Path, text: str, **kwargs) -> pd.DataFrame:
    events = write(tmp_path, EVENTS, "events.csv")
    subs = write(tmp_path, text, "subscriptions.csv")
    ds = load(events, as_of=AS_OF, subscriptions=subs, **kwargs)
    frame = ds.subscriptions.to_pandas()
    assert list(frame.columns) == list(SUBSCRIPTION_COLUMNS)
    return frame.sort_values(["customer_id", START_TIME]).reset_index(drop=True)


def test_items_of_one_period_are_one_term_with_the_base_plan(tmp_path: Path) -> None:
    frame = _terms(tmp_path, ITEMS, base_plans=["basic", "pro"])
    got = frame[["customer_id", PLAN, PRICE]].values.tolist()
    assert got == [["c1", "pro", 150.0], ["c1", "pro", 50.0], ["c2", "basic", 10.0]]
    assert frame[END_TIME].isna().tolist() == [False, False, True]


def test_without_base_plans_the_dearest_item_names_the_term(tmp_path: Path) -> None:
    frame = _terms(tmp_path, ITEMS)
    assert frame[PLAN].tolist() == ["extra_storage", "pro", "basic"]
    assert frame[PRICE].tolist() == [150.0, 50.0, 10.0]


def test_a_term_takes_its_other_values_from_the_plan_item(tmp_path: Path) -> None:
    text = (
        "customer_id,plan,start_time,end_time,price,billing_period_days,discount\n"
        "c1,addon,2024-01-01,2024-02-01,5,30,0.5\n"
        "c1,pro,2024-01-01,2024-02-01,50,30,\n"
    )
    frame = _terms(tmp_path, text, base_plans=["pro"])
    assert frame[[PLAN, PRICE]].values.tolist() == [["pro", 55.0]]
    assert frame["discount"].isna().tolist() == [True]  # the base's, not the add-on's


def test_a_true_overlap_of_base_terms_is_still_refused(tmp_path: Path) -> None:
    text = (
        ITEMS
        + "c2,pro,2024-03-01,2024-04-01,20,30\n"  # row 6: while row 5 is open
        + "c1,pro,2024-02-15,2024-03-15,50,30\n"  # row 7: inside row 4's term
        + "c1,seats,2024-02-15,2024-03-15,20,30\n"  # row 8: its item
    )
    (problem,) = problems_of_kwargs(tmp_path, text, base_plans=["basic", "pro"])
    assert problem.file.name == "subscriptions.csv"
    assert (problem.column, problem.rows) == (START_TIME, (6, 7, 8))
    assert "overlaps the customer's previous term" in problem.expected


def test_an_add_on_out_of_its_base_period_is_named(tmp_path: Path) -> None:
    text = HEADER + (
        "c1,pro,2024-01-01,2024-03-01,50,30\n"
        "c1,seats,2024-01-15,2024-03-01,20,30\n"  # added mid-term
    )
    (problem,) = problems_of_kwargs(tmp_path, text, base_plans=["pro"])
    assert (problem.column, problem.rows) == (START_TIME, (2,))
    assert "not a base plan (data.base_plans)" in problem.expected


def problems_of_kwargs(tmp_path: Path, text: str, **kwargs) -> list:
    events = write(tmp_path, EVENTS, "events.csv")
    subs = write(tmp_path, text, "subscriptions.csv")
    with pytest.raises(ContractError) as info:
        load(events, as_of=AS_OF, subscriptions=subs, **kwargs)
    return info.value.problems


def test_base_plans_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "propensity.yaml"
    config.write_text(
        "data: {events: e.csv, subscriptions: s.csv, base_plans: []}\n"
        "training: {cutoffs: {start: 2024-01-01}}\n"
    )
    with pytest.raises(ConfigError, match="data.base_plans"):
        load_config(config)
    config.write_text(config.read_text().replace("[]", "[basic, pro]"))
    assert load_config(config).data.base_plans == ["basic", "pro"]
