"""The adapters and the feature definition on the real datasets in ../shared/data.

Expected counts and dates are the reference figures published in
../shared/data/README.md; everything else is checked against an independent
computation on the adapter output.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features.columns import (
    AMOUNT,
    CHURN,
    CUSTOMER_ID,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
    SERVICE_REQUEST,
)
from features.definition import FeatureSpec, build_features, seen_pairs
from features.labels import LabelSpec, build_labels
from features.sources.adapters import (
    ROLES,
    cdnow,
    online_retail,
    online_retail_customers,
    write_contract,
)
from features.sources.load import load
from tests.helpers import ROOT

pytestmark = [pytest.mark.realdata]

DATA = ROOT.parent / "shared" / "data"
CDNOW_MASTER = DATA / "cdnow" / "CDNOW_master.txt"
CDNOW_SAMPLE = DATA / "cdnow" / "CDNOW_sample.txt"
ONLINE_RETAIL = DATA / "online_retail" / "online_retail.parquet"

CDNOW_AS_OF = datetime(1998, 7, 1)
RETAIL_AS_OF = datetime(2011, 12, 10)
CUTOFF = datetime(1997, 10, 1)
HORIZON_DAYS = 39 * 7  # the 39-week holdout of the CDNOW literature


def require(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(
            f"{path.name} not found at {path}: the real datasets live in ../shared/data"
        )
    return path


def customers(table: pa.Table) -> set[str]:
    return set(pc.unique(table[CUSTOMER_ID]).to_pylist())


@pytest.fixture(scope="module")
def sample() -> pa.Table:
    return cdnow(require(CDNOW_SAMPLE))


@pytest.fixture(scope="module")
def master() -> pa.Table:
    return cdnow(require(CDNOW_MASTER))


@pytest.fixture(scope="module")
def retail() -> pa.Table:
    return online_retail(require(ONLINE_RETAIL))


def test_cdnow_sample_matches_readme(sample: pa.Table) -> None:
    assert sample.num_rows == 6_919
    assert len(customers(sample)) == 2_357
    first, last = pc.min_max(sample[EVENT_TIME]).values()
    assert (first.as_py(), last.as_py()) == (
        datetime(1997, 1, 1),
        datetime(1998, 6, 30),
    )
    assert set(sample[EVENT_TYPE].to_pylist()) == {"purchase"}


def test_cdnow_sample_loads_through_contract(sample: pa.Table, tmp_path: Path) -> None:
    path = write_contract(sample, tmp_path / "cdnow" / "events.parquet")

    data = load(path, as_of=CDNOW_AS_OF)

    assert data.events.count().execute() == sample.num_rows
    assert data.time_range() == (datetime(1997, 1, 1), datetime(1998, 6, 30))


def test_cdnow_sample_ids_are_master_ids(sample: pa.Table, master: pa.Table) -> None:
    assert master.num_rows == 69_659
    assert len(customers(master)) == 23_570
    assert customers(sample) <= customers(master)
    # The sample draws whole customers: their master rows are exactly its rows.
    in_sample = master.filter(
        pc.is_in(master[CUSTOMER_ID], pa.array(customers(sample)))
    )
    order = [(c, "ascending") for c in (CUSTOMER_ID, EVENT_TIME, AMOUNT)]
    assert in_sample.sort_by(order).equals(sample.sort_by(order))


def test_online_retail_events(retail: pa.Table, tmp_path: Path) -> None:
    assert len(customers(retail)) == 4_372
    kinds = pc.value_counts(retail[EVENT_TYPE]).to_pylist()
    counts = {k["values"]: k["counts"] for k in kinds}
    assert set(counts) == {"purchase", "cancellation"}
    assert min(counts.values()) > 0
    cancels = retail.filter(pc.equal(retail[EVENT_TYPE], "cancellation"))
    assert pc.min(cancels[AMOUNT]).as_py() > 0

    people = online_retail_customers(ONLINE_RETAIL)
    assert people.num_rows == 4_372
    assert customers(people) == customers(retail)
    data = load(
        write_contract(retail, tmp_path / "retail" / "events.parquet"),
        write_contract(people, tmp_path / "retail_customers" / "customers.parquet"),
        as_of=RETAIL_AS_OF,
    )
    assert data.events.count().execute() == retail.num_rows
    assert data.customers is not None
    assert data.customers.count().execute() == people.num_rows


def test_cdnow_sample_features_and_labels(sample: pa.Table, tmp_path: Path) -> None:
    data = load(write_contract(sample, tmp_path / "events.parquet"), as_of=CDNOW_AS_OF)
    spec = FeatureSpec(role_of=ROLES["cdnow"].role_of())
    labels_spec = LabelSpec(
        horizons={
            CHURN: HORIZON_DAYS,
            PURCHASE: HORIZON_DAYS,
            SERVICE_REQUEST: HORIZON_DAYS,
        }
    )
    pairs = seen_pairs(data.events, [CUTOFF])

    features = build_features(data.events, pairs, spec).execute()
    labels = build_labels(data.events, pairs, spec, labels_spec).execute()

    times = sample[EVENT_TIME]
    before = sample.filter(pc.less(times, pa.scalar(CUTOFF, times.type)))
    end = pa.scalar(CUTOFF + timedelta(days=HORIZON_DAYS), times.type)
    after = sample.filter(
        pc.and_(
            pc.greater_equal(times, pa.scalar(CUTOFF, times.type)), pc.less(times, end)
        )
    )
    seen = customers(before)
    assert seen  # the cohort bought in early 1997
    assert features[CUSTOMER_ID].is_unique
    assert set(features[CUSTOMER_ID]) == seen
    assert labels[CUSTOMER_ID].is_unique
    assert set(labels[CUSTOMER_ID]) == seen

    assert set(labels[PURCHASE].unique()) <= {0, 1}
    assert 0 < labels[PURCHASE].mean() < 1
    bought = set(labels.loc[labels[PURCHASE] == 1, CUSTOMER_ID])
    assert bought == customers(after) & seen
    assert (
        labels[CHURN] == 1 - labels[PURCHASE]
    ).all()  # purchases are the only events
    assert (labels[SERVICE_REQUEST] == 0).all()  # CDNOW has no service events

    recent = before.filter(
        pc.greater_equal(
            before[EVENT_TIME], pa.scalar(CUTOFF - timedelta(days=90), times.type)
        )
    )
    expected_90d = {
        k["values"]: k["counts"]
        for k in pc.value_counts(recent[CUSTOMER_ID]).to_pylist()
    }
    got_90d = features.set_index(CUSTOMER_ID)["purchase_count_90d"]
    assert got_90d.sum() == recent.num_rows
    assert {k: v for k, v in got_90d.items() if v} == expected_90d


def test_import_command_writes_loadable_contract_files(tmp_path: Path) -> None:
    from cli.main import main

    source = require(DATA / "online_retail" / "online_retail.parquet")
    out = tmp_path / "retail"
    assert main(["import", "online-retail", str(source), "--out", str(out)]) == 0
    ds = load(
        out / "events.parquet", out / "customers.parquet", as_of=datetime(2012, 1, 1)
    )
    assert ds.events.count().to_pyarrow().as_py() == 22_190
    assert ds.customers.count().to_pyarrow().as_py() == 4_372
