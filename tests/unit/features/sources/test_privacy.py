"""Privacy at ingestion: pseudonyms in Python and in SQL, the views with pseudonyms
and the suppression list, minimisation, and what Spark refuses."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import ConfigError, PrivacyConfig, load_config
from features.sources.load import load
from features.sources.privacy import Pseudonymiser, pseudonymiser
from tests.helpers import (
    PRIVACY_KEY,
    privacy_project,
    write_config,
)

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
    assert pseudonymiser(on, environ={"PK": PRIVACY_KEY.decode()}).one("C1") != "C1"


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
    p = Pseudonymiser(PRIVACY_KEY)
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
    p = Pseudonymiser(PRIVACY_KEY)
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


def test_spark_refuses_what_only_the_duckdb_loader_does(tmp_path: Path) -> None:
    from features.sources.spark import refuse_privacy

    refuse_privacy(load_config(privacy_project(tmp_path)))  # nothing asked: fine
    on = load_config(privacy_project(tmp_path, privacy={"pseudonymise": True}))
    with pytest.raises(ConfigError, match="engine spark: privacy.pseudonymise"):
        refuse_privacy(on)
    (tmp_path / "privacy").mkdir()
    (tmp_path / "privacy" / "suppressed.txt").write_text("A\n")
    with pytest.raises(ConfigError, match="the suppression list"):
        refuse_privacy(load_config(privacy_project(tmp_path)))


def test_pseudonyms_without_customers_keep_every_event_once(tiny) -> None:
    """The id map holds each id once even when the events are its only source
    (it once held one row per event, and the join multiplied the events)."""
    events, _, _ = tiny
    p = Pseudonymiser(PRIVACY_KEY)
    ds = load(events, as_of=datetime(2030, 1, 1), pseudonyms=p)
    assert ds.rows() == 5
    assert _ids(ds.events) == sorted(p.many(["A", "B", "C"]))
