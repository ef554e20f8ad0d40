"""The contact policy and the contact log: exclusion reasons, the cap's window
boundary, a confirm refused twice, and two processes racing for one cap."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serving.outreach.contact_log import AlreadyConfirmed, Contact, ContactLog
from serving.outreach.contact_policy import (
    FORGOTTEN,
    FREQUENCY_CAP,
    NO_CONSENT,
    OPTED_OUT,
    REASONS,
    OptOutFileError,
    WatchedIds,
    counted,
    exclusions,
    notes,
    parse_ids,
)

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def test_each_reason_and_its_precedence() -> None:
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    stored = [f"s-{c}" for c in ids]
    consents = [True, False, None, True, None, True, False]
    reasons = exclusions(
        ids,
        stored,
        consents,
        opted_out=frozenset({"d", "g"}),
        # compared by stored form: a raw id on the list suppresses nobody
        forgotten=frozenset({"s-e", "a", "s-g"}),
        require_consent=True,
        contacts={"s-f": 2, "s-a": 1},
        max_contacts=2,
    )
    assert reasons == [
        None,  # consent, one contact under a cap of 2
        OPTED_OUT,  # consent: false
        NO_CONSENT,  # no consent sent, consent required
        OPTED_OUT,  # on the opt-out file despite consent: true
        FORGOTTEN,  # forgotten wins over a missing consent
        FREQUENCY_CAP,  # exactly max_contacts in the window
        FORGOTTEN,  # forgotten wins over opted out
    ]
    counts = counted(reasons)
    assert list(counts) == list(REASONS)
    assert counts == {OPTED_OUT: 2, NO_CONSENT: 1, FORGOTTEN: 2, FREQUENCY_CAP: 1}
    said = notes(counts, 2, 30)
    assert len(said) == 4
    assert said[3].startswith("1 customer(s) excluded") and "2 time(s)" in said[3]


def test_defaults_exclude_only_explicit_refusals() -> None:
    # consent not required: a missing consent is allowed, consent: false is not
    reasons = exclusions(["a", "b", "c"], ["a", "b", "c"], [None, False, True])
    assert reasons == [None, OPTED_OUT, None]
    assert notes(counted([None]), None, None) == []


def test_opt_out_file_parsed_and_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "opt-out.txt"
    path.write_text("# from the CRM, 2026-03\nC1\n\n  C2  \n#C3\n")
    assert parse_ids(path.read_text()) == {"C1", "C2"}
    opt_outs = WatchedIds()
    assert opt_outs.ids(None) == frozenset()
    assert opt_outs.ids(path) == {"C1", "C2"}
    path.write_text("C1\nC2\nC4\n")
    os.utime(path, ns=(1, 1))  # a new mtime whatever the clock's resolution
    assert opt_outs.ids(path) == {"C1", "C2", "C4"}
    path.unlink()
    with pytest.raises(OptOutFileError, match="opt_out_file"):
        opt_outs.ids(path)


def confirm(log: ContactLog, campaign: str, customers: list[str], at: datetime) -> None:
    with log.confirming(campaign, at) as tx:
        tx.record("churn", [(c, "treatment") for c in customers])


def test_cap_window_counts_exactly_the_last_per_days(tmp_path: Path) -> None:
    log = ContactLog(tmp_path / "contacts" / "log.sqlite")
    assert log.recent(["a"], 30, NOW) == {}
    assert not log.path.exists()  # reading creates nothing
    confirm(log, "old", ["a", "b"], NOW - timedelta(days=30))  # on the boundary
    confirm(log, "mid", ["a", "b"], NOW - timedelta(days=30) + timedelta(seconds=1))
    confirm(log, "new", ["a"], NOW - timedelta(seconds=1))
    assert log.recent(["a", "b", "c"], 30, NOW) == {"a": 2, "b": 1}
    assert log.recent(["a"], 31, NOW) == {"a": 3}
    cap = 2
    reasons = exclusions(
        ["a", "b"],
        ["a", "b"],
        [None, None],
        contacts=log.recent(["a", "b"], 30, NOW),
        max_contacts=cap,
    )
    assert reasons == [FREQUENCY_CAP, None]  # exactly 2 in 30 days: excluded


def test_a_campaign_is_confirmed_once_and_a_failed_confirm_writes_nothing(
    tmp_path: Path,
) -> None:
    log = ContactLog(tmp_path / "log.sqlite")
    confirm(log, "spring", ["a"], NOW)
    with pytest.raises(AlreadyConfirmed) as refused:
        confirm(log, "spring", ["b"], NOW + timedelta(days=1))
    assert refused.value.confirmed_at == "2026-03-31T12:00:00.000000+00:00"
    assert "'spring'" in str(refused.value) and "2026-03-31T12:00" in str(refused.value)
    with pytest.raises(RuntimeError), log.confirming("autumn", NOW) as tx:
        tx.record("churn", [("c", "control")])
        raise RuntimeError("selection failed after the insert")
    assert log.contacts() == [
        Contact("a", "spring", "churn", "treatment", "2026-03-31T12:00:00.000000+00:00")
    ]
    assert log.confirmed_at("autumn") is None


def test_a_log_of_an_older_version_is_read_and_migrated(tmp_path: Path) -> None:
    """A log written before scores and campaign settings were kept: read as it
    is (scores and settings None), then migrated by the next confirm."""
    import sqlite3

    path = tmp_path / "log.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE contacts (customer TEXT NOT NULL, campaign_id TEXT NOT NULL,"
            " target TEXT NOT NULL, contact_group TEXT NOT NULL, confirmed_at TEXT "
            "NOT NULL, PRIMARY KEY (campaign_id, customer));"
            "INSERT INTO contacts VALUES ('a', 'old', 'churn', 'treatment', "
            "'2026-01-01T00:00:00.000000+00:00'), ('b', 'old', 'churn', 'control', "
            "'2026-01-01T00:00:00.000000+00:00');"
        )
    conn.close()
    log = ContactLog(path)
    [old] = log.campaigns()
    assert (old.campaign_id, old.treatment, old.control) == ("old", 1, 1)
    assert old.control_share is None and old.contact_cost is None
    assert log.selected("old") == [("a", "treatment", None), ("b", "control", None)]
    with log.confirming("new", NOW) as tx:
        tx.record(
            "purchase",
            [("a", "treatment", 0.75), ("c", "control", 0.25)],
            control_share=0.2,
            contact_cost=1.5,
        )
    new = log.campaign("new")
    assert (new.target, new.control_share, new.contact_cost) == ("purchase", 0.2, 1.5)
    assert log.selected("new") == [("a", "treatment", 0.75), ("c", "control", 0.25)]
    assert log.campaign("old").control_share is None  # old rows untouched
    assert log.contacts()[0] == Contact(
        "a", "old", "churn", "treatment", "2026-01-01T00:00:00.000000+00:00"
    )


def test_treated_reads_treatment_groups_confirmed_in_the_window(tmp_path: Path) -> None:
    log = ContactLog(tmp_path / "contacts.sqlite")
    start = datetime(2025, 6, 1, tzinfo=UTC)
    assert log.treated(start, start + timedelta(days=30)) == set()  # no log yet
    for campaign, at in (
        ("at-start", start),
        ("last-second", start + timedelta(days=30, seconds=-1)),
        ("at-end", start + timedelta(days=30)),
        ("before", start - timedelta(seconds=1)),
    ):
        with log.confirming(campaign, at) as tx:
            tx.record(
                "churn", [(f"t-{campaign}", "treatment"), (f"c-{campaign}", "control")]
            )
    assert log.treated(start, start + timedelta(days=30)) == {
        "t-at-start",
        "t-last-second",
    }
