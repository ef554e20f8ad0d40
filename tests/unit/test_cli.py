"""`propensity features list` prints the catalogue without reading the events."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from serving.cli import main
from tests.conftest import write_config


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
