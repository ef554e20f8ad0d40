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
