"""The ChurnSim adapter: literal stand-ins in the simulator's format give exact
contract rows; on the real log (when present) the subscriptions pass the contract
and contract churn matches the log's own churned accounts."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.columns import (
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    PURCHASE,
    SERVICE_REQUEST,
)
from features.definition import FeatureSpec, seen_pairs
from features.labels import LabelSpec, build_labels
from features.sources.adapters import (
    CHURNSIM_CUSTOMERS_SCHEMA,
    churnsim_customers,
    churnsim_events,
    churnsim_subscriptions,
)
from features.sources.contract import EVENTS_SCHEMA, SUBSCRIPTIONS_SCHEMA
from features.sources.load import load
from tests.helpers import ROOT

REAL = ROOT.parent / "shared" / "data" / "churnsim_socialnet7"


def write_standin(folder: Path) -> None:
    """Two accounts in the simulator's own format: one renews, one churns."""
    folder.mkdir(parents=True, exist_ok=True)
    utc = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "customer_id": ["0", "1", "1"],
                "event_time": pa.array(
                    [
                        datetime(2020, 1, 2, 10),
                        datetime(2020, 1, 3),
                        datetime(2020, 2, 5),
                    ],
                    utc,
                ),
                "event_type": ["like", "post", "cancel"],
                "amount": pa.array([None] * 3, pa.float64()),
                "quantity": pa.array([None] * 3, pa.float64()),
            }
        ),
        folder / "events.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": ["0", "0", "1"],
                "account_id": pa.array([0, 0, 1], pa.int32()),
                "product": ["basic"] * 3,
                "start_date": [date(2020, 1, 1), date(2020, 2, 1), date(2020, 1, 5)],
                "end_date": [date(2020, 2, 1), date(2020, 3, 1), date(2020, 2, 5)],
                "mrr": [10.0] * 3,
                "quantity": pa.array([None] * 3, pa.float64()),
                "units": pa.array([None] * 3, pa.string()),
                "bill_period_months": pa.array([1, 1, 1], pa.int32()),
                "discount": [0.0] * 3,
            }
        ),
        folder / "subscriptions.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": ["0", "1"],
                "account_id": pa.array([0, 1], pa.int32()),
                "channel": ["web", "appstore1"],
                "date_of_birth": [date(1980, 5, 1), date(1990, 1, 1)],
                "country": ["US", None],
            }
        ),
        folder / "accounts.parquet",
    )


def test_standin_rows_become_contract_rows(tmp_path: Path) -> None:
    write_standin(tmp_path)
    events = churnsim_events(tmp_path)
    assert events.schema.equals(EVENTS_SCHEMA)
    assert events.column("event_time")[0].as_py() == datetime(2020, 1, 2, 10)
    terms = churnsim_subscriptions(tmp_path)
    assert terms.schema.equals(SUBSCRIPTIONS_SCHEMA)
    assert terms.to_pylist()[0] == {
        "customer_id": "0",
        "plan": "basic",
        "start_time": datetime(2020, 1, 1),
        "end_time": datetime(2020, 2, 1),
        "price": 10.0,
        "billing_period_days": 30.0,
        "discount": 0.0,
        "auto_renew": None,
        "quantity": None,
    }
    people = churnsim_customers(tmp_path)
    assert people.schema.equals(CHURNSIM_CUSTOMERS_SCHEMA)
    assert people.to_pylist()[1]["country"] is None


def contract_labels(folder: Path, cutoffs: list[datetime], tmp: Path) -> pd.DataFrame:
    from features.sources.adapters import write_contract

    ev = write_contract(churnsim_events(folder), tmp / "events.parquet")
    subs = write_contract(churnsim_subscriptions(folder), tmp / "subs.parquet")
    ds = load(ev, as_of=datetime(2021, 1, 2), subscriptions=subs)
    spec = FeatureSpec(
        role_of={"cancel": "cancel"}, subscriptions=True, churn_definition=CONTRACT
    )
    labels = LabelSpec({CHURN: 30, PURCHASE: 30, SERVICE_REQUEST: 30}, CONTRACT, 30)
    pairs = seen_pairs(ds.events, cutoffs)
    return build_labels(ds.events, pairs, spec, labels, ds.subscriptions).to_pandas()


def test_standin_contract_churn(tmp_path: Path) -> None:
    write_standin(tmp_path / "in")
    got = contract_labels(tmp_path / "in", [datetime(2020, 1, 15)], tmp_path)
    assert got.set_index(CUSTOMER_ID)[CHURN].to_dict() == {"0": 0, "1": 1}


@pytest.mark.skipif(
    not (REAL / "subscriptions.parquet").is_file(),
    reason=f"the ChurnSim log is not at {REAL}",
)
def test_real_log_contract_churn_matches_its_churned_accounts(tmp_path: Path) -> None:
    """Every account the simulator churned in November 2020 (cancel date in
    [2020-11-01, 2020-12-01)) has contract churn 1 at the 2020-11-01 cutoff, and
    no other account does."""
    cutoff = datetime(2020, 11, 1)
    got = contract_labels(REAL, [cutoff], tmp_path)
    churned = pd.read_csv(REAL / "churned_accounts.csv", dtype={CUSTOMER_ID: str})
    dates = pd.to_datetime(churned["cancel_date"])
    want = set(
        churned.loc[(dates >= cutoff) & (dates < datetime(2020, 12, 1)), CUSTOMER_ID]
    )
    assert len(want) > 30
    assert set(got.loc[got[CHURN] == 1, CUSTOMER_ID]) == want
    assert (got[CUTOFF] == pd.Timestamp(cutoff)).all()
