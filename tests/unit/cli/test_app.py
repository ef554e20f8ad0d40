"""`propensity features list` prints the catalogue without reading the events;
`propensity ui` on a tracking server points at it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cli.app import main
from tests.helpers import write_config


def test_features_list_needs_only_the_customers(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    customers = tmp_path / "customers.parquet"
    pd.DataFrame({"customer_id": ["a"], "plan": ["pro"], "age": [3.0]}).to_parquet(
        customers
    )
    config = write_config(tmp_path / "p.yaml", tmp_path / "no_events_here", customers)
    assert main(["--config", str(config), "features", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "role"]
    assert any(line.startswith("purchase_count_30d ") for line in lines)
    assert "customer attribute plan (categorical)" in out
    names = [line.split()[0] for line in lines[1 : lines.index("")]]
    assert names[-2:] == ["plan", "age"] and len(set(names)) == len(names)
    assert lines[-1].startswith(f"{len(names)} features, feature-set version")


def test_ui_on_a_tracking_server_prints_its_url(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlflow ui` cannot open an http store: the server's own UI is the answer."""
    config = write_config(tmp_path / "p.yaml", tmp_path / "events", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"started {args}")

    monkeypatch.setattr("cli.app.subprocess.call", no_subprocess)
    assert main(["--config", str(config), "ui"]) == 0
    assert "MLflow UI: http://mlflow.internal:5000" in capsys.readouterr().out


def test_engine_flags_parse_and_refuse_an_unknown_engine(
    capsys: pytest.CaptureFixture,
) -> None:
    from cli.app import build_parser

    args = build_parser().parse_args(
        ["--engine", "spark", "--spark-master", "local[2]", "score"]
    )
    assert (args.engine, args.spark_master) == ("spark", "local[2]")
    assert build_parser().parse_args(["train"]).engine is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--engine", "dask", "train"])
    assert "invalid choice: 'dask'" in capsys.readouterr().err
