"""`campaigns list` and `campaigns report` in-process: the list, the three
formats, an HTML page written to a file, an unknown campaign refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cli.main import main
from serving.outreach.contact_log import ContactLog
from tests.helpers import write_config


def project(tmp_path: Path) -> Path:
    pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "event_time": pd.to_datetime(["2025-06-02"] * 4),
            "event_type": ["purchase", "login", "purchase", "login"],
            "amount": [5.0, None, 7.0, None],
        }
    ).to_parquet(tmp_path / "events.parquet")
    config = write_config(
        tmp_path / "p.yaml",
        tmp_path / "events.parquet",
        None,
        outreach={"contact_log": str(tmp_path / "contacts.sqlite")},
        data={"events": str(tmp_path / "events.parquet"), "as_of": "2025-06-10"},
    )
    with ContactLog(tmp_path / "contacts.sqlite").confirming(
        "june", datetime(2025, 6, 1, tzinfo=UTC)
    ) as tx:
        rows = [("a", "treatment", 0.9), ("b", "treatment", 0.2)]
        tx.record("purchase", rows + [("c", "control", 0.8), ("d", "control", 0.1)])
    return config


def test_list_and_report_in_every_format(tmp_path: Path, capsys) -> None:
    config = str(project(tmp_path))
    assert main(["--config", config, "campaigns", "list"]) == 0
    listed = capsys.readouterr().out
    assert "june" in listed and "purchase" in listed
    assert "21 day(s) to go" in listed  # at data.as_of
    base = ["--config", config, "campaigns", "report", "june", "--no-mlflow"]
    assert main([*base, "--format", "json"]) == 0
    captured = capsys.readouterr()
    found = json.loads(captured.out)
    # data.as_of 2025-06-10: 21 of the 30 days remain
    assert not found["mature"] and found["days_remaining"] == 21
    assert "IMMATURE: 21 day(s)" in captured.err
    assert found["groups"]["treatment"]["revenue"] == 5.0
    assert main(base) == 0
    assert "IMMATURE" in capsys.readouterr().out
    page = tmp_path / "out" / "june.html"
    assert main([*base, "--format", "html", "--out", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.count("<svg") == 4
    assert "immature" in text


def test_an_unknown_campaign_exits_1_naming_it(tmp_path: Path, capsys) -> None:
    config = str(project(tmp_path))
    assert main(["--config", config, "campaigns", "report", "july"]) == 1
    err = capsys.readouterr().err
    assert "'july'" in err and "june" in err
