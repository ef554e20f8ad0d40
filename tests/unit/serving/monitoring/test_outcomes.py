"""Outcome monitoring on a literal event table, a score file written here and a
real MLflow sqlite store: realised figures equal scikit-learn's on the same rows,
an immature date waits, treatment customers are left out and counted, a second
check logs nothing, and the AUC and ECE alerts fire."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import log_loss, roc_auc_score

from core.config import load_config
from core.exitcodes import ExitCode
from features.sources.load import load
from serving.monitoring import realised
from serving.monitoring.outcome_runs import (
    STATUS_FILE,
    check,
    nightly_check,
    nightly_summary,
    outcomes_dir,
    outcomes_experiment,
)
from serving.outreach.contact_log import ContactLog
from tests.helpers import write_config

MATURE, IMMATURE, END = "2025-06-01", "2025-07-20", "2025-08-01"
N = 400
BACKTEST_AUC = {"purchase": 0.80, "churn": 0.75}


def _events(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every customer logs in before the mature date; some buy, some log in, in
    its 30-day window; c0 buys at the window's end (outside)."""
    ids = [f"c{i:03d}" for i in range(N)]
    bought = rng.uniform(size=N) < 0.3
    active = rng.uniform(size=N) < 0.6
    bought[0] = active[0] = False
    rows = [(c, "2025-05-20 10:00:00", "login", None) for c in ids]
    rows += [(c, "2025-06-10 10:00:00", "purchase", 5.0) for c in np.array(ids)[bought]]
    rows += [(c, "2025-06-15 10:00:00", "login", None) for c in np.array(ids)[active]]
    rows.append((ids[0], "2025-07-01 00:00:00", "purchase", 9.0))  # at the end: out
    rows.append(("late", "2025-07-25 00:00:00", "login", None))
    frame = pd.DataFrame(
        rows, columns=["customer_id", "event_time", "event_type", "amount"]
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"])
    labels = {"purchase": bought.astype(int), "churn": (~(bought | active)).astype(int)}
    return frame, labels


def _scores(
    output: Path, day: str, labels: dict[str, np.ndarray], rng: np.random.Generator
) -> pd.DataFrame:
    """A score file with churn and purchase only (no service_request columns), a
    few customers outside purchase's population (null), and one unknown id."""
    frame = pd.DataFrame({"customer_id": [f"c{i:03d}" for i in range(N)]})
    for t, y in labels.items():
        noisy = np.clip(0.25 + 0.3 * y + rng.normal(0, 0.2, N), 0.01, 0.99)
        frame[t] = noisy
        frame[f"{t}_model"] = f"propensity_{t}"
        frame[f"{t}_model_version"] = "1"
    frame.loc[5:14, "purchase"] = np.nan  # outside the purchase population
    ghost = pd.DataFrame([{**frame.iloc[20].to_dict(), "customer_id": "ghost"}])
    frame = pd.concat([frame, ghost], ignore_index=True)
    folder = output / f"as_of={day}"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0.parquet", index=False)
    return frame


def _register(uri: str, aucs: dict[str, float]) -> None:
    """Training runs with backtest means and version 1 of each model on them."""
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("propensity")
    for target, auc in aucs.items():
        run = client.create_run(experiment, tags={"kind": "model"})
        client.log_metric(run.info.run_id, "backtest_roc_auc_mean", auc)
        client.log_metric(run.info.run_id, "calibrated_log_loss_mean", 0.5)
        client.log_metric(run.info.run_id, "calibrated_ece_mean", 0.02)
        client.set_terminated(run.info.run_id)
        name = f"propensity_{target}"
        client.create_registered_model(name)
        client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run.info.run_id
        )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The registered versions, once: each test gets a copy of the store (creating
    an MLflow database takes seconds)."""
    folder = tmp_path_factory.mktemp("registry")
    _register(f"sqlite:///{folder / 'mlflow.db'}", BACKTEST_AUC)
    return folder / "mlflow.db"


@pytest.fixture
def project(tmp_path: Path, registry: Path):
    rng = np.random.default_rng(3)
    events, labels = _events(rng)
    events.to_parquet(tmp_path / "events.parquet")
    output = tmp_path / "scores"
    frame = _scores(output, MATURE, labels, rng)
    _scores(output, IMMATURE, labels, rng)
    path = write_config(
        tmp_path / "propensity.yaml",
        tmp_path / "events.parquet",
        None,
        data={"as_of": END},
        scoring={"output": str(output), "outcomes": {"max_ece": 0.5}},
        outreach={"contact_log": str(tmp_path / "contacts.sqlite")},
    )
    config = load_config(path)
    ds = load(tmp_path / "events.parquet", as_of=datetime(2030, 1, 1))
    (tmp_path / "mlruns").mkdir()
    shutil.copyfile(registry, tmp_path / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # treatment c030..c039 confirmed inside the mature date's window; c040..c049
    # after it; control c050..c059 inside: only the first ten are left out
    contacts = ContactLog(config.outreach.contact_log)
    for campaign, at, rows in (
        ("june", "2025-06-10", [(f"c{i:03d}", "treatment") for i in range(30, 40)]),
        ("july", "2025-07-05", [(f"c{i:03d}", "treatment") for i in range(40, 50)]),
        ("ctrl", "2025-06-12", [(f"c{i:03d}", "control") for i in range(50, 60)]),
    ):
        when = datetime.fromisoformat(at).replace(tzinfo=UTC)
        with contacts.confirming(campaign, when) as tx:
            tx.record("churn", rows)
    return config, ds, uri, frame, labels


def test_a_matured_date_gets_sklearns_figures_on_the_same_rows(project) -> None:
    config, ds, uri, frame, labels = project
    status = check(config, ds, uri)
    done = {(i["as_of"], i["target"]): i for i in status["evaluated"]}
    assert set(done) == {(MATURE, "churn"), (MATURE, "purchase")}  # no service_request
    for target in ("churn", "purchase"):
        rows = frame.iloc[:N]
        keep = rows[target].notna() & ~rows.customer_id.isin(
            [f"c{i:03d}" for i in range(30, 40)]
        )
        y, p = labels[target][keep.to_numpy()], rows.loc[keep, target].to_numpy()
        found = done[(MATURE, target)]
        assert found["n"] == keep.sum() and found["positives"] == y.sum()
        assert found["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert found["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-12)
        assert found["expected_roc_auc"] == BACKTEST_AUC[target]
        assert found["left_out"] == {"treatment": 10, "unknown_id": 1}
        report = json.loads(
            (outcomes_dir(config) / f"as_of={MATURE}" / f"{target}.json").read_text()
        )
        assert report["ece"] == pytest.approx(realised.ece(report["reliability"]))
        sizes = [b["n"] for b in report["reliability"]]  # equal-count bins
        assert (
            len(sizes) == 10 and sum(sizes) == len(y) and max(sizes) - min(sizes) <= 1
        )
        assert any("treatment group" in note for note in report["notes"])
    # the purchase at exactly the window's end does not count
    assert labels["purchase"][0] == 0


def test_an_immature_date_waits_and_says_how_long(project) -> None:
    config, ds, uri, _, _ = project
    status = check(config, ds, uri)
    waiting = {
        (w["as_of"], w["target"]): w["days_remaining"] for w in status["waiting"]
    }
    # 2025-07-20 + 30 days = 2025-08-19, the data end 2025-08-01: 18 days to go
    assert waiting == {(IMMATURE, "churn"): 18, (IMMATURE, "purchase"): 18}
    assert all(i["as_of"] == MATURE for i in status["evaluated"])
    assert not (outcomes_dir(config) / f"as_of={IMMATURE}").exists()


def test_a_second_check_logs_nothing_new(project) -> None:
    config, ds, uri, _, _ = project
    first = check(config, ds, uri)
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name(outcomes_experiment(config))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(first["evaluated"]) == 2
    assert {(r.data.tags["as_of"], r.data.tags["target"]) for r in runs} == {
        (MATURE, "churn"),
        (MATURE, "purchase"),
    }
    run = next(r for r in runs if r.data.tags["target"] == "churn")
    assert run.data.metrics["left_out_treatment"] == 10
    assert "reliability.svg" in {a.path for a in client.list_artifacts(run.info.run_id)}
    second = check(config, ds, uri)
    assert second["evaluated"] == [] and second["already_logged"] == 2
    assert len(client.search_runs([experiment.experiment_id])) == 2
    status = json.loads((outcomes_dir(config) / STATUS_FILE).read_text())
    assert status["already_logged"] == 2 and status["exit_code"] == ExitCode.OK
    # the date scored again (another scoring run): other scores, evaluated again
    path = outcomes_dir(config).parent / f"as_of={MATURE}" / "part-0.parquet"
    pd.read_parquet(path).assign(run_id="rescored").to_parquet(path)
    third = check(config, ds, uri)
    assert len(third["evaluated"]) == 2 and third["already_logged"] == 0
    runs = client.search_runs([experiment.experiment_id])
    tags = sorted(r.data.tags["score_run_id"] for r in runs)
    assert tags == ["", "", "rescored", "rescored"]


def test_the_alert_fires_when_auc_falls_past_the_tolerance(project) -> None:
    config, ds, uri, _, _ = project
    status = check(config, ds, uri)
    churn = next(i for i in status["evaluated"] if i["target"] == "churn")
    assert status["exit_code"] == ExitCode.OK, status["alerts"]
    # the backtest promised more than realised + tolerance: a new champion version
    client = MlflowClient(uri, uri)
    promised = churn["roc_auc"] + config.scoring.outcomes.auc_tolerance + 0.01
    run = client.create_run(client.get_experiment_by_name("propensity").experiment_id)
    client.log_metric(run.info.run_id, "backtest_roc_auc_mean", promised)
    client.create_model_version("propensity_churn", "file:///x", run.info.run_id)
    path = outcomes_dir(config).parent / "as_of=2025-06-02" / "part-0.parquet"
    path.parent.mkdir()
    frame = pd.read_parquet(outcomes_dir(config).parent / f"as_of={MATURE}")
    frame["churn_model_version"] = "2"
    frame.drop(columns=["purchase"]).to_parquet(path)  # churn only
    alerted = check(config, ds, uri)
    assert alerted["exit_code"] == ExitCode.OUTCOME_ALERT
    (item,) = alerted["evaluated"]
    assert (item["as_of"], item["target"], item["level"]) == (
        "2025-06-02",
        "churn",
        "alert",
    )
    assert item["expected_roc_auc"] == pytest.approx(promised)
    assert (
        "roc_auc" in alerted["alerts"][0] and "2025-06-02 churn" in alerted["alerts"][0]
    )


def test_the_ece_alert(project) -> None:
    config, ds, uri, _, _ = project
    strict = config.model_copy(
        update={
            "scoring": config.scoring.model_copy(
                update={
                    "outcomes": config.scoring.outcomes.model_copy(
                        update={"max_ece": 0.001}
                    )
                }
            )
        }
    )
    status = check(strict, ds, uri)
    assert status["exit_code"] == ExitCode.OUTCOME_ALERT
    assert {a.split(":")[0] for a in status["alerts"]} == {
        f"{MATURE} churn",
        f"{MATURE} purchase",
    }
    assert all("ece" in a for a in status["alerts"])


def test_realised_metrics_match_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    p = np.round(rng.uniform(size=500), 1)  # many ties
    y = (rng.uniform(size=500) < p).astype(int)
    assert realised.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert realised.log_loss(y, p) == pytest.approx(log_loss(y, p), abs=1e-12)
    assert realised.roc_auc(np.ones(5), p[:5]) is None
    curve = realised.reliability(y, p)
    assert [b["n"] for b in curve] == [50] * 10
    assert realised.ece(curve) == pytest.approx(
        sum(50 * abs(b["mean_predicted"] - b["observed"]) for b in curve) / 500
    )


def test_the_ece_noise_floor_is_what_calibrated_scores_show() -> None:
    """Scores that are the true probabilities: their ECE is sampling noise, about
    the floor; scores a fifth too high are far above it."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0.2, 0.8, 20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    floor = realised.ece_noise_floor(p)
    assert 0.007 < floor < 0.01
    assert 0.5 * floor < realised.ece(realised.reliability(y, p)) < 1.6 * floor
    assert realised.ece(realised.reliability(y, p * 1.2)) > 10 * floor


def test_scores_under_other_ids_are_not_evaluated(project) -> None:
    """A date scored under another pseudonym key: its ids meet no events."""
    config, ds, uri, frame, _ = project
    folder = outcomes_dir(config).parent / "as_of=2025-06-03"
    folder.mkdir()
    other = frame.assign(customer_id="x" + frame.customer_id)
    other.to_parquet(folder / "part-0.parquet", index=False)
    status = check(config, ds, uri)
    assert {i["as_of"] for i in status["evaluated"]} == {MATURE}
    (problem,) = status["problems"]
    assert problem.startswith("2025-06-03") and "another pseudonym key" in problem
    assert not (outcomes_dir(config) / "as_of=2025-06-03").exists()


def test_the_nightly_check_reports_an_error_instead_of_raising(project) -> None:
    """The nightly run's scores are published whatever the check meets."""
    config, ds, uri, _, _ = project
    folder = outcomes_dir(config).parent / "as_of=2025-06-04"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"not parquet")
    found = nightly_check(config, ds, uri)
    assert found["level"] == "error" and found["alerts"] == []
    assert "Parquet" in found["error"] or "parquet" in found["error"]
    assert nightly_summary(found)["outcomes_error"] == found["error"]


def test_only_the_targets_the_config_lists_are_evaluated(project) -> None:
    config, ds, uri, _, _ = project
    churn_only = config.model_copy(
        update={"targets": config.targets.model_copy(update={"purchase": None})}
    )
    assert churn_only.targets.listed() == ("churn", "service_request")
    status = check(churn_only, ds, uri)
    assert {(i["as_of"], i["target"]) for i in status["evaluated"]} == {
        (MATURE, "churn")
    }
