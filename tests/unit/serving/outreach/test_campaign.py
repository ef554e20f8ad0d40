"""serving.outreach.campaign without the service: the policy read per request,
exclusions before scoring, a dry run that writes nothing, a confirm logged once
under the cap, duplicates refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from core.config import (
    OUTREACH_KEY_ENV,
    ConfigError,
    FrequencyCap,
    OutreachConfig,
    PrivacyConfig,
)
from features.sources.privacy import Pseudonymiser
from serving.outreach import campaign
from serving.outreach.contact_log import AlreadyConfirmed, ContactLog
from serving.outreach.contact_policy import OptOutFileError

KEY = b"campaign-test-key-0123456789abcdef"
PROBABILITY = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}


def score(kept: Sequence[campaign.Offered]) -> tuple[np.ndarray, np.ndarray]:
    p = np.array([PROBABILITY[c.customer_id] for c in kept])
    return p.reshape(-1, 1), p


def offered(consent: dict[str, bool | None] | None = None) -> list[campaign.Offered]:
    consent = consent or {}
    return [campaign.Offered(c, {"x": 1.0}, None, consent.get(c)) for c in PROBABILITY]


def run(
    settings: OutreachConfig,
    mode: campaign.Mode = "dry_run",
    opted_out: frozenset[str] = frozenset(),
    customers: list[campaign.Offered] | None = None,
) -> campaign.Outcome:
    return campaign.run(
        "spring",
        "churn",
        offered() if customers is None else customers,
        rules=campaign.Rules(budget=3, control_share=0.0),
        mode=mode,
        settings=settings,
        contact=campaign.Policy(KEY, opted_out, frozenset()),
        pseudonyms=Pseudonymiser(),
        score=score,
    )


def test_excluded_before_scoring_and_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    settings = OutreachConfig(contact_log=tmp_path / "log.sqlite")
    out = run(settings, opted_out=frozenset({"a"}))
    assert [r.customer_id for r in out.selection.rows] == ["b", "c", "d"]
    assert [c.customer_id for c in out.scored] == ["b", "c", "d"]
    assert out.excluded["opted_out"] == 1 and out.confirmed_at is None
    assert out.rows_of_selected() == [0, 1, 2]
    assert out.notes[0].startswith("1 customer(s) excluded before ranking")
    assert ContactLog(settings.contact_log).contacts() == []


def test_a_confirm_is_logged_once_and_counts_for_the_cap(tmp_path: Path) -> None:
    settings = OutreachConfig(
        contact_log=tmp_path / "log.sqlite",
        frequency_cap=FrequencyCap(max_contacts=1, per_days=30),
    )
    out = run(settings, "confirm")
    assert out.confirmed_at is not None
    logged = ContactLog(settings.contact_log).contacts()
    assert sorted(c.customer for c in logged) == ["a", "b", "c"]
    with pytest.raises(AlreadyConfirmed):
        run(settings, "confirm")
    again = run(settings)  # a dry run now: a, b, c are at the cap
    assert [r.customer_id for r in again.selection.rows] == ["d"]
    assert again.excluded["frequency_cap"] == 3


def test_duplicates_are_refused_naming_the_field(tmp_path: Path) -> None:
    settings = OutreachConfig(contact_log=tmp_path / "log.sqlite")
    twice = [*offered(), offered()[0]]
    with pytest.raises(ValueError, match="customer_ids: duplicates"):
        run(settings, customers=twice)


def test_the_policy_needs_a_key_and_a_readable_opt_out_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(OUTREACH_KEY_ENV, raising=False)
    policy = campaign.ContactPolicy()
    privacy = PrivacyConfig(dir=tmp_path / "privacy")
    with pytest.raises(ConfigError, match="no control-group key"):
        policy.read(OutreachConfig(), privacy)
    monkeypatch.setenv(OUTREACH_KEY_ENV, KEY.decode())
    missing = OutreachConfig(opt_out_file=tmp_path / "none.txt")
    with pytest.raises(OptOutFileError, match="opt_out_file"):
        policy.read(missing, privacy)
    (tmp_path / "opt-out.txt").write_text("a\n")
    read = policy.read(OutreachConfig(opt_out_file=tmp_path / "opt-out.txt"), privacy)
    assert read == campaign.Policy(KEY, frozenset({"a"}), frozenset())
