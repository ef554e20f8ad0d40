"""`propensity outcomes` in process: nothing to evaluate says so and exits 0; a
scoring run holding the output makes it exit 1 without touching anything."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from core.exitcodes import ExitCode
from serving.batch.score import writing
from tests.helpers import write_config


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    events = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "event_time": pd.to_datetime(["2025-01-01", "2025-01-02"]),
            "event_type": ["login", "purchase"],
            "amount": [None, 3.0],
        }
    )
    events.to_parquet(tmp_path / "events.parquet")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return write_config(tmp_path / "p.yaml", tmp_path / "events.parquet", None)


def test_no_score_date_is_nothing_to_do(
    config: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["--config", str(config), "outcomes", "--format", "json"])
    assert code == ExitCode.OK
    status = json.loads(capsys.readouterr().out)
    assert status["evaluated"] == [] and status["level"] == "ok"
    assert status["data_end"].startswith("2025-01-03")
    assert main(["--config", str(config), "outcomes"]) == ExitCode.OK
    assert "no newly matured score date" in capsys.readouterr().out


def test_a_busy_output_exits_1(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with writing(tmp_path / "scores"):
        assert main(["--config", str(config), "outcomes"]) == ExitCode.FAILED
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "scores" / "_outcomes").exists()
