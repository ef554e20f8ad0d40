"""The label settings a model run logs and how two runs' settings compare."""

from __future__ import annotations

from pathlib import Path

from core.config import load_config
from tests.helpers import write_config
from training.label_settings import compared, differences, label_params


def config(tmp_path: Path, **targets):
    extra = {"targets": targets} if targets else {}
    if targets.get("churn", {}).get("definition") == "contract":
        extra["data"] = {"subscriptions": str(tmp_path / "subscriptions.parquet")}
    path = write_config(tmp_path / "p.yaml", tmp_path / "events.parquet", None, **extra)
    return load_config(path)


def test_label_params_come_from_the_targets_config_section(tmp_path: Path) -> None:
    plain = config(tmp_path)
    assert label_params(plain, "churn") == {
        "label.definition": "inactivity_or_cancel",
        "label.horizon_days": "30",
        "label.population": "active_not_churned",
    }
    # purchase's population: every customer seen (features.definition)
    assert label_params(plain, "purchase") == {
        "label.horizon_days": "30",
        "label.population": "seen",
    }
    contract = config(
        tmp_path,
        churn={"definition": "contract", "grace_days": 14, "horizon_days": 60},
    )
    # the grace period applies to contract churn only
    assert label_params(contract, "churn")["label.grace_days"] == "14"
    assert label_params(contract, "churn")["label.horizon_days"] == "60"
    # a lookback narrows purchase's population: both are logged
    lookback = config(tmp_path, purchase={"lookback_days": 90})
    assert label_params(lookback, "purchase") == {
        "label.horizon_days": "30",
        "label.lookback_days": "90",
        "label.population": "seen_within_90d",
    }


def test_differences_name_the_target_setting_and_both_values() -> None:
    champion = {"label.definition": "contract", "label.horizon_days": "30"}
    challenger = {"label.definition": "cancel", "label.horizon_days": "30"}
    assert differences("churn", challenger, {"target": "churn", **champion}) == (
        ["churn.definition: contract (champion) vs cancel (challenger)"],
        None,
    )
    assert differences("churn", champion, champion) == ([], None)
    extra = {**champion, "label.lookback_days": "90"}
    assert differences("churn", extra, champion)[0] == [
        "churn.lookback_days: (unset) (champion) vs 90 (challenger)"
    ]


def test_an_older_champion_is_compared_on_horizon_days_only() -> None:
    old = {"target": "churn", "horizon_days": "30"}
    mine = {"label.definition": "cancel", "label.horizon_days": "30"}
    differ, note = differences("churn", mine, old)
    assert differ == [] and "only horizon_days compared" in note
    differ, _ = differences("churn", {**mine, "label.horizon_days": "60"}, old)
    assert differ == ["churn.horizon_days: 30 (champion) vs 60 (challenger)"]


def test_an_older_run_is_compared_on_its_horizon_days() -> None:
    assert compared({"target": "churn", "horizon_days": "30"}) == {
        "label.horizon_days": "30"
    }
    new = {"horizon_days": "30", "label.horizon_days": "30", "label.population": "x"}
    assert compared(new) == {"label.horizon_days": "30", "label.population": "x"}
