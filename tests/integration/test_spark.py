"""Spark parity: the one feature definition on Spark (local mode) gives DuckDB's
features, training sets and scores.

One Spark session for the module; small seeded demo data. Skipped, saying why,
when Java is missing (Spark runs on the JVM).
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.columns import CUSTOMER_ID, CUTOFF

pytestmark = [pytest.mark.integration, pytest.mark.spark]

CUTOFFS = [datetime(2025, 3, 1), datetime(2025, 6, 1), datetime(2025, 9, 1)]
TEST_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "1g",
}


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        pytest.skip("Java is not on PATH: Spark needs a JVM (Java 17)")
    from features.spark import session

    s = session(master="local[2]", conf=TEST_CONF)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo import generate

    out = tmp_path_factory.mktemp("spark-demo")
    generate(out, customers=300, seed=11)
    return out


@pytest.fixture(scope="module")
def loaded(spark, small: Path):
    from features.load import load
    from features.spark import load_spark

    events, customers = small / "events.parquet", small / "customers.parquet"
    duck = load(events, customers)
    return duck, load_spark(spark, events, customers, validated=duck)


def _spec():
    from features.definition import FeatureSpec

    return FeatureSpec(
        role_of={
            "purchase": "purchase",
            "support_ticket": "service_request",
            "cancel": "cancel",
        }
    )


def assert_same_frames(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same rows and columns; integers and text exactly, floats to 1e-9."""
    keys = [CUSTOMER_ID, CUTOFF]
    assert list(spark.columns) == list(duck.columns)
    duck = duck.sort_values(keys).reset_index(drop=True)
    spark = spark.sort_values(keys).reset_index(drop=True)
    assert len(spark) == len(duck) > 0
    for col in duck.columns:
        a, b = duck[col], spark[col]
        assert list(a.isna()) == list(b.isna()), f"{col}: nulls differ"
        a, b = a[a.notna()], b[b.notna()]
        if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(
                b.astype(float), a.astype(float), rtol=0, atol=1e-9, err_msg=col
            )
        else:
            assert [str(v) for v in a] == [str(v) for v in b], col


def test_features_equal_duckdb(loaded) -> None:
    from features.definition import build_features

    duck, spark = loaded
    spec = _spec()
    expected = build_features(duck.events, CUTOFFS, spec, duck.customers).to_pandas()
    got = spark.to_pyarrow(
        build_features(spark.events, CUTOFFS, spec, spark.customers)
    ).to_pandas()
    assert_same_frames(expected, got)
    # the boundary the parity traps would move: an event in the last second
    assert (expected["days_since_last_event"] == 0).any()


def test_time_range_and_rows_match(loaded) -> None:
    duck, spark = loaded
    assert spark.time_range() == duck.time_range()
    assert spark.rows() == duck.rows()


def test_database_source_is_refused_naming_the_key(spark) -> None:
    from features.config import DatabaseSource
    from features.contract import ContractError
    from features.spark import load_spark

    source = DatabaseSource(uri="duckdb:x.duckdb", table="events")
    with pytest.raises(ContractError, match="data.events.*DuckDB engine only"):
        load_spark(spark, source)
