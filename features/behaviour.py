"""Behaviour features the window counts miss (`features.behaviour: true`), computed
from the stage-two aggregates (the bucket rows), so the incremental state
(features.state) produces them with no state of its own:

- `overdue_event`: `days_since_last_event / active_day_gap_mean`, the days since the
  last event relative to the customer's own mean gap between active days (null
  with fewer than two active days);
- `purchase_gap_mean`: whole days from the first to the last purchase day over the
  purchase days minus one (null with fewer than two purchase days);
- `overdue_purchase`: `days_since_last_purchase / purchase_gap_mean`;
- per amount role `r` and trend `t`: `{r}_amount_diff_{t}d`, the role's amount in
  the last `t` days minus the `t` days before them (0.0 without amounts).

Tests check each against a plain-pandas reference (tests/unit/features/
test_behaviour.py).
"""

from __future__ import annotations

from collections.abc import Callable

import ibis.expr.types as ir

from features.columns import PURCHASE


def behaviour_features(spec) -> list:
    """The behaviour features, in order (`features.definition.Feature`s)."""
    from features.definition import Feature

    out = [
        Feature(
            "overdue_event",
            None,
            None,
            "days since the last event over the mean gap between active days",
        ),
        Feature(
            "purchase_gap_mean",
            PURCHASE,
            None,
            "mean whole days between purchase days",
        ),
        Feature(
            "overdue_purchase",
            PURCHASE,
            None,
            "days since the last purchase over the mean gap between purchase days",
        ),
    ]
    for r in spec.amount_roles:
        for t in spec.trend_days:
            out.append(
                Feature(
                    f"{r}_amount_diff_{t}d",
                    r,
                    t,
                    f"{r} amount in the last {t} days minus the {t} days before",
                )
            )
    return out


def stage_two_sums(
    b: ir.Table, spec, total: Callable[..., ir.Value]
) -> dict[str, ir.Value]:
    """The aggregates the behaviour features read, beside stage two's others."""
    m = {"_bh_purchase_days": total(f"_d_{PURCHASE}")}
    for r in spec.amount_roles:
        for t in spec.trend_days:
            m[f"_bh_{r}_last_{t}"] = total(f"_amount_{r}", t)
            m[f"_bh_{r}_prior_{t}"] = total(f"_amount_{r}", 2 * t, after=t)
    return m


def behaviour_values(agg: ir.Table, spec) -> dict[str, ir.Value]:
    """The behaviour features of the stage-two aggregate (with the catalogue's
    "days since" and gap features already computed)."""
    from features.definition import CENTS, days_between

    first = agg._first_purchase.truncate("D")
    last = agg[f"_last_{PURCHASE}"].truncate("D")
    gaps = (agg._bh_purchase_days - 1).nullif(0).cast("float64")
    gap_mean = days_between(last, first).cast("float64") / gaps
    d: dict[str, ir.Value] = {
        "overdue_event": agg.days_since_last_event.cast("float64")
        / agg.active_day_gap_mean,
        "purchase_gap_mean": gap_mean,
        "overdue_purchase": agg[f"days_since_last_{PURCHASE}"].cast("float64")
        / gap_mean,
    }
    for r in spec.amount_roles:
        for t in spec.trend_days:
            diff = agg[f"_bh_{r}_last_{t}"] - agg[f"_bh_{r}_prior_{t}"]
            d[f"{r}_amount_diff_{t}d"] = diff.cast("float64") / CENTS
    return d


__all__ = ["behaviour_features", "behaviour_values", "stage_two_sums"]
