"""Real-time ingest in process (serving.ingest): a batch refreshes exactly its
customers' rows over the nightly store, equal to the full definition over every
event; bad events are refused naming row and field; replays count once; the
nightly reads the sealed log once; forget erases the ingested events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import ibis
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import load_config
from features.columns import CUSTOMER_ID, CUTOFF
from features.definition import FeatureSpec, build_features, catalogue
from features.sources.contract import ContractError
from features.sources.load import connect, load_project
from serving.batch.incremental import INCREMENTAL, feature_parts
from serving.ingest import batch
from serving.ingest.live import Ingester
from serving.ingest.log import EventLog, seal_for_nightly, sealed_parts
from serving.online_store import open_reader
from serving.online_store.live import LiveRows, live_path
from serving.privacy.forget import forget
from tests.helpers import INGEST_MARK, ingest_project


@pytest.fixture
def project(tmp_path: Path):
    return load_config(ingest_project(tmp_path / "p"))


def rows_of(config, ids):
    meta = open_reader(config.online_store).meta()
    return LiveRows(live_path(config.online_store.path)).lookup(meta, ids)


def expected(config, extra: list[dict], ids: list[str]) -> pd.DataFrame:
    """build_features over the files' events and `extra` at each customer's
    midnight after their newest event."""
    con = connect(threads=1)
    ds = load_project(config, con=con)
    files = ds.events.to_pandas()
    new = pd.DataFrame(extra)
    stamps = pd.to_datetime(new["event_time"], format="ISO8601", utc=True)
    new["event_time"] = stamps.dt.tz_localize(None).astype("datetime64[us]")
    for col in ("amount", "quantity"):
        new[col] = pd.to_numeric(new.get(col), errors="coerce").astype("float64")
    every = pd.concat([files, new[files.columns]], ignore_index=True)
    newest = new.groupby("customer_id")["event_time"].max()
    cut = (newest.dt.floor("D") + timedelta(days=1)).clip(lower=INGEST_MARK)
    pairs = pd.DataFrame({CUSTOMER_ID: cut.index, CUTOFF: cut.to_numpy()})
    spec = FeatureSpec.from_config(config)
    out = build_features(ibis.memtable(every), ibis.memtable(pairs), spec).to_pandas()
    con.disconnect()
    return out.set_index(CUSTOMER_ID).loc[ids]


def test_a_batch_refreshes_its_customers_as_a_full_rebuild_would(project):
    events = [
        {
            "customer_id": "c1",
            "event_time": "2025-06-01 10:00:00",
            "event_type": "support_ticket",
        },
        {
            "customer_id": "c1",
            "event_time": "2025-06-01T11:30:00Z",
            "event_type": "purchase",
            "amount": "12.5",
        },
        {
            "customer_id": "c2",
            "event_time": "2025-05-20 08:00:00",
            "event_type": "login",
        },  # late
        {
            "customer_id": "new",
            "event_time": "2025-06-02 09:00:00",
            "event_type": "purchase",
            "amount": 3,
            "event_id": "x1",
        },
    ]
    ingester = Ingester(project)
    out = ingester.ingest(events, "POST /events")
    assert (out.accepted, out.customers, out.duplicates) == (4, 3, 0)
    assert out.as_of == "2025-06-02T09:00:00"
    got = rows_of(project, ["c1", "c2", "new", "c3"])
    assert set(got) == {"c1", "c2", "new"}  # c3 untouched: the nightly row
    assert got["c1"].as_of == "2025-06-01T11:30:00"
    want = expected(project, events, ["c1", "c2", "new"])
    names = catalogue(FeatureSpec.from_config(project)).names
    for cid in ("c1", "c2", "new"):
        for name in names:
            a, b = got[cid].record[name], want.loc[cid, name]
            assert (a is None and pd.isna(b)) or a == pytest.approx(b, rel=1e-9), (
                cid,
                name,
            )
    # a replay (same ids) changes nothing; the log holds each event once
    again = ingester.ingest(events[3:], "POST /events")
    assert (again.accepted, again.duplicates) == (0, 1)
    assert EventLog(project.ingest.log).count() == 4
    # c1 again: the attributes (age, region) and nightly scores kept since
    # its first refresh are the nightly row's
    more = {
        "customer_id": "c1",
        "event_time": "2025-06-01 12:00:00",
        "event_type": "login",
        "event_id": "more-1",
    }
    assert ingester.ingest([more], "POST /events").accepted == 1
    nightly = open_reader(project.online_store).lookup(["c1"])["c1"]
    live = rows_of(project, ["c1"])["c1"]
    assert live.as_of == "2025-06-01T12:00:00"
    others = [n for n in nightly.record if n not in names]
    assert others == ["age", "region"] and nightly.scores
    assert {n: live.record[n] for n in others} == {n: nightly.record[n] for n in others}
    assert dict(live.scores) == dict(nightly.scores)


def test_bad_events_are_refused_naming_row_and_field(project):
    ingester = Ingester(project)
    bad = [
        {"customer_id": "c1", "event_time": "2025-06-01 10:00", "event_type": "login"},
        {"customer_id": "c1", "event_time": "yesterday", "event_type": "login"},
        {
            "customer_id": "",
            "event_time": "2025-06-01 10:00",
            "event_type": "login",
            "amount": "ten",
        },
    ]
    with pytest.raises(ContractError) as caught:
        ingester.ingest(bad, "POST /events")
    text = str(caught.value)
    assert "POST /events, column 'event_time', rows 2:" in text
    assert "column 'customer_id', rows 3" in text and "column 'amount', rows 3" in text
    assert EventLog(project.ingest.log).count() == 0  # nothing applied
    with pytest.raises(batch.TooMany):
        ingester.ingest(bad * 5000, "POST /events")


def test_the_nightly_reads_the_sealed_events_once_and_forget_erases_them(project):
    ingester = Ingester(project)
    events = [
        {
            "customer_id": "c5",
            "event_time": "2025-06-01 10:00:00",
            "event_type": "purchase",
            "amount": 5,
        },
        {
            "customer_id": "c6",
            "event_time": "2025-06-01 12:00:00",
            "event_type": "login",
        },
    ]
    ingester.ingest(events, "stream s", ids=["s/1", "s/2"])
    base = load_project(project, con=connect(threads=1)).rows()
    assert seal_for_nightly(project) and not seal_for_nightly(project)  # once
    parts = sealed_parts(project.ingest.log)
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 2
    assert load_project(project, con=connect(threads=1)).rows() == base + 2
    # the nightly's incremental path advances its state with them, once: its
    # rows equal a full rebuild over the files and the ingested events
    ds = load_project(project, con=connect(threads=1))
    day = INGEST_MARK + timedelta(days=1)
    spec = FeatureSpec.from_config(project)
    parts_out, info = feature_parts(project, ds, day, project.ingest.log / "scratch")
    assert info["mode"] == INCREMENTAL and info["events_read"] == 2, info
    got = pd.concat([pd.read_parquet(p) for p in parts_out]).set_index(CUSTOMER_ID)
    want = build_features(ds.events, [day], spec).to_pandas().set_index(CUSTOMER_ID)
    names = catalogue(spec).names
    assert sorted(got.index) == sorted(want.index)
    assert got.loc[["c5", "c6"], names].equals(want.loc[["c5", "c6"], names])
    # a part marked but killed before its file: written by the next seal, once
    parts[0].unlink()
    assert seal_for_nightly(project) == parts
    assert load_project(project, con=connect(threads=1)).rows() == base + 2
    erasure = forget(project, ["c5"])
    assert erasure.rows() >= 2  # the log row, the part row (and the live row)
    parts = sealed_parts(project.ingest.log)
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 1  # c6's
    assert "c5" not in rows_of(project, ["c5"])
    assert EventLog(project.ingest.log).count() == 1


def test_classic_features_refuse_live_ingest_naming_the_key(project):
    """The classic features are fitted on every customer at each cutoff: a live
    row of a few customers cannot have them, so ingest refuses to start."""
    from core.config.base import ConfigError

    on = project.model_copy(
        update={"features": project.features.model_copy(update={"classic": True})}
    )
    with pytest.raises(ConfigError, match=r"features\.classic"):
        Ingester(on)


def test_acknowledge_logged_answers_once_logged_and_the_rows_follow(project):
    logged = project.model_copy(
        update={"ingest": project.ingest.model_copy(update={"acknowledge": "logged"})}
    )
    events = [
        {
            "customer_id": "c1",
            "event_time": "2025-06-01 11:30:00",
            "event_type": "login",
            "event_id": "l1",
        },
        {
            "customer_id": "c2",
            "event_time": "2025-06-01 12:00:00",
            "event_type": "purchase",
            "amount": 5,
            "event_id": "l2",
        },
    ]
    ingester = Ingester(logged)
    out = ingester.ingest(events, "POST /events")
    assert (out.accepted, out.customers) == (2, 2)
    assert out.as_of == "2025-06-01T12:00:00"  # the newest event logged
    assert EventLog(logged.ingest.log).count() == 2  # durable before the answer
    assert ingester.drain(timeout=60)
    got = rows_of(logged, ["c1", "c2"])
    assert got["c1"].as_of == "2025-06-01T11:30:00"
    assert got["c2"].as_of == "2025-06-01T12:00:00"
    want = expected(logged, events, ["c1", "c2"])
    for name in catalogue(FeatureSpec.from_config(logged)).names:
        for cid in ("c1", "c2"):
            a, b = got[cid].record[name], want.loc[cid, name]
            assert (a is None and pd.isna(b)) or a == pytest.approx(b, rel=1e-9)


def test_batches_checked_together_pass_or_fail_as_each_alone():
    """batch.check_many (concurrent requests in one pass): good batches get
    the rows `check` gives each; a bad one the very error it gets alone."""
    con = connect(threads=1).con
    good = [
        {
            "customer_id": " c1 ",
            "event_time": "2025-06-01T10:00:00Z",
            "event_type": "login",
        },
        {
            "customer_id": "c2",
            "event_time": "2025-06-01 11:00",
            "event_type": "buy",
            "amount": "3.5",
            "event_id": "a",
        },
    ]
    other = [
        {
            "customer_id": "c3",
            "event_time": "2025-06-02",
            "event_type": "x",
            "quantity": 2,
            "event_id": "b",
        }
    ]
    bad = [
        {"customer_id": "c1", "event_time": "2025-06-01", "event_type": "login"},
        {
            "customer_id": "c1",
            "event_time": "soon",
            "event_type": "login",
            "amount": "ten",
        },
    ]

    def rows(checked):  # made-up event ids differ run to run
        return [
            r[:5] + ((r[5],) if not r[5].startswith("i-") else ()) for r in checked.rows
        ]

    together = batch.check_many(con, [good, other], "POST /events", max_events=10)
    assert [rows(c) for c in together] == [
        rows(batch.check(con, b, "POST /events", max_events=10)) for b in (good, other)
    ]
    mixed = batch.check_many(con, [good, bad, other], "POST /events", max_events=10)
    assert rows(mixed[0]) == rows(together[0]) and rows(mixed[2]) == rows(together[1])
    with pytest.raises(ContractError) as alone:
        batch.check(con, bad, "POST /events", max_events=10)
    assert isinstance(mixed[1], ContractError)
    assert str(mixed[1]) == str(alone.value)
    too_many = batch.check_many(con, [good, good * 6], "POST /events", max_events=10)
    assert isinstance(too_many[1], batch.TooMany) and rows(too_many[0]) == rows(
        together[0]
    )
