"""The ML engineer's workflow on a real MLflow store: sibling baseline runs, plots
and model card, calibrated serving, the promotion gate, runs/compare, forced
promotion, the promotions log and rollback."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.columns import PURCHASE, TARGETS
from model.registry import configure, load_alias
from serving.scoring import Champions
from tests.helpers import Project, eligible_features, run_cli, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(trained: Project) -> MlflowClient:
    configure(trained.tracking_uri)
    return MlflowClient(trained.tracking_uri, trained.tracking_uri)


def _children(client: MlflowClient, run_id: str) -> list:
    run = client.get_run(run_id)
    return client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'"
    )


def test_baselines_are_sibling_runs_on_the_same_origins(
    trained: Project, client: MlflowClient
) -> None:
    model_run = client.get_run(
        client.get_model_version_by_alias(PURCHASE, "champion").run_id
    )
    project = client.get_experiment_by_name("propensity").experiment_id
    assert model_run.info.experiment_id == project
    parent = model_run.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).data.tags["kind"] == "training"
    runs = _children(client, parent)
    kinds = {(r.data.tags["target"], r.data.tags["model"]) for r in runs}
    for target in TARGETS:
        assert {(target, "lightgbm"), (target, "recency"), (target, "logreg")} <= kinds
    assert {r.info.experiment_id for r in runs} == {project}
    assert (PURCHASE, "bgnbd") in kinds

    def stamps(run_id: str) -> list[int]:
        return sorted(
            m.timestamp for m in client.get_metric_history(run_id, "backtest_roc_auc")
        )

    origins = stamps(model_run.info.run_id)
    assert len(origins) >= 4
    for r in runs:
        if r.data.tags["target"] == PURCHASE:
            assert stamps(r.info.run_id) == origins, r.data.tags["model"]
            assert 0.4 < r.data.metrics["backtest_roc_auc_mean"] <= 1


def test_plots_and_model_card_are_logged(
    trained: Project, client: MlflowClient
) -> None:
    run_id = client.get_model_version_by_alias("churn", "champion").run_id
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    for name in (
        "roc_pr",
        "reliability",
        "gains_lift",
        "importance_gain",
        "contributions",
        "origins_roc_auc",
        "origins_log_loss",
    ):
        assert f"plots/{name}.png" in plots, name
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots")
    )
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in local.iterdir())
    card = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model_card.md"
        )
    ).read_text()
    params = client.get_run(run_id).data.params
    texts = ("Model card: churn", "Population `active_not_churned`", "recency")
    for text in (*texts, "logreg", "Caveats"):
        assert text in card, text
    assert params["population"] == "active_not_churned"
    assert params["origins"].replace(",", ", ") in card
    assert f"calibrated with **{params['calibration']}**" in card


def test_fairness_report_is_logged_with_each_model_run(
    trained: Project, client: MlflowClient
) -> None:
    ids = set(pd.read_parquet(trained.customers)["customer_id"])
    bands = ["<18", "18-29", "30-44", "45-59", "60+", "missing"]
    for target in TARGETS:
        run = client.get_run(
            client.get_model_version_by_alias(target, "champion").run_id
        )
        run_id = run.info.run_id
        files = {a.path for a in client.list_artifacts(run_id, "fairness")}
        assert files == {
            "fairness/segments.json",
            "fairness/segments.png",
            "fairness/summary.json",
        }
        table = pd.DataFrame(
            **mlflow.artifacts.load_dict(f"runs:/{run_id}/fairness/segments.json")
        )
        assert list(dict.fromkeys(table["attribute"])) == ["region", "plan", "age"]
        assert set(table.loc[table["attribute"] == "age", "segment"]) <= set(bands)
        assert "customer_id" not in table.columns
        assert not ids & set(table.astype(str).to_numpy().ravel())
        summary = mlflow.artifacts.load_dict(f"runs:/{run_id}/fairness/summary.json")
        origins = run.data.params["origins"].split(",")
        assert summary["origin"] == origins[-1]
        assert summary["threshold_source"] == "top_decile"
        # every attribute covers every out-of-time row of the last origin
        for _, group in table.groupby("attribute"):
            assert group["n"].sum() == summary["overall"]["n"]
        flagged = table[table["four_fifths"] | table["calibration"]]
        assert not flagged["small"].any()
        assert (table.loc[table["four_fifths"], "selection_ratio"] < 0.8).all()
        assert run.data.metrics["fairness_flags"] == len(flagged)
        assert run.data.metrics["fairness_threshold"] == summary["threshold"]
        tag = run.data.tags["fairness.flagged"]
        assert tag == ("; ".join(summary["flagged"]) or "none")
        png = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="fairness/segments.png"
        )
        assert Path(png).read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_fairness_segment_is_refused_before_training(
    trained: Project, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "p.yaml",
        trained.events,
        trained.customers,
        fairness={"segments": ["region", "tier"], "bands": {}},
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_cli(
        ["--config", str(config), "train"],
        {**trained.env(), "MLFLOW_TRACKING_URI": uri},
    )
    assert done.returncode == 2
    assert "fairness.segments: ['tier'] not in the customers table" in done.stderr
    assert "available attributes: [" in done.stderr and "'plan'" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_served_probabilities_are_the_calibrated_ones(
    trained: Project, client: MlflowClient
) -> None:
    config, frame = eligible_features(trained, datetime(2025, 12, 1))
    champions = Champions.load(config, trained.tracking_uri)
    served = champions.predict_frame(frame)
    for target, model in champions.models.items():
        params = client.get_run(model.run_id).data.params
        assert model.calibrator.method == params["calibration"]
        matrix = model.encoding.to_matrix(frame)
        trees = model.booster.predict(matrix)
        # the trees' probability, or the blend's when the backtest chose it
        # (training/select.py): params `selection.chosen`, metadata `blend`
        raw = model.raw(matrix)
        assert (model.blend is None) == params["selection.chosen"].startswith(
            "lightgbm"
        )
        if model.blend is None:
            np.testing.assert_array_equal(raw, trees)
        np.testing.assert_allclose(served[target], model.calibrator.apply(raw))
        if model.calibrator.method != "identity":
            assert not np.allclose(served[target], raw)


@pytest.fixture(scope="module")
def registry(trained: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A copy of the trained store with a weaker challenger trained into it, so the
    alias moves below leave the shared store alone."""
    root = tmp_path_factory.mktemp("registry")
    shutil.copytree(trained.root / "mlruns", root / "mlruns")
    project = Project(
        root,
        trained.config,
        f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        trained.events,
        trained.customers,
    )
    weak = write_config(
        root / "weak.yaml",
        trained.events,
        trained.customers,
        training={
            "cutoffs": {"start": "2025-03-01", "freq": "MS"},
            "lightgbm": {
                "num_boost_round": 2,
                "learning_rate": 0.001,
                "early_stopping_rounds": 1,
            },
            # the configured trees alone: the backtest's choice would serve the
            # blend or the logistic regression instead, no weaker than v1
            "backtest": {"serve": "lightgbm"},
        },
    )
    done = run_cli(["--config", str(weak), "train"], project.env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "-> challenger: challenger does not beat champion v1" in done.stdout
    return project


def _client(project: Project) -> MlflowClient:
    return MlflowClient(project.tracking_uri, project.tracking_uri)


def test_a_weaker_challenger_stays_challenger_with_its_figures(
    registry: Project,
) -> None:
    client = _client(registry)
    for target in TARGETS:
        champion = client.get_model_version_by_alias(target, "champion")
        challenger = client.get_model_version_by_alias(target, "challenger")
        assert (str(champion.version), str(challenger.version)) == ("1", "2")
        tags = challenger.tags
        assert tags["promotion.decision"] == "kept_as_challenger"
        assert tags["promotion.previous_champion_version"] == "1"
        assert len(tags["promotion.origins"].split(",")) >= 4
        assert float(tags["promotion.challenger_log_loss"]) > float(
            tags["promotion.champion_log_loss"]
        )
        assert "does not beat champion v1: mean log loss" in tags["promotion.reason"]
        # beyond noise: the paired bootstrap on both runs' logged predictions
        assert tags["promotion.method"] == "paired_bootstrap"
        assert "95% interval [" in tags["promotion.reason"]
        low, high = (
            float(tags[f"promotion.log_loss_gain_{e}"]) for e in ("low", "high")
        )
        assert low <= float(tags["promotion.log_loss_gain"]) <= high
        assert low <= 0  # a weaker model's gain does not hold beyond noise
        # the label settings, logged per model run and equal for both versions
        runs = [
            client.get_run(client.get_model_version(target, v).run_id)
            for v in ("1", "2")
        ]
        labels = [
            {k: v for k, v in r.data.params.items() if k.startswith("label.")}
            for r in runs
        ]
        assert labels[0] == labels[1]
        assert labels[0]["label.horizon_days"] == "30"
        population = "active_not_churned" if target == "churn" else "seen"
        assert labels[0]["label.population"] == population
        assert ("label.definition" in labels[0]) == (target == "churn")
        artifacts = {a.path for a in client.list_artifacts(runs[1].info.run_id)}
        assert "backtest_predictions.parquet" in artifacts


def test_runs_lists_and_compares(registry: Project) -> None:
    done = run_cli(["runs"], registry.env())
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    client = _client(registry)
    for target in TARGETS:
        mine = [line for line in lines if line.startswith(target + " ")]
        assert len(mine) == 2, done.stdout
        # newest first: v2 (challenger) then v1 (champion, starred)
        assert " 2   " in mine[0] and " 1 * " in mine[1], mine
        # each origin's AUC after the means, oldest first
        run = client.get_run(client.get_model_version(target, "1").run_id)
        history = client.get_metric_history(run.info.run_id, "backtest_roc_auc")
        expected = [f"{h.value:.4f}" for h in sorted(history, key=lambda h: h.step)]
        assert len(expected) == len(run.data.params["origins"].split(","))
        assert mine[1].split()[-len(expected) :] == expected, mine[1]
    # outside a terminal, MLflow's download progress bars stay out of the output
    env = registry.env()
    env.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    compared = run_cli(["runs", "compare", "churn/1", "models:/churn/2"], env)
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "Downloading artifacts" not in compared.stderr
    out = compared.stdout
    origins = (
        _client(registry)
        .get_run(_client(registry).get_model_version("churn", "1").run_id)
        .data.params["origins"]
        .split(",")
    )
    for origin in origins:
        assert f"{origin} log_loss" in out
    assert "lgb_learning_rate: A=0.05  B=0.001" in out
    # the label settings side by side, and the gate's interval for v2
    assert "label.definition" in out and "inactivity_or_cancel" in out
    assert "B = churn v2 vs champion v1: kept_as_challenger; log-loss gain" in out
    assert "(paired bootstrap, 1000 resamples of" in out
    missing = run_cli(["runs", "compare", "churn/1", "churn/99"], registry.env())
    assert missing.returncode == 1 and "churn/99: no such model version" in (
        missing.stderr
    )


def test_promote_is_gated_force_is_recorded_and_rollback_restores(
    registry: Project,
) -> None:
    env = {**registry.env(), "PROPENSITY_USER": "alice"}
    client = _client(registry)
    gated = run_cli(["promote", "churn", "2"], env)
    assert gated.returncode == 1 and "churn v2 not promoted" in gated.stdout
    no_reason = run_cli(["promote", "churn", "2", "--force"], env)
    assert no_reason.returncode == 1 and "--force needs --reason" in no_reason.stderr
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"

    before_force = datetime.now(UTC)
    forced = run_cli(
        ["promote", "churn", "2", "--force", "--reason", "campaign freeze"], env
    )
    assert forced.returncode == 0, forced.stderr[-2000:]
    v2 = client.get_model_version_by_alias("churn", "champion")
    assert str(v2.version) == "2"
    assert v2.tags["champion.kind"] == "force" and v2.tags["champion.by"] == "alice"
    assert v2.tags["champion.previous"] == "1"
    assert "campaign freeze" in v2.tags["champion.reason"]
    assert client.get_model_version("churn", "1").tags["champion.replaced_by"] == "2"

    history = run_cli(
        ["runs", "history", "churn", "--at", before_force.isoformat()], env
    )
    assert history.returncode == 0, history.stderr[-2000:]
    moves = [line for line in history.stdout.splitlines() if line[:4].isdigit()]
    assert [line.split()[1:4] for line in moves] == [
        ["-", "1", "gate"],
        ["1", "2", "force"],
    ]
    # just before the forced move, v1 was champion
    assert "churn champion at" in history.stdout and ": v1" in history.stdout

    back = run_cli(["rollback", "churn", "--reason", "bad week"], env)
    assert back.returncode == 0, back.stderr[-2000:]
    assert "v2 -> v1" in back.stdout
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    again = run_cli(["rollback", "churn"], env)
    assert again.returncode == 1 and "no earlier champion" in again.stderr
    log = client.search_runs(
        [client.get_experiment_by_name("propensity.promotions").experiment_id],
        "tags.`move.model` = 'churn'",
    )
    kinds = sorted(r.data.tags["move.kind"] for r in log)
    assert kinds == ["force", "gate", "rollback"]
    frame = pd.DataFrame([r.data.tags for r in log])
    assert set(frame["move.actor"]) >= {"alice"}


def _copy(trained: Project, root: Path) -> Project:
    """The trained project's registry in `root`, for a test that trains more."""
    shutil.copytree(trained.root / "mlruns", root / "mlruns")
    return Project(
        root,
        trained.config,
        f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        trained.events,
        trained.customers,
    )


def test_a_champion_the_changed_definition_cannot_feed_is_named_not_crashed_on(
    trained: Project, tmp_path: Path
) -> None:
    """The features changed (behaviour features off) and the gate kept the
    champion: train warns, and score exits 2 naming the champion and the
    features it would lack, instead of a KeyError from the middle of scoring."""
    project = _copy(trained, tmp_path)
    client = _client(project)
    champion = client.get_model_version_by_alias("churn", "champion")
    changed = write_config(
        tmp_path / "changed.yaml",
        trained.events,
        trained.customers,
        targets={"churn": {"horizon_days": 30}},
        features={"behaviour": False},
        # a gain no challenger shows: the gate keeps the champion
        training={"promotion": {"min_log_loss_gain": 1.0}},
    )
    done = run_cli(["--config", str(changed), "train"], project.env())
    assert done.returncode == 0, done.stderr[-3000:]
    kept = client.get_model_version_by_alias("churn", "champion")
    assert kept.version == champion.version
    model = load_alias(project.tracking_uri, "churn", "champion")
    assert model is not None
    reads = model.encoding.features
    behaviour = [f for f in reads if "overdue" in f]
    assert behaviour, reads  # the champion reads behaviour features
    warning = f"WARNING: champion churn v{champion.version} reads "
    assert warning in done.stdout
    assert behaviour[0] in done.stdout
    scored = run_cli(["--config", str(changed), "score"], project.env())
    assert scored.returncode == 2, scored.stdout + scored.stderr[-3000:]
    assert "Traceback" not in scored.stderr
    assert f"champion churn v{champion.version} reads " in scored.stderr
    assert behaviour[0] in scored.stderr
    assert "propensity promote" in scored.stderr
    assert not (tmp_path / "scores").exists() or not any(
        (tmp_path / "scores").glob("as_of=*")
    )


def test_a_challenger_with_another_label_is_not_compared(
    trained: Project, tmp_path: Path
) -> None:
    """Issue 18: a `cancel` churn challenger against the `inactivity_or_cancel`
    champion stays challenger, the reason naming the setting; `runs compare`
    marks it."""
    project = _copy(trained, tmp_path)
    cancel = write_config(
        tmp_path / "cancel.yaml",
        trained.events,
        trained.customers,
        targets={"churn": {"horizon_days": 30, "definition": "cancel"}},
    )
    done = run_cli(["--config", str(cancel), "train"], project.env())
    assert done.returncode == 0, done.stderr[-3000:]
    expected = (
        "label settings differ from champion v1: churn.definition: "
        "inactivity_or_cancel (champion) vs cancel (challenger)"
    )
    assert expected in done.stdout
    client = _client(project)
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    assert expected in client.get_model_version("churn", "2").tags["promotion.reason"]
    compared = run_cli(["runs", "compare", "churn/1", "churn/2"], project.env())
    assert compared.returncode == 0, compared.stderr[-2000:]
    [line] = [
        x for x in compared.stdout.splitlines() if x.startswith("  label.definition ")
    ]
    assert line.split()[1:] == ["inactivity_or_cancel", "cancel", "<-", "differ"]
