"""Spark parity: the one feature definition on Spark (local mode) gives DuckDB's
features, training sets and scores.

One Spark session for the module; small seeded demo data. Skipped, saying why,
when Java is missing (Spark runs on the JVM).
"""

from __future__ import annotations

import json
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
    from features.sources.spark import session

    s = session(master="local[2]", conf=TEST_CONF)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.synthetic.demo import generate

    out = tmp_path_factory.mktemp("spark-demo")
    generate(out, customers=300, seed=11)
    return out


@pytest.fixture(scope="module")
def loaded(spark, small: Path):
    from features.sources.load import load
    from features.sources.spark import load_spark

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
        },
        # the populations' expression on Spark too: a lookback for purchase
        lookback_days={"purchase": 60},
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


def _champions_and_rows(trained):
    """The trained project's champions and its eligible feature rows at the
    default as-of date, built in process (DuckDB)."""
    from core.config import load_config
    from features.definition import ELIGIBLE, FeatureSpec, build_features
    from features.sources.load import load
    from model.registry import configure
    from serving.batch.score import default_as_of
    from serving.scoring import Champions

    config = load_config(trained.config)
    configure(trained.tracking_uri)
    champions = Champions.load(config, trained.tracking_uri)
    duck = load(config.data.events, config.data.customers)
    spec = FeatureSpec.from_config(config)
    table = build_features(
        duck.events, [default_as_of(duck)], spec, duck.customers
    ).to_pyarrow()
    return champions, table.filter(table[ELIGIBLE])


def _assert_scores_equal_in_process(got: pd.DataFrame, frame: pd.DataFrame, champions):
    """Spark's raw and calibrated scores in `got` equal, bit for bit and row for
    row, the served raw probabilities and `predict_frame`'s scores of `frame`."""
    from serving.batch.spark import raw_column, score_column

    expected = champions.predict_frame(frame)
    for target, model in champions.models.items():
        raw = model.raw(model.encoding.to_matrix(frame))
        np.testing.assert_array_equal(got[raw_column(target)].to_numpy(), raw)
        np.testing.assert_array_equal(
            got[score_column(target)].to_numpy(), expected[target]
        )
        assert np.isfinite(expected[target]).all()


def _reasons(text: str | None) -> list[tuple] | None:
    """Reason codes with each feature value to 1e-9: a sum of amounts may differ
    in its last bits when the engines add in another order."""
    if text is None:
        return None
    return [
        (
            r["feature"],
            pytest.approx(r["value"], abs=1e-9),
            r["contribution"],
            r["phrase"],
        )
        for r in json.loads(text)
    ]


def test_features_equal_duckdb(loaded, tmp_path: Path) -> None:
    from features.definition import build_features

    duck, spark = loaded
    spec = _spec()
    expected = build_features(duck.events, CUTOFFS, spec, duck.customers).to_pandas()
    got = spark.to_pyarrow(
        build_features(spark.events, CUTOFFS, spec, spark.customers)
    ).to_pandas()
    assert_same_frames(expected, got)
    # the scoring path's: the whole rows by each task with DuckDB (the
    # default), or the sums (Spark SQL) and cancel days materialised first
    for sums in (None, "duckdb", "spark"):
        staged = spark.to_pyarrow(
            spark.build_features(
                CUTOFFS, spec, tmp_path / f"stages-{sums}", spark.customers, sums=sums
            )
        ).to_pandas()
        assert_same_frames(expected, staged)
        # the task path is one Spark job: no stage written to the scratch
        assert (tmp_path / f"stages-{sums}").exists() == (sums == "spark")
    # the boundary the parity traps would move: an event in the last second
    assert (expected["days_since_last_event"] == 0).any()
    # each population differs from the others somewhere
    flags = expected[["in_churn", "in_purchase", "in_service_request"]]
    assert (flags.in_purchase != flags.in_service_request).any()
    assert (flags.in_churn != flags.in_purchase).any()


def test_time_range_and_rows_match(loaded) -> None:
    duck, spark = loaded
    assert spark.time_range() == duck.time_range()
    assert spark.rows() == duck.rows()


def test_database_source_is_refused_naming_the_key(spark) -> None:
    from core.config import DatabaseSource
    from features.sources.contract import ContractError
    from features.sources.spark import load_spark

    source = DatabaseSource(uri="duckdb:x.duckdb", table="events")
    with pytest.raises(ContractError, match="data.events.*DuckDB engine only"):
        load_spark(spark, source)


def test_training_table_equals_duckdb(loaded, tmp_path: Path) -> None:
    from features.labels import LabelSpec
    from training.dataset import build_training_table

    duck, spark = loaded
    spec = _spec()
    labels = LabelSpec({"churn": 30, "purchase": 30, "service_request": 14})
    expected = build_training_table(duck, spec, labels, CUTOFFS)
    out = tmp_path / "training"
    got = build_training_table(spark, spec, labels, CUTOFFS, parquet_dir=out)
    assert sorted(out.glob("*.parquet")), "Spark wrote no Parquet part"
    assert got.cutoffs == expected.cutoffs == CUTOFFS
    assert_same_frames(expected.frame, got.frame)


def test_nightly_scores_equal_embedded(spark, trained, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from core.config import load_config
    from features.sources.load import load
    from features.sources.spark import load_spark
    from model.registry import configure
    from serving.batch.nightly import run_nightly
    from serving.batch.score import default_as_of, output_schema
    from serving.scoring import Champions

    base = load_config(trained.config)
    configure(trained.tracking_uri)
    champions = Champions.load(base, trained.tracking_uri)
    duck = load(base.data.events, base.data.customers)
    sds = load_spark(spark, base.data.events, base.data.customers, validated=duck)
    as_of = default_as_of(duck)
    results = {}
    for name, ds in (("embedded", duck), ("spark", sds)):
        config = base.model_copy(
            update={
                "scoring": base.scoring.model_copy(
                    update={"output": tmp_path / name / "scores"}
                ),
                "online_store": base.online_store.model_copy(
                    update={"path": tmp_path / name / "store.sqlite"}
                ),
            }
        )
        # the nightly run picks the engine by the dataset's kind
        run = run_nightly(config, ds, champions, as_of, trained.tracking_uri)
        assert (run.drift_dir / "drift.json").is_file()
        results[name] = run.score
    embedded, on_spark = results["embedded"], results["spark"]
    assert on_spark.path.name == embedded.path.name == f"as_of={as_of:%Y-%m-%d}"
    assert on_spark.skipped == embedded.skipped
    a = pq.read_table(embedded.path / "part-0.parquet")
    b = pq.read_table(on_spark.path / "part-0.parquet")
    assert b.schema == a.schema == output_schema()
    a, b = (t.drop(["scored_at", "run_id"]).sort_by(CUSTOMER_ID) for t in (a, b))
    assert a.num_rows == b.num_rows > 100
    for column in a.column_names:
        x, y = a[column].to_pylist(), b[column].to_pylist()
        if a.schema.field(column).type == "double":
            # null: outside the target's population, on both engines alike
            x, y = ([np.nan if v is None else v for v in z] for z in (x, y))
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-9, err_msg=column)
        elif column.endswith("_reasons"):
            assert [_reasons(r) for r in y] == [_reasons(r) for r in x], column
        else:
            first = next(((p, q) for p, q in zip(x, y, strict=True) if p != q), None)
            assert first is None, f"{column}: embedded {first[0]!r}, Spark {first[1]!r}"
    # drift counted on Spark: the same bins as the embedded pass counted
    for target, per_feature in embedded.drift.features.items():
        for feature, counts in per_feature.items():
            other = on_spark.drift.features[target][feature]
            assert list(other.bins) == list(counts.bins), (target, feature)
            assert (other.below, other.above) == (counts.below, counts.above)
        assert list(on_spark.drift.scores[target].bins) == list(
            embedded.drift.scores[target].bins
        )


def test_mapped_sources_equal_duckdb(spark, small: Path, tmp_path: Path) -> None:
    """Two exports in their own column names (purchases as CSV without an event
    type, the rest as Parquet) read on Spark give DuckDB's features."""
    from core.config import ColumnsConfig, EventSource
    from features.definition import build_features
    from features.sources.load import load
    from features.sources.spark import load_spark

    frame = pd.read_parquet(small / "events.parquet")
    buys = frame[frame.event_type == "purchase"].drop(columns=["event_type"])
    purchases = tmp_path / "purchases.csv"
    buys.rename(columns={"event_time": "day", "amount": "sales"}).to_csv(
        purchases, index=False
    )
    other = tmp_path / "activity.parquet"
    frame[frame.event_type != "purchase"].rename(
        columns={"event_time": "ts"}
    ).to_parquet(other)
    people = tmp_path / "households.parquet"
    pd.read_parquet(small / "customers.parquet").rename(
        columns={CUSTOMER_ID: "household_key"}
    ).to_parquet(people)
    columns = ColumnsConfig(
        events={CUSTOMER_ID: "household_id"},
        customers={CUSTOMER_ID: "household_key"},
    )
    sources = [
        EventSource(
            path=purchases,
            event_type="purchase",
            columns={
                CUSTOMER_ID: "customer_id",
                "event_time": "day",
                "amount": "sales",
            },
        ),
        EventSource(
            path=other, columns={CUSTOMER_ID: "customer_id", "event_time": "ts"}
        ),
    ]
    duck = load(sources, people, columns=columns)
    sds = load_spark(spark, sources, people, validated=duck, columns=columns)
    spec = _spec()
    expected = build_features(duck.events, CUTOFFS, spec, duck.customers).to_pandas()
    got = sds.to_pyarrow(
        build_features(sds.events, CUTOFFS, spec, sds.customers)
    ).to_pandas()
    assert_same_frames(expected, got)
    assert sds.rows() == len(frame)


def _both_engines(spark, frame: pd.DataFrame, events: Path):  # noqa: ANN001, ANN202
    """`frame` written to `events` and loaded on Spark (validated by DuckDB's
    loader); the spec, and DuckDB's features at `CUTOFFS` to compare with."""
    from features.definition import build_features
    from features.sources.load import load
    from features.sources.spark import load_spark

    frame.to_parquet(events)
    duck = load(events)
    sds = load_spark(spark, events, validated=duck)
    spec = _spec()
    return sds, spec, build_features(duck.events, CUTOFFS, spec).to_pandas()


def test_padded_ids_and_types_equal_duckdb(spark, small: Path, tmp_path: Path) -> None:
    """Ids and event types with spaces around them are trimmed as DuckDB trims
    them (spaces only): a space-padded id is its customer, a tab-padded one
    another customer on both engines."""
    frame = pd.read_parquet(small / "events.parquet")
    ids = sorted(frame[CUSTOMER_ID].unique())
    spaced, tabbed = frame[CUSTOMER_ID] == ids[0], frame[CUSTOMER_ID] == ids[1]
    frame.loc[spaced, CUSTOMER_ID] = "  " + frame.loc[spaced, CUSTOMER_ID] + " "
    frame.loc[tabbed, CUSTOMER_ID] = "\t" + frame.loc[tabbed, CUSTOMER_ID]
    frame["event_type"] = " " + frame["event_type"] + "  "
    sds, spec, expected = _both_engines(spark, frame, tmp_path / "padded.parquet")
    got = sds.to_pyarrow(
        sds.build_features(CUTOFFS, spec, tmp_path / "stages")
    ).to_pandas()
    assert_same_frames(expected, got)
    customers = set(got[CUSTOMER_ID])
    assert ids[0] in customers and "\t" + ids[1] in customers
    # the types were recognised: purchases counted
    assert got["purchase_count_total"].sum() > 0


def test_features_by_task_across_partitions_equal_duckdb(
    spark, small: Path, tmp_path: Path
) -> None:
    """The features computed by each Spark task with DuckDB on its partition: with
    the customers spread over many partitions (adaptive coalescing off), most
    of them empty, and a customer with a single event, the features equal
    DuckDB's over all the events at once."""
    from features.sources.spark import PartitionFeatures

    frame = pd.read_parquet(small / "events.parquet")
    one = frame.iloc[[0]].copy()
    one[CUSTOMER_ID] = "only-one-event"
    one["event_time"] = pd.Timestamp("2025-05-20 13:14:15")
    frame = pd.concat([frame, one], ignore_index=True)
    sds, spec, expected = _both_engines(spark, frame, tmp_path / "events.parquet")
    # events per task such that there are twice as many partitions as
    # customers: at least half of them empty
    per_task = len(frame) // (2 * frame[CUSTOMER_ID].nunique())
    partitions = -(-len(frame) // per_task)
    assert sds.events_estimate() == len(frame)
    clustered = sds.dataframe(sds.by_customer(sds.events, partitions))
    used = clustered.selectExpr("spark_partition_id() AS p").distinct().count()
    assert 1 < used < partitions  # customers split, and empty partitions
    spark.conf.set("propensity.features.task_events", str(per_task))
    try:
        got = sds.to_pyarrow(
            sds.build_features(CUTOFFS, spec, tmp_path / "stages", sums="duckdb")
        ).to_pandas()
    finally:
        spark.conf.unset("propensity.features.task_events")
    assert_same_frames(expected, got)
    single = got[got[CUSTOMER_ID] == "only-one-event"]
    assert len(single) == 2  # the June and September cutoffs
    days = single.sort_values(CUTOFF)["days_since_last_event"].tolist()
    assert 0 < days[0] < days[1]
    # a task with no events yields no rows (and no error)
    assert list(PartitionFeatures(CUTOFFS, spec)(iter([]))) == []


def test_sums_engine_is_checked(loaded, tmp_path: Path) -> None:
    from core.config import ConfigError

    _, spark = loaded
    with pytest.raises(ConfigError, match="propensity.features.sums"):
        spark.build_features(CUTOFFS, _spec(), tmp_path / "stages", sums="pandas")


def test_spark_scores_equal_in_process(spark, trained, tmp_path: Path) -> None:
    """with_scores (one pandas UDF, the champions broadcast and loaded once per
    worker) gives Champions.predict_frame's calibrated scores and the served raw
    probabilities, row for row."""
    import pyarrow.parquet as pq

    from serving.batch.spark import with_scores

    champions, table = _champions_and_rows(trained)
    pq.write_table(table, tmp_path / "rows.parquet")
    frame = table.to_pandas()
    got = (
        with_scores(spark.read.parquet(str(tmp_path / "rows.parquet")), champions)
        .toPandas()
        .set_index(CUSTOMER_ID)
        .loc[frame[CUSTOMER_ID]]
    )
    assert len(got) == len(frame) > 100
    _assert_scores_equal_in_process(got, frame, champions)


def test_score_files_equal_in_process(spark, trained, tmp_path: Path) -> None:
    """score_files (Spark tasks reading the feature parts' row groups
    themselves) writes, per part and row for row, Champions.predict_frame's
    calibrated scores and the served raw probabilities; a part of several row
    groups and an empty part keep their rows' order and count."""
    import pyarrow.parquet as pq

    from serving.batch.spark import score_files

    champions, table = _champions_and_rows(trained)
    half = table.num_rows // 2
    parts = [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"]
    # the first part in row groups of 37 rows (several units, one task each at most)
    pq.write_table(table.slice(0, half), parts[0], row_group_size=37)
    pq.write_table(table.slice(0, 0), parts[1])
    pq.write_table(table.slice(half), parts[2])
    assert pq.ParquetFile(parts[0]).metadata.num_row_groups > 2
    scores = score_files(spark, parts, champions, tmp_path / "scores")
    assert len(scores) == len(parts)
    got = pd.concat([pq.read_table(s).to_pandas() for s in scores], ignore_index=True)
    frame = table.to_pandas()
    assert len(got) == len(frame) > 100
    assert pq.read_table(scores[1]).num_rows == 0
    _assert_scores_equal_in_process(got, frame, champions)
