"""Helpers the tests share: configs, a project with its environment, the CLI as a
subprocess, real servers, Postgres databases, request headers. Fixtures live in
conftest.py; test modules import from here, never from conftest or each other."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from core.config import LightGBMConfig
from core.names import TARGETS
from features.columns import population_column
from serving.api.servers import (  # noqa: F401 - for the tests
    free_port,
    spawn,
    start_service,
    stop,
    wait_ready,
)
from serving.online_store import StoreMeta
from serving.online_store.sqlite import SqliteStoreWriter
from serving.outreach.contact_log import ContactLog
from training.origin_model import Candidate

ROOT = Path(__file__).resolve().parents[1]


SHARED_DATA = ROOT.parent / "shared" / "data"


BIN = Path(sys.executable).parent


# The API key every test server accepts (Project.env puts it in PROPENSITY_API_KEYS).
TEST_API_KEY = "test-key-6f1c0d9a2b7e4c58"


# The control-group key for outreach (Project.env puts it in PROPENSITY_OUTREACH_KEY).
TEST_OUTREACH_KEY = "outreach-key-3a9e5c1f7b2d4e60"


# The pseudonym key (Project.env puts it in PROPENSITY_PSEUDONYM_KEY): servers of
# the demo config (the Bento packs it) pseudonymise.
TEST_PSEUDONYM_KEY = "pseudonym-key-8e4b2a6c0f1d3957"


def write_config(path: Path, events: Path, customers: Path | None, **overrides) -> Path:
    """A project config for test data: demo roles, monthly cutoffs, fast LightGBM,
    and with customers the fairness report on the demo's region, plan and age."""
    config = {
        "data": {
            "events": str(events),
            "customers": str(customers) if customers else None,
        },
        "roles": {
            "purchase": ["purchase"],
            "service_request": ["support_ticket"],
            "cancel": ["cancel"],
        },
        "training": {
            "cutoffs": {"start": "2025-03-01", "freq": "MS"},
            "lightgbm": {
                "num_boost_round": 120,
                "early_stopping_rounds": 20,
                "num_leaves": 15,
            },
        },
        "scoring": {
            "output": str(path.parent / "scores"),
            # the demo's launch cohort ages: these drift with the calendar
            "drift": {"ignore": ["tenure_days", "days_since_first_purchase"]},
            # 1,500 demo customers leave an ECE noise floor near 0.04 (purchase,
            # rates near one half): the default 0.05 alerts on noise there
            "outcomes": {"max_ece": 0.15},
        },
    }
    if customers:
        # the fairness report of each model run (test_workflow checks it)
        config["fairness"] = {
            "segments": ["region", "plan", "age"],
            "bands": {"age": [18, 30, 45, 60]},
        }
    for key, value in overrides.items():
        config[key] = (
            {**config.get(key, {}), **value} if isinstance(value, dict) else value
        )
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass(frozen=True)
class Project:
    """A trained project in a temp folder: config, tracking URI, data."""

    root: Path
    config: Path
    tracking_uri: str
    events: Path
    customers: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PROPENSITY_CONFIG": str(self.config),
            "PROPENSITY_API_KEYS": TEST_API_KEY,
            "PROPENSITY_OUTREACH_KEY": TEST_OUTREACH_KEY,
            "PROPENSITY_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "BENTOML_HOME": str(self.root / "bentoml_home"),
            "BENTOML_DO_NOT_TRACK": "True",
            "DO_NOT_TRACK": "1",
        }


# The Postgres server the tests create their databases on (trust auth here).
POSTGRES_SERVER = os.environ.get(
    "PROPENSITY_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres"
)


POSTGRES_USER = urlsplit(POSTGRES_SERVER).username or os.environ.get(
    "PGUSER", "postgres"
)


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """The URI of a fresh database on POSTGRES_SERVER, dropped afterwards; the
    test skips, saying why, when the server cannot be reached."""
    import psycopg2

    try:
        admin = psycopg2.connect(POSTGRES_SERVER, user=POSTGRES_USER, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"Postgres is unreachable at {POSTGRES_SERVER}: {exc}")
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(POSTGRES_SERVER)._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def auth(key: str = TEST_API_KEY) -> dict[str, str]:
    """Request headers carrying an API key (the test servers' by default)."""
    return {"Authorization": f"Bearer {key}"}


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "propensity"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path


def start_bentoml(env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen]:
    """`bentoml serve` of the service on a free port (its own BentoML home), output
    to `log`."""
    return start_service("serving.api.service:Propensity", env, log)


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    """`bentoml serve` of the service with `env`, ready, stopped on exit."""
    url, process = start_bentoml(env, log)
    try:
        wait_ready(url, process, log)
        yield Server(url, process, log)
    finally:
        stop(process)


def eligible_features(project: Project, cutoff: datetime):
    """The project's config and the features of customers in some listed target's
    population at `cutoff` (with the population flags `in_<target>`)."""
    from core.config import load_config
    from features.definition import FeatureSpec, features_at
    from features.sources.load import load

    config = load_config(project.config)
    ds = load(config.data.events, config.data.customers)
    spec = FeatureSpec.from_config(config)
    return config, features_at(ds.events, [cutoff], spec, ds.customers).to_pandas()


def records(project: Project, n: int) -> tuple[list[dict], pd.DataFrame]:
    """Feature records, as a marketing system would send them, for n customers."""
    _, frame = eligible_features(project, datetime(2025, 11, 15))
    frame = frame.sort_values("customer_id").head(n).reset_index(drop=True)
    flags = [population_column(t) for t in TARGETS if population_column(t) in frame]
    features = frame.drop(columns=["customer_id", "cutoff", *flags])
    out = []
    for cid, row in zip(frame.customer_id, features.to_dict("records"), strict=True):
        clean = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in row.items()
        }
        clean = {k: (v.item() if hasattr(v, "item") else v) for k, v in clean.items()}
        out.append({"customer_id": cid, "features": clean})
    return out, frame


SCORED_AT = datetime(2025, 12, 1, 2, 30)


def meta(as_of: str = "2025-12-01", features=("recency", "plan")) -> StoreMeta:
    return StoreMeta(
        as_of=as_of,
        feature_set_version="fs1",
        written_at=SCORED_AT.isoformat(),
        run_id="run-1",
        features=tuple(features),
        categorical=frozenset({"plan"}),
        model_versions={t: "3" for t in TARGETS},
    )


def frame(n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency": [float(i) + shift if i % 5 else np.nan for i in range(n)],
            "plan": pd.Series(
                [
                    None if i % 7 == 0 else ("pro" if i % 2 else "basic")
                    for i in range(n)
                ],
                dtype="category",
            ),
        }
    )


NEEDS = {
    "/predict": "score",
    "/predict_by_id": "score",
    "/explain": "score",
    "/outreach": "outreach",
    "/campaign_report": "outreach",
    "/events": "ingest",
    "/metadata": "admin",
    "/forget": "admin",
}


# Tiny data: few rounds and small leaves keep every fit well under a second.
FAST = (
    Candidate("a", LightGBMConfig(num_boost_round=30, min_data_in_leaf=5)),
    Candidate("b", LightGBMConfig(num_boost_round=30, num_leaves=4)),
)


# privacy: a project with every place forget and retention act on
PRIVACY_KEY = b"unit-test-pseudonym-key-0123456789"


def privacy_project(tmp_path: Path, **overrides) -> Path:
    return write_config(
        tmp_path / "propensity.yaml",
        tmp_path / "events.parquet",
        None,
        training={
            "cutoffs": {"start": "2025-01-01"},
            "snapshot_dir": str(tmp_path / "snapshots"),
        },
        online_store={"path": str(tmp_path / "online" / "store.sqlite")},
        outreach={
            "contact_log": str(tmp_path / "contacts.sqlite"),
            **overrides.pop("outreach", {}),
        },
        privacy={"dir": str(tmp_path / "privacy"), **overrides.pop("privacy", {})},
        **overrides,
    )


def score_file(folder: Path, ids: list[str]) -> Path:
    path = folder / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"customer_id": ids, "churn": np.linspace(0, 1, len(ids))}), path
    )
    return path


def online_store_of(path: Path, ids: list[str]) -> None:
    meta = StoreMeta("2025-06-01", "v", "now", None, ("f",), frozenset(), {})
    with SqliteStoreWriter(path, meta) as writer:
        frame = pd.DataFrame({"customer_id": ids, "as_of": "2025-06-01", "f": 1.0})
        scores = {
            t: np.full(len(ids), 0.5) for t in ("churn", "purchase", "service_request")
        }
        writer.append(frame, scores, datetime(2025, 6, 1, tzinfo=UTC))


def confirm_contacts(
    log: ContactLog, campaign: str, ids: list[str], at: datetime
) -> None:
    with log.confirming(campaign, now=at) as c:
        c.record("churn", [(i, "treatment") for i in ids])


def age_path(path: Path, days: float) -> None:
    stamp = time.time() - days * 86_400
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (stamp, stamp))


async def read_body(receive) -> bytes:  # noqa: ANN001
    """The whole body of an ASGI request, for the stand-in apps of middleware tests."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


INGEST_MARK = datetime(2025, 6, 1)


def ingest_project(root: Path, customers: int = 40, seed: int = 3) -> Path:
    """A small project real-time ingest can run on, without training: random
    events before INGEST_MARK, the nightly's feature state at that date and an
    online store of its feature rows (made-up scores, run id `r1`). Returns the
    config path."""
    from core.config import load_config
    from features import state as fs
    from features.definition import FeatureSpec, catalogue
    from features.sources.load import connect, load_project
    from serving.batch.incremental import nightly_key, state_dir

    rng = np.random.default_rng(seed)
    n = customers * 12
    types = np.array(["login", "purchase", "support_ticket", "cancel"])
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{int(i)}" for i in rng.integers(0, customers, n)],
            "event_time": INGEST_MARK
            - pd.to_timedelta(rng.integers(60, 200 * 86400, n), unit="s"),
            "event_type": types[rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])],
            "amount": np.round(rng.uniform(1, 90, n), 2),
        }
    )
    frame["event_time"] = frame["event_time"].astype("datetime64[us]")
    root.mkdir(parents=True, exist_ok=True)
    events = root / "events.parquet"
    frame.to_parquet(events)
    path = write_config(
        root / "propensity.yaml",
        events,
        None,
        online_store={"path": str(root / "online" / "store.sqlite")},
        ingest={"log": str(root / "ingest"), "group_ms": 0},
        data={"events": str(events), "as_of": "2025-06-30T00:00:00"},
    )
    config = load_config(path)
    ds = load_project(config, con=connect(threads=1))
    spec = FeatureSpec.from_config(config)
    state = fs.rebuild(
        state_dir(config.scoring.output),
        ds.con,
        [ds.events],
        INGEST_MARK,
        spec,
        nightly_key(config, ds, spec),
    )
    rows = state.features(ds.con, spec).to_pandas()
    # two made-up attributes (ingest keeps the nightly's): a number, a category
    rows["age"] = rng.integers(18, 80, len(rows)).astype("float64")
    rows["region"] = rng.choice(["north", "south"], len(rows))
    names = [*catalogue(spec).names, "age", "region"]
    meta = StoreMeta(
        as_of=f"{INGEST_MARK:%Y-%m-%d}",
        feature_set_version="test",
        written_at="2025-06-01T01:00:00",
        run_id="r1",
        features=tuple(names),
        categorical=frozenset({"region"}),
        model_versions={t: "1" for t in spec.targets},
    )
    scores = {
        t: np.where(rows[population_column(t)], 0.5, np.nan) for t in spec.targets
    }
    with SqliteStoreWriter(config.online_store.path, meta) as writer:
        writer.append(rows, scores, INGEST_MARK)
    ds.con.disconnect()
    return path
