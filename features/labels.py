"""Labels from the same events: what happens in [cutoff, cutoff + horizon).

- churn: no activity (any event but a cancel) in the window, or a cancel in it
  (`inactivity_or_cancel`; `inactivity` and `cancel` use one half only); or, with
  `contract`, from the subscriptions table: a term ends in the window and no term
  starts in `[end, end + grace days]` (KKBox's definition);
- purchase: a purchase event in the window;
- service_request: a service-request event in the window.
An event at exactly cutoff + horizon is outside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import ibis
import ibis.expr.types as ir

from core.config import ProjectConfig
from features.columns import (
    CANCEL,
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    END_TIME,
    EVENT_TIME,
    PURCHASE,
    ROLE,
    SERVICE_REQUEST,
    START_TIME,
)
from features.definition import FeatureSpec, with_roles


@dataclass(frozen=True)
class LabelSpec:
    """The listed targets' label windows: `horizons` has one entry per listed
    target (in canonical order), and `build_labels` one column each."""

    horizons: dict[str, int]
    churn_definition: str = "inactivity_or_cancel"
    # contract churn: days after a term's end in which a new term is a renewal
    grace_days: int = 30

    @classmethod
    def from_config(cls, config: ProjectConfig) -> LabelSpec:
        t = config.targets
        churn = t.churn_settings
        return cls(
            horizons={target: t.horizon(target) for target in t.listed()},
            churn_definition=churn.definition,
            grace_days=churn.grace_days,
        )

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.horizons)

    def complete(self, target: str, cutoff: datetime, data_end: datetime) -> bool:
        """True when the target's whole window lies within the data (for contract
        churn, the grace period after the window too)."""
        days = self.horizons[target]
        if target == CHURN and self.churn_definition == CONTRACT:
            days += self.grace_days
        return cutoff + timedelta(days=days) <= data_end


def build_labels(
    events: ir.Table,
    pairs: ir.Table,
    spec: FeatureSpec,
    labels: LabelSpec,
    subscriptions: ir.Table | None = None,
) -> ir.Table:
    """`customer_id`, `cutoff` and one 0/1 column per target of `labels` for
    each pair (`subscriptions` is read by the contract churn definition only)."""
    ev = with_roles(events, spec)
    ev = ev.select(_cid=ev[CUSTOMER_ID], _t=ev[EVENT_TIME], _role=ev[ROLE])
    longest = max(labels.horizons.values())
    joined = pairs.left_join(
        ev,
        [
            pairs[CUSTOMER_ID] == ev._cid,
            ev._t >= pairs[CUTOFF],
            ev._t < pairs[CUTOFF] + ibis.interval(days=longest),
        ],
    )
    t, role, cutoff = joined._t, joined._role, joined[CUTOFF]

    def within(target: str) -> ir.BooleanValue:
        return t < cutoff + ibis.interval(days=labels.horizons[target])

    counted: dict[str, ir.Value] = {}
    if CHURN in labels.horizons:
        counted["_activity"] = t.count(where=within(CHURN) & (role != CANCEL))
        counted["_cancel"] = t.count(where=within(CHURN) & (role == CANCEL))
    for target in (PURCHASE, SERVICE_REQUEST):
        if target in labels.horizons:
            # the role and the target share their name
            counted[f"_{target}"] = t.count(where=within(target) & (role == target))
    counts = joined.group_by([CUSTOMER_ID, CUTOFF]).aggregate(**counted)
    out: dict[str, ir.Value] = {}
    if CHURN in labels.horizons:
        inactive = counts._activity == 0
        cancelled = counts._cancel > 0
        if labels.churn_definition == CONTRACT:
            counts = _with_contract_churn(counts, subscriptions, labels)
            churn = counts._contract > 0
        else:
            churn = {
                "inactivity": inactive,
                "cancel": cancelled,
                "inactivity_or_cancel": inactive | cancelled,
            }[labels.churn_definition]
        out[CHURN] = churn.cast("int8")
    for target in (PURCHASE, SERVICE_REQUEST):
        if target in labels.horizons:
            out[target] = (counts[f"_{target}"] > 0).cast("int8")
    return counts.select(CUSTOMER_ID, CUTOFF, **out)


def _with_contract_churn(
    counts: ir.Table, subscriptions: ir.Table | None, labels: LabelSpec
) -> ir.Table:
    """`counts` with `_contract`: the pair's terms that end in [cutoff, cutoff + H)
    with no term starting in [end, end + grace days]. Terms do not overlap, so the
    term after one (by start) is the only one that can start in its grace."""
    if subscriptions is None:
        raise ValueError(
            "the contract churn definition needs the subscriptions table "
            "(set data.subscriptions)"
        )
    s = subscriptions
    by_start = ibis.window(group_by=s[CUSTOMER_ID], order_by=s[START_TIME])
    terms = s.select(
        _tcid=s[CUSTOMER_ID],
        _end=s[END_TIME],
        _next=s[START_TIME].lead().over(by_start),
    )
    keys = counts.select(_kcid=counts[CUSTOMER_ID], _kcut=counts[CUTOFF])
    horizon = ibis.interval(days=labels.horizons[CHURN])
    grace = ibis.interval(days=labels.grace_days)
    ended = keys.join(
        terms,
        [
            keys._kcid == terms._tcid,
            terms._end >= keys._kcut,
            terms._end < keys._kcut + horizon,
        ],
    )
    renewed = ended._next.notnull() & (ended._next <= ended._end + grace)
    lost = (
        ended.filter(~renewed)
        .group_by(["_kcid", "_kcut"])
        .aggregate(_contract=ended._end.count())
    )
    out = counts.left_join(
        lost, [counts[CUSTOMER_ID] == lost._kcid, counts[CUTOFF] == lost._kcut]
    )
    return out.mutate(_contract=out._contract.fill_null(0)).drop("_kcid", "_kcut")


class _TimeRange(Protocol):
    def time_range(self) -> tuple[datetime, datetime]: ...


def data_end(ds: _TimeRange, complete_through: datetime | None = None) -> datetime:
    """The instant the data are complete through: `complete_through` (the config's
    `data.as_of`) when given, else the end of the last day with events. A log whose
    last event is at 23:56 holds that whole day, so a label window ending at the
    next midnight is complete. Training keeps a label only where its window ends by
    then; outcome monitoring waits for it."""
    if complete_through is not None:
        return complete_through
    _, last = ds.time_range()
    return datetime(last.year, last.month, last.day) + timedelta(days=1)
