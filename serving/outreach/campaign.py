"""One campaign's outreach, as the API's `/outreach` runs it.

For the customers offered to a campaign:

1. the contact policy (serving.outreach.contact_policy) excludes, each under its
   first reason, the forgotten, the opted out, those without a required consent
   and those over the frequency cap (their confirmed selections in the contact
   log, keyed by stored id: the pseudonym when pseudonymisation is on);
2. the others are scored (by the caller's `score`: the service's champion) and
   selected (serving.outreach.selection: ranked by expected value, or by
   expected incremental value when the caller gives the target's uplift
   champion as `benefit`; a budget or threshold, a keyed-hash control group);
3. `confirm` does steps 1 and 2 inside one write transaction of the contact log
   and records the selection there (with each customer's score and the
   campaign's control share and contact cost, for its readout), so two
   confirms at once cannot both pass a cap and a campaign is confirmed once
   (AlreadyConfirmed otherwise); `dry_run` reads the log and writes nothing.

Errors, for the caller to answer: ConfigError or OptOutFileError from
`ContactPolicy.read` (no control-group key, no opt-out file), ValueError naming
the field (duplicates, invalid rules), AlreadyConfirmed, ContactLogError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from core.config import OutreachConfig, PrivacyConfig
from core.config.secrets import outreach_key
from features.sources.privacy import Pseudonymiser, suppression_path
from serving.outreach import contact_policy as policy
from serving.outreach import selection
from serving.outreach.contact_log import open_contact_log

Mode = Literal["dry_run", "confirm"]


@dataclass(frozen=True)
class Offered:
    """A customer offered to the campaign: the id the marketing system knows,
    the features to score, what a conversion is worth (None: the default) and
    consent (False: never; None: unknown)."""

    customer_id: str
    features: Mapping[str, object]
    value: float | None = None
    consent: bool | None = None


@dataclass(frozen=True)
class Rules:
    """How to select: exactly one of budget (top n) and threshold (p >= t);
    contact_cost and control_share default to the config's (None)."""

    budget: int | None = None
    threshold: float | None = None
    contact_cost: float | None = None
    control_share: float | None = None


@dataclass(frozen=True)
class Policy:
    """What a request is checked against, read once per request: the
    control-group key, the opted-out ids and the forgotten stored ids."""

    key: bytes
    opted_out: frozenset[str]
    forgotten: frozenset[str]


class ContactPolicy:
    """The opt-out file and the suppression list, each re-read only when it
    changes (core.watch), and the control-group key; one per service."""

    def __init__(self) -> None:
        self.opt_outs = policy.WatchedIds()
        self.forgotten = policy.WatchedIds("the suppression list", missing_ok=True)

    def read(self, settings: OutreachConfig, privacy: PrivacyConfig) -> Policy:
        """The policy in force; ConfigError without a key, OptOutFileError when
        the configured opt-out file cannot be read."""
        return Policy(
            key=outreach_key(settings).get_secret_value(),
            opted_out=self.opt_outs.ids(settings.opt_out_file),
            forgotten=self.forgotten.ids(suppression_path(privacy)),
        )


# the features of the customers to score -> (their matrix, their probabilities)
Score = Callable[[Sequence[Offered]], tuple[np.ndarray, np.ndarray]]
# the features of the customers to score -> the uplift champion's benefit per
# contact (model.uplift.UpliftModel.benefit)
Benefit = Callable[[Sequence[Offered]], np.ndarray]


@dataclass(frozen=True)
class Outcome:
    """A campaign's result: the selection, the scored customers (those not
    excluded) with their feature matrix (row i is scored[i]; for reason codes),
    the excluded per reason with their notes, and when a confirm was logged."""

    selection: selection.Selection
    scored: list[Offered]
    matrix: np.ndarray
    excluded: dict[str, int]
    notes: list[str]
    confirmed_at: str | None

    def rows_of_selected(self) -> list[int]:
        """The matrix rows of the selected customers, in rank order."""
        row_of = {c.customer_id: i for i, c in enumerate(self.scored)}
        return [row_of[r.customer_id] for r in self.selection.rows]


def run(
    campaign_id: str,
    target: str,
    offered: Sequence[Offered],
    *,
    rules: Rules,
    mode: Mode,
    settings: OutreachConfig,
    contact: Policy,
    pseudonyms: Pseudonymiser,
    score: Score,
    benefit: Benefit | None = None,
) -> Outcome:
    """Exclude, score and select for one campaign (see the module docstring);
    `confirm` records the selection in the contact log. With `benefit` (the
    target has an uplift champion) customers are ranked by expected
    incremental value (serving.outreach.selection)."""
    ids = [c.customer_id for c in offered]
    if len(set(ids)) != len(ids):
        raise ValueError("customer_ids: duplicates")
    stored = pseudonyms.many(ids)
    cap = settings.frequency_cap

    def excluding(contacts: Mapping[str, int]) -> list[str | None]:
        return policy.exclusions(
            ids,
            stored,
            [c.consent for c in offered],
            opted_out=contact.opted_out,
            forgotten=contact.forgotten,
            require_consent=settings.require_consent,
            contacts=contacts,
            max_contacts=None if cap is None else cap.max_contacts,
        )

    contact_cost = (
        settings.contact_cost if rules.contact_cost is None else rules.contact_cost
    )
    control_share = (
        settings.control_share if rules.control_share is None else rules.control_share
    )

    def choose(
        excluded: Sequence[str | None],
    ) -> tuple[selection.Selection, list[Offered], np.ndarray]:
        kept = [c for c, why in zip(offered, excluded, strict=True) if why is None]
        matrix, probabilities = score(kept)
        default = settings.default_value
        chosen = selection.select(
            campaign_id,
            [c.customer_id for c in kept],
            probabilities,
            key=contact.key,
            budget=rules.budget,
            threshold=rules.threshold,
            values=[default if c.value is None else c.value for c in kept],
            contact_cost=contact_cost,
            control_share=control_share,
            benefits=None if benefit is None or not kept else benefit(kept),
        )
        return chosen, kept, matrix

    log = open_contact_log(settings.contact_log)
    confirmed_at = None
    if mode == "dry_run":
        recent = log.recent(stored, cap.per_days, datetime.now(UTC)) if cap else {}
        excluded = excluding(recent)
        chosen, kept, matrix = choose(excluded)
    else:
        with log.confirming(campaign_id) as tx:
            recent = tx.recent(stored, cap.per_days) if cap else {}
            excluded = excluding(recent)
            chosen, kept, matrix = choose(excluded)
            stored_of = dict(zip(ids, stored, strict=True))
            # the score at selection and the settings used: the readout's deciles,
            # sample-ratio check and cost (serving.outreach.readout)
            tx.record(
                target,
                [
                    (stored_of[r.customer_id], r.group, r.probability)
                    for r in chosen.rows
                ],
                control_share=control_share,
                contact_cost=contact_cost,
            )
            confirmed_at = tx.confirmed_at
    counts = policy.counted(excluded)
    notes = policy.notes(
        counts,
        None if cap is None else cap.max_contacts,
        None if cap is None else cap.per_days,
    )
    return Outcome(chosen, kept, matrix, counts, notes, confirmed_at)
