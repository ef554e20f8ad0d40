"""The contract-churn protocol of the quality bench on a ChurnSim-format stand-in
made by the demo generator (terms on midnights, monthly and annual bills)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.quality import run_quality
from benchmarks.subscriptions import CHURNSIM_FILE, SUBS_KEYS
from features.synthetic.demo import generate
from tests.helpers import FAST


def numeric_ids(ids: pd.Series) -> pd.Series:
    """'C0000042' -> '42', as ChurnSim numbers its accounts."""
    return ids.str[1:].astype(int).astype(str)


def write_churnsim(folder: Path, tmp: Path) -> None:
    """Demo data with subscriptions, 2020, written in ChurnSim's own format."""
    demo = generate(
        tmp, customers=800, seed=3, start="2020-01-01", days=366, subscriptions=True
    )
    folder.mkdir(parents=True, exist_ok=True)
    events = pq.read_table(demo.events_path)
    stamps = events.column("event_time").cast(pa.timestamp("us", tz="UTC"))
    ids = pa.array(numeric_ids(events.column("customer_id").to_pandas()))
    events = events.set_column(0, "customer_id", ids)
    pq.write_table(
        events.set_column(1, "event_time", stamps), folder / "events.parquet"
    )
    terms = pq.read_table(demo.subscriptions_path).to_pandas()
    ids = numeric_ids(terms["customer_id"])
    pd.DataFrame(
        {
            "customer_id": ids,
            "account_id": ids.astype("int32"),
            "product": terms["plan"],
            "start_date": terms["start_time"].dt.floor("D").dt.date,
            "end_date": terms["end_time"].dt.floor("D").dt.date,
            "mrr": terms["price"],
            "quantity": np.nan,
            "units": None,
            "bill_period_months": (terms["billing_period_days"] / 30.4)
            .round()
            .astype("int32"),
            "discount": terms["discount"],
        }
    ).to_parquet(folder / "subscriptions.parquet", index=False)
    people = pq.read_table(demo.customers_path).to_pandas()
    pd.DataFrame(
        {
            "customer_id": numeric_ids(people["customer_id"]),
            "account_id": np.arange(len(people), dtype="int32"),
            "channel": people["region"],
            "date_of_birth": pd.Timestamp("1980-01-01").date(),
            "country": None,
        }
    ).to_parquet(folder / "accounts.parquet", index=False)


@pytest.fixture(scope="module")
def quality(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    root = tmp_path_factory.mktemp("subs_quality")
    write_churnsim(root / "data" / CHURNSIM_FILE.parent, root / "demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        record = run_quality(root / "data", root / "work", root / "results", FAST)
    return record, printed.getvalue(), root / "results" / "quality.json"


def test_contract_churn_figures_are_written(quality: tuple[dict, str, Path]) -> None:
    record, printed, path = quality
    written = json.loads(path.read_text())
    for key in SUBS_KEYS:
        assert 0.0 <= written[key] <= 1.0, key
        assert len(written[f"{key}_by_origin"]) == 4
    assert written["subs_churn_origin_dates"] == [
        "2020-08-01",
        "2020-09-01",
        "2020-10-01",
        "2020-11-01",
    ]
    assert "cdnow_13w_skipped" in written  # the other logs are absent here
    assert "[1] churnsim_subs: ChurnSim socialnet7: contract churn" in printed


def test_on_the_demo_subscription_features_beat_events_only(
    quality: tuple[dict, str, Path],
) -> None:
    """The demo's churn happens at term ends: knowing the term's end helps, and
    alone it ranks better than chance."""
    record, _, _ = quality
    assert record["subs_churn_auc"] > record["subs_churn_events_only_auc"]
    assert record["subs_churn_renewal_heuristic_auc"] > 0.6
