"""A campaign readout on a literal event table: the outcome window's edges, the
label definition, revenue, deciles, maturity and the sample-ratio flag."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import ibis
import pandas as pd
import pytest

from core.config import load_config
from features.sources.load import load
from serving.outreach.contact_log import ContactLog
from serving.outreach.readout import (
    ReadoutError,
    readout,
    selected_table,
    with_deciles,
)
from tests.helpers import write_config

CONFIRMED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
AFTER = datetime(2025, 8, 1)


def project(tmp_path: Path, events: list[tuple], **outreach) -> tuple:
    frame = pd.DataFrame(
        events, columns=["customer_id", "event_time", "event_type", "amount"]
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"])
    frame.to_parquet(tmp_path / "events.parquet")
    path = write_config(
        tmp_path / "propensity.yaml",
        tmp_path / "events.parquet",
        None,
        outreach={"contact_log": str(tmp_path / "contacts.sqlite"), **outreach},
        targets={"purchase": {"horizon_days": 30}, "churn": {"horizon_days": 30}},
    )
    config = load_config(path)
    ds = load(tmp_path / "events.parquet", as_of=datetime(2030, 1, 1))
    return config, ds, ContactLog(config.outreach.contact_log)


EVENTS = [
    # treatment: t1 and t2 buy inside the window; t3 exactly at its end (outside)
    ("t1", "2025-06-02 00:00:00", "purchase", 10.0),
    ("t2", "2025-07-01 11:59:59", "purchase", 5.0),
    ("t3", "2025-07-01 12:00:00", "purchase", 99.0),
    ("t4", "2025-06-05 00:00:00", "login", None),
    # control: c1 buys a second before confirmation (outside), c2 inside
    ("c1", "2025-06-01 11:59:59", "purchase", 50.0),
    ("c2", "2025-06-10 00:00:00", "purchase", 20.0),
    ("c3", "2025-06-10 00:00:00", "login", None),
    ("x9", "2025-06-10 00:00:00", "purchase", 1000.0),  # not in the campaign
]
ROWS = [
    ("t1", "treatment", 0.9),
    ("t2", "treatment", 0.8),
    ("t3", "treatment", 0.3),
    ("t4", "treatment", 0.2),
    ("c1", "control", 0.85),
    ("c2", "control", 0.7),
    ("c3", "control", 0.25),
    ("c4", "control", 0.1),
]


def confirm(log: ContactLog, campaign: str, target: str, share: float = 0.5) -> None:
    with log.confirming(campaign, CONFIRMED) as tx:
        tx.record(target, ROWS, control_share=share, contact_cost=2.0)


def test_purchase_readout_counts_the_window_and_its_revenue(tmp_path: Path) -> None:
    config, ds, log = project(tmp_path, EVENTS)
    confirm(log, "summer", "purchase")
    found = readout(config, ds, "summer", as_of=AFTER)
    t, c = found["groups"]["treatment"], found["groups"]["control"]
    assert (t["customers"], t["outcomes"], t["revenue"]) == (4, 2, 15.0)
    assert (c["customers"], c["outcomes"], c["revenue"]) == (4, 1, 20.0)
    assert t["rate"]["value"] == 0.5 and c["rate"]["value"] == 0.25
    lift = found["lift"]["outcome"]
    assert lift["absolute"]["value"] == pytest.approx(0.25)
    assert lift["absolute"]["low"] < 0.25 < lift["absolute"]["high"]
    assert lift["relative"]["value"] == pytest.approx(1.0)
    assert found["lift"]["revenue"]["absolute"]["value"] == pytest.approx(-1.25)
    assert found["incremental"]["outcomes"]["value"] == pytest.approx(1.0)
    assert found["incremental"]["revenue"]["value"] == pytest.approx(-5.0)
    assert found["cost"] == {"contact_cost": 2.0, "treated": 4, "total": 8.0}
    assert found["roi"] == pytest.approx((-5.0 - 8.0) / 8.0)
    assert found["mature"] and found["days_remaining"] == 0
    assert not found["sample_ratio"]["mismatch"]
    # deciles of the score over both groups: t1 (0.9) first, c4 (0.1) last
    assert [d["decile"] for d in found["deciles"]] == [1, 2, 3, 4, 6, 7, 8, 9]
    top = found["deciles"][0]
    assert (top["treatment_customers"], top["control_customers"]) == (1, 0)
    assert top["mean_score"] == pytest.approx(0.9)


def test_churn_readout_uses_the_targets_label(tmp_path: Path) -> None:
    config, ds, log = project(tmp_path, EVENTS)
    confirm(log, "winback", "churn")
    found = readout(config, ds, "winback", as_of=AFTER)
    # inactivity: no event in the window -> churned (t3's event is at its end)
    assert found["groups"]["treatment"]["outcomes"] == 1  # t3
    assert found["groups"]["control"]["outcomes"] == 2  # c1, c4
    assert any("retained" in n for n in found["notes"])


def test_an_outcome_by_event_type_and_a_shorter_horizon(tmp_path: Path) -> None:
    config, ds, log = project(tmp_path, EVENTS)
    confirm(log, "visits", "purchase")
    found = readout(
        config, ds, "visits", event_types=["login"], horizon_days=7, as_of=AFTER
    )
    assert found["groups"]["treatment"]["outcomes"] == 1  # t4 on day 4
    assert found["groups"]["control"]["outcomes"] == 0  # c3 on day 9: outside
    assert found["groups"]["treatment"]["revenue"] == 10.0  # t1 only
    assert found["outcome"]["event_types"] == ["login"]


def test_an_early_readout_is_immature_and_says_how_long_to_wait(
    tmp_path: Path,
) -> None:
    config, ds, log = project(tmp_path, EVENTS)
    confirm(log, "summer", "purchase")
    found = readout(config, ds, "summer", as_of=datetime(2025, 6, 11, 12, 0))
    assert not found["mature"] and found["days_remaining"] == 20
    found = readout(config, ds, "summer", as_of=datetime(2025, 7, 1, 12, 0))
    assert found["mature"] and found["days_remaining"] == 0


def test_a_skewed_split_is_flagged(tmp_path: Path) -> None:
    config, ds, log = project(tmp_path, EVENTS)
    rows = [(f"t{i}", "treatment", None) for i in range(900)] + [
        (f"c{i}", "control", None) for i in range(300)
    ]
    with log.confirming("skewed", CONFIRMED) as tx:
        tx.record("purchase", rows, control_share=0.1)
    found = readout(config, ds, "skewed", as_of=AFTER)
    assert found["sample_ratio"]["mismatch"]
    assert found["sample_ratio"]["observed_control_share"] == pytest.approx(0.25)
    assert any(n.startswith("SAMPLE-RATIO MISMATCH") for n in found["notes"])
    assert found["deciles"] == []


def test_an_old_log_falls_back_to_the_config_and_unknown_ids_are_refused(
    tmp_path: Path,
) -> None:
    config, ds, log = project(tmp_path, EVENTS, control_share=0.5, contact_cost=0.0)
    with log.confirming("legacy", CONFIRMED) as tx:
        tx.record("purchase", [(c, g) for c, g, _ in ROWS])
    found = readout(config, ds, "legacy", as_of=AFTER)
    assert found["control_share"] == 0.5 and found["roi"] is None
    assert any("outreach.control_share" in n for n in found["notes"])
    with pytest.raises(ReadoutError, match="'nope'.*legacy"):
        readout(config, ds, "nope")


def test_deciles_split_ties_by_id_and_leave_unscored_out() -> None:
    rows = [("b", "treatment", 0.5), ("a", "control", 0.5), ("z", "control", None)]
    found = with_deciles(ibis.memtable(selected_table(rows))).to_pyarrow()
    ids, deciles = found["customer_id"].to_pylist(), found["decile"].to_pylist()
    deciles = dict(zip(ids, deciles, strict=True))
    # two scored customers: the first tenth and the sixth (1 + 10 * 1 // 2)
    assert deciles == {"a": 1, "b": 6, "z": None}
