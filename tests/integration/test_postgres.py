"""A real Postgres source: features and scores from a Postgres table or query
equal those from the same events in Parquet.

Each run loads the demo data into its own schema and drops it afterwards. The
server is $PROPENSITY_TEST_POSTGRES (default postgresql://127.0.0.1:5432/postgres,
user $PGUSER or postgres); when it cannot be reached the tests skip, saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from core.config import DatabaseSource, Source, load_config
from features.columns import CUSTOMER_ID, CUTOFF
from features.definition import FeatureSpec, features_at
from features.sources.contract import ContractError
from features.sources.load import load
from tests.helpers import Project, run_cli, write_config

pytestmark = pytest.mark.integration

SERVER = os.environ.get(
    "PROPENSITY_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres"
)
AS_OF = datetime(2030, 1, 1)
CUTOFFS = [datetime(2024, 7, 1), datetime(2025, 1, 1), datetime(2025, 7, 1)]


@dataclass(frozen=True)
class Schema:
    """A schema of our own on the server, holding the demo events and customers."""

    name: str

    def source(
        self, table: str | None = None, query: str | None = None
    ) -> DatabaseSource:
        table = table and f"{self.name}.{table}"
        return DatabaseSource(uri=SERVER, table=table, query=query)


@pytest.fixture(scope="module")
def pg_env() -> Iterator[dict[str, str]]:
    """PGUSER for libpq (the config holds no credentials), for this process and
    for CLI subprocesses."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGUSER", os.environ.get("PGUSER", "postgres"))
        yield {"PGUSER": os.environ["PGUSER"]}


@pytest.fixture(scope="module")
def schema(pg_env: dict[str, str], demo_dir: Path) -> Iterator[Schema]:
    from adbc_driver_manager import Error
    from adbc_driver_postgresql import dbapi

    try:
        con = dbapi.connect(SERVER)
    except Error as exc:
        pytest.skip(f"Postgres is unreachable at {SERVER}: {exc}")
    name = f"propensity_test_{uuid.uuid4().hex[:12]}"
    try:
        with con.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {name}")
            for table in ("events", "customers"):
                data = pq.read_table(demo_dir / f"{table}.parquet")
                cur.adbc_ingest(table, data, mode="create", db_schema_name=name)
            cur.execute(
                f"CREATE TABLE {name}.bad_events AS SELECT * FROM (VALUES "
                "('c1', '2024-01-01 10:00', 'login'), ('', 'tomorrow', 'login')) "
                "AS t(customer_id, event_time, event_type)"
            )
        con.commit()
        yield Schema(name)
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        con.commit()
        con.close()


def features(events: Source, customers: Source, config: Path) -> pd.DataFrame:
    spec = FeatureSpec.from_config(load_config(config))
    ds = load(events, customers, as_of=AS_OF)
    frame = features_at(ds.events, CUTOFFS, spec, ds.customers).to_pandas()
    return frame.sort_values([CUSTOMER_ID, CUTOFF]).reset_index(drop=True)


@pytest.fixture(scope="module")
def parquet_features(demo_dir: Path, tmp_path_factory) -> pd.DataFrame:
    events, customers = demo_dir / "events.parquet", demo_dir / "customers.parquet"
    config = write_config(tmp_path_factory.mktemp("pq") / "p.yaml", events, customers)
    return features(events, customers, config)


def test_features_from_a_postgres_table_equal_parquet(
    schema: Schema, parquet_features: pd.DataFrame, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "p.yaml", tmp_path, None)
    got = features(schema.source("events"), schema.source("customers"), config)
    assert len(got) > 1000
    pd.testing.assert_frame_equal(got, parquet_features)


def test_features_from_a_postgres_query_equal_parquet(
    schema: Schema, parquet_features: pd.DataFrame, tmp_path: Path
) -> None:
    # timestamptz and numeric columns arrive as other Arrow types (UTC instants,
    # decimal text): the loader normalises them to the contract's types
    query = (
        "SELECT customer_id, event_time AT TIME ZONE 'UTC' AS event_time, "
        f"event_type, amount::numeric(12, 2) AS amount, quantity FROM {schema.name}"
        ".events ORDER BY customer_id, event_time"
    )
    config = write_config(tmp_path / "p.yaml", tmp_path, None)
    got = features(schema.source(query=query), schema.source("customers"), config)
    pd.testing.assert_frame_equal(got, parquet_features)


def test_a_postgres_problem_names_the_table_column_and_row(schema: Schema) -> None:
    with pytest.raises(ContractError) as info:
        load(schema.source("bad_events"), as_of=AS_OF)
    message = str(info.value)
    where = f"{SERVER}, table {schema.name}.bad_events"
    assert f"{where}, column 'customer_id', rows 2:" in message
    assert f"{where}, column 'event_time', rows 2:" in message


def test_a_missing_postgres_table_is_named(schema: Schema) -> None:
    with pytest.raises(ContractError, match=rf"table {schema.name}\.nope: cannot be"):
        load(schema.source("nope"), as_of=AS_OF)


def test_cli_scores_from_postgres_equal_scores_from_parquet(
    schema: Schema, pg_env: dict[str, str], trained: Project, tmp_path: Path
) -> None:
    """`propensity score` with the events and customers in Postgres (the config
    names them, PGUSER comes from the environment) scores like the Parquet run."""
    runs = {}
    for kind in ("parquet", "postgres"):
        (tmp_path / kind).mkdir()
        config = write_config(
            tmp_path / kind / "p.yaml", trained.events, trained.customers
        )
        if kind == "postgres":
            data = yaml.safe_load(config.read_text())
            data["data"] = {
                name: {"uri": SERVER, "table": f"{schema.name}.{name}"}
                for name in ("events", "customers")
            }
            config.write_text(yaml.safe_dump(data))
        done = run_cli(
            ["--config", str(config), "score", "--as-of", "2025-12-01"],
            {**trained.env(), **pg_env},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[kind] = (
            pd.read_parquet(tmp_path / kind / "scores")
            .drop(columns=["scored_at", "run_id"])
            .sort_values(CUSTOMER_ID)
            .reset_index(drop=True)
        )
    assert len(runs["postgres"]) > 100
    pd.testing.assert_frame_equal(runs["postgres"], runs["parquet"])
