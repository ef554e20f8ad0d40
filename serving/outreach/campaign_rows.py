"""Logged campaigns as uplift training rows: what each selected customer looked
like at selection, which group the keyed hash put them in, what happened.

For every confirmed campaign on a target whose outcome window has passed (by
`as_of`): one row per selected customer with

- the campaign id, the stored customer id, `treated` (1 treatment, 0 control)
  and the score they were selected on (null when the log predates keeping it);
- `outcome`: the readout's outcome (serving.outreach.readout.customer_outcomes:
  the target's own label over its horizon from confirmation, or one event of
  the given types), so the uplift model learns exactly what a readout measures;
- the features of the one feature definition (features.definition) at the
  selection date: cutoff = midnight UTC of the confirmation day, from events
  before it, the customer's attributes and subscription terms then. This is
  what the nightly run of that date computed (point in time: nothing after
  the selection leaks in).

Immature campaigns are left out and named. training.uplift fits on the rows;
the CLI (`propensity uplift train`) wires the two.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ibis
import pandas as pd

from core.config import ProjectConfig
from features.columns import CUSTOMER_ID, CUTOFF
from features.definition import FeatureSpec, build_features, catalogue
from features.labels import LabelSpec
from features.sources.load import Dataset
from serving.outreach.contact_log import open_contact_log
from serving.outreach.readout import (
    GROUP,
    OUTCOME,
    SCORE,
    customer_outcomes,
    default_as_of,
    outcome_definition,
    parse_stamp,
    selected_table,
    with_deciles,
)
from serving.outreach.selection import TREATMENT

log = logging.getLogger(__name__)
CAMPAIGN_ID, TREATED = "campaign_id", "treated"


@dataclass
class CampaignRows:
    """The rows, the model features and which are categorical, the campaigns
    used and those left out with why."""

    frame: pd.DataFrame
    features: list[str]
    categorical: list[str]
    used: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def selection_cutoff(confirmed_at: datetime) -> datetime:
    """Midnight of the confirmation day: the features' cutoff."""
    return datetime(confirmed_at.year, confirmed_at.month, confirmed_at.day)


def campaign_rows(
    config: ProjectConfig,
    ds: Dataset,
    target: str,
    *,
    event_types: Sequence[str] = (),
    horizon_days: int | None = None,
    as_of: datetime | None = None,
) -> CampaignRows:
    """The rows of every matured campaign on `target` (module docstring)."""
    spec, labels = FeatureSpec.from_config(config), LabelSpec.from_config(config)
    cat = catalogue(spec, ds.customers)
    outcome = outcome_definition(config, target, event_types, horizon_days)
    as_of = as_of or default_as_of(config)
    contact_log = open_contact_log(config.outreach.contact_log)
    frames, used, skipped = [], [], {}
    for campaign in contact_log.campaigns():
        if campaign.target != target:
            continue
        start = parse_stamp(campaign.confirmed_at)
        known = start + timedelta(days=outcome.days_to_mature)
        if known > as_of:
            skipped[campaign.campaign_id] = f"immature until {known:%Y-%m-%d}"
            continue
        rows = contact_log.selected(campaign.campaign_id)
        selected = with_deciles(ibis.memtable(selected_table(rows)))
        per = customer_outcomes(ds, selected, start, outcome, spec, labels)
        cutoff = selection_cutoff(start)
        pairs = per.select(CUSTOMER_ID, **{CUTOFF: ibis.literal(cutoff)})
        feats = build_features(ds.events, pairs, spec, ds.customers, ds.subscriptions)
        joined = per.to_pandas().merge(
            feats.select(CUSTOMER_ID, *cat.names).to_pandas(),
            on=CUSTOMER_ID,
            how="left",
            validate="1:1",
        )
        frames.append(
            pd.DataFrame(
                {
                    CAMPAIGN_ID: campaign.campaign_id,
                    CUSTOMER_ID: joined[CUSTOMER_ID],
                    TREATED: (joined[GROUP] == TREATMENT).astype("int64"),
                    OUTCOME: joined[OUTCOME].astype("int64"),
                    SCORE: joined[SCORE],
                }
            ).join(joined[cat.names])
        )
        used.append(campaign.campaign_id)
        log.info("%s: %d rows at cutoff %s", campaign.campaign_id, len(joined), cutoff)
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[CAMPAIGN_ID, CUSTOMER_ID, TREATED, OUTCOME, SCORE])
    )
    return CampaignRows(frame, cat.names, cat.categorical, used, skipped)
