"""`campaigns list` and `campaigns report` in-process: the list, the three
formats, an HTML page written to a file, an unknown campaign refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

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


def test_demo_data_logs_its_campaign_as_the_config_stores_ids(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """`demo-data` writes the demo campaign's contact log with the ids the
    config's views hold (pseudonyms here), so its readout finds every customer;
    `--truth` puts the known effect beside the lift."""
    import pyarrow.parquet as pq

    from features.sources.privacy import Pseudonymiser
    from tests.helpers import TEST_PSEUDONYM_KEY

    monkeypatch.setenv("PROPENSITY_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    data = tmp_path / "demo"
    config = write_config(
        tmp_path / "p.yaml",
        data / "events.parquet",
        data / "customers.parquet",
        outreach={"contact_log": str(data / "contacts.sqlite")},
        privacy={"pseudonymise": True, "dir": str(tmp_path / "privacy")},
    )
    args = ["--config", str(config), "demo-data", "--customers", "400"]
    assert main([*args, "--days", "200", "--seed", "3", "--out", str(data)]) == 0
    assert "demo-retention" in capsys.readouterr().out
    truth = pq.read_table(data / "campaign_truth.parquet").to_pandas()
    logged = ContactLog(data / "contacts.sqlite").contacts()
    key = Pseudonymiser(TEST_PSEUDONYM_KEY.encode())
    assert sorted((c.customer, c.group) for c in logged) == sorted(
        zip(key.many(truth.customer_id), truth.contact_group, strict=True)
    )
    report = ["--config", str(config), "campaigns", "report", "demo-retention"]
    truth_file = str(data / "campaign_truth.parquet")
    assert (
        main([*report, "--truth", truth_file, "--format", "json", "--no-mlflow"]) == 0
    )
    found = json.loads(capsys.readouterr().out)
    n = (
        found["groups"]["treatment"]["customers"]
        + found["groups"]["control"]["customers"]
    )
    assert n == len(truth) == found["truth"]["customers"]
    assert found["truth"]["outcome_effect"] == pytest.approx(
        truth.outcome_effect.mean()
    )
    assert main([*report, "--truth", truth_file, "--no-mlflow"]) == 0
    assert "true effect (known" in capsys.readouterr().out
