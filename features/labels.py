"""Labels from the same events: what happens in [cutoff, cutoff + horizon).

- churn: no activity (any event but a cancel) in the window, or a cancel in it
  (`inactivity_or_cancel`; `inactivity` and `cancel` use one half only);
- purchase: a purchase event in the window;
- service_request: a service-request event in the window.
An event at exactly cutoff + horizon is outside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from features.columns import (
    CANCEL,
    CHURN,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    PURCHASE,
    ROLE,
    SERVICE_REQUEST,
)
from features.config import ProjectConfig
from features.definition import FeatureSpec, with_roles


@dataclass(frozen=True)
class LabelSpec:
    horizons: dict[str, int]
    churn_definition: str = "inactivity_or_cancel"

    @classmethod
    def from_config(cls, config: ProjectConfig) -> LabelSpec:
        t = config.targets
        return cls(
            horizons={
                CHURN: t.churn.horizon_days,
                PURCHASE: t.purchase.horizon_days,
                SERVICE_REQUEST: t.service_request.horizon_days,
            },
            churn_definition=t.churn.definition,
        )

    def complete(self, target: str, cutoff: datetime, data_end: datetime) -> bool:
        """True when the target's whole window lies within the data."""
        return cutoff + timedelta(days=self.horizons[target]) <= data_end


def build_labels(
    events: ir.Table, pairs: ir.Table, spec: FeatureSpec, labels: LabelSpec
) -> ir.Table:
    """`customer_id`, `cutoff` and one 0/1 column per target for each pair."""
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

    counts = joined.group_by([CUSTOMER_ID, CUTOFF]).aggregate(
        _activity=t.count(where=within(CHURN) & (role != CANCEL)),
        _cancel=t.count(where=within(CHURN) & (role == CANCEL)),
        _purchase=t.count(where=within(PURCHASE) & (role == PURCHASE)),
        _service=t.count(where=within(SERVICE_REQUEST) & (role == SERVICE_REQUEST)),
    )
    inactive = counts._activity == 0
    cancelled = counts._cancel > 0
    churn = {
        "inactivity": inactive,
        "cancel": cancelled,
        "inactivity_or_cancel": inactive | cancelled,
    }[labels.churn_definition]
    return counts.select(
        CUSTOMER_ID,
        CUTOFF,
        **{
            CHURN: churn.cast("int8"),
            PURCHASE: (counts._purchase > 0).cast("int8"),
            SERVICE_REQUEST: (counts._service > 0).cast("int8"),
        },
    )
