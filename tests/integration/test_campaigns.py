"""Campaign readouts through the CLI on a real randomised experiment: Hillstrom's
e-mails, imported as two campaigns sharing the No E-Mail control, reproduce the
reference rates of ../shared/data/hillstrom/README.md exactly, with intervals
around the lifts; one readout is logged to MLflow. The commands run in-process
through the CLI's entry point (`cli.main.main`), the one logging to MLflow in a
subprocess (MLflow's tracking URI is process-global)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli.main import main
from tests.helpers import SHARED_DATA, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.realdata]

HILLSTROM = SHARED_DATA / "hillstrom" / "hillstrom.csv"
# README: customers, visit rate (%), conversion rate (%), spend per customer ($)
REFERENCE = {
    "treatment:hillstrom-mens": (21_307, 18.28, 1.253, 1.423),
    "treatment:hillstrom-womens": (21_387, 15.14, 0.884, 1.077),
    "control": (21_306, 10.62, 0.573, 0.653),
}


def env() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**found, "PROPENSITY_CONFIG": ""}


def report(config: Path, campaign: str, *options: str, capsys=None) -> dict:
    args = ["--config", str(config), "campaigns", "report", campaign, "--format"]
    args += ["json", *options]
    if capsys is not None:
        assert main(args) == 0
        return json.loads(capsys.readouterr().out)
    done = run_cli(args, env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_hillstrom_readouts_reproduce_the_reference_rates(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if not HILLSTROM.is_file():
        pytest.skip(f"{HILLSTROM} not found: the real datasets live in ../shared/data")
    out = tmp_path / "hillstrom"
    assert main(["import", "hillstrom", str(HILLSTROM), "--out", str(out)]) == 0
    config = out / "propensity.yaml"
    assert main(["--config", str(config), "campaigns", "list"]) == 0
    listed = capsys.readouterr().out
    assert "hillstrom-mens" in listed and "hillstrom-womens" in listed
    for campaign in ("hillstrom-mens", "hillstrom-womens"):
        conversion = report(config, campaign, "--no-mlflow", capsys=capsys)
        if campaign == "hillstrom-mens":  # the one logged to MLflow
            visits = report(config, campaign, "--outcome-event", "visit")
        else:
            visits = report(
                config,
                campaign,
                "--outcome-event",
                "visit",
                "--no-mlflow",
                capsys=capsys,
            )
        for group in ("treatment", "control"):
            key = f"treatment:{campaign}" if group == "treatment" else "control"
            n, visit, converted, spend = REFERENCE[key]
            g, v = conversion["groups"][group], visits["groups"][group]
            assert g["customers"] == v["customers"] == n
            assert round(100 * v["rate"]["value"], 2) == visit
            assert round(100 * g["rate"]["value"], 3) == converted
            assert round(g["revenue_per_customer"]["value"], 3) == spend
            # spend, whatever the outcome (float sums in any order: approx)
            assert v["revenue"] == pytest.approx(g["revenue"], rel=1e-12)
        for found in (conversion, visits):
            assert found["mature"] and not found["sample_ratio"]["mismatch"]
            lift = found["lift"]["outcome"]["absolute"]
            assert 0 < lift["low"] < lift["value"] < lift["high"]
            revenue = found["lift"]["revenue"]["absolute"]
            assert 0 < revenue["low"] < revenue["value"] < revenue["high"]
            assert found["lift"]["outcome"]["p_value"] < 1e-3
    # the README's lifts: women's visits +4.52 points (men's +7.66, below)
    assert round(100 * visits["lift"]["outcome"]["absolute"]["value"], 2) == 4.52
    # one readout (men's visits) was logged to <experiment>.campaigns
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{out / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("hillstrom.campaigns")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.data.tags["campaign_id"] == "hillstrom-mens"
    assert round(100 * run.data.metrics["outcome_lift"], 2) == 7.66
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"readout.json", "readout.html", "rates.svg"} <= files
