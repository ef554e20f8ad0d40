"""Contact policy: which customers a campaign may not select, and why.

Before a campaign is ranked, each customer offered to it is checked, in this
order, and excluded under the first reason that applies:

1. `forgotten`: their stored form (the pseudonym when pseudonymisation is on) is
   on the suppression list of `propensity forget`.
2. `opted_out`: their id is in the opt-out file, or they were sent with
   `consent: false`.
3. `no_consent`: consent is required (`outreach.require_consent`) and they were
   sent without it.
4. `frequency_cap`: the contact log holds `max_contacts` or more confirmed
   selections of them in the last `per_days` days.

Each excluded customer is counted once, so the counts add up to the customers
offered minus the customers ranked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.watch import WatchedFile
from features.sources.privacy import parse_ids

log = logging.getLogger(__name__)

FORGOTTEN = "forgotten"
OPTED_OUT = "opted_out"
NO_CONSENT = "no_consent"
FREQUENCY_CAP = "frequency_cap"
# the order of the response's counts.excluded
REASONS = (OPTED_OUT, NO_CONSENT, FORGOTTEN, FREQUENCY_CAP)


class OptOutFileError(ValueError):
    """The configured opt-out file is missing or unreadable."""


def exclusion(
    customer_id: str,
    stored_id: str,
    consent: bool | None,
    *,
    opted_out: frozenset[str],
    forgotten: frozenset[str],
    require_consent: bool,
    contacts: int,
    max_contacts: int | None,
) -> str | None:
    """Why this customer may not be selected (see the module docstring), or None.
    `contacts` is their confirmed selections inside the cap's window."""
    if stored_id in forgotten:
        return FORGOTTEN
    if consent is False or customer_id in opted_out:
        return OPTED_OUT
    if require_consent and consent is None:
        return NO_CONSENT
    if max_contacts is not None and contacts >= max_contacts:
        return FREQUENCY_CAP
    return None


def exclusions(
    customer_ids: Sequence[str],
    stored_ids: Sequence[str],
    consents: Sequence[bool | None],
    *,
    opted_out: frozenset[str] = frozenset(),
    forgotten: frozenset[str] = frozenset(),
    require_consent: bool = False,
    contacts: Mapping[str, int] | None = None,
    max_contacts: int | None = None,
) -> list[str | None]:
    """Per customer, the reason for excluding them or None; `contacts` maps a
    stored id to its confirmed selections inside the cap's window."""
    contacts = contacts or {}
    return [
        exclusion(
            c,
            s,
            consent,
            opted_out=opted_out,
            forgotten=forgotten,
            require_consent=require_consent,
            contacts=contacts.get(s, 0),
            max_contacts=max_contacts,
        )
        for c, s, consent in zip(customer_ids, stored_ids, consents, strict=True)
    ]


def counted(reasons: Sequence[str | None]) -> dict[str, int]:
    """Excluded customers per reason, every reason present."""
    return {r: sum(x == r for x in reasons) for r in REASONS}


NOTES = {
    FORGOTTEN: "forgotten (the suppression list of `propensity forget`)",
    OPTED_OUT: "opted out (the opt-out file, or consent: false)",
    NO_CONSENT: "sent without consent (outreach.require_consent)",
}


def notes(
    counts: Mapping[str, int], max_contacts: int | None, per_days: int | None
) -> list[str]:
    """One plain-language note per reason that excluded anyone."""
    described = {
        **NOTES,
        FREQUENCY_CAP: f"already selected {max_contacts} time(s) in the last "
        f"{per_days} days (outreach.frequency_cap)",
    }
    return [
        f"{counts[r]} customer(s) excluded before ranking: {described[r]}"
        for r in REASONS
        if counts.get(r)
    ]


class WatchedIds:
    """The ids of a list file, re-read whenever the file (its path, mtime, size
    or inode) changes (core.watch.WatchedFile), so a request costs a stat, not
    a read. The opt-out file (`what` names it in errors): missing or unreadable
    raises OptOutFileError, since selecting without it could contact those who
    opted out. The suppression list (`missing_ok`): missing means nobody was
    forgotten."""

    def __init__(
        self, what: str = "outreach.opt_out_file", missing_ok: bool = False
    ) -> None:
        self.what = what
        self.missing_ok = missing_ok
        self._file: WatchedFile[frozenset[str]] | None = None

    def ids(self, path: Path | None) -> frozenset[str]:
        if path is None:
            return frozenset()
        watched = self._file
        if watched is None or watched.path != Path(path):  # another config
            watched = self._file = WatchedFile(path, self._read, self._missing)
        return watched.get()

    def _read(self, path: Path) -> frozenset[str]:
        try:
            ids = parse_ids(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise self._unreadable(path, exc) from exc
        log.info("%s %s read: %d id(s)", self.what, path, len(ids))
        return ids

    def _missing(self, path: Path, error: OSError) -> frozenset[str]:
        if self.missing_ok and isinstance(
            error, (FileNotFoundError, NotADirectoryError)
        ):
            return frozenset()
        raise self._unreadable(path, error) from error

    def _unreadable(self, path: Path, exc: Exception) -> OptOutFileError:
        return OptOutFileError(f"{self.what} {path} cannot be read: {exc}")
