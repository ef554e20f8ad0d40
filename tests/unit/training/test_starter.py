"""The starter config `init` writes: the agreed shapes, only the targets the data
support, paths relative to the file, nothing that needs a secret or a table the
data lack. A config whose columns already match the contract loads as it is."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.config import load_config
from features.sources.profile import profile_events
from tests.unit.features.sources.test_profile import purchases_csv
from training.starter import render


def written(tmp_path: Path, events: Path, **tables: Path) -> tuple[Path, dict, str]:
    out = tmp_path / "project" / "propensity.yaml"
    out.parent.mkdir(exist_ok=True)
    text = render(profile_events(events, **tables), out, now=datetime(2026, 1, 1))
    out.write_text(text)
    # the comments as prose: a wrapped comment's lines joined
    prose = re.sub(r"\n\s*# ", " ", text)
    return out, yaml.safe_load(text), prose


def test_a_purchases_table_gets_a_constant_type_a_mapping_and_two_targets(
    tmp_path: Path,
) -> None:
    events = purchases_csv(tmp_path / "transactions.csv", days=400)
    _, config, text = written(tmp_path, events)
    data = config["data"]
    assert data["events"] == [{"path": "../transactions.csv", "event_type": "purchase"}]
    assert data["columns"] == {
        "events": {
            "customer_id": "household_id",
            "event_time": "day",
            "amount": "sales_value",
            "quantity": "units",
        }
    }
    assert config["roles"] == {
        "purchase": ["purchase"],
        "service_request": [],
        "cancel": [],
    }
    # no service requests, no cancels: neither the target nor a cancel definition
    assert config["targets"] == {
        "churn": {"horizon_days": 30, "definition": "inactivity"},
        "purchase": {"horizon_days": 30},
    }
    assert "not listed: service_request: no service-request events" in text
    assert config["privacy"]["pseudonymise"] is False
    assert "PROPENSITY_PSEUDONYM_KEY" in text
    assert config["fairness"] == {"segments": []}
    assert config["training"]["backtest"] == {"origins": 4}
    assert "not read: store_id, basket_id" in text


def activity_log(path: Path, months: int, customers: int = 80) -> Path:
    """Contract names: logins, purchases, tickets and a few cancels."""
    rng = np.random.default_rng(2)
    start = pd.Timestamp("2024-01-01")
    n = customers * months * 6
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in rng.integers(0, customers, n)],
            "event_time": start
            + pd.to_timedelta(rng.uniform(0, months * 30.4, n), unit="D"),
            "event_type": rng.choice(
                ["login", "purchase", "support_ticket"], n, p=[0.6, 0.3, 0.1]
            ),
            "amount": rng.gamma(2, 10, n),
        }
    )
    cancels = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(0, customers, 8)],
            "event_time": start + pd.Timedelta(days=months * 15),
            "event_type": "cancel",
            "amount": np.nan,
        }
    )
    # each customer leaves at some point (or stays): inactivity churn happens
    leaves = rng.uniform(2, months * 1.5, customers) * 30.4
    ids = frame["customer_id"].str[1:].astype(int)
    frame = frame[(frame["event_time"] - start).dt.days < leaves[ids]]
    pd.concat([frame, cancels]).to_parquet(path)
    return path


def test_a_log_in_contract_names_loads_as_written(tmp_path: Path) -> None:
    events = activity_log(tmp_path / "events.parquet", months=24)
    customers = tmp_path / "customers.parquet"
    pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(80)],
            "region": ["north", "south"] * 40,
        }
    ).to_parquet(customers)
    out, raw, _ = written(tmp_path, events, customers=customers)
    assert "columns" not in raw["data"]
    assert raw["targets"]["churn"]["definition"] == "inactivity_or_cancel"
    assert set(raw["targets"]) == {"churn", "purchase", "service_request"}
    assert raw["fairness"] == {"segments": ["region"]}
    config = load_config(out)
    assert config.data.events.resolve() == events.resolve()
    assert config.data.customers.resolve() == customers.resolve()
    assert config.roles.service_request == ["support_ticket"]
    assert config.training.backtest.origins == 4
    assert config.privacy.pseudonymise is False


def test_a_short_log_gets_fewer_origins_and_says_so(tmp_path: Path) -> None:
    events = activity_log(tmp_path / "events.parquet", months=6)
    out, raw, text = written(tmp_path, events)
    assert raw["training"]["backtest"]["origins"] < 4
    assert "fewer than the default 4: the data are too short" in text
    assert load_config(out).training.backtest.origins >= 2


def test_subscriptions_make_contract_churn_with_its_grace(tmp_path: Path) -> None:
    events = activity_log(tmp_path / "events.parquet", months=24)
    subscriptions = tmp_path / "billing.parquet"
    pd.DataFrame(
        {
            "account_id": ["C1", "C2"],
            "product": ["basic", "pro"],
            "start_date": pd.to_datetime(["2024-01-01", "2024-02-01"]),
            "end_date": pd.to_datetime(["2025-01-01", "2025-02-01"]),
            "mrr": [10.0, 20.0],
        }
    ).to_parquet(subscriptions)
    _, raw, text = written(tmp_path, events, subscriptions=subscriptions)
    assert raw["targets"]["churn"] == {
        "horizon_days": 30,
        "definition": "contract",
        "grace_days": 30,
    }
    assert raw["data"]["subscriptions"] == "../billing.parquet"
    assert raw["data"]["columns"]["subscriptions"] == {
        "customer_id": "account_id",
        "plan": "product",
        "start_time": "start_date",
        "end_time": "end_date",
    }
    assert "contract churn's 30-day grace" in text


def test_several_sources_each_map_their_own_columns_and_load_as_one_log(
    tmp_path: Path,
) -> None:
    """`init --events sales.csv --events cancellations.csv`: one entry per source
    with its constant type and its own mapping, read back as one log."""
    from features.sources.load import load_project

    sales = purchases_csv(tmp_path / "sales.csv", days=400)
    frame = pd.read_csv(sales).head(30)
    frame["units"] = -frame["units"]
    frame.to_csv(tmp_path / "cancellations.csv", index=False)
    sources = [sales, tmp_path / "cancellations.csv"]
    out, raw, text = written(tmp_path, sources)
    mapping = {
        "customer_id": "household_id",
        "event_time": "day",
        "amount": "sales_value",
        "quantity": "units",
    }
    assert raw["data"]["events"] == [
        {"path": "../sales.csv", "event_type": "purchase", "columns": mapping},
        {
            "path": "../cancellations.csv",
            "event_type": "cancellations",
            "columns": mapping,
        },
    ]
    assert "columns" not in raw["data"]
    assert text.count("not read: store_id, basket_id") == 2
    ds = load_project(load_config(out))
    by_type = ds.events.group_by("event_type").aggregate(n=ds.events.count())
    counts = {r["event_type"]: r["n"] for r in by_type.to_pyarrow().to_pylist()}
    assert counts == {"purchase": 401, "cancellations": 30}
