"""`forget` in the Postgres places: the online store table and the scores sink,
written by their real writers on a database of the test's own."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import load_config
from features.columns import TARGETS
from serving.batch.sink import upsert
from serving.online_store import StoreMeta
from serving.online_store.postgres import PostgresStore, PostgresStoreWriter
from serving.privacy.forget import forget
from tests.helpers import postgres_database, write_config

pytestmark = pytest.mark.integration

IDS = ["A", "B", "C"]


def test_forget_deletes_from_the_postgres_store_and_scores(tmp_path: Path) -> None:
    import psycopg2

    with postgres_database("forget") as uri:
        config = load_config(
            write_config(
                tmp_path / "propensity.yaml",
                tmp_path / "events.parquet",
                None,
                scoring={
                    "output": str(tmp_path / "scores"),
                    "postgres": {"uri": uri, "table": "scores"},
                },
                online_store={"postgres": {"uri": uri, "table": "online"}},
                privacy={"dir": str(tmp_path / "privacy")},
            )
        )
        scores = {t: np.array([0.1, 0.2, 0.3]) for t in TARGETS}
        meta = StoreMeta("2025-06-01", "v", "now", None, ("f",), frozenset(), {})
        with PostgresStoreWriter(config.online_store.postgres, meta) as writer:
            frame = pd.DataFrame({"customer_id": IDS, "as_of": "2025-06-01", "f": 1.0})
            writer.append(frame, scores, datetime(2025, 6, 1, tzinfo=UTC))
        night = tmp_path / "scores" / "as_of=2025-06-01" / "part-0.parquet"
        night.parent.mkdir(parents=True)
        pq.write_table(pa.table({"customer_id": IDS, **scores}), night)
        assert upsert(night, date(2025, 6, 1), config.scoring.postgres) == 3

        erasure = forget(config, ["B"])

        store = PostgresStore(config.online_store.postgres)
        assert store.lookup(IDS).keys() == {"A", "C"}
        con = psycopg2.connect(uri)
        try:
            with con.cursor() as cur:
                cur.execute('SELECT "customer_id" FROM scores ORDER BY 1')
                assert [r[0] for r in cur.fetchall()] == ["A", "C"]
        finally:
            con.close()
        assert pq.read_table(night)["customer_id"].to_pylist() == ["A", "C"]
        places = erasure.removed
        assert {p for p in places if p.startswith(uri)} == {
            f"{uri} online",
            f"{uri} scores",
        }
        entry = json.loads((tmp_path / "privacy" / "erasures.jsonl").read_text())
        assert entry["customer"] == "B" and len(entry["removed"]) == 3
