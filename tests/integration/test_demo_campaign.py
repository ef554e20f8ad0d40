"""The demo campaign read out through the CLI on the session's demo data: its 95%
intervals cover the true effect the generator knows; read out too early it is
immature and says how long to wait; a contact log that lost part of its control
group is flagged as a sample-ratio mismatch. In-process (no model needed: a
readout reads the data and the contact log only)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cli.data import write_demo_contacts
from cli.main import main
from features.synthetic.campaign import CAMPAIGN_ID, HORIZON_DAYS, confirmed_at
from tests.helpers import write_config

pytestmark = [pytest.mark.integration]


def project(tmp_path: Path, demo_dir: Path, lost: set[str] = frozenset()) -> Path:
    """A config over the session's demo data with the demo campaign's contact
    log (ids as they are: the test config does not pseudonymise), less the
    rows of `lost` (a lossy export)."""
    log = tmp_path / "contacts.sqlite"
    write_demo_contacts(demo_dir / "campaign_truth.parquet", log, list)
    with sqlite3.connect(log) as conn:
        conn.executemany(
            "DELETE FROM contacts WHERE customer = ?", [(i,) for i in sorted(lost)]
        )
    return write_config(
        tmp_path / "propensity.yaml",
        demo_dir / "events.parquet",
        demo_dir / "customers.parquet",
        outreach={"contact_log": str(log)},
    )


def report(config: Path, capsys, *options: str) -> tuple[dict, str]:
    args = ["--config", str(config), "campaigns", "report", CAMPAIGN_ID]
    assert main([*args, "--format", "json", "--no-mlflow", *options]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_the_demo_readout_covers_the_true_effect(
    tmp_path: Path, demo_dir: Path, capsys
) -> None:
    truth_path = demo_dir / "campaign_truth.parquet"
    truth = pq.read_table(truth_path).to_pandas()
    config = project(tmp_path, demo_dir)
    found, _ = report(config, capsys, "--truth", str(truth_path))
    groups = found["groups"]
    assert (
        groups["treatment"]["customers"] == (truth.contact_group == "treatment").sum()
    )
    assert groups["control"]["customers"] == (truth.contact_group == "control").sum()
    # the readout counts exactly the outcomes the generator wrote for each group
    written = truth.outcome_treated.where(
        truth.contact_group == "treatment", truth.outcome_untreated
    )
    assert (
        groups["treatment"]["outcomes"] + groups["control"]["outcomes"] == written.sum()
    )
    assert found["mature"] and not found["sample_ratio"]["mismatch"]
    known = found["truth"]
    assert known["outcome_effect"] == pytest.approx(truth.outcome_effect.mean())
    lift = found["lift"]["outcome"]["absolute"]
    assert lift["low"] <= known["outcome_effect"] <= lift["high"]
    assert known["outcome_covered"] and known["revenue_covered"]


def test_an_early_demo_readout_is_immature(
    tmp_path: Path, demo_dir: Path, capsys
) -> None:
    config = project(tmp_path, demo_dir)
    start = confirmed_at(pq.read_table(demo_dir / "campaign_truth.parquet"))
    early = (start + timedelta(days=10)).strftime("%Y-%m-%d")
    found, err = report(config, capsys, "--as-of", early)
    assert not found["mature"]
    assert found["days_remaining"] == HORIZON_DAYS - 10
    assert f"IMMATURE: {HORIZON_DAYS - 10} day(s)" in err


def test_a_demo_log_missing_control_rows_is_a_sample_ratio_mismatch(
    tmp_path: Path, demo_dir: Path, capsys
) -> None:
    truth = pq.read_table(demo_dir / "campaign_truth.parquet").to_pandas()
    control = set(truth.customer_id[truth.contact_group == "control"])
    lost = set(sorted(control)[: len(control) // 2])  # half the control lost
    config = project(tmp_path, demo_dir, lost)
    found, err = report(config, capsys)
    srm = found["sample_ratio"]
    assert srm["mismatch"] and srm["p_value"] < 1e-3
    assert srm["observed_control_share"] < 0.4
    assert "sample-ratio mismatch" in err
    assert any("SAMPLE-RATIO MISMATCH" in n for n in found["notes"])
