"""Team mode: `propensity train` and `propensity serve` against a shared MLflow
tracking server whose backend store is Postgres and which serves the artifacts.

Each run creates a database of its own on $PROPENSITY_TEST_POSTGRES (default
postgresql://127.0.0.1:5432/postgres, user $PGUSER or postgres) and drops it
afterwards; a real `mlflow server` runs on it on a free port. When Postgres cannot
be reached the tests skip, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import pytest
from mlflow.tracking import MlflowClient

from core.config import load_config
from features.columns import TARGETS
from tests.helpers import (
    BIN,
    POSTGRES_SERVER,
    POSTGRES_USER,
    Project,
    auth,
    free_port,
    postgres_database,
    records,
    run_cli,
    spawn,
    stop,
    wait_ready,
    write_config,
)

pytestmark = pytest.mark.integration

SERVER, USER = POSTGRES_SERVER, POSTGRES_USER
CHAMPION = "champion"


def backend_uri(database: str) -> str:
    """SERVER's address with another database, for SQLAlchemy's psycopg2 driver
    (plain `postgresql://` means psycopg 3 in SQLAlchemy 2.1, which is not installed).
    No credentials: libpq takes the user from PGUSER."""
    parsed = urlparse(SERVER)
    return urlunparse(
        parsed._replace(scheme="postgresql+psycopg2", path=f"/{database}")
    )


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text()[-chars:] if path.exists() else "(no log)"


@dataclass(frozen=True)
class Tracking:
    """A running `mlflow server` on a Postgres database of our own."""

    url: str
    database: str
    artifacts: Path
    log: Path

    def client(self) -> MlflowClient:
        return MlflowClient(self.url, self.url)

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg2

        con = psycopg2.connect(SERVER, user=USER, dbname=self.database)
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """The name of a fresh database, dropped at the end."""
    with postgres_database("propensity_team") as uri:
        yield urlparse(uri).path.lstrip("/")


@pytest.fixture(scope="module")
def tracking(
    database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tracking]:
    """`mlflow server` on the database, artifacts proxied to a local folder."""
    root = tmp_path_factory.mktemp("tracking")
    port, log, artifacts = free_port(), root / "mlflow.log", root / "artifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # no job-runner processes (MLflow's GenAI jobs; unused here): about half the
    # start-up time on 2 cores, and SIGTERM then stops the server cleanly
    env |= {"PGUSER": USER, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = spawn(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri(database)]
        + ["--artifacts-destination", str(artifacts)]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env,
        log,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log, deadline_s=180, path="/health")
        yield Tracking(url, database, artifacts, log)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def team(
    tracking: Tracking, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """The demo data trained through the real CLI into the tracking server."""
    root = tmp_path_factory.mktemp("team")
    events, customers = demo_dir / "events.parquet", demo_dir / "customers.parquet"
    config = write_config(root / "propensity.yaml", events, customers)
    project = Project(root, config, tracking.url, events, customers)
    done = run_cli(["train"], project.env())
    assert done.returncode == 0, (
        f"{done.stderr[-3000:]}\n--- mlflow server log ---\n{tail(tracking.log)}"
    )
    assert f"MLflow: {tracking.url}" in done.stdout
    return project


def champions(project: Project, tracking: Tracking) -> dict[str, str]:
    """target -> version behind `champion` in the server's registry."""
    config, client = load_config(project.config), tracking.client()
    return {
        t: client.get_model_version_by_alias(config.model_name(t), CHAMPION).version
        for t in TARGETS
    }


def test_train_registers_three_champions_on_the_server(
    team: Project, tracking: Tracking
) -> None:
    client = tracking.client()
    names = sorted(m.name for m in client.search_registered_models())
    config = load_config(team.config)
    assert names == sorted(config.model_name(t) for t in TARGETS)
    assert champions(team, tracking) == {t: "1" for t in TARGETS}
    # the experiment uses the server's artifact root, not a path on the client
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'model'")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
    # and their sibling baselines under one training run, all finished
    everything = client.search_runs([experiment.experiment_id])
    assert {r.info.status for r in everything} == {"FINISHED"}
    assert [r.data.tags["kind"] for r in everything].count("training") == 1
    # uploaded through the server into its --artifacts-destination
    assert len(list(tracking.artifacts.rglob("model.lgb"))) == 3


def test_runs_and_models_are_rows_in_postgres(
    team: Project, tracking: Tracking
) -> None:
    config = load_config(team.config)
    [(finished,)] = tracking.query(
        "SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'kind' "
        "WHERE e.name = %s AND r.status = 'FINISHED' AND t.value = 'model'",
        config.mlflow.experiment,
    )
    assert finished == 3
    models = tracking.query("SELECT name FROM registered_models ORDER BY name")
    assert [name for (name,) in models] == sorted(TARGETS)
    aliases = tracking.query(
        "SELECT name, version FROM registered_model_aliases WHERE alias = %s",
        CHAMPION,
    )
    assert {name: str(v) for name, v in aliases} == champions(team, tracking)


def test_serve_predicts_with_the_servers_champions(
    team: Project, tracking: Tracking, tmp_path: Path
) -> None:
    """`propensity serve` with MLFLOW_TRACKING_URI at the server downloads the
    champions through it and answers with their versions."""
    port, log = free_port(), tmp_path / "serve.log"
    process = spawn(
        [str(BIN / "propensity"), "serve", "--port", str(port)], team.env(), log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, process, log, deadline_s=180)
        except (TimeoutError, RuntimeError) as exc:
            pytest.fail(f"{exc}\n--- mlflow server log ---\n{tail(tracking.log)}")
        body, _ = records(team, 3)
        response = httpx.post(
            f"{url}/predict", json={"customers": body}, headers=auth(), timeout=30
        )
        assert response.status_code == 200, response.text
    finally:
        stop(process)
    predictions = response.json()["predictions"]
    assert [p["customer_id"] for p in predictions] == [r["customer_id"] for r in body]
    expected = champions(team, tracking)
    for p in predictions:
        assert set(p["probabilities"]) == set(TARGETS)
        assert all(0 <= v <= 1 for v in p["probabilities"].values())
        assert p["model_versions"] == expected
