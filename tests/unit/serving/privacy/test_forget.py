"""Privacy, piece by piece: pseudonyms in Python and in SQL, ingestion with
pseudonyms, suppression and minimisation, forget in each place (and its
atomicity), retention."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import ConfigError, PrivacyConfig, load_config
from features.sources.load import load
from features.sources.privacy import Pseudonymiser, pseudonymiser, read_suppressed
from serving.batch.nightly import _run
from serving.online_store.sqlite import SqliteStoreWriter, StoreMeta, open_reader
from serving.outreach.contact_log import ContactLog
from serving.privacy import forget as forget_module
from serving.privacy.forget import forget
from serving.privacy.retention import prune_contacts, prune_scores
from tests.helpers import write_config
from training.dataset import prune_snapshots, write_snapshot

KEY = b"unit-test-pseudonym-key-0123456789"
TICKET = "support_ticket"


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5),
    key=st.binary(min_size=16, max_size=100),
)
def test_the_sql_pseudonym_equals_python_hmac(ids: list[str], key: bytes) -> None:
    """Keys shorter and longer than SHA-256's 64-byte block, any unicode id."""
    p = Pseudonymiser(key)
    con = duckdb.connect()
    got = con.execute(
        f"SELECT {p.sql('x')} FROM unnest(?::VARCHAR[]) t(x)", [ids]
    ).fetchall()
    expected = [hmac.new(key, i.encode(), hashlib.sha256).hexdigest() for i in ids]
    assert [g[0] for g in got] == expected == p.many(ids)


def test_pseudonymisation_off_keeps_ids_and_on_needs_a_key() -> None:
    assert pseudonymiser(PrivacyConfig()).one("C1") == "C1"
    on = PrivacyConfig(pseudonymise=True, key_env="PK")
    with pytest.raises(ConfigError, match=r"\$PK is not set"):
        pseudonymiser(on, environ={})
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        pseudonymiser(on, environ={"PK": "short"})
    assert pseudonymiser(on, environ={"PK": KEY.decode()}).one("C1") != "C1"


# --- ingestion -------------------------------------------------------------------


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, Path]:
    t = pd.Timestamp("2025-01-10")
    events = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B", "C", "C"],
            "event_time": [t, t + pd.Timedelta(days=1), t, t, t],
            "event_type": ["login", "purchase", "page_view", "login", "debug_ping"],
            "amount": [None, 10.0, None, None, None],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "region": ["n", "s", "n"],
            "email": ["a@x", "b@x", "c@x"],
        }
    )
    subs = pd.DataFrame(
        {
            "customer_id": ["A", "C"],
            "plan": ["basic", "pro"],
            "start_time": [t - pd.Timedelta(days=30)] * 2,
            "end_time": [t + pd.Timedelta(days=30)] * 2,
            "price": [10.0, 20.0],
            "billing_period_days": [30, 30],
        }
    )
    paths = tuple(tmp_path / f"{n}.parquet" for n in ("events", "customers", "subs"))
    for frame, path in zip((events, customers, subs), paths, strict=True):
        frame.to_parquet(path)
    return paths


def _ids(table) -> list[str]:
    return sorted(set(table.customer_id.to_pyarrow().to_pylist()))


def test_every_view_holds_pseudonyms_and_leaves_out_the_suppressed(tiny) -> None:
    events, customers, subs = tiny
    p = Pseudonymiser(KEY)
    ds = load(
        events,
        customers,
        subscriptions=subs,
        as_of=datetime(2030, 1, 1),
        pseudonyms=p,
        suppressed=frozenset({p.one("C")}),
    )
    assert _ids(ds.events) == sorted(p.many(["A", "B"]))
    assert _ids(ds.customers) == sorted(p.many(["A", "B"]))
    assert _ids(ds.subscriptions) == [p.one("A")]
    assert ds.suppressed == {p.one("C")}


def test_only_the_attributes_and_event_types_asked_for_are_read(tiny) -> None:
    events, customers, _ = tiny
    ds = load(
        events,
        customers,
        as_of=datetime(2030, 1, 1),
        attributes=["region"],
        event_types=["login", "purchase", "page_view"],
    )
    assert ds.customers.columns == ("customer_id", "region")
    types = ds.events.event_type.to_pyarrow().to_pylist()
    assert sorted(set(types)) == ["login", "page_view", "purchase"]
    # with pseudonyms too: the map's column stays out of the view
    p = Pseudonymiser(KEY)
    both = load(
        events,
        customers,
        as_of=datetime(2030, 1, 1),
        attributes=["region"],
        pseudonyms=p,
    )
    assert both.customers.columns == ("customer_id", "region")
    assert _ids(both.customers) == sorted(p.many(["A", "B", "C"]))
    everything = load(events, customers, as_of=datetime(2030, 1, 1), pseudonyms=p)
    assert everything.customers.columns == ("customer_id", "region", "email")
    # without the lists, everything
    full = load(events, customers, as_of=datetime(2030, 1, 1))
    assert "email" in full.customers.columns
    assert "debug_ping" in full.events.event_type.to_pyarrow().to_pylist()


def test_roles_activity_lists_the_types_read(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "p.yaml",
        tmp_path / "e.parquet",
        None,
        roles={"purchase": ["buy"], "activity": ["login"], "cancel": ["bye"]},
    )
    config = load_config(path)
    assert sorted(config.roles.types_read()) == [
        "buy",
        "bye",
        "login",
        "support_ticket",
    ]
    bad = write_config(
        tmp_path / "q.yaml",
        tmp_path / "e.parquet",
        None,
        roles={"purchase": ["buy"], "activity": ["buy"]},
    )
    with pytest.raises(ConfigError, match="'buy' is mapped to both"):
        load_config(bad)


# --- forget ----------------------------------------------------------------------


def _project(tmp_path: Path, **overrides) -> Path:
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


def _scores(folder: Path, ids: list[str]) -> Path:
    path = folder / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"customer_id": ids, "churn": np.linspace(0, 1, len(ids))}), path
    )
    return path


def _store(path: Path, ids: list[str]) -> None:
    meta = StoreMeta("2025-06-01", "v", "now", None, ("f",), frozenset(), {})
    with SqliteStoreWriter(path, meta) as writer:
        frame = pd.DataFrame({"customer_id": ids, "as_of": "2025-06-01", "f": 1.0})
        scores = {
            t: np.full(len(ids), 0.5) for t in ("churn", "purchase", "service_request")
        }
        writer.append(frame, scores, datetime(2025, 6, 1, tzinfo=UTC))


def _contact(log: ContactLog, campaign: str, ids: list[str], at: datetime) -> None:
    with log.confirming(campaign, now=at) as c:
        c.record("churn", [(i, "treatment") for i in ids])


def test_forget_removes_from_each_place_and_logs_only_pseudonyms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPENSITY_PSEUDONYM_KEY", KEY.decode())
    config = load_config(_project(tmp_path, privacy={"pseudonymise": True}))
    p = Pseudonymiser(KEY)
    a, b = p.one("A"), p.one("B")
    night = _scores(tmp_path / "scores" / "as_of=2025-06-01", [a, b, p.one("C")])
    snapshot = write_snapshot(
        pd.DataFrame({"customer_id": [a, b], "x": [1, 2]}),
        tmp_path / "snapshots",
        "t1",
        frozenset(),
    )
    _store(config.online_store.path, [a, b])
    log = ContactLog(config.online_store.path.parent.parent / "contacts.sqlite")
    _contact(log, "spring", [a, b], datetime.now(UTC))

    erasure = forget(config, ["A"])

    assert erasure.customers == [a]
    assert pq.read_table(night)["customer_id"].to_pylist() == [b, p.one("C")]
    assert pq.read_table(snapshot)["customer_id"].to_pylist() == [b]
    reader = open_reader(config.online_store)
    assert reader.lookup([a, b]).keys() == {b}
    assert [c.customer for c in log.contacts()] == [b]
    assert read_suppressed(config.privacy.dir / "suppressed.txt") == {a}
    text = (config.privacy.dir / "erasures.jsonl").read_text()
    entry = json.loads(text)
    assert entry["customer"] == a and '"A"' not in text
    assert set(entry["removed"].values()) == {1}
    assert len(entry["removed"]) == 4  # scores, snapshot, online store, contacts
    # again: nothing left to remove, still suppressed once
    assert forget(config, ["A"]).rows() == 0
    assert read_suppressed(config.privacy.dir / "suppressed.txt") == {a}


def test_a_failed_rewrite_leaves_the_file_whole_and_the_customer_suppressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_project(tmp_path))
    night = _scores(tmp_path / "scores" / "as_of=2025-06-01", ["A", "B"])
    before = night.read_bytes()

    def broken(table, where, *args, **kwargs):
        Path(where).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(forget_module.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        forget(config, ["A"])
    assert night.read_bytes() == before
    assert [p.name for p in night.parent.iterdir()] == ["part-0.parquet"]
    # the list was written first: every later run leaves A out; forget again
    # finishes the job
    assert read_suppressed(config.privacy.dir / "suppressed.txt") == {"A"}
    monkeypatch.undo()
    assert forget(config, ["A"]).rows() == 1
    assert pq.read_table(night)["customer_id"].to_pylist() == ["B"]


def test_a_nightly_run_that_loaded_before_a_forget_publishes_nothing(
    tmp_path: Path,
) -> None:
    config = load_config(_project(tmp_path))
    (tmp_path / "privacy").mkdir()
    (tmp_path / "privacy" / "suppressed.txt").write_text("A\n")

    class Loaded:  # a dataset loaded before A was forgotten
        suppressed = frozenset()

    with pytest.raises(RuntimeError, match="1 customer\\(s\\) were forgotten"):
        _run(config, Loaded(), None, datetime(2025, 6, 1), "run", None, False)
    assert not (tmp_path / "scores").exists()


# --- retention -------------------------------------------------------------------


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86_400
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (stamp, stamp))


def test_retention_deletes_by_write_time_not_by_as_of(tmp_path: Path) -> None:
    old = _scores(tmp_path / "scores" / "as_of=2025-06-02", ["A"]).parent
    backfill = _scores(tmp_path / "scores" / "as_of=2020-01-01", ["A"]).parent
    _age(old, 31)
    _age(backfill, 29)
    assert prune_scores(tmp_path / "scores", 30) == [old]
    assert backfill.exists() and not old.exists()

    snaps = tmp_path / "snapshots"
    stale = write_snapshot(
        pd.DataFrame({"customer_id": ["A"]}), snaps, "1", frozenset()
    )
    fresh = write_snapshot(
        pd.DataFrame({"customer_id": ["A"]}), snaps, "2", frozenset()
    )
    _age(stale, 31)
    assert prune_snapshots(snaps, 30) == [stale]
    assert fresh.exists()


def test_contact_log_retention_keeps_the_cap_window(tmp_path: Path) -> None:
    config = load_config(
        _project(
            tmp_path,
            privacy={"retention_days": 10},
            outreach={"frequency_cap": {"max_contacts": 1, "per_days": 30}},
        )
    )
    log = ContactLog(tmp_path / "contacts.sqlite")
    now = datetime.now(UTC)
    _contact(log, "old", ["A"], now - timedelta(days=40))
    _contact(log, "inside-cap", ["A"], now - timedelta(days=20))
    assert prune_contacts(config, now) == 1
    assert [c.campaign_id for c in log.contacts()] == ["inside-cap"]


def test_snapshots_leave_out_customers_forgotten_meanwhile(tmp_path: Path) -> None:
    path = write_snapshot(
        pd.DataFrame({"customer_id": ["A", "B"]}), tmp_path, "x", frozenset({"A"})
    )
    assert pq.read_table(path)["customer_id"].to_pylist() == ["B"]


def test_spark_refuses_what_only_the_duckdb_loader_does(tmp_path: Path) -> None:
    from features.sources.spark import refuse_privacy

    refuse_privacy(load_config(_project(tmp_path)))  # nothing asked: fine
    on = load_config(_project(tmp_path, privacy={"pseudonymise": True}))
    with pytest.raises(ConfigError, match="engine spark: privacy.pseudonymise"):
        refuse_privacy(on)
    (tmp_path / "privacy").mkdir()
    (tmp_path / "privacy" / "suppressed.txt").write_text("A\n")
    with pytest.raises(ConfigError, match="the suppression list"):
        refuse_privacy(load_config(_project(tmp_path)))


def test_cli_pseudonym_forget_and_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cli.main import main

    monkeypatch.setenv("PROPENSITY_PSEUDONYM_KEY", KEY.decode())
    config = _project(tmp_path, privacy={"pseudonymise": True, "retention_days": 7})
    args = ["--config", str(config)]
    assert main([*args, "pseudonym", "A", "B"]) == 0
    p = Pseudonymiser(KEY)
    assert capsys.readouterr().out == f"A\t{p.one('A')}\nB\t{p.one('B')}\n"

    night = _scores(tmp_path / "scores" / "as_of=2025-06-01", [p.one("A"), p.one("B")])
    ids = tmp_path / "ids.txt"
    ids.write_text("# to forget\nA\n\n")
    assert main([*args, "forget", "--file", str(ids)]) == 0
    assert "forgot 1 customer(s): 1 row(s) removed" in capsys.readouterr().out
    assert pq.read_table(night)["customer_id"].to_pylist() == [p.one("B")]
    assert main([*args, "forget"]) == 2
    assert "give --customer-id ID or --file PATH" in capsys.readouterr().err

    _age(night.parent, 8)
    assert main([*args, "retention"]) == 0
    assert "1 output(s) older than 7 days deleted" in capsys.readouterr().out
    assert not night.parent.exists()
