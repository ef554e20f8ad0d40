"""The nightly feature step from the incremental state: advanced when it can be,
rebuilt (saying why) when it cannot, and always equal to `build_features`."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks.harness import compare_features
from core.config import load_config
from features.definition import FeatureSpec, build_features
from features.sources.load import load_project
from serving.batch.incremental import (
    INCREMENTAL,
    REBUILT,
    feature_parts,
    state_dir,
)
from serving.privacy.forget import forget
from tests.helpers import write_config

START = datetime(2025, 1, 1)
TYPES = ("login", "purchase", "support_ticket", "cancel", "view")


def events(rng: np.random.Generator, n: int, start: datetime, days: int):
    seconds = rng.integers(0, days * 86400, n)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:02d}" for i in rng.integers(0, 25, n)],
            "event_time": [start + timedelta(seconds=int(s)) for s in seconds],
            "event_type": rng.choice(TYPES, n),
            "amount": np.where(rng.random(n) < 0.5, rng.integers(1, 400, n) / 4, None),
        }
    ).astype({"amount": "float64"})


@pytest.fixture
def project(tmp_path: Path):
    rng = np.random.default_rng(7)
    log = events(rng, 600, START, 60)
    path = tmp_path / "events.parquet"
    log.to_parquet(path)
    config = load_config(
        write_config(
            tmp_path / "propensity.yaml",
            path,
            None,
            privacy={"dir": str(tmp_path / "privacy")},
            online_store={"path": str(tmp_path / "online.sqlite")},
            outreach={"contact_log": str(tmp_path / "contacts.sqlite")},
        )
    )
    return config, path, log, rng


def night(config, as_of: datetime, scratch: Path, full: bool = False):
    """One feature step, checked against `build_features` on the same data."""
    ds = load_project(config)
    try:
        parts, info = feature_parts(config, ds, as_of, scratch, full=full)
        got = pq.ParquetDataset(parts).read()
        spec = FeatureSpec.from_config(config)
        want = build_features(ds.events, [as_of], spec, ds.customers).to_pyarrow()
        compare_features(got, want)
        return info
    finally:
        ds.con.disconnect()


def test_nights_advance_the_state_and_rebuild_it_when_they_must(
    project, tmp_path: Path
) -> None:
    config, path, log, rng = project
    d1 = START + timedelta(days=60)
    first = night(config, d1, tmp_path / "n1")
    assert (first["mode"], first["reason"]) == (REBUILT, "no feature state yet")
    assert (state_dir(config.scoring.output) / "state.json").is_file()

    new = events(rng, 40, d1, 1)  # one new day
    log = pd.concat([log, new])
    log.to_parquet(path)
    second = night(config, d1 + timedelta(days=1), tmp_path / "n2")
    assert second["mode"] == INCREMENTAL and second["events_read"] == 40
    assert second["watermark"] == f"{d1:%Y-%m-%d}"

    # a late event appended to the files: noticed, rebuilt
    late = events(rng, 1, START + timedelta(days=10), 1)
    log = pd.concat([log, late])
    log.to_parquet(path)
    third = night(config, d1 + timedelta(days=3), tmp_path / "n3")
    assert third["mode"] == REBUILT and "changed in the files" in third["reason"]

    fourth = night(config, d1 + timedelta(days=3), tmp_path / "n4", full=True)
    assert fourth["mode"] == REBUILT and "--full" in fourth["reason"]

    # forget reaches the state: the customer's rows are gone, and the next
    # night goes on incrementally, equal to a full rebuild without them
    forget(config, ["c03"])
    tiles = pq.read_table(
        [p for p in state_dir(config.scoring.output).glob("tiles-*.parquet")][0]
    )
    assert "c03" not in set(tiles["_cid"].to_pylist())
    fifth = night(config, d1 + timedelta(days=4), tmp_path / "n5")
    assert fifth["mode"] == INCREMENTAL


def test_a_changed_feature_setting_rebuilds(project, tmp_path: Path) -> None:
    config, *_ = project
    d1 = START + timedelta(days=60)
    night(config, d1, tmp_path / "n1")
    features = config.features.model_copy(update={"windows_days": [7, 14]})
    changed = config.model_copy(update={"features": features})
    info = night(changed, d1 + timedelta(days=1), tmp_path / "n2")
    assert info["mode"] == REBUILT and "feature" in info["reason"]


def test_another_pseudonym_key_rebuilds(project, tmp_path: Path, monkeypatch) -> None:
    """The state holds pseudonyms: under another key (same config file, the key
    comes from the environment) its rows are other customers', so it rebuilds."""
    config, *_ = project
    on = config.model_copy(
        update={"privacy": config.privacy.model_copy(update={"pseudonymise": True})}
    )
    env = on.privacy.key_env
    d1 = START + timedelta(days=60)
    monkeypatch.setenv(env, "k" * 32)
    night(on, d1, tmp_path / "n1")
    assert night(on, d1 + timedelta(days=1), tmp_path / "n2")["mode"] == INCREMENTAL
    monkeypatch.setenv(env, "j" * 32)
    info = night(on, d1 + timedelta(days=2), tmp_path / "n3")
    assert info["mode"] == REBUILT and "pseudonyms changed" in info["reason"]
