"""A new user's first run through the CLI only: `init` writes a starter config
from the data and `check` says what `train` would do, with no secret in the
environment; `init` never overwrites. `train`, `score` and `serve` on a config
`init` wrote, with no edit, are test_own_data's, on three real logs."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tests.helpers import run_cli


def clean_env(root: Path) -> dict[str, str]:
    """The environment without the project's settings and secrets (no pseudonym
    key, no tracking URI, no config path): what a new user has."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PROPENSITY_") and k != "MLFLOW_TRACKING_URI"
    }
    return {**env, "BENTOML_HOME": str(root / "bentoml_home")}


def test_init_check_train_on_a_new_log(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    data = tmp_path / "data"
    made = run_cli(
        [
            "demo-data",
            "--customers",
            "500",
            "--days",
            "400",
            "--no-campaign",
            "--out",
            str(data),
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    config = tmp_path / "project" / "propensity.yaml"
    args = ["init", "--events", str(data / "events.parquet")]
    args += ["--customers", str(data / "customers.parquet"), "--out", str(config)]
    init = run_cli(args, env)
    assert init.returncode == 0, init.stderr
    assert "event types (6)" in init.stdout and f"wrote {config}" in init.stdout
    raw = yaml.safe_load(config.read_text())
    assert raw["data"]["events"] == "../data/events.parquet"
    assert raw["privacy"]["pseudonymise"] is False

    again = run_cli(args, env)
    assert again.returncode == 2
    assert "init never overwrites a file" in again.stderr
    assert yaml.safe_load(config.read_text()) == raw

    check = run_cli(["--config", str(config), "check"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    # 400 days from 2024-01-01: the last day with events is 2025-02-03, so the
    # 2025-02-01 cutoff's 30-day window is incomplete
    reason = (
        "churn's 30-day window runs through 2025-03-02, past the data's end "
        "2025-02-03 (label window incomplete)"
    )
    assert f"dropped: {reason}" in check.stdout
    assert "train would train churn, purchase, service_request" in check.stdout
