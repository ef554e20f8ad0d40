"""The nightly job end to end through the CLI, on the trained demo registry:
a kill -9 mid-write, drift alerts, the MLflow scoring run, the status command.

Each test scores into an output folder of its own (the shared project's `scores`
belongs to test_pipeline)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from core.exitcodes import ExitCode
from features.columns import TARGETS
from serving.api.servers import free_port
from serving.batch.nightly import STATUS_FILE
from serving.batch.score import PAUSE_ENV, staging_dir
from serving.online_store.sqlite import stored_as_of
from tests.helpers import BIN, ROOT, Project, run_cli, write_config

pytestmark = pytest.mark.integration

DATES = ("2025-11-01", "2025-12-01")


def own_output(trained: Project, tmp_path: Path, events: Path | None = None):
    """A config scoring the trained champions into tmp_path/scores; its env."""
    config = write_config(
        tmp_path / "propensity.yaml",
        events or trained.events,
        trained.customers,
        scoring={"output": str(tmp_path / "scores")},
    )
    return tmp_path / "scores", {**trained.env(), "PROPENSITY_CONFIG": str(config)}


def read_dataset(output: Path) -> pd.DataFrame:
    """The scores as a reader sees them: pyarrow's hive dataset of the folder."""
    table = pads.dataset(output, format="parquet", partitioning="hive").to_table()
    return table.to_pandas()


def read_duckdb(output: Path) -> pd.DataFrame:
    """The scores as DuckDB's glob over the partitions sees them."""
    pattern = str(output / "*" / "*.parquet")
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)"
    ).df()


def test_kill_mid_write_leaves_every_date_intact(
    trained: Project, tmp_path: Path
) -> None:
    output, env = own_output(trained, tmp_path)
    for day in DATES:
        done = run_cli(["score", "--as-of", day], env)
        assert done.returncode == 0, done.stderr[-2000:]
    files = {day: output / f"as_of={day}" / "part-0.parquet" for day in DATES}
    before = {day: path.read_bytes() for day, path in files.items()}
    seen_before = read_dataset(output)
    assert len(seen_before) == len(read_duckdb(output)) > 0

    # rerun the later date, paused after its first batch is written; kill -9 then
    staging = staging_dir(output)
    job = subprocess.Popen(
        [str(BIN / "propensity"), "score", "--as-of", DATES[1]],
        env={**env, PAUSE_ENV: "120"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    partial = None
    while partial is None and time.monotonic() < deadline:
        assert job.poll() is None, "the job ended before it could be killed"
        found = list(staging.glob(f".tmp-as_of={DATES[1]}-*/part-0.parquet"))
        if found and found[0].stat().st_size > 0:
            partial = found[0]
        time.sleep(0.1)
    assert partial is not None, "the job never started writing"
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL
    assert partial.exists()  # killed mid-write: its temporary file is left behind
    with pytest.raises(Exception):  # noqa: B017 - a half-written file has no footer
        pq.read_table(partial)

    # every date as it was, byte for byte; readers see exactly the old rows
    assert {day: path.read_bytes() for day, path in files.items()} == before
    assert sorted(p.name for p in output.iterdir() if p.name.startswith("as_of")) == [
        f"as_of={day}" for day in DATES
    ]
    for seen in (read_dataset(output), read_duckdb(output)):
        pd.testing.assert_frame_equal(
            seen.sort_values("customer_id").reset_index(drop=True)[["customer_id"]],
            seen_before.sort_values("customer_id").reset_index(drop=True)[
                ["customer_id"]
            ],
        )
    status = run_cli(["score", "status"], env)
    assert status.returncode == 1
    killed = json.loads(status.stdout)
    assert killed["state"] == "interrupted"
    client = MlflowClient(trained.tracking_uri, trained.tracking_uri)
    assert client.get_run(killed["run_id"]).info.status == "RUNNING"

    # the next run cleans up, marks the killed run FAILED, replaces the date whole
    again = run_cli(["score", "--as-of", DATES[1]], env)
    assert again.returncode == 0, again.stderr[-2000:]
    run = client.get_run(killed["run_id"])
    assert run.info.status == "FAILED"
    assert f"process {killed['pid']}" in run.data.tags["failed.reason"]
    assert not partial.parent.exists()
    assert list(staging.glob(".tmp-*")) == []
    assert files[DATES[1]].read_bytes() != before[DATES[1]]
    assert files[DATES[0]].read_bytes() == before[DATES[0]]
    status = run_cli(["score", "status"], env)
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "finished"


def test_run_is_recorded_in_mlflow_and_rows_carry_its_id(
    trained: Project, tmp_path: Path
) -> None:
    output, env = own_output(trained, tmp_path)
    done = run_cli(["score", "--as-of", DATES[1]], env)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = pd.read_parquet(output / f"as_of={DATES[1]}")
    (run_id,) = scores.run_id.unique()
    client = MlflowClient(trained.tracking_uri, trained.tracking_uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "propensity.scoring"
    assert run.info.status == "FINISHED"
    assert run.data.tags["kind"] == "scoring" and run.data.tags["as_of"] == DATES[1]
    m, p = run.data.metrics, run.data.params
    assert m["rows_scored"] == len(scores)
    # purchase and service_request score everyone seen; churn leaves out the
    # demo's churned customers (null churn score, no row skipped for it)
    assert m["rows_skipped_not_eligible"] == 0
    assert m["rows_scored_purchase"] == m["rows_scored_service_request"] == len(scores)
    assert 0 < m["rows_scored_churn"] == scores.churn.notna().sum() < len(scores)
    assert p["churn_population"] == "active_not_churned"
    assert p["purchase_population"] == "seen"
    assert m["rows_skipped_no_events_before_as_of"] >= 0
    assert m["duration_s"] > 0 and m["step_features_s"] > 0
    for target in TARGETS:
        assert p[f"{target}_model_version"] == scores[f"{target}_model_version"][0]
        assert m[f"score_{target}_p50"] == pytest.approx(scores[target].median())
        assert 0 <= m[f"drift_psi_score_{target}"] < 0.25
        top = scores[scores[f"{target}_decile"] == 1]
        assert 0.09 <= len(top) / scores[target].notna().sum() <= 0.15
        assert top[f"{target}_reasons"].notna().all()
        assert (
            scores.loc[scores[f"{target}_decile"] > 1, f"{target}_reasons"].isna().all()
        )
        assert (
            top[target].min()
            >= scores.loc[scores[f"{target}_decile"] > 1, target].max()
        )
        reasons = json.loads(top[f"{target}_reasons"].iloc[0])
        assert reasons and {"feature", "value", "contribution", "phrase"} <= set(
            reasons[0]
        )
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"score_histograms.json", "drift"} <= artifacts
    drift_files = {a.path for a in client.list_artifacts(run_id, "drift")}
    assert drift_files == {"drift/drift.json", "drift/drift.html"}
    histograms = mlflow.artifacts.load_dict(
        f"{run.info.artifact_uri}/score_histograms.json"
    )
    assert sum(histograms["counts"]["churn"]) == m["rows_scored_churn"]
    assert sum(histograms["counts"]["purchase"]) == len(scores)
    assert run.data.tags["exit_code"] == "0"


def test_a_shifted_population_alerts_and_still_writes(
    trained: Project, tmp_path: Path
) -> None:
    events = pd.read_parquet(trained.events)
    events["amount"] = events["amount"] * 25  # prices in another currency
    shifted = tmp_path / "events.parquet"
    events.to_parquet(shifted)
    output, env = own_output(trained, tmp_path, shifted)
    done = run_cli(["score", "--as-of", DATES[1]], env)
    assert done.returncode == ExitCode.DRIFT_ALERT, done.stderr[-2000:]
    alert = [line for line in done.stderr.splitlines() if "drift alert" in line]
    assert alert and "purchase_amount_sum_30d" in alert[0]
    scores = pd.read_parquet(output / f"as_of={DATES[1]}")
    assert len(scores) > 0
    report = json.loads(
        (output / "_drift" / f"as_of={DATES[1]}" / "drift.json").read_text()
    )
    assert report["level"] == "alert"
    amount = next(
        f for f in report["features"] if f["feature"] == "purchase_amount_max_365d"
    )
    assert amount["level"] == "alert" and amount["above_training_max"] > 0
    html = (output / "_drift" / f"as_of={DATES[1]}" / "drift.html").read_text()
    assert "purchase_amount_max_365d" in html and "data:image/png;base64" in html
    status = json.loads((output / STATUS_FILE).read_text())
    assert status["exit_code"] == ExitCode.DRIFT_ALERT
    assert "purchase_amount_sum_30d" in status["drift_alerts"]


def test_the_unshifted_population_does_not_alert(
    trained: Project, tmp_path: Path
) -> None:
    output, env = own_output(trained, tmp_path)
    done = run_cli(["score", "--as-of", DATES[1]], env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(
        (output / "_drift" / f"as_of={DATES[1]}" / "drift.json").read_text()
    )
    assert report["alerts"] == [] and report["level"] in ("ok", "warn")
    assert {s["target"] for s in report["scores"]} == set(TARGETS)
    ignored = {f["feature"] for f in report["features"] if f["level"] == "ignored"}
    assert ignored <= {"tenure_days", "days_since_first_purchase"}


def test_a_matured_date_is_evaluated_once_under_pseudonyms(
    trained: Project, tmp_path: Path
) -> None:
    """The nightly run evaluates a score date whose horizon has passed (the demo's
    data end 2026-01-01, the 30-day horizons from 2025-11-01); the scores and the
    events carry the same pseudonyms, so every scored id meets its events; a
    second check through `propensity outcomes` logs nothing new."""
    config = write_config(
        tmp_path / "propensity.yaml",
        trained.events,
        trained.customers,
        scoring={"output": str(tmp_path / "scores")},
        privacy={"pseudonymise": True, "dir": str(tmp_path / "privacy")},
    )
    output, env = (
        tmp_path / "scores",
        {**trained.env(), "PROPENSITY_CONFIG": str(config)},
    )
    day = DATES[0]
    done = run_cli(["score", "--as-of", day], env)
    assert done.returncode in (ExitCode.OK, ExitCode.OUTCOME_ALERT), done.stderr[-3000:]
    checked = json.loads((output / "_outcomes" / "_last_check.json").read_text())
    expected = ExitCode.OUTCOME_ALERT if checked["alerts"] else ExitCode.OK
    assert done.returncode == expected, done.stderr[-2000:]
    scores = pd.read_parquet(output / f"as_of={day}")
    assert not scores.customer_id.str.startswith("C").any()  # pseudonyms
    evaluated = {i["target"]: i for i in checked["evaluated"]}
    assert set(evaluated) == set(TARGETS)
    client = MlflowClient(trained.tracking_uri, trained.tracking_uri)
    for target, item in evaluated.items():
        assert item["as_of"] == day and item["left_out"]["unknown_id"] == 0
        assert item["n"] == scores[target].notna().sum() and item["positives"] > 0
        assert 0.55 < item["roc_auc"] <= 1 and item["expected_roc_auc"] is not None
        run = client.get_run(item["run_id"])
        assert run.data.tags["target"] == target and run.data.tags["as_of"] == day
        assert run.data.metrics["roc_auc"] == pytest.approx(item["roc_auc"])
        assert (output / "_outcomes" / f"as_of={day}" / f"{target}.json").is_file()
    last = json.loads((output / STATUS_FILE).read_text())
    assert last["outcome_level"] == checked["level"]
    assert last["outcomes_evaluated"] == len(TARGETS)

    again = run_cli(["outcomes", "--format", "json"], env)
    assert again.returncode == ExitCode.OK, again.stderr[-2000:]
    second = json.loads(again.stdout)
    assert second["evaluated"] == [] and second["already_logged"] == len(TARGETS)


def test_too_few_scored_and_an_unreachable_store_keep_the_store(
    trained: Project, tmp_path: Path
) -> None:
    """A good night; a night on a truncated events file (a handful of customers):
    exit 9, its Parquet published for a look, the online store left as it was;
    a night with the online store on an unreachable Postgres: exit 10, the
    Parquet output published all the same."""
    output, store = tmp_path / "scores", tmp_path / "online" / "store.sqlite"

    def env_for(name: str, events: Path, **overrides: dict) -> dict[str, str]:
        config = write_config(
            tmp_path / name,
            events,
            trained.customers,
            **{
                "scoring": {"output": str(output)},
                "online_store": {"path": str(store)},
                **overrides,
            },
        )
        return {**trained.env(), "PROPENSITY_CONFIG": str(config)}

    done = run_cli(["score", "--as-of", DATES[0]], env_for("good.yaml", trained.events))
    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    good = len(pd.read_parquet(output / f"as_of={DATES[0]}"))
    assert stored_as_of(store) == DATES[0]
    kept = store.read_bytes()

    events = pd.read_parquet(trained.events)
    few = events[events.customer_id.isin(events.customer_id.unique()[:10])]
    few.to_parquet(tmp_path / "few.parquet")
    done = run_cli(
        ["score", "--as-of", DATES[1]], env_for("few.yaml", tmp_path / "few.parquet")
    )
    assert done.returncode == ExitCode.SCORED_TOO_FEW, done.stderr[-2000:]
    assert f"the last good run (as of {DATES[0]}" in done.stderr
    assert f"scored {good:,}" in done.stderr
    published = pd.read_parquet(output / f"as_of={DATES[1]}")
    assert 0 < len(published) <= 10
    assert store.read_bytes() == kept and stored_as_of(store) == DATES[0]
    status = json.loads((output / STATUS_FILE).read_text())
    assert status["exit_code"] == ExitCode.SCORED_TOO_FEW
    assert status["online_store"] == "held back"
    assert status["scored_too_few"]["rows_scored"] == len(published)
    assert status["baseline"]["as_of"] == DATES[0]  # still the last good run
    assert status["baseline"]["rows_scored"] == good
    client = MlflowClient(trained.tracking_uri, trained.tracking_uri)
    run = client.get_run(status["run_id"])
    assert run.data.tags["exit_code"] == str(int(ExitCode.SCORED_TOO_FEW))
    assert "scored_too_few" in run.data.tags

    port = free_port()  # nothing listens there: the store and the sink are down
    uri = f"postgresql://127.0.0.1:{port}/propensity"
    done = run_cli(
        ["score", "--as-of", DATES[1]],
        env_for(
            "down.yaml",
            trained.events,
            online_store={"postgres": {"uri": uri, "table": "online"}},
            scoring={"output": str(output), "postgres": {"uri": uri, "table": "t"}},
        ),
    )
    assert done.returncode == ExitCode.STORE_FAILED, done.stderr[-2000:]
    assert uri in done.stderr and "previous online store serves" in done.stderr
    assert len(pd.read_parquet(output / f"as_of={DATES[1]}")) >= good // 2
    status = json.loads((output / STATUS_FILE).read_text())
    assert status["exit_code"] == ExitCode.STORE_FAILED
    assert status["online_store"] == "not updated"
    assert uri in status["online_store_error"]
    assert status["postgres_error"] and status["postgres_rows"] is None
    assert status["baseline"]["as_of"] == DATES[1]  # enough scored: the new one
    assert store.read_bytes() == kept
