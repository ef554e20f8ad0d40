"""`propensity init` never overwrites a file; `propensity check` says what `train`
would do and exits 1 when a listed target cannot be trained, naming why."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from core.exitcodes import ExitCode
from tests.helpers import write_config
from tests.unit.training.test_starter import activity_log


def test_init_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    events = activity_log(tmp_path / "events.parquet", months=12)
    out = tmp_path / "propensity.yaml"
    out.write_text("mine: true\n")
    code = main(["init", "--events", str(events), "--out", str(out)])
    assert code == ExitCode.USAGE
    assert "init never overwrites a file" in capsys.readouterr().err
    assert out.read_text() == "mine: true\n"


def test_init_writes_a_config_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    events = activity_log(tmp_path / "events.parquet", months=12)
    out = tmp_path / "p" / "propensity.yaml"
    assert main(["init", "--events", str(events), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rows " in printed and "event types (4)" in printed
    assert f"wrote {out}" in printed
    assert main(["--config", str(out), "check"]) == ExitCode.OK
    report = capsys.readouterr().out
    for target in ("churn", "purchase", "service_request"):
        assert f"\n{target}: 30-day horizon" in report
    assert "train would train churn, purchase, service_request" in report


def test_check_names_the_target_train_cannot_train(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    events = activity_log(tmp_path / "events.parquet", months=12)
    config = write_config(
        tmp_path / "p.yaml",
        events,
        None,
        roles={"service_request": ["no_such_event"]},
        # a `targets:` mapping lists the targets trained: all three here
        targets={
            "churn": {"horizon_days": 60},
            "purchase": {},
            "service_request": {},
        },
        training={"cutoffs": {"start": "2024-02-01", "freq": "MS"}},
    )
    assert main(["--config", str(config), "check"]) == ExitCode.FAILED
    out = capsys.readouterr().out
    assert "service_request's rows hold a single class" in out
    assert "-> cannot train: service_request: the backtest needs 4 origins" in out
    assert "service_request cannot be trained" in out
    # churn's label windows past the data's end are named with their dates
    assert (
        "dropped: churn's 60-day window runs through 2025-01-29, past the data's "
        "end 2024-12-30 (label window incomplete)" in out
    )
