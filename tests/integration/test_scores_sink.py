"""The Postgres sink against the real server: upserted by (customer_id, as_of),
a rerun replaces the date's rows, a failing sink exits 4 with the scores written.

Each run creates a database of its own on $PROPENSITY_TEST_POSTGRES (default
postgresql://127.0.0.1:5432/postgres, user $PGUSER or postgres) and drops it
afterwards; the tests skip, saying why, when the server cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.exitcodes import ExitCode
from features.columns import TARGETS
from tests.helpers import (
    POSTGRES_USER,
    Project,
    postgres_database,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.integration

TABLE = "nightly_scores"
USER = POSTGRES_USER


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """The URI of a fresh database, dropped at the end."""
    with postgres_database("propensity_sink") as uri:
        yield uri


def sink_project(trained: Project, tmp_path: Path, uri: str, table: str):
    config = write_config(
        tmp_path / "propensity.yaml",
        trained.events,
        trained.customers,
        scoring={
            "output": str(tmp_path / "scores"),
            "postgres": {"uri": uri, "table": table},
        },
    )
    env = {**trained.env(), "PROPENSITY_CONFIG": str(config)}
    env["PGUSER"] = USER  # libpq in the CLI reads it; the config holds none
    return tmp_path / "scores", env


def rows(uri: str, sql: str) -> pd.DataFrame:
    import psycopg2

    with psycopg2.connect(uri, user=USER) as con, con.cursor() as cur:
        cur.execute(sql)
        names = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


def test_scores_are_upserted_by_customer_and_date(
    trained: Project, tmp_path: Path, database: str
) -> None:
    output, env = sink_project(trained, tmp_path, database, TABLE)
    for day in ("2025-11-01", "2025-12-01", "2025-12-01"):  # the rerun upserts
        done = run_cli(["score", "--as-of", day], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "rows upserted" in done.stdout
    table = rows(database, f"SELECT * FROM {TABLE}")
    assert not table.duplicated(["customer_id", "as_of"]).any()
    for day in ("2025-11-01", "2025-12-01"):
        parquet = pd.read_parquet(output / f"as_of={day}").sort_values("customer_id")
        db = (
            table[table.as_of.astype(str) == day]
            .sort_values("customer_id")
            .reset_index(drop=True)
        )
        assert db.customer_id.tolist() == parquet.customer_id.tolist()
        for target in TARGETS:
            # null where the target's population does not hold the customer
            np.testing.assert_allclose(
                db[target].to_numpy(float), parquet[target].to_numpy(float), rtol=1e-9
            )
            decile = f"{target}_decile"
            assert db[decile].fillna(0).astype(int).tolist() == (
                parquet[decile].fillna(0).astype(int).tolist()
            )
        # the rerun's rows replaced the first run's: one run id per date
        assert db.run_id.unique().tolist() == parquet.run_id.unique().tolist()
        top = parquet[parquet.churn_decile == 1].iloc[0]
        stored = db[db.customer_id == top.customer_id].iloc[0].churn_reasons
        assert stored == json.loads(top.churn_reasons)  # jsonb comes back parsed
    typed = rows(
        database,
        f"SELECT churn_reasons->0->>'phrase' AS phrase FROM {TABLE} "
        "WHERE churn_decile = 1 LIMIT 1",
    )
    assert typed.phrase[0]


def test_a_failing_sink_exits_4_with_the_scores_written(
    trained: Project, tmp_path: Path, database: str
) -> None:
    output, env = sink_project(trained, tmp_path, database, "no_such_schema.scores")
    done = run_cli(["score", "--as-of", "2025-12-01"], env)
    assert done.returncode == ExitCode.SINK_FAILED, done.stderr[-2000:]
    assert "Postgres sink failed" in done.stderr and "no_such_schema" in done.stderr
    assert len(pd.read_parquet(output / "as_of=2025-12-01")) > 0
