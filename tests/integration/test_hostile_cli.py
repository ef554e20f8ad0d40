"""Hostile input through the CLI: a broken events file or config stops
`propensity score` before any work, with exit 2, a message naming the file,
row and column (or line), and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers import Project, run_cli

pytestmark = pytest.mark.integration


def project_copy(trained: Project, tmp_path: Path, events: Path) -> Path:
    """The trained project's config with its own events and output folders."""
    config = yaml.safe_load(trained.config.read_text())
    config["data"]["events"] = str(events)
    config["scoring"]["output"] = str(tmp_path / "scores")
    config["online_store"] = {"path": str(tmp_path / "online" / "store.sqlite")}
    path = tmp_path / "propensity.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_nan_amount_stops_scoring_naming_the_row_and_writes_nothing(
    trained: Project, tmp_path: Path
) -> None:
    table = pq.read_table(trained.events)
    amounts = table.column("amount").to_pylist()
    row = next(i for i, a in enumerate(amounts) if a is not None)
    amounts[row] = float("nan")
    index = table.schema.get_field_index("amount")
    broken = table.set_column(index, "amount", pa.array(amounts, pa.float64()))
    events = tmp_path / "events.parquet"
    pq.write_table(broken, events)
    config = project_copy(trained, tmp_path, events)
    done = run_cli(["score"], {**trained.env(), "PROPENSITY_CONFIG": str(config)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{events}, column 'amount', rows {row + 1}" in done.stderr
    assert "NaN or infinite" in done.stderr
    # only the run's status file (serving.batch.nightly), saying why it failed
    written = [p.name for p in (tmp_path / "scores").iterdir()]
    assert written == ["_last_run.json"], written
    status = json.loads((tmp_path / "scores" / "_last_run.json").read_text())
    assert (status["state"], status["exit_code"]) == ("failed", 2)
    assert not (tmp_path / "online").exists()


def test_a_billion_laughs_config_is_refused_naming_the_line(
    trained: Project, tmp_path: Path
) -> None:
    shutil.copy(trained.config, tmp_path / "base.yaml")
    config = tmp_path / "propensity.yaml"
    config.write_text(
        (tmp_path / "base.yaml").read_text()
        + 'lol: &a ["lol", "lol"]\nlols: [*a, *a]\n'
    )
    done = run_cli(["score"], {**trained.env(), "PROPENSITY_CONFIG": str(config)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(config) in done.stderr and "anchors and aliases" in done.stderr
    assert not (tmp_path / "scores").exists()
