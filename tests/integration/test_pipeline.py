"""Train small demo data into a temp MLflow store, then score: real components."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from core.config import load_config
from features.columns import TARGETS, population_column
from features.definition import ELIGIBLE, FeatureSpec, build_features, seen_pairs
from features.sources.load import load
from model.registry import EXPERIMENT_KIND_TAG, TRAINING_KIND, configure
from serving.batch.score import default_as_of
from serving.scoring import Champions
from tests.helpers import Project, auth, run_cli, serving, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(trained: Project) -> MlflowClient:
    configure(trained.tracking_uri)
    return MlflowClient(trained.tracking_uri, trained.tracking_uri)


def test_registry_has_a_champion_per_target(
    trained: Project, client: MlflowClient
) -> None:
    for target in TARGETS:
        mv = client.get_model_version_by_alias(target, "champion")
        assert mv.tags["promotion.decision"] == "promoted"
        assert mv.tags["promotion.reason"]
        assert float(mv.tags["promotion.challenger_log_loss"]) > 0
        assert str(
            client.get_model_version_by_alias(target, "challenger").version
        ) == str(mv.version)


def test_runs_log_params_metrics_and_a_model_with_signature(
    trained: Project, client: MlflowClient
) -> None:
    mv = client.get_model_version_by_alias("churn", "champion")
    run = client.get_run(mv.run_id)
    params, metrics = run.data.params, run.data.metrics
    for key in (
        "features",
        "feature_set_version",
        "data_hash",
        "data_rows",
        "origins",
        "final_cutoffs",
        "horizon_days",
        "calibration",
    ):
        assert params[key], key
    assert int(params["data_rows"]) > 1000
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile"):
        assert 0 <= metrics[f"backtest_{key}_mean"] <= 10, key
        assert f"backtest_{key}_std" in metrics and f"recency_{key}_mean" in metrics
    assert metrics["backtest_roc_auc_mean"] > 0.6  # churn has real signal in the demo
    info = mlflow.models.get_model_info(f"models:/churn/{mv.version}")
    assert [c.name for c in info.signature.inputs.inputs] == params["features"].split(
        ","
    )
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "features.json", "backtest.json", "model_card.md"} <= files
    config = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="config.json"
            )
        ).read_text()
    )
    assert config["targets"]["churn"]["horizon_days"] == 30


def test_experiments_open_on_runs_and_runs_name_their_training_table(
    trained: Project, client: MlflowClient
) -> None:
    """Every experiment training made is a training one for the MLflow UI, and
    the model's run and its parent carry the training table as a dataset input."""
    made = [e for e in client.search_experiments() if e.name != "Default"]
    assert len(made) >= 2  # the project's and the promotions log
    for experiment in made:
        assert experiment.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND, experiment.name
    run = client.get_run(client.get_model_version_by_alias("churn", "champion").run_id)
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    for logged, name, rows in (
        (run, "training_table.churn", int(run.data.params["population_rows"])),
        (parent, "training_table", int(parent.data.params["n_rows"])),
    ):
        [entry] = logged.inputs.dataset_inputs
        assert {t.key: t.value for t in entry.tags} == {
            "mlflow.data.context": "training"
        }
        dataset = entry.dataset
        assert dataset.name == name and len(dataset.digest) == 16
        assert json.loads(dataset.profile)["num_rows"] == rows
        assert dataset.source_type == "code"
        assert str(trained.events) in json.loads(dataset.source)["tags"]["events"]


def test_every_origin_is_out_of_time(trained: Project, client: MlflowClient) -> None:
    """Each origin's rows are scored by models fitted on cutoffs whose label windows
    end by it; the final model uses every complete cutoff."""
    for target in TARGETS:
        mv = client.get_model_version_by_alias(target, "champion")
        params = client.get_run(mv.run_id).data.params
        horizon = pd.Timedelta(days=int(params["horizon_days"]))
        origins = [pd.Timestamp(c) for c in params["origins"].split(",")]
        assert len(origins) >= 4
        assert all(
            (b - a).days in (28, 29, 30, 31) for a, b in itertools.pairwise(origins)
        )
        final = [pd.Timestamp(c) for c in params["final_cutoffs"].split(",")]
        data_end = pd.Timestamp("2025-12-31")
        assert (
            final[-1] + horizon
            <= data_end
            < final[-1] + horizon + pd.Timedelta(days=31)
        )
        history = client.get_metric_history(mv.run_id, "backtest_log_loss")
        assert sorted(m.step for m in history) == list(range(len(origins)))
        # each point is stamped with its origin date
        assert sorted(pd.Timestamp(m.timestamp, unit="ms") for m in history) == origins


def test_nightly_scoring_writes_every_eligible_customer(trained: Project) -> None:
    done = run_cli(["score", "--as-of", "2025-12-01"], trained.env())
    assert done.returncode == 0, done.stderr[-2000:]
    out = trained.root / "scores" / "as_of=2025-12-01"
    files = list(out.glob("*.parquet"))
    assert len(files) == 1
    schema = pq.read_schema(files[0])
    assert schema.names == [
        "customer_id",
        "churn",
        "purchase",
        "service_request",
        "churn_decile",
        "purchase_decile",
        "service_request_decile",
        "churn_model",
        "churn_model_version",
        "purchase_model",
        "purchase_model_version",
        "service_request_model",
        "service_request_model_version",
        "feature_set_version",
        "scored_at",
        "run_id",
        "churn_reasons",
        "purchase_reasons",
        "service_request_reasons",
    ]
    # the partition key reads back as a column (other tests score other dates of
    # this shared project)
    everything = pd.read_parquet(trained.root / "scores")
    assert "2025-12-01" in everything.as_of.astype(str).unique().tolist()
    scores = everything[everything.as_of.astype(str) == "2025-12-01"]
    config = load_config(trained.config)
    ds = load(config.data.events, config.data.customers)
    feats = build_features(
        ds.events,
        seen_pairs(ds.events, [pd.Timestamp("2025-12-01").to_pydatetime()]),
        FeatureSpec.from_config(config),
        ds.customers,
    ).to_pandas()
    assert sorted(scores.customer_id) == sorted(feats[feats[ELIGIBLE]].customer_id)
    assert scores.customer_id.is_unique
    # the scores are the champions' in-process predictions on the same features,
    # each target's on the customers its population holds, null elsewhere
    champions = Champions.load(config, trained.tracking_uri)
    eligible = feats[feats[ELIGIBLE]].sort_values("customer_id").reset_index(drop=True)
    expected = champions.predict_frame(eligible)
    ordered = scores.sort_values("customer_id").reset_index(drop=True)
    for target in TARGETS:
        held = eligible[population_column(target)].to_numpy(dtype=bool)
        assert ordered[target].notna().to_numpy().tolist() == held.tolist(), target
        assert ordered[target][held].between(0, 1).all()
        assert ordered[target][held].std() > 0
        assert ordered[f"{target}_decile"].notna().tolist() == held.tolist()
        assert ordered[f"{target}_model_version"].unique().tolist() == [
            champions.versions[target]
        ]
        pd.testing.assert_series_equal(
            ordered[target][held],
            pd.Series(expected[target], name=target)[held],
            rtol=0,
            atol=1e-12,
        )
    # issue 18: purchase and service_request score every customer seen, also
    # those inactive for longer than the churn horizon, whom churn leaves out
    gone = eligible.days_since_last_event.to_numpy() > 30
    assert gone.sum() > 50
    assert ordered.purchase[gone].notna().all()
    assert ordered.service_request[gone].notna().all()
    assert ordered.churn[gone].isna().all()
    populations = json.loads(schema.metadata[b"populations"])
    assert populations == {
        "churn": "active_not_churned",
        "purchase": "seen",
        "service_request": "seen",
    }
    status = json.loads((trained.root / "scores" / "_last_run.json").read_text())
    assert status["populations"]["purchase"] == {
        "population": "seen",
        "rows_scored": len(ordered),
    }
    churn = status["populations"]["churn"]
    assert churn == {
        "population": "active_not_churned",
        "rows_scored": int(eligible.in_churn.sum()),
    }


def test_rerun_replaces_and_bad_input_leaves_outputs_intact(trained: Project) -> None:
    first = run_cli(["score"], trained.env())
    assert first.returncode == 0, first.stderr[-2000:]
    config = load_config(trained.config)
    as_of = default_as_of(load(config.data.events, config.data.customers))
    out = trained.root / "scores" / f"as_of={as_of:%Y-%m-%d}"
    before = pd.read_parquet(out)
    second = run_cli(["score"], trained.env())
    assert second.returncode == 0
    after = pd.read_parquet(out)
    assert (
        len(after) == len(before) and (after.scored_at > before.scored_at.max()).all()
    )
    # a run on bad data fails before any work and leaves every earlier output intact
    bad = trained.root / "bad_events.csv"
    bad.write_text("customer_id,event_time,event_type\nc1,not a time,login\n")
    bad_config = write_config(trained.root / "bad.yaml", bad, None)
    data = yaml.safe_load(bad_config.read_text())
    data["scoring"]["output"] = str(trained.root / "scores")
    bad_config.write_text(yaml.safe_dump(data))
    listing = sorted(p.name for p in (trained.root / "scores").iterdir())
    failed = run_cli(
        ["--config", str(bad_config), "score", "--as-of", as_of.strftime("%Y-%m-%d")],
        trained.env(),
    )
    assert failed.returncode == 2
    assert (
        str(bad) in failed.stderr
        and "event_time" in failed.stderr
        and "rows 1" in failed.stderr
    )
    assert sorted(p.name for p in (trained.root / "scores").iterdir()) == listing
    pd.testing.assert_frame_equal(pd.read_parquet(out), after)
    # the status file says why the last run did nothing
    status = run_cli(["--config", str(bad_config), "score", "status"], trained.env())
    assert status.returncode == 1
    assert '"exit_code": 2' in status.stdout and "event_time" in status.stdout


def test_an_untrainable_target_is_skipped_and_unlisted_ones_are_not_served(
    trained: Project, tmp_path: Path
) -> None:
    """No service requests in the data (as in CDNOW). Listed with purchase, it
    is skipped with its counts, purchase is trained and registered, train exits
    7; churn, not listed, is neither trained nor served: the nightly output and
    the API have purchase only. Listed alone, nothing is registered (exit 1)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**trained.env(), "MLFLOW_TRACKING_URI": uri}
    roles = {"service_request": ["no_such_event"]}
    alone = write_config(
        tmp_path / "alone.yaml",
        trained.events,
        trained.customers,
        roles=roles,
        targets={"service_request": {"horizon_days": 30}},
    )
    done = run_cli(["--config", str(alone), "train"], env)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "no listed target could be trained" in done.stderr
    client = MlflowClient(uri, uri)
    assert client.search_registered_models() == []

    both = write_config(
        tmp_path / "no_tickets.yaml",
        trained.events,
        trained.customers,
        roles=roles,
        targets={"purchase": {}, "service_request": {"horizon_days": 30}},
        scoring={"output": str(tmp_path / "scores")},
        online_store={"path": str(tmp_path / "online.sqlite")},
    )
    done = run_cli(["--config", str(both), "train"], env)
    assert done.returncode == 7, done.stderr[-3000:]
    # every cutoff's service_request rows hold a single class: none is an origin
    assert "skipped service_request: the backtest needs" in done.stderr
    assert "service_request: dropped" in done.stderr
    assert "service_request's rows hold a single class" in done.stderr
    assert "2025-03-01 " in done.stderr and " rows/0 positive" in done.stderr
    assert "purchase" in done.stdout and "churn" not in done.stdout
    assert [m.name for m in client.search_registered_models()] == ["purchase"]

    # serving purchase only: leave service_request out too
    only = yaml.safe_load(both.read_text())
    only["targets"] = {"purchase": {}}
    both.write_text(yaml.safe_dump(only))
    done = run_cli(["--config", str(both), "score", "--as-of", "2025-12-01"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    path = tmp_path / "scores" / "as_of=2025-12-01" / "part-0.parquet"
    scores = pd.read_parquet(path)
    assert [c for c in scores.columns if c.startswith(("churn", "service_"))] == []
    assert {"purchase", "purchase_decile", "purchase_reasons"} <= set(scores.columns)
    assert scores.purchase.notna().all()
    assert json.loads(pq.read_schema(path).metadata[b"populations"]) == {
        "purchase": "seen"
    }
    with serving({**env, "PROPENSITY_CONFIG": str(both)}, tmp_path / "log") as server:
        ids = scores.customer_id.head(2).tolist()
        answer = httpx.post(
            f"{server.url}/predict_by_id",
            json={"customer_ids": ids},
            headers=auth(),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [set(p["probabilities"]) for p in body["predictions"]] == [
            {"purchase"}
        ] * 2
        assert set(body["predictions"][0]["model_versions"]) == {"purchase"}
        refused = httpx.post(
            f"{server.url}/explain",
            json={"customers": [{"features": {}}], "target": "churn"},
            headers=auth(),
            timeout=30,
        )
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert "'churn' is not served" in error and "answers purchase" in error
