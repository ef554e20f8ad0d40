"""The benchmarks' hand-written DuckDB SQL for the feature catalogue.

Written from the words of the spec (the module docstring of
`features/definition.py`), not from the engine's code, the way an analyst writes
it by hand: the straightforward query, with no tricks in either direction.

1. `events_with_role`: each event with its role from the event-type mapping;
2. `daily`: one row per customer and day with an event (counts per role, amount
   sums/counts/maxima, first and last event times);
3. `daily_sequence`: each active day with the whole days since the customer's
   previous active day (`lag`) and the customer's next day with a non-cancel event
   (for reactivations);
4. `features`: one row per (customer, cutoff) from `cutoffs JOIN daily_sequence ON
   day < cutoff` (cutoffs are midnights, so a day is wholly before a cutoff or
   not), a `FILTER` per window, every feature computed in the aggregate's SELECT;
5. the customers' attributes, joined last.

Python writes only the repetitive part: one line of SQL per (role, window), in the
catalogue's order, so the query follows the config (windows, trends, amount
roles, event-type mapping, churn horizon). The customers' attributes are those of
the demo data (signup_time, plan, region, age), written out.

This is the one reference query: `python -m benchmarks foundation` and
`python -m benchmarks features` both run it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from features.columns import ROLES

if TYPE_CHECKING:
    from features.definition import FeatureSpec

QUERY = """
WITH cutoffs (cutoff) AS (
    VALUES {cutoff_rows}
),
events_with_role AS (
    SELECT
        customer_id,
        event_time,
        amount,
        quantity,
        CASE event_type
            {role_cases}
            ELSE 'activity'
        END AS role
    FROM events{customer_part}
),
daily AS (
    -- one row per customer and day with at least one event
    SELECT
        customer_id,
        date_trunc('day', event_time) AS day,
        {daily_columns}
    FROM events_with_role
    GROUP BY customer_id, day
),
daily_sequence AS (
    SELECT
        *,
        date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day)
            AS gap_days,
        min(CASE WHEN n_events > n_cancel THEN day END) OVER (
            PARTITION BY customer_id ORDER BY day
            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
        ) AS next_non_cancel_day
    FROM daily
),
features AS (
    -- one row per customer and cutoff with at least one event before the cutoff
    SELECT
        customer_id,
        cutoff,
        {feature_columns}
    FROM cutoffs
    JOIN daily_sequence ON day < cutoff
    GROUP BY customer_id, cutoff
)
SELECT
    f.* EXCLUDE ({flags}),
    -- a signup at or after the cutoff is not known yet at the cutoff
    CASE WHEN c.signup_time < f.cutoff
         THEN floor((epoch(f.cutoff) - epoch(c.signup_time)) / 86400)
    END::DOUBLE AS days_since_signup_time,
    c.plan,
    c.region,
    c.age,
    {flag_columns}
FROM features AS f
LEFT JOIN customers AS c ON c.customer_id = f.customer_id
"""

SEP = ",\n        "


def reference_sql(
    spec: FeatureSpec, cutoffs: Sequence[datetime], part: tuple[int, int] = (0, 1)
) -> str:
    """The hand-written query for `spec` with the cutoffs (midnights) filled in.

    `part=(k, n)` restricts it to the k-th of n parts of the customers (by a hash
    of the id): features are per customer, so the parts' rows together are the
    whole result, and each part needs about 1/n of the memory.
    """
    rows = ", ".join(f"(TIMESTAMP '{c:%Y-%m-%d %H:%M:%S}')" for c in cutoffs)
    k, n = part
    where = f"\n    WHERE hash(customer_id) % {n} = {k}" if n > 1 else ""
    return QUERY.format(
        customer_part=where,
        cutoff_rows=rows,
        role_cases="\n            ".join(
            f"WHEN {_text(t)} THEN {_text(r)}" for t, r in spec.role_of.items()
        ),
        daily_columns=SEP.join(_daily_columns(spec)),
        feature_columns=SEP.join(
            [
                *(c for w in spec.windows_days for c in _window_columns(spec, w)),
                *_history_columns(),
                *(c for t in spec.trend_days for c in _trend_columns(t)),
                *_population_columns(spec),
            ]
        ),
        flags=", ".join(_flags(spec)),
        flag_columns=SEP.join(f"f.{name}" for name in _flags(spec)),
    )


def _flags(spec: FeatureSpec) -> list[str]:
    return [*(f"in_{t}" for t in spec.targets), "eligible"]


def _population_columns(spec: FeatureSpec) -> list[str]:
    """One flag per listed target, then `eligible` (any of them): churn's is
    not already churned; purchase's and service_request's seen (every row here
    has an event before the cutoff), within their lookback days."""
    out = []
    for t in spec.targets:
        if t == "churn":
            rule = _eligible(spec)
        elif t in spec.lookback_days:
            days = spec.lookback_days[t]
            rule = f"coalesce(max(last_event) >= cutoff - INTERVAL {days} DAY, false)"
        else:
            rule = "true"
        out.append(f"{rule} AS in_{t}")
    rules = [c.rsplit(" AS ", 1)[0] for c in out]
    return [*out, f"({' OR '.join(rules)}) AS eligible"]


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _daily_columns(spec: FeatureSpec) -> list[str]:
    cols = ["count(*) AS n_events"]
    cols += [f"count(*) FILTER (WHERE role = '{r}') AS n_{r}" for r in ROLES]
    for r in spec.amount_roles:
        is_r = f"FILTER (WHERE role = '{r}')"
        cols += [
            f"sum(amount) {is_r} AS {r}_amount_sum",
            f"count(amount) {is_r} AS {r}_amount_n",
            f"max(amount) {is_r} AS {r}_amount_max",
            f"sum(quantity) {is_r} AS {r}_quantity_sum",
        ]
    cols += [f"max(event_time) FILTER (WHERE role = '{r}') AS last_{r}" for r in ROLES]
    return [
        *cols,
        "max(event_time) FILTER (WHERE role <> 'cancel') AS last_non_cancel",
        "max(event_time) AS last_event",
        "min(event_time) AS first_event",
        "min(event_time) FILTER (WHERE role = 'purchase') AS first_purchase",
    ]


def _days_since(time: str) -> str:
    """Whole days from `time` to the cutoff, floored; null without `time`."""
    return f"floor((epoch(cutoff) - epoch({time})) / 86400)::BIGINT"


def _window_columns(spec: FeatureSpec, w: int) -> list[str]:
    """The features of window `w` days: [cutoff - w days, cutoff)."""
    window = f"FILTER (WHERE day >= cutoff - INTERVAL {w} DAY)"

    def total(column: str, cast: str) -> str:
        return f"coalesce(sum({column}) {window}, 0)::{cast}"

    cols = [f"{total(f'n_{r}', 'BIGINT')} AS {r}_count_{w}d" for r in ROLES]
    cols += [
        f"count(*) FILTER (WHERE day >= cutoff - INTERVAL {w} DAY AND n_{r} > 0)"
        f" AS {r}_days_{w}d"
        for r in ROLES
    ]
    # the days the customer could have been active: from the first event's day
    possible = f"greatest(least({w}, date_diff('day', min(day), cutoff)), 1)"
    cols += [
        f"count(*) {window} AS active_days_{w}d",
        f"(count(*) {window})::DOUBLE / {possible} AS active_day_share_{w}d",
    ]
    for r in spec.amount_roles:
        cols += [
            f"{total(f'{r}_amount_sum', 'DOUBLE')} AS {r}_amount_sum_{w}d",
            f"sum({r}_amount_sum) {window} / sum({r}_amount_n) {window}"
            f" AS {r}_amount_mean_{w}d",
            f"max({r}_amount_max) {window} AS {r}_amount_max_{w}d",
            f"{total(f'{r}_quantity_sum', 'DOUBLE')} AS {r}_quantity_sum_{w}d",
        ]
    return cols


def _history_columns() -> list[str]:
    """The features over all history before the cutoff."""
    cols = [f"{_days_since(f'max(last_{r})')} AS days_since_last_{r}" for r in ROLES]
    cols += [
        f"{_days_since('max(last_event)')} AS days_since_last_event",
        f"{_days_since('min(first_purchase)')} AS days_since_first_purchase",
        f"{_days_since('min(first_event)')} AS tenure_days",
    ]
    cols += [f"sum(n_{r})::BIGINT AS {r}_count_total" for r in ROLES]
    return [
        *cols,
        "count(*) FILTER (WHERE n_cancel > 0 AND next_non_cancel_day < cutoff)"
        " AS reactivations",
        "sum(n_service_request)::DOUBLE / nullif(sum(n_purchase), 0)"
        " AS service_requests_per_purchase",
        # the first active day has no gap; later days' previous day is also
        # before the cutoff
        "avg(gap_days) AS active_day_gap_mean",
        "stddev_pop(gap_days) AS active_day_gap_std",
    ]


def _trend_columns(t: int) -> list[str]:
    """The last `t` days [cutoff - t, cutoff) against the `t` days before them."""
    last = f"day >= cutoff - INTERVAL {t} DAY"
    prior = f"day >= cutoff - INTERVAL {2 * t} DAY AND day < cutoff - INTERVAL {t} DAY"
    cols = []
    for name, column in (("event", "n_events"), ("purchase", "n_purchase")):
        recent = f"coalesce(sum({column}) FILTER (WHERE {last}), 0)"
        before = f"coalesce(sum({column}) FILTER (WHERE {prior}), 0)"
        cols += [
            f"({recent} + 1)::DOUBLE / ({before} + 1) AS {name}_count_ratio_{t}d",
            f"({recent} - {before})::BIGINT AS {name}_count_diff_{t}d",
        ]
    return cols


def _eligible(spec: FeatureSpec) -> str:
    """Not already churned: no cancel at or after the last other event, and (for
    the inactivity definitions) a non-cancel event within the churn horizon."""
    not_cancelled = (
        "(max(last_cancel) IS NULL"
        " OR max(last_cancel) < max(last_non_cancel))"  # null: a cancel only
    )
    recent = (
        "coalesce(max(last_non_cancel) >= cutoff - INTERVAL"
        f" {spec.churn_horizon_days} DAY, false)"
    )
    rule = {
        "cancel": f"coalesce({not_cancelled}, false)",
        "inactivity": recent,
        "inactivity_or_cancel": f"(coalesce({not_cancelled}, false) AND {recent})",
    }
    return rule[spec.churn_definition]
