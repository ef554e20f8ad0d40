"""A slow, obvious reference for the subscription features and contract churn.

Written from the documented semantics (the docstring of `features/subscriptions.py`
and `features/labels.py`), not from the Ibis code: for each (customer, cutoff) it
walks that customer's terms as a list of dicts.

- a term is in force over [start, end) (end None: open); known at `c` when
  start < c; the current term is the known one with end None or end >= c;
- against the previous term by start: contiguous when start == previous end;
  renewal = contiguous on the same plan; plan change = contiguous on another plan,
  an upgrade when price / billing_period_days rises, a downgrade when it falls;
  gap = start > previous end;
- windowed counts take the terms starting in [c - w days, c);
- contract churn over [c, c + H): some term ends in it and no term at all starts in
  [end, end + grace days].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from features.columns import (
    ACTIVITY,
    AUTO_RENEW,
    BILLING_PERIOD_DAYS,
    CUSTOMER_ID,
    DISCOUNT,
    END_TIME,
    PLAN,
    PRICE,
    QUANTITY,
    START_TIME,
    population_column,
)
from features.definition import FeatureSpec

DAY = pd.Timedelta(days=1)
KINDS = ("renewals", "upgrades", "downgrades")


def whole_days(later: object, earlier: object) -> int | None:
    if later is None or earlier is None:
        return None
    return math.floor((later - earlier).total_seconds() / 86400)


def _kinds(terms: list[dict]) -> list[set[str]]:
    """Each term's kinds: a subset of renewals, upgrades, downgrades, change, gap."""
    out: list[set[str]] = []
    for i, term in enumerate(terms):
        kinds: set[str] = set()
        if i:
            prev = terms[i - 1]
            if prev[END_TIME] is not None and term[START_TIME] == prev[END_TIME]:
                if term[PLAN] == prev[PLAN]:
                    kinds.add("renewals")
                else:
                    kinds.add("change")
                    daily = term[PRICE] / term[BILLING_PERIOD_DAYS]
                    before = prev[PRICE] / prev[BILLING_PERIOD_DAYS]
                    if daily > before:
                        kinds.add("upgrades")
                    elif daily < before:
                        kinds.add("downgrades")
            if prev[END_TIME] is not None and term[START_TIME] > prev[END_TIME]:
                kinds.add("gap")
        out.append(kinds)
    return out


def subscription_values(
    terms: Sequence[dict],
    cutoff: pd.Timestamp,
    spec: FeatureSpec,
    activity: dict[int, int],
) -> dict[str, object]:
    """One customer's subscription features at `cutoff`; `terms` are all of their
    terms, `activity[w]` their activity events in the last w days."""
    ordered = sorted(terms, key=lambda t: t[START_TIME])
    kinds = _kinds(ordered)
    known = [
        (t, k) for t, k in zip(ordered, kinds, strict=True) if t[START_TIME] < cutoff
    ]
    current = [t for t, _ in known if t[END_TIME] is None or t[END_TIME] >= cutoff]
    assert len(current) <= 1, "terms do not overlap"
    cur = current[0] if current else None

    def now(column: str) -> object:
        value = None if cur is None else cur[column]
        return None if value is None or pd.isna(value) else value

    out: dict[str, object] = {
        "sub_active": int(cur is not None),
        "sub_days_to_term_end": whole_days(now(END_TIME), cutoff),
        "sub_billing_period_days": now(BILLING_PERIOD_DAYS),
        "sub_price": now(PRICE),
        "sub_discount": now(DISCOUNT),
        "sub_quantity": now(QUANTITY),
        "sub_auto_renew": None if now(AUTO_RENEW) is None else float(now(AUTO_RENEW)),
        "sub_plan": now(PLAN),
        "sub_tenure_days": whole_days(cutoff, known[0][0][START_TIME])
        if known
        else None,
        "sub_terms_total": len(known),
        "sub_renewals_total": sum("renewals" in k for _, k in known),
        "sub_plan_changes_total": sum("change" in k for _, k in known),
        "sub_gaps_total": sum("gap" in k for _, k in known),
    }
    for w in spec.windows_days:
        recent = [k for t, k in known if t[START_TIME] >= cutoff - w * DAY]
        for kind in KINDS:
            out[f"sub_{kind}_{w}d"] = sum(kind in k for k in recent)
    changes = [t[START_TIME] for t, k in known if "change" in k]
    out["sub_days_since_plan_change"] = (
        whole_days(cutoff, max(changes)) if changes else None
    )
    for w in spec.windows_days:
        price, n = out["sub_price"], activity[w]
        out[f"sub_price_per_activity_{w}d"] = (
            price / n if price is not None and n else None
        )
    return out


def terms_of(subscriptions: pd.DataFrame) -> dict[str, list[dict]]:
    """Terms per customer as dicts (NaT/NaN as None)."""
    out: dict[str, list[dict]] = {}
    for row in subscriptions.to_dict("records"):
        clean = {
            k: (None if not isinstance(v, str) and pd.isna(v) else v)
            for k, v in row.items()
        }
        for col in (START_TIME, END_TIME):
            if clean[col] is not None:
                clean[col] = pd.Timestamp(clean[col])
        out.setdefault(clean[CUSTOMER_ID], []).append(clean)
    return out


def reference_subscription_features(
    features: pd.DataFrame, subscriptions: pd.DataFrame, spec: FeatureSpec
) -> pd.DataFrame:
    """The reference event features (`features`, with the population flags and
    eligible) and the subscription features per row; under contract churn, the
    churn population asks for an active subscription too."""
    by_id = terms_of(subscriptions)
    rows = []
    for row in features.to_dict("records"):
        activity = {w: row[f"{ACTIVITY}_count_{w}d"] for w in spec.windows_days}
        values = subscription_values(
            by_id.get(row[CUSTOMER_ID], []), pd.Timestamp(row["cutoff"]), spec, activity
        )
        row = {**row, **values}
        if spec.churn_definition == "contract" and "churn" in spec.targets:
            churn = population_column("churn")
            row[churn] = bool(row[churn]) and values["sub_active"] == 1
            flags = [bool(row[population_column(t)]) for t in spec.targets]
            row["eligible"] = any(flags)
        rows.append(row)
    return pd.DataFrame(rows)


def reference_contract_churn(
    terms: Sequence[dict], cutoff: pd.Timestamp, horizon_days: int, grace_days: int
) -> int:
    """1 when a term ends in [c, c + H) and no term starts in [end, end + G]."""
    for term in terms:
        end = term[END_TIME]
        if end is None or not cutoff <= end < cutoff + horizon_days * DAY:
            continue
        grace_end = end + grace_days * DAY
        if not any(end <= t[START_TIME] <= grace_end for t in terms):
            return 1
    return 0
