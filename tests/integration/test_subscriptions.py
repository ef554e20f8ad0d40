"""Subscriptions end to end through the CLI: demo data with subscription terms,
contract churn, training into a temp registry, the nightly job's scores, features
and reasons all from the one definition."""

from __future__ import annotations

import pandas as pd
import pyarrow.dataset as pads
import pytest
from mlflow.tracking import MlflowClient

from core.config import load_config
from features.columns import CHURN, CUSTOMER_ID, reasons_column
from features.definition import FeatureSpec, features_at
from features.sources.load import load
from model.registry import configure
from tests.helpers import Project, run_cli, write_config

pytestmark = pytest.mark.integration

AS_OF = "2025-12-01"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    from features.synthetic.demo import generate

    root = tmp_path_factory.mktemp("subs_project")
    demo = generate(root / "data", customers=1500, seed=7, subscriptions=True)
    config = write_config(
        root / "propensity.yaml",
        demo.events_path,
        demo.customers_path,
        data={"subscriptions": str(demo.subscriptions_path)},
        targets={"churn": {"horizon_days": 30, "definition": "contract"}},
    )
    project = Project(
        root,
        config,
        f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        demo.events_path,
        demo.customers_path,
    )
    done = run_cli(["train"], project.env())
    assert done.returncode == 0, done.stderr[-3000:]
    return project


def test_champions_read_the_subscription_features(project: Project) -> None:
    configure(project.tracking_uri)
    client = MlflowClient(project.tracking_uri, project.tracking_uri)
    mv = client.get_model_version_by_alias(CHURN, "champion")
    features = client.get_run(mv.run_id).data.params["features"].split(",")
    assert "sub_days_to_term_end" in features and "sub_plan" in features


def test_nightly_scores_active_subscribers_with_subscription_reasons(
    project: Project,
) -> None:
    done = run_cli(["score", "--as-of", AS_OF], project.env())
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: a drift alert
    output = project.root / "scores"
    scores = pads.dataset(output, format="parquet", partitioning="hive")
    frame = scores.to_table().to_pandas()
    config = load_config(project.config)
    ds = load(
        config.data.events,
        config.data.customers,
        subscriptions=config.data.subscriptions,
    )
    spec = FeatureSpec.from_config(config)
    eligible = features_at(
        ds.events, [pd.Timestamp(AS_OF)], spec, ds.customers, ds.subscriptions
    ).to_pandas()
    assert (eligible.sub_active == 1).all()  # contract churn: subscribers only
    assert set(frame[CUSTOMER_ID]) == set(eligible[CUSTOMER_ID])
    words = " ".join(frame[reasons_column(CHURN)].dropna())
    assert "term ends" in words or "plan" in words or "renewal" in words


def test_train_reads_exports_in_their_own_names(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The demo as a user's exports would give it: purchases as CSV without an
    event type and the rest as Parquet, each in its own column names, and the
    subscriptions as billing items (base plan plus an add-on per term); the
    config maps them (data.columns, a list in data.events, data.base_plans) and
    `propensity train` reads the same events and terms as the contract files."""
    from core.config import load_config
    from features.synthetic.demo import PLANS, generate

    root = tmp_path_factory.mktemp("exports")
    demo = generate(root / "data", customers=400, seed=5, subscriptions=True)
    events = pd.read_parquet(demo.events_path)
    buys = events[events.event_type == "purchase"].drop(columns=["event_type"])
    buys.rename(
        columns={CUSTOMER_ID: "household_id", "event_time": "day", "amount": "sales"}
    ).to_csv(root / "purchases.csv", index=False)
    events[events.event_type != "purchase"].rename(
        columns={CUSTOMER_ID: "household_id", "event_time": "ts", "event_type": "kind"}
    ).to_parquet(root / "activity.parquet")
    terms = pd.read_parquet(demo.subscriptions_path)
    base = terms.assign(price=(terms.price * 0.75).round(2))
    addon = terms.assign(plan="priority_support", price=terms.price - base.price)
    pd.concat([addon, base]).rename(
        columns={
            CUSTOMER_ID: "account_id",
            "plan": "product",
            "start_time": "start_date",
            "end_time": "end_date",
            "price": "mrr",
        }
    ).to_csv(root / "billing.csv", index=False)
    config = write_config(
        root / "propensity.yaml",
        root / "unused",
        demo.customers_path,
        data={
            "events": [
                {
                    "path": "purchases.csv",
                    "event_type": "purchase",
                    "columns": {"event_time": "day", "amount": "sales"},
                },
                {
                    "path": "activity.parquet",
                    "columns": {"event_time": "ts", "event_type": "kind"},
                },
            ],
            "subscriptions": "billing.csv",
            "columns": {
                "events": {CUSTOMER_ID: "household_id"},
                "subscriptions": {
                    CUSTOMER_ID: "account_id",
                    "plan": "product",
                    "start_time": "start_date",
                    "end_time": "end_date",
                    "mrr": "mrr",
                },
            },
            "base_plans": list(PLANS),
        },
        targets={"churn": {"horizon_days": 30, "definition": "contract"}},
    )
    project = Project(
        root,
        config,
        f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        demo.events_path,
        demo.customers_path,
    )
    done = run_cli(["train"], project.env())
    assert done.returncode == 0, done.stderr[-3000:]
    # the run read the contract file's events, to the content hash
    from features.sources.load import load_project

    want = load(demo.events_path, subscriptions=demo.subscriptions_path)
    client = MlflowClient(project.tracking_uri, project.tracking_uri)
    mv = client.get_model_version_by_alias(CHURN, "champion")
    params = client.get_run(mv.run_id).data.params
    assert params["data_hash"] == want.fingerprint()["hash"]
    assert int(params["data_rows"]) == len(events)
    # and the items as the original terms: the base plan, the summed price
    got = load_project(load_config(config)).subscriptions.to_pandas()
    expected = want.subscriptions.to_pandas()
    keys = [CUSTOMER_ID, "start_time"]
    got = got.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
