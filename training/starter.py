"""The starter config `propensity init` writes: a commented `propensity.yaml` that
works as is, from a profile of the data (features.sources.profile) and a backtest
schedule (training.plan.propose_schedule).

What it proposes, and says so in its comments: the column mapping (`data.columns`)
from the source's names and types, a constant `event_type` when the events have
no event-type column, roles from the event-type names and frequencies, one
horizon for every target and monthly cutoffs that leave the backtest its
origins, only the targets the data support (no service_request target without
service-request events, no cancel in the churn definition without cancel
events, contract churn only with subscriptions), pseudonyms off (the key would
have to be set first) and fairness segments only from a customers table's
categorical attributes. Every path is relative to the written file's folder.
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.config import PSEUDONYM_KEY_ENV
from features.columns import CANCEL, CHURN, CONTRACT, PURCHASE, SERVICE_REQUEST
from features.sources.profile import (
    EventsSource,
    Profile,
    RoleProposal,
    fairness_segments,
    propose_roles,
)
from training.plan import Schedule, propose_schedule

CONTRACT_GRACE_DAYS = 30


@dataclass(frozen=True)
class Targets:
    """The targets the data support, the churn definition, and why others are
    left out."""

    listed: tuple[str, ...]
    churn_definition: str
    left_out: dict[str, str]


def supported_targets(profile: Profile, roles: RoleProposal) -> Targets:
    left_out = {}
    listed = [CHURN]
    if profile.subscriptions_table is not None:
        definition = CONTRACT
    elif roles.roles[CANCEL]:
        definition = "inactivity_or_cancel"
    else:
        definition = "inactivity"
    if roles.roles[PURCHASE]:
        listed.append(PURCHASE)
    else:
        left_out[PURCHASE] = "no purchase events (roles.purchase is empty)"
    if roles.roles[SERVICE_REQUEST]:
        listed.append(SERVICE_REQUEST)
    else:
        left_out[SERVICE_REQUEST] = (
            "no service-request events (roles.service_request is empty)"
        )
    return Targets(tuple(listed), definition, left_out)


def _q(value: object) -> str:
    """A YAML scalar or flow sequence (JSON is YAML)."""
    return json.dumps(value)


def _flow(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {_q(v)}" for k, v in mapping.items()) + "}"


def _comment(text: str, indent: str = "") -> list[str]:
    """`text` as comment lines of at most 88 characters."""
    return textwrap.wrap(
        text, 88, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# "
    )


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()


def _not_read(source: EventsSource, indent: str) -> list[str]:
    """A comment naming the source's columns the config does not read."""
    used = set(source.mapping.columns.values())
    unmapped = [c.name for c in source.columns if c.name not in used]
    return _comment(f"not read: {', '.join(unmapped)}", indent) if unmapped else []


def render(
    profile: Profile,
    out: Path,
    schedule: Schedule | None = None,
    now: datetime | None = None,
) -> str:
    """The starter config's text, for a file written at `out`."""
    folder = Path(out).resolve().parent
    roles = propose_roles(profile.event_types)
    targets = supported_targets(profile, roles)
    grace = CONTRACT_GRACE_DAYS if targets.churn_definition == CONTRACT else 0
    schedule = schedule or propose_schedule(
        profile.first, profile.data_end, grace_days=grace
    )
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    by_type = {t.name: t for t in profile.event_types}
    lines = [
        f"# propensity config written by `propensity init` on {stamp}, from "
        f"{profile.rows:,} events",
        f"# of {profile.customers:,} customers, {profile.first:%Y-%m-%d} .. "
        f"{profile.last_complete_day} ({profile.days} days).",
        "# It works as is: `propensity check` shows what `train` would do, then",
        "# `propensity train`, `propensity score`, `propensity serve`. Review what is",
        "# marked 'proposed' (docs/data.md: Your own data). Unknown keys are",
        "# rejected; paths are relative to this file.",
        "data:",
    ]
    several = len(profile.sources) > 1
    if several:
        lines += [
            "  # the sources, read as one log; a source without an event-type column",
            "  # gives every row one type (proposed from its name), and each maps its",
            "  # own columns (contract name: the source's column)",
            "  events:",
        ]
        for source in profile.sources:
            entry = {"path": _relative(source.path, folder)}
            if source.mapping.constant_event_type is not None:
                entry["event_type"] = source.mapping.constant_event_type
            text = ", ".join(f"{k}: {_q(v)}" for k, v in entry.items())
            if source.mapping.renamed():
                text += f", columns: {_flow(source.mapping.renamed())}"
            lines.append(f"    - {{{text}}}")
            lines += _not_read(source, "    ")
    else:
        events_path = _relative(profile.path, folder)
        mapping = profile.mapping
        if mapping.constant_event_type is None:
            lines.append(f"  events: {_q(events_path)}")
        else:
            lines += [
                f"  # proposed: the events have no event-type column, so every row "
                f"is one {mapping.constant_event_type!r}",
                "  # (more sources, e.g. a tickets table, can be added to this list)",
                "  events:",
                f"    - {{path: {_q(events_path)}, "
                f"event_type: {_q(mapping.constant_event_type)}}}",
            ]
    columns = {} if several else {"events": profile.mapping.renamed()}
    if profile.customers_table is not None:
        columns["customers"] = profile.customers_table.renamed()
    if profile.subscriptions_table is not None:
        columns["subscriptions"] = profile.subscriptions_table.renamed()
    columns = {k: v for k, v in columns.items() if v}
    if columns:
        lines.append(
            "  # proposed from the source's own names and types: contract name: "
            "the source's column"
        )
        lines.append("  columns:")
        lines += [f"    {table}: {_flow(m)}" for table, m in columns.items()]
    if not several:
        lines += _not_read(profile.sources[0], "  ")
    for key, table in (
        ("customers", profile.customers_table),
        ("subscriptions", profile.subscriptions_table),
    ):
        if table is not None:
            lines.append(f"  {key}: {_q(_relative(table.path, folder))}")
    lines += [
        "  # the data are complete through the end of the last day with events",
        f"  # ({profile.last_complete_day}), or through as_of when set (events after "
        "it are refused)",
        "  as_of: null",
        "",
        "# proposed from the event-type names and their frequencies (events, "
        "customers,",
        "# events per customer); every other type counts as activity",
        "roles:",
    ]
    for role in (PURCHASE, SERVICE_REQUEST, CANCEL):
        names = roles.roles[role]
        for name in names:
            t = by_type[name]
            lines.append(
                f"  # {name}: {t.events:,} events, {t.customers:,} customers, "
                f"{t.per_customer:.1f} per customer"
            )
        lines.append(f"  {role}: {_q(names)}")
    lines += [line for note in roles.notes for line in _comment(note, "  ")]
    h = schedule.horizon_days
    lines += [
        "",
        "# the targets trained and served; leave one out to turn it off",
    ]
    for t, why in targets.left_out.items():
        lines += _comment(f"not listed: {t}: {why}")
    lines.append("targets:")
    churn_words = {
        CONTRACT: f"a subscription term ends and none starts within "
        f"{CONTRACT_GRACE_DAYS} days (grace)",
        "inactivity_or_cancel": "no activity, or a cancel, in the horizon",
        "inactivity": "no activity in the horizon (no cancel events)",
    }[targets.churn_definition]
    lines.append(f"  # churn: {churn_words}")
    churn = f"{{horizon_days: {h}, definition: {targets.churn_definition}"
    churn += f", grace_days: {CONTRACT_GRACE_DAYS}}}" if grace else "}"
    lines.append(f"  churn: {churn}")
    events_targets = [t for t in (PURCHASE, SERVICE_REQUEST) if t in targets.listed]
    if events_targets:
        lines += _comment(
            f"{' and '.join(events_targets)}: every customer seen before a cutoff; "
            "lookback_days: N keeps those with an event in the N days before it",
            "  ",
        )
    for target in events_targets:
        lines.append(f"  {target}: {{horizon_days: {h}}}")
    lines += [
        "",
        "training:",
        *_comment(schedule.note, "  "),
        f"  cutoffs: {{start: {schedule.start.isoformat()}, freq: MS}}",
        "  backtest:",
        f"    origins: {schedule.origins}",
        "  # a copy of each run's training table (null: none)",
        "  snapshot_dir: null",
        "",
        "mlflow:",
        "  # MLFLOW_TRACKING_URI overrides; default sqlite:///<this folder>/mlruns/"
        "mlflow.db",
        "  tracking_uri: null",
        "  experiment: propensity",
        "",
        "# `propensity api-key new --name NAME --scopes score` adds a key (a salted "
        "hash) to keys_file",
        "api:",
        "  keys_file: api-keys.txt",
        "  require_keys: true",
        "",
        "# Pseudonyms are off, so that this file works before any secret is set. To "
        "turn them",
        f"# on: `export {PSEUDONYM_KEY_ENV}=$(openssl rand -hex 32)` (keep it: "
        "another key gives",
        "# every customer another pseudonym), then set pseudonymise: true "
        "(docs/privacy.md).",
        "privacy:",
        "  pseudonymise: false",
        "  dir: privacy",
        "",
    ]
    segments = fairness_segments(profile.customers_table)
    if segments:
        lines += [
            "# proposed: the customers table's categorical attributes (numeric ones "
            "need bands)",
            "fairness:",
            f"  segments: {_q(segments)}",
        ]
    else:
        lines += [
            "# no segments: "
            + (
                "the customers table has no categorical attribute"
                if profile.customers_table is not None
                else "no customers table (data.customers) with attributes"
            ),
            "fairness:",
            "  segments: []",
        ]
    return "\n".join(lines) + "\n"
