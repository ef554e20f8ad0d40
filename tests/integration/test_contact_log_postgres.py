"""The contact log as a Postgres table (serving.outreach.contact_log_postgres)
on the real server: it answers as the SQLite log does, two processes confirming
at once cannot both pass a frequency cap, and forget and retention reach it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config import ContactTable, FrequencyCap, OutreachConfig, load_config
from serving.outreach.contact_log import (
    AlreadyConfirmed,
    ContactLog,
    ContactLogError,
    ContactLogStore,
    open_contact_log,
)
from serving.outreach.contact_policy import exclusions
from serving.privacy.forget import forget
from serving.privacy.retention import prune_contacts
from tests.helpers import POSTGRES_USER, ROOT, postgres_database, write_config

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        # libpq reads PGUSER (here and in spawned processes); never the URI
        mp.setenv("PGUSER", POSTGRES_USER)
        with postgres_database("contacts") as uri:
            yield uri


@pytest.fixture
def table(database: str, request: pytest.FixtureRequest) -> ContactTable:
    """A table of the test's own in the module's database."""
    name = request.node.name.split("[")[0][-40:].lower()
    return ContactTable(uri=database, table=f"propensity.{name}")


def scenario(log: ContactLogStore) -> dict:
    """Everything the log answers after two confirms, a refused re-confirm and a
    rolled-back one: compared between the SQLite and the Postgres log."""
    with log.confirming("spring", now=T0) as tx:
        assert tx.recent(["a", "b"], 30) == {}
        tx.record(
            "churn",
            [("a", "treatment", 0.9), ("b", "control", 0.4), ("c", "treatment")],
            control_share=0.2,
            contact_cost=1.5,
        )
    with log.confirming("summer", now=T0 + timedelta(days=10)) as tx:
        recent = tx.recent(["a", "b", "z", "a"], 30)
        tx.record("purchase", [("a", "treatment", 0.5)])
    later = T0 + timedelta(days=11)
    with (
        pytest.raises(AlreadyConfirmed, match="spring"),
        log.confirming("spring", now=later),
    ):
        pass
    for _ in range(2):  # a confirm that selected no one may be confirmed again
        with log.confirming("empty", now=T0 + timedelta(days=3)) as tx:
            tx.record("churn", [], control_share=0.1)
    with pytest.raises(RuntimeError), log.confirming("autumn", now=T0) as tx:
        tx.record("churn", [("d", "treatment", 0.1)])
        raise RuntimeError("the selection failed: rolled back")
    return {
        "recent_in_tx": recent,
        "recent": log.recent(["a", "b", "c"], 5, T0 + timedelta(days=12)),
        "recent_30": log.recent(["a", "b", "c"], 30, T0 + timedelta(days=12)),
        "confirmed_at": log.confirmed_at("spring"),
        "unknown": log.confirmed_at("autumn"),
        "empty": log.confirmed_at("empty"),
        "contacts": log.contacts(),
        "campaigns": log.campaigns(),
        "one": log.campaign("summer"),
        "selected": log.selected("spring"),
    }


def test_the_postgres_log_answers_as_the_sqlite_log(
    table: ContactTable, tmp_path: Path
) -> None:
    empty = open_contact_log(table)
    assert (empty.contacts(), empty.campaigns(), empty.recent(["a"], 9, T0)) == (
        [],
        [],
        {},
    )
    got = scenario(open_contact_log(table))
    want = scenario(open_contact_log(tmp_path / "log.sqlite"))
    assert got == want
    assert got["recent_in_tx"] == {"a": 1, "b": 1}
    assert got["one"].control_share is None and got["campaigns"][0].treatment == 2
    assert [r[:2] for r in got["selected"]] == [
        ("a", "treatment"),
        ("b", "control"),
        ("c", "treatment"),
    ]
    log = open_contact_log(table)
    assert log.delete(["a", "nobody"]) == {"a": 2}
    assert log.delete(before=T0 + timedelta(days=1)) == {"b": 1, "c": 1}
    assert log.contacts() == [] and str(log) == str(table)


def race(table: ContactTable, campaign: str, barrier, results) -> None:
    """Confirm `campaign` for customer x under a cap of 1 per 30 days, holding the
    transaction open long enough for the other process to try meanwhile."""
    log = open_contact_log(table)
    barrier.wait()
    with log.confirming(campaign) as tx:
        recent = tx.recent(["x"], 30)
        reason = exclusions(["x"], ["x"], [None], contacts=recent, max_contacts=1)[0]
        allowed = [] if reason else ["x"]
        time.sleep(0.5)
        tx.record("churn", [(c, "treatment") for c in allowed])
    results.put((campaign, allowed))


def test_two_processes_confirming_at_once_cannot_both_pass_a_cap(
    table: ContactTable,
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=race, args=(table, name, barrier, results))
        for name in ("first", "second")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    outcome = dict(results.get(timeout=5) for _ in workers)
    assert sorted(len(v) for v in outcome.values()) == [0, 1]
    log = open_contact_log(table)
    assert [(r.customer, r.group) for r in log.contacts()] == [("x", "treatment")]
    assert log.recent(["x"], 30, datetime.now(UTC)) == {"x": 1}


def test_an_unreachable_server_is_a_contact_log_error() -> None:
    log = open_contact_log(
        ContactTable(uri="postgresql://127.0.0.1:1/none", table="contacts")
    )
    with pytest.raises(ContactLogError, match="contact log postgresql://127.0.0.1:1"):
        log.recent(["a"], 30, T0)
    with pytest.raises(ContactLogError), log.confirming("c"):
        pass


def test_forget_and_retention_reach_the_postgres_log(
    table: ContactTable, tmp_path: Path
) -> None:
    config = load_config(
        write_config(
            tmp_path / "propensity.yaml",
            tmp_path / "events.parquet",
            None,
            outreach={"contact_log": {"uri": table.uri, "table": table.table}},
            privacy={"dir": str(tmp_path / "privacy"), "retention_days": 30},
        )
    )
    assert config.outreach.contact_log == table
    log = open_contact_log(config.outreach.contact_log)
    now = datetime.now(UTC)
    for name, at, ids in [
        ("old", now - timedelta(days=90), ["A", "B"]),
        ("new", now - timedelta(days=1), ["A", "B", "C"]),
    ]:
        with log.confirming(name, now=at) as tx:
            tx.record("churn", [(i, "treatment") for i in ids])
    erasure = forget(config, ["B"])
    assert erasure.removed[str(table)] == {"B": 2}
    assert prune_contacts(config) == 1  # A's old contact
    assert [(r.customer, r.campaign_id) for r in log.contacts()] == [
        ("A", "new"),
        ("C", "new"),
    ]
    assert not isinstance(log, ContactLog)


def test_a_campaign_confirmed_on_the_postgres_log_counts_for_the_cap(
    table: ContactTable,
) -> None:
    """serving.outreach.campaign (what POST /outreach runs) on the Postgres log."""
    from tests.unit.serving.outreach.test_campaign import run

    settings = OutreachConfig(
        contact_log={"uri": table.uri, "table": table.table},
        frequency_cap=FrequencyCap(max_contacts=1, per_days=30),
    )
    out = run(settings, "confirm")
    assert out.confirmed_at is not None
    log = open_contact_log(settings.contact_log)
    assert sorted(c.customer for c in log.contacts()) == ["a", "b", "c"]
    assert all(c.score is not None for c in log.contacts())
    with pytest.raises(AlreadyConfirmed):
        run(settings, "confirm")
    again = run(settings)  # a dry run: a, b, c are at the cap
    assert [r.customer_id for r in again.selection.rows] == ["d"]
    assert again.excluded["frequency_cap"] == 3


def test_a_confirm_killed_holding_the_lock_releases_it(table: ContactTable) -> None:
    """SIGKILL a process inside its confirm: its connection drops, Postgres rolls
    back and frees the lock; the next confirm goes through at once."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from core.config import ContactTable\n"
            "from serving.outreach.contact_log import open_contact_log\n"
            f"log = open_contact_log(ContactTable(uri={table.uri!r}, "
            f"table={table.table!r}))\n"
            "with log.confirming('killed') as tx:\n"
            "    tx.record('churn', [('x', 'treatment')])\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        log = open_contact_log(table)
        with log.confirming("next") as tx:
            assert tx.recent(["x"], 30) == {}  # the killed confirm was rolled back
            tx.record("churn", [("x", "treatment")])
        assert time.monotonic() - started < 10
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert [c.campaign_id for c in open_contact_log(table).contacts()] == ["next"]
