"""Label settings and the bootstrap interval on a real MLflow sqlite store: what
the gate reads from the champion's run, what it records, what `runs compare`
shows. Runs are logged directly (no training), so the tests stay fast."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from core.config import PromotionConfig
from model.registry import CHAMPION, configure
from training.promote import (
    decide,
    history,
    load_predictions,
    log_predictions,
    record,
)
from training.runs import compare

POLICY = PromotionConfig(bootstrap_samples=200)
EXPERIMENT = "propensity"


def rows(customers: int, seed: int, skill: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = customers * 2
    y = (np.random.default_rng(0).random(n) < 0.3).astype(np.int8)
    p = np.clip(0.3 + skill * (y - 0.3) + rng.normal(0, 0.1, n), 0.01, 0.99)
    return pd.DataFrame(
        {
            "customer_id": np.tile(np.arange(customers), 2).astype(str),
            "origin": np.repeat(["2025-01-01", "2025-02-01"], customers),
            "label": y,
            "p": p,
        }
    )


def evidence(frame: pd.DataFrame) -> list[dict]:
    from sklearn.metrics import log_loss, roc_auc_score

    return [
        {
            "origin": o,
            "n": len(g),
            "positives": int(g["label"].sum()),
            "log_loss": log_loss(g["label"], g["p"]),
            "roc_auc": roc_auc_score(g["label"], g["p"]),
        }
        for o, g in frame.groupby("origin")
    ]


def log_model_run(
    client: MlflowClient,
    params: dict[str, str],
    predictions: pd.DataFrame | None,
    name: str = "churn",
) -> tuple[str, str]:
    """A model run as training logs it (params, backtest.json, predictions), and
    a registered version of it; returns (run id, version)."""
    with mlflow.start_run(tags={"kind": "model", "target": "churn"}) as run:
        mlflow.log_params({"target": "churn", **params})
        frame = predictions if predictions is not None else rows(50, 0, 0.3)
        mlflow.log_dict(
            {"origins": [{**e, "model": "lightgbm"} for e in evidence(frame)]},
            "backtest.json",
        )
        if predictions is not None:
            log_predictions(predictions)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(name, run.info.artifact_uri, run.info.run_id)
    client.set_tag(run.info.run_id, "registered_model", name)
    client.set_tag(run.info.run_id, "registered_version", str(mv.version))
    return run.info.run_id, str(mv.version)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> MlflowClient:
    """One store for the module (creating one takes seconds); each test registers
    its own model name."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    mlflow.set_experiment(experiment_id=configure(uri, EXPERIMENT))
    return MlflowClient(uri, uri)


def test_the_gate_compares_only_alike_labels_read_from_the_champions_run(
    tmp_path: Path, client: MlflowClient
) -> None:
    champion = rows(300, 1, 0.3)
    run_id, version = log_model_run(
        client,
        {
            "horizon_days": "30",
            "label.definition": "contract",
            "label.horizon_days": "30",
        },
        champion,
    )
    mine = {"label.definition": "cancel", "label.horizon_days": "30"}
    better = rows(300, 2, 0.6)
    d = decide(
        client,
        POLICY,
        "churn",
        (evidence(better), mine, better),
        (evidence(champion), version, run_id),
    )
    assert not d.promote
    assert "churn.definition: contract (champion) vs cancel (challenger)" in d.reason
    alike = {**mine, "label.definition": "contract"}
    d = decide(
        client,
        POLICY,
        "churn",
        (evidence(better), alike, better),
        (evidence(champion), version, run_id),
    )
    assert d.promote and d.interval is not None and d.interval.log_loss_gain.low > 0


def test_an_older_champion_compares_horizon_days_and_means_only(
    tmp_path: Path, client: MlflowClient
) -> None:
    old = rows(300, 1, 0.3)
    run_id, version = log_model_run(client, {"horizon_days": "30"}, None, "legacy")
    assert load_predictions(client, run_id) is None
    better = rows(300, 2, 0.6)
    mine = {"label.definition": "cancel", "label.horizon_days": "30"}
    d = decide(
        client,
        POLICY,
        "churn",
        (evidence(better), mine, better),
        (evidence(old), version, run_id),
    )
    assert d.promote and d.method == "means"
    assert "logs no label settings" in d.reason and "only horizon_days" in d.reason
    assert "champion's run has no out-of-time predictions" in d.reason
    longer = {**mine, "label.horizon_days": "60"}
    d = decide(
        client,
        POLICY,
        "churn",
        (evidence(better), longer, better),
        (evidence(old), version, run_id),
    )
    assert not d.promote
    assert "churn.horizon_days: 30 (champion) vs 60 (challenger)" in d.reason


def test_the_record_and_runs_compare_hold_the_interval_and_labels(
    tmp_path: Path, client: MlflowClient
) -> None:
    settings = {"horizon_days": "30", "label.horizon_days": "30"}
    first = rows(300, 1, 0.3)
    run_a, v1 = log_model_run(
        client, {**settings, "label.definition": "contract"}, first, "rec"
    )
    record(
        client,
        EXPERIMENT,
        "rec",
        v1,
        decide(client, POLICY, "churn", (evidence(first), {}, first), None),
    )
    better = rows(300, 2, 0.6)
    labels = {k: v for k, v in settings.items() if k.startswith("label.")}
    labels["label.definition"] = "contract"
    _, v2 = log_model_run(
        client, {**settings, "label.definition": "contract"}, better, "rec"
    )
    decision = decide(
        client,
        POLICY,
        "churn",
        (evidence(better), labels, better),
        (evidence(first), v1, run_a),
    )
    assert decision.promote
    record(client, EXPERIMENT, "rec", v2, decision)
    assert str(client.get_model_version_by_alias("rec", CHAMPION).version) == v2
    tags = client.get_model_version("rec", v2).tags
    assert tags["promotion.method"] == "paired_bootstrap"
    assert float(tags["promotion.log_loss_gain_low"]) == pytest.approx(
        decision.interval.log_loss_gain.low
    )
    assert float(tags["promotion.auc_loss_high"]) == pytest.approx(
        decision.interval.auc_loss.high
    )
    assert tags["promotion.bootstrap_samples"] == "200"
    # the promotions log: the move to v2 with the interval among its figures
    moves = history(client, EXPERIMENT, "rec")
    assert [m["to_version"] for m in moves] == [v1, v2]
    figures = moves[-1]["figures"]
    assert figures["log_loss_gain_low"] == pytest.approx(
        decision.interval.log_loss_gain.low
    )
    assert figures["bootstrap_confidence"] == 0.95
    assert "95% interval [" in moves[-1]["reason"]

    text = compare(client, "rec/1", "models:/rec/2").text()
    assert "label.definition" in text and "contract" in text
    assert setting(text, "label.horizon_days") == ["30", "30"]
    lines = text.splitlines()
    [line] = [line for line in lines if line.strip().startswith("B = rec v2")]
    low = decision.interval.log_loss_gain.low
    assert f"[{low:+.6f}, " in line and "paired bootstrap, 200 resamples" in line
    assert "A = rec v1 vs champion v-: promoted (no champion)" in text


def setting(text: str, key: str) -> list[str]:
    """The label settings row of `key` in `runs compare`'s text, split."""
    [line] = [line for line in text.splitlines() if line.startswith(f"  {key} ")]
    return line.split()[1:]


def test_runs_compare_marks_differing_and_unlogged_label_settings(
    tmp_path: Path, client: MlflowClient
) -> None:
    log_model_run(client, {"horizon_days": "30"}, None, "cmp")
    log_model_run(
        client,
        {"horizon_days": "60", "label.horizon_days": "60", "label.population": "seen"},
        rows(20, 1, 0.3),
        "cmp",
    )
    text = compare(client, "cmp/1", "cmp/2").text()
    assert setting(text, "label.horizon_days") == ["30", "60", "<-", "differ"]
    assert setting(text, "label.population") == [
        "(not",
        "logged)",
        "seen",
        "<-",
        "differ",
    ]
