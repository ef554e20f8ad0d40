"""The online store as a Postgres table (online_store.postgres), on the real
server: the same rows as the SQLite file, swapped whole, read live by the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import psycopg2
import pytest

from core.config import OnlineTable
from features.columns import TARGETS
from serving.online_store import StoreError
from serving.online_store.postgres import (
    PostgresStore,
    PostgresStoreWriter,
    stored_meta,
)
from tests.helpers import (
    POSTGRES_USER,
    SCORED_AT,
    Project,
    auth,
    frame,
    meta,
    postgres_database,
    run_cli,
    start_bentoml,
    stop,
    wait_ready,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database(monkeypatch_module) -> Iterator[str]:
    with postgres_database("propensity_online") as uri:
        yield uri


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    # libpq in this process reads PGUSER; the config holds no credentials
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGUSER", POSTGRES_USER)
        yield mp


def write(target: OnlineTable, data: pd.DataFrame, as_of: str) -> None:
    scores = {t: [0.5] * len(data) for t in TARGETS}
    with PostgresStoreWriter(target, meta(as_of)) as writer:
        writer.append(data, scores, SCORED_AT)


def test_rows_read_back_as_written_and_a_swap_is_seen_live(database: str) -> None:
    target = OnlineTable(uri=database, table="online")
    store = PostgresStore(target, required=["recency"])
    with pytest.raises(StoreError, match="no online store in table online"):
        store.lookup(["c1"])
    write(target, frame(50), "2025-12-01")
    found = store.lookup(["c1", "c5", "c14", "nobody"])
    assert set(found) == {"c1", "c5", "c14"}
    assert found["c1"].record == {"recency": 1.0, "plan": "pro"}
    assert found["c5"].record == {"recency": None, "plan": "pro"}  # NaN -> NULL
    assert found["c14"].record["plan"] is None and found["c1"].as_of == "2025-12-01"
    # a new night: the same reader (its connection open) sees the new table
    write(target, frame(50, shift=100.0), "2025-12-02")
    after = store.lookup(["c1"])
    assert after["c1"].record["recency"] == 101.0 and after["c1"].as_of == "2025-12-02"
    assert store.meta().as_of == "2025-12-02" and stored_meta(target).run_id == "run-1"
    with pytest.raises(StoreError, match="lacks 1 feature.*'tenure'"):
        PostgresStore(target, required=["tenure"]).lookup(["c1"])


def test_a_meta_read_the_server_breaks_off_is_a_store_error(database: str) -> None:
    # the API reads the meta beside each lookup: a connection the server drops
    # or cancels mid-query must be the 503's StoreError, never a 500
    target = OnlineTable(uri=database, table="online_meta")
    write(target, frame(3), "2025-12-01")
    slow = OnlineTable(
        uri=f"{database}?options=-c%20statement_timeout%3D200", table="online_meta"
    )
    with psycopg2.connect(database) as con, con.cursor() as cur:
        cur.execute('LOCK TABLE "online_meta__meta" IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(StoreError, match="connection lost reading its meta"):
            PostgresStore(slow).meta()
    assert PostgresStore(target).meta().as_of == "2025-12-01"


def test_a_failed_build_leaves_the_table_and_a_stale_one_is_dropped(
    database: str,
) -> None:
    target = OnlineTable(uri=database, table="public.online_fail")
    write(target, frame(10), "2025-12-01")
    with (
        pytest.raises(KeyError),
        PostgresStoreWriter(target, meta("2025-12-09")) as writer,
    ):
        writer.append(frame(10), {}, SCORED_AT)  # no scores: fails mid-build
    assert stored_meta(target).as_of == "2025-12-01"
    assert len(PostgresStore(target).lookup([f"c{i}" for i in range(10)])) == 10
    # a killed run leaves online_fail__new behind: the next run drops it first
    with psycopg2.connect(database) as con, con.cursor() as cur:
        cur.execute("CREATE TABLE online_fail__new (x int)")
    write(target, frame(3), "2025-12-03")
    with psycopg2.connect(database) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM online_fail")
        assert cur.fetchone() == (3,)
        cur.execute("SELECT to_regclass('online_fail__new')")
        assert cur.fetchone() == (None,)


def test_nightly_job_writes_the_table_the_api_reads(
    trained: Project, tmp_path: Path, database: str
) -> None:
    """predict_by_id served from the Postgres table equals the nightly output."""
    config = write_config(
        tmp_path / "propensity.yaml",
        trained.events,
        trained.customers,
        scoring={"output": str(tmp_path / "scores")},
        online_store={"postgres": {"uri": database, "table": "online_e2e"}},
    )
    env = {**trained.env(), "PROPENSITY_CONFIG": str(config), "PGUSER": POSTGRES_USER}
    done = run_cli(["score", "--as-of", "2025-12-01"], env)
    assert done.returncode in (0, 3), done.stderr[-2000:]  # 3: a drift alert
    assert not (tmp_path / "online").exists()  # the table, not the file
    nightly = pd.read_parquet(tmp_path / "scores" / "as_of=2025-12-01")
    ids = nightly.customer_id.head(50).tolist() + ["no-such-id"]
    log = tmp_path / "serve.log"
    url, process = start_bentoml(env, log)
    try:
        wait_ready(url, process, log)
        r = httpx.post(
            f"{url}/predict_by_id",
            json={"customer_ids": ids},
            headers=auth(),
            timeout=30,
        )
    finally:
        stop(process)
    assert r.status_code == 200, r.text
    data = r.json()
    assert (data["found"], data["not_found"]) == (50, 1)
    expected = nightly.set_index("customer_id")
    for p in data["predictions"][:-1]:
        assert p["as_of"] == "2025-12-01"
        for target in TARGETS:
            nightly_score = expected.loc[p["customer_id"], target]
            if pd.isna(nightly_score):  # outside the target's population: NULL
                assert target in p["not_in_population"]
                assert target not in p["probabilities"]
            else:
                assert p["probabilities"][target] == nightly_score
