"""The one feature definition: point-in-time features for (customer, cutoff) pairs.

Training passes past cutoffs, the nightly job passes today's; both call
`build_features`. It is a single Ibis expression, so it runs on DuckDB here and on
any other Ibis backend (Spark) unchanged.

Semantics (the contract that tests/reference.py and the benchmark's hand-written
SQL implement independently). For a cutoff `c`, always a midnight (UTC):

- Only events with `event_time < c` are read. An event's role comes from the
  config's event-type mapping; unmapped types play `activity`. Its day is its date.
- A window of `w` days holds the events with `c - w days <= event_time < c`; as `c`
  is a midnight, a day lies wholly inside a window or wholly outside it.
- "Days since" figures are whole days, floored: `floor((c - t) seconds / 86400)`,
  so an event one second before the cutoff is 0 days ago. Null when there is no
  such event.

Per window `w` (features.windows_days, ascending):
- `{role}_count_{w}d`: events of each role (activity, purchase, service_request,
  cancel) in the window;
- `{role}_days_{w}d`: distinct days with an event of the role in the window;
- `active_days_{w}d`: distinct days with any event in the window;
- `active_day_share_{w}d`: `active_days_{w}d / min(w, d)`, where `d` is the number of
  days from the day of the customer's first event to `c` (at least 1): the share of
  the days the customer could have been active in the window;
- for each role in features.amount_roles (default: purchase):
  `{role}_amount_sum_{w}d` (0.0 without amounts), `{role}_amount_mean_{w}d` (over
  the role's events that have an amount; null without any), `{role}_amount_max_{w}d`
  (null without any), `{role}_quantity_sum_{w}d` (0.0 without quantities). A null
  amount or quantity is left out; it is not a zero. Amounts count to the cent and
  quantities to the thousandth (rounded half away from zero), so sums are exact
  and do not depend on the source or the engine's thread schedule.

Over all history before `c`:
- `days_since_last_{role}`, `days_since_last_event`, `days_since_first_purchase`,
  `tenure_days` (days since the first event);
- `{role}_count_total`: events of each role;
- `reactivations`: days with a cancel event followed, on a later day before `c`, by
  an event of another role;
- `service_requests_per_purchase`: service_request_count_total /
  purchase_count_total, null without purchases;
- `active_day_gap_mean`, `active_day_gap_std`: the mean and the population standard
  deviation (ddof 0) of the whole-day gaps between consecutive active days; null
  with fewer than two active days.

Per trend `t` (features.trend_days, ascending), comparing the last `t` days
`[c - t, c)` with the `t` days before them `[c - 2t, c - t)`:
- `event_count_ratio_{t}d` = (events in the last + 1) / (events in the prior + 1),
  `event_count_diff_{t}d` = events in the last - events in the prior;
- `purchase_count_ratio_{t}d`, `purchase_count_diff_{t}d`: the same for purchases.

Customer attributes follow (see `attribute_features`): numbers and booleans as
they are, strings as categoricals (integer codes kept with the model by
`model.encoding`; unknown values become missing), timestamps and dates as
`days_since_<name>` (null when not before `c`).

With a subscriptions table (features.subscriptions), the subscription features
follow the attributes: the current term's state and the history of renewals and
plan changes; their semantics are in that module's docstring. Without one, the
catalogue, and so the feature-set version, is what it was before subscriptions.

Counts, count differences, reactivations and the event "days since" figures are
integers (int64; "days since" may be null); every other feature, including an
attribute's `days_since_<name>`, is a float (float64).

Populations (not features): one boolean per listed target (`spec.targets`),
`in_<target>`, says whether the (customer, cutoff) row belongs to the rows that
target is trained and scored on (`FeatureSpec.population_name`):
- churn (`active_not_churned`): seen before `c` and not already churned under the
  churn definition (`_not_churned`: no cancel at or after the last other event,
  and a non-cancel event in `[c - churn horizon, c)` for the inactivity
  definitions; a term in force at `c` under `contract`);
- purchase, service_request (`seen`): an event before `c`; with a lookback of `N`
  days (`seen_within_<N>d`), the last event (any role) at or after `c - N days`;
- `eligible`: in some listed target's population.
They are computed from the last-event aggregates already there (no join).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import ibis
import ibis.expr.types as ir
import pandas as pd

from core.config import ProjectConfig
from features.columns import (
    ACTIVITY,
    AMOUNT,
    CANCEL,
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
    QUANTITY,
    ROLE,
    ROLES,
    SERVICE_REQUEST,
    TARGETS,
    population_column,
)

# Bump when the meaning of any feature changes; part of the feature-set version.
DEFINITION_VERSION = 2
SECONDS_PER_DAY = 86400
# in some listed target's population: the rows training and scoring keep
ELIGIBLE = "eligible"
# population names (FeatureSpec.population_name)
ACTIVE_NOT_CHURNED = "active_not_churned"
SEEN = "seen"


def population_name(source: ProjectConfig | FeatureSpec, target: str) -> str:
    """The target's population name (`FeatureSpec.population_name`), from the
    config or a feature spec: what the MLflow run, the model's metadata and the
    nightly outputs say a score belongs to."""
    spec = (
        source if isinstance(source, FeatureSpec) else FeatureSpec.from_config(source)
    )
    return spec.population_name(target)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything the definition needs, taken from the config once."""

    role_of: dict[str, str]
    windows_days: tuple[int, ...] = (7, 30, 90, 180, 365)
    trend_days: tuple[int, ...] = (30, 90)
    amount_roles: tuple[str, ...] = (PURCHASE,)
    # the churn population's rule (and churn's label); the defaults apply when
    # churn is not a listed target
    churn_horizon_days: int = 30
    churn_definition: str = "inactivity_or_cancel"
    attributes: tuple[str, ...] | None = None
    # a subscriptions table is configured: add the subscription features
    subscriptions: bool = False
    # the listed targets: one population flag each (`population_column`)
    targets: tuple[str, ...] = TARGETS
    # purchase / service_request: only customers with an event in the N days
    # before the cutoff (absent: every customer seen before it)
    lookback_days: dict[str, int] = field(default_factory=dict)
    # feature groups (features.classic, features.behaviour) and the listed
    # targets' horizons the classic features predict over
    classic: bool = False
    behaviour: bool = False
    # the behaviour group's trend features (features.behaviour.trends)
    trends: bool = False
    horizons: tuple[int, ...] = (30,)

    @classmethod
    def from_config(cls, config: ProjectConfig) -> FeatureSpec:
        attrs = config.features.attributes
        churn = config.targets.churn_settings
        targets = config.targets.listed()
        lookback = {
            t: days
            for t in targets
            if t != CHURN
            and (days := getattr(config.targets, t).lookback_days) is not None
        }
        return cls(
            role_of=config.roles.role_of(),
            windows_days=tuple(sorted(config.features.windows_days)),
            trend_days=tuple(sorted(config.features.trend_days)),
            amount_roles=tuple(config.features.amount_roles),
            churn_horizon_days=churn.horizon_days,
            churn_definition=churn.definition,
            attributes=None if attrs is None else tuple(attrs),
            subscriptions=config.data.subscriptions is not None,
            targets=targets,
            lookback_days=lookback,
            classic=config.features.classic,
            behaviour=config.features.behaviour,
            trends=config.features.trends,
            horizons=tuple(sorted({config.targets.horizon(t) for t in targets})),
        )

    def population_name(self, target: str) -> str:
        """The name of the target's population, as outputs, MLflow params and
        model cards show it: `active_not_churned` (churn: seen, and not churned
        at the cutoff under the churn definition and horizon), `seen` (every
        customer with an event before the cutoff) or `seen_within_<N>d` (an
        event in the N days before it)."""
        if target == CHURN:
            return ACTIVE_NOT_CHURNED
        days = self.lookback_days.get(target)
        return SEEN if days is None else f"{SEEN}_within_{days}d"

    def population_text(self, target: str) -> str:
        """The population in a sentence, for model cards and docs."""
        if target == CHURN:
            rule = {
                "inactivity_or_cancel": (
                    f"an event other than a cancel in the {self.churn_horizon_days} "
                    "days before the cutoff and no cancel since"
                ),
                "inactivity": (
                    f"an event other than a cancel in the {self.churn_horizon_days} "
                    "days before the cutoff"
                ),
                "cancel": "no cancel since their last other event",
                CONTRACT: "a subscription term in force at the cutoff",
            }[self.churn_definition]
            return (
                f"customers seen before the cutoff and not already churned "
                f"({self.churn_definition}): {rule}"
            )
        days = self.lookback_days.get(target)
        if days is None:
            return "every customer with an event before the cutoff"
        return f"every customer with an event in the {days} days before the cutoff"


@dataclass(frozen=True)
class Feature:
    name: str
    role: str | None
    window_days: int | None
    description: str
    categorical: bool = False
    # For customer attributes: the column it comes from, and whether it is a
    # timestamp turned into whole days since it.
    source: str | None = None
    days_since: bool = False
    # Grows with the calendar by construction (whole days since a fixed date in
    # the customer's past: the first event, the first purchase, an attribute
    # date): its distribution shifts as the population ages, whatever customers
    # do, so drift monitoring reports it without alerting by default.
    calendar: bool = False


@dataclass(frozen=True)
class Catalogue:
    """The ordered list of features a spec produces, for a given customers schema."""

    features: tuple[Feature, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.categorical]

    @property
    def calendar(self) -> list[str]:
        """The features that grow with the calendar by construction."""
        return [f.name for f in self.features if f.calendar]

    def version(self) -> str:
        """Short hash of the definition version and the feature names, in order."""
        payload = json.dumps([DEFINITION_VERSION, self.names]).encode()
        return hashlib.sha256(payload).hexdigest()[:12]


def _event_features(spec: FeatureSpec) -> list[Feature]:
    """The event features, in order, as the module docstring defines them."""
    out: list[Feature] = []

    def add(
        name: str, role: str | None, window: int | None, text: str, **kw: bool
    ) -> None:
        out.append(Feature(name, role, window, text, **kw))

    for w in spec.windows_days:
        last = f"in the last {w} days"
        for role in ROLES:
            add(f"{role}_count_{w}d", role, w, f"{role} events {last}")
        for role in ROLES:
            add(
                f"{role}_days_{w}d",
                role,
                w,
                f"distinct days with a {role} event {last}",
            )
        add(f"active_days_{w}d", None, w, f"distinct days with any event {last}")
        add(
            f"active_day_share_{w}d",
            None,
            w,
            f"share of the days {last} (since the first event) with any event",
        )
        for role in spec.amount_roles:
            add(f"{role}_amount_sum_{w}d", role, w, f"sum of {role} amounts {last}")
            add(f"{role}_amount_mean_{w}d", role, w, f"mean {role} amount {last}")
            add(f"{role}_amount_max_{w}d", role, w, f"largest {role} amount {last}")
            add(
                f"{role}_quantity_sum_{w}d", role, w, f"sum of {role} quantities {last}"
            )
    for role in ROLES:
        add(
            f"days_since_last_{role}",
            role,
            None,
            f"whole days since the last {role} event",
        )
    add(
        "days_since_last_event",
        None,
        None,
        "whole days since the last event of any kind",
    )
    add(
        "days_since_first_purchase",
        PURCHASE,
        None,
        "whole days since the first purchase event",
        calendar=True,
    )
    add("tenure_days", None, None, "whole days since the first event", calendar=True)
    for role in ROLES:
        add(f"{role}_count_total", role, None, f"{role} events ever")
    add(
        "reactivations",
        CANCEL,
        None,
        "days with a cancel event followed, on a later day, by another event",
    )
    add(
        "service_requests_per_purchase",
        SERVICE_REQUEST,
        None,
        "service requests ever per purchase ever",
    )
    add(
        "active_day_gap_mean",
        None,
        None,
        "mean whole days between consecutive active days",
    )
    add(
        "active_day_gap_std",
        None,
        None,
        "standard deviation of the days between consecutive active days",
    )
    for t in spec.trend_days:
        vs = f"the last {t} days vs the {t} days before"
        add(f"event_count_ratio_{t}d", None, t, f"(events + 1) ratio, {vs}")
        add(f"event_count_diff_{t}d", None, t, f"events difference, {vs}")
        add(f"purchase_count_ratio_{t}d", PURCHASE, t, f"(purchases + 1) ratio, {vs}")
        add(f"purchase_count_diff_{t}d", PURCHASE, t, f"purchases difference, {vs}")
    return out


def attribute_features(customers: ir.Table | None, spec: FeatureSpec) -> list[Feature]:
    """Static attributes: numbers as is, strings categorical, times as days since."""
    if customers is None:
        return []
    schema = customers.schema()
    names = [c for c in schema.names if c != CUSTOMER_ID]
    if spec.attributes is not None:
        missing = sorted(set(spec.attributes) - set(names))
        if missing:
            raise ValueError(
                f"features.attributes names columns not in customers: {missing}"
            )
        names = list(spec.attributes)
    out = []
    for name in names:
        dtype = schema[name]
        if dtype.is_numeric() or dtype.is_boolean():
            out.append(
                Feature(name, None, None, f"customer attribute {name}", source=name)
            )
        elif dtype.is_timestamp() or dtype.is_date():
            description = f"whole days since the customer's {name}"
            out.append(
                Feature(
                    f"days_since_{name}",
                    None,
                    None,
                    description,
                    source=name,
                    days_since=True,
                    calendar=True,
                )
            )
        elif dtype.is_string():
            description = f"customer attribute {name} (categorical)"
            out.append(
                Feature(name, None, None, description, categorical=True, source=name)
            )
        else:
            raise ValueError(
                f"customers column {name!r} has unsupported type {dtype}; "
                "list the attributes to use in features.attributes"
            )
    return out


def catalogue(spec: FeatureSpec, customers: ir.Table | None = None) -> Catalogue:
    return Catalogue(
        tuple(
            _event_features(spec)
            + _group_features(spec)
            + attribute_features(customers, spec)
            + _subscription_catalogue(spec)
        )
    )


def with_roles(events: ir.Table, spec: FeatureSpec) -> ir.Table:
    """Events with a `role` column from the event-type mapping (unmapped: activity)."""
    return events.mutate(
        **{ROLE: events[EVENT_TYPE].substitute(spec.role_of, else_=ACTIVITY)}
    )


def cutoff_table(cutoffs: Sequence[datetime]) -> ir.Table:
    """Cutoffs as a table; each must be a midnight (a date), as features assume."""
    return ibis.memtable(pd.DataFrame({CUTOFF: midnights(cutoffs)}))


def midnights(cutoffs: Sequence[datetime]) -> pd.DatetimeIndex:
    """The cutoffs as timestamps (microseconds); each must be a midnight."""
    stamps = pd.to_datetime(list(cutoffs)).astype("datetime64[us]")
    late = [str(c) for c in stamps if c != c.normalize()]
    if late:
        raise ValueError(f"cutoffs must be midnights (dates), got {late[:3]}")
    return stamps


def seen_pairs(events: ir.Table, cutoffs: Sequence[datetime] | ir.Table) -> ir.Table:
    """(customer_id, cutoff) for every customer with an event before each cutoff."""
    cuts = cutoffs if isinstance(cutoffs, ir.Table) else cutoff_table(cutoffs)
    first = events.group_by(CUSTOMER_ID).aggregate(_first=events[EVENT_TIME].min())
    pairs = first.cross_join(cuts)
    return pairs.filter(pairs._first < pairs[CUTOFF]).select(CUSTOMER_ID, CUTOFF)


def days_between(
    later: ir.TimestampValue, earlier: ir.TimestampValue
) -> ir.NumericValue:
    """Whole days from `earlier` to `later`, floored (both at whole seconds)."""
    seconds = later.epoch_seconds() - earlier.epoch_seconds()
    return (seconds / SECONDS_PER_DAY).floor()


def only(condition: ir.BooleanValue, value: ir.Value) -> ir.Value:
    """`value` where `condition` holds, else null: aggregating this is a filtered
    aggregate. DuckDB runs it several times faster than `agg(where=...)` (which
    compiles to FILTER) when a query has dozens of them."""
    return ibis.ifelse(condition, value, ibis.null(value.type()))


# Money is kept to the cent and quantities to the thousandth. Amounts are summed as
# whole numbers of cents (held as doubles: exact below 2**53), and a sum of whole
# numbers does not depend on the order the engine's threads add rows in; a float
# sum of raw amounts did (388.15 read from Parquet, 388.15000000000003 from
# Postgres). So a feature value is the same from every source, engine and thread
# schedule, bit for bit.
CENTS = 100
QUANTITY_UNITS = 1000


def whole_units(value: ir.NumericValue, per_unit: int) -> ir.NumericValue:
    """`value` in whole `1/per_unit`s, rounded half away from zero, as a double."""
    return (value * per_unit).round().cast("float64")


def daily_rollup(events: ir.Table, spec: FeatureSpec) -> ir.Table:
    """One row per customer and active day: event counts, last event times and
    amounts per role, the first event time, and the gap in whole days since the
    customer's previous active day (`day_tiles`, then `with_gaps`)."""
    return with_gaps(day_tiles(events, spec))


def day_tiles(events: ir.Table, spec: FeatureSpec) -> ir.Table:
    """One row (a tile) per customer and active day, keyed `_cid`, `_day`: event
    counts, last event times and amounts per role, the first event time. Tiles of
    the same customer and day combine (`TILE_MERGE`: sums, minima, maxima), which
    is what lets the incremental state (features.state) add new events' tiles to
    the ones it keeps.

    Cutoffs are midnights, so a day lies wholly before a cutoff or not at all, and
    aggregating days instead of events makes distinct active days a plain count.
    Counts are doubles (exact below 2**53): DuckDB sums integers into HUGEINT and
    Ibis drops a cast to the type it believes a sum already has, so totals are
    summed as doubles and cast to int64 explicitly at the end.
    """
    ev = with_roles(events, spec)
    t = ev[EVENT_TIME]
    return ev.group_by(_cid=ev[CUSTOMER_ID], _day=t.truncate("D")).aggregate(
        **_event_sums(ev, spec)
    )


def _event_sums(ev: ir.Table, spec: FeatureSpec) -> dict[str, ir.Value]:
    """A tile's aggregates of events with their role (`with_roles`), whatever
    they are grouped by: a customer's day (`day_tiles`) or calendar segment
    (`_segmented_events`)."""
    t, role = ev[EVENT_TIME], ev[ROLE]
    m: dict[str, ir.Value] = {}
    for r in ROLES:
        m[f"_n_{r}"] = only(role == r, t).count().cast("float64")
        m[f"_last_{r}"] = only(role == r, t).max()
    for r in spec.amount_roles:
        amount = only(role == r, whole_units(ev[AMOUNT], CENTS))
        quantity = only(role == r, whole_units(ev[QUANTITY], QUANTITY_UNITS))
        m[f"_amount_{r}"] = amount.sum()
        m[f"_amounts_{r}"] = amount.count().cast("float64")
        m[f"_amount_max_{r}"] = amount.max()
        m[f"_quantity_{r}"] = quantity.sum()
    m["_first_purchase"] = only(role == PURCHASE, t).min()
    m["_first_event"] = t.min()
    return m


def tile_merge(spec: FeatureSpec) -> dict[str, str]:
    """How two tiles of the same customer and day combine, column by column:
    `sum`, `min` or `max` (the aggregate `day_tiles` takes of each)."""
    out: dict[str, str] = {}
    for r in ROLES:
        out[f"_n_{r}"], out[f"_last_{r}"] = "sum", "max"
    for r in spec.amount_roles:
        out[f"_amount_{r}"] = out[f"_amounts_{r}"] = "sum"
        out[f"_amount_max_{r}"], out[f"_quantity_{r}"] = "max", "sum"
    out["_first_purchase"] = out["_first_event"] = "min"
    return out


def with_gaps(tiles: ir.Table) -> ir.Table:
    """Each tile with `_gap`: whole days since the customer's previous active day
    (null on the first)."""
    day = tiles._day
    previous = ibis.window(group_by=tiles._cid, order_by=day)
    return tiles.mutate(_gap=days_between(day, day.lag().over(previous)))


def _boundaries(spec: FeatureSpec) -> list[int]:
    """Window edges in days before the cutoff: every window, trend and prior trend."""
    from features.behaviour import edges as behaviour_edges

    edges = {*spec.windows_days, *spec.trend_days, *(2 * t for t in spec.trend_days)}
    return sorted(edges | behaviour_edges(spec))


# the bucket of days older than every window
OLDEST = 10**9


def _bucketed(joined: ir.Table, spec: FeatureSpec) -> ir.Table:
    """Stage one: per customer, cutoff and age bucket (the smallest window edge that
    holds the day), plain sums, counts, minima and maxima of the daily rows.

    Every window is a union of buckets, so stage two reads a handful of rows per
    (customer, cutoff) instead of every active day once per feature.
    """
    day, cutoff = joined._day, joined[CUTOFF]
    age = days_between(cutoff, day)
    bucket = ibis.cases(*((age <= b, b) for b in _boundaries(spec)), else_=OLDEST)
    return joined.group_by(
        [joined[CUSTOMER_ID], joined[CUTOFF], bucket.name("_bucket")]
    ).aggregate(**_day_sums(joined, spec))


def _day_sums(rows: ir.Table, spec: FeatureSpec) -> dict[str, ir.Value]:
    """Stage one's aggregates of daily rows (tiles with `_gap`), whatever they are
    grouped by; two groups' results combine as `bucket_merge` says."""
    day = rows._day
    m: dict[str, ir.Value] = {
        "_n": sum((rows[f"_n_{r}"] for r in ROLES), ibis.literal(0.0)).sum(),
        "_first_event": rows._first_event.min(),
        "_first_purchase": rows._first_purchase.min(),
        **_active_day_sums(rows),
    }
    for r in ROLES:
        n = rows[f"_n_{r}"]
        m[f"_n_{r}"] = n.sum()
        m[f"_d_{r}"] = only(n > 0, day).count().cast("float64")
        m[f"_last_{r}"] = rows[f"_last_{r}"].max()
    for r in spec.amount_roles:
        m[f"_amount_{r}"] = rows[f"_amount_{r}"].sum()
        m[f"_amounts_{r}"] = rows[f"_amounts_{r}"].sum()
        m[f"_amount_max_{r}"] = rows[f"_amount_max_{r}"].max()
        m[f"_quantity_{r}"] = rows[f"_quantity_{r}"].sum()
    m.update(_group_stage_one(rows, spec))
    return m


def _active_day_sums(rows: ir.Table) -> dict[str, ir.Value]:
    """Stage one's aggregates of active days (rows with `_day` and `_gap`, one
    per customer and day): how many, the first, and the gaps' count, sum and
    sum of squares."""
    gap = rows._gap
    return {
        "_d": rows._day.count().cast("float64"),
        "_first_day": rows._day.min(),
        "_gaps": gap.count().cast("float64"),
        "_gap_sum": gap.sum().cast("float64"),
        "_gap_sq_sum": (gap * gap).sum().cast("float64"),
    }


# Up to this many segment edges (3 cutoffs and the demo's windows: 21), stage one
# reads the daily rows per segment (`_segmented`); beyond, per cutoff
# (`_bucketed`). Measured on 2M demo events (process CPU, same run): 3 cutoffs
# 5.4 s per segment vs 6.1 s per cutoff; 12 cutoffs (75 edges, segments of a
# few days, nearly as many as the active days) 18.2 s vs 13.5 s.
MAX_SEGMENTS = 32


def _segment_edges(stamps: pd.DatetimeIndex, spec: FeatureSpec) -> list:
    """The days where, for some cutoff, a day enters a window edge's bucket or stops
    being before the cutoff: each cutoff, and each cutoff less each window edge."""
    edges = {c - pd.Timedelta(days=b) for c in stamps for b in _boundaries(spec)}
    return sorted(edges | set(stamps))


def _segment_of(day: ir.Value, edges: list, low: int, high: int) -> ir.Value:
    """The segment of `day` (the number of `edges` on or before it), known to be
    between `low` and `high`: a binary search, so a day is compared with about
    log2 of the edges (a flat CASE compared it with each: with 12 cutoffs, 84)."""
    if low == high:
        return ibis.literal(low, "int64")
    middle = (low + high) // 2
    return ibis.ifelse(
        day < edges[middle],
        _segment_of(day, edges, low, middle),
        _segment_of(day, edges, middle + 1, high),
    )


def _bucket_of(age_days: int, spec: FeatureSpec) -> int:
    """The age bucket of a day `age_days` before the cutoff (as `_bucketed`)."""
    return next((b for b in _boundaries(spec) if age_days <= b), OLDEST)


def _segmented(daily: ir.Table, cutoffs: Sequence[datetime], spec: FeatureSpec):
    """Stage one for a list of cutoffs, the daily rows read once for all of them.

    The cutoffs and their window edges cut the calendar into segments (between
    consecutive `_segment_edges`); within a segment every day has, for each
    cutoff, the same age bucket and lies before it or not. So the daily rows are
    summed per (customer, segment) once, whatever the number of cutoffs, and
    those few rows per customer are joined to the cutoffs (a small table of
    segment, cutoff and bucket) and summed per (customer, cutoff, bucket) as
    `bucket_merge` says: exactly `_bucketed`'s rows, at a fraction of the rows
    joined and aggregated (the daily rows times the cutoffs).
    """
    stamps = midnights(cutoffs).unique()
    edges = _segment_edges(stamps, spec)
    segment = _segment_of(daily._day, edges, 0, len(edges))
    segments = daily.group_by([daily._cid, segment.name("_seg")]).aggregate(
        **_day_sums(daily, spec)
    )
    return _by_bucket(segments, stamps, edges, spec)


def _segmented_events(
    events: ir.Table, cutoffs: Sequence[datetime], spec: FeatureSpec
) -> ir.Table:
    """`_segmented(daily_rollup(events), ...)`'s rows without the wide daily rows.

    A segment's sums, counts, minima and maxima of events do not need the days:
    the events are summed per (customer, segment) straight away (`_event_sums`:
    about 8x fewer groups than customer-days on the demo data). Only what is
    about days, the active days per role, the first day and the gaps between
    active days, is read from a narrow roll-up of the distinct (customer, day)
    with a flag per role, whose gap window carries two columns instead of the
    tile's sixteen. The two meet per (customer, segment). Same rows, exactly:
    every value is an integer count, whole cents or an extreme. Measured on a
    2.3M-event chunk of the demo (3 cutoffs): 23% less CPU for the whole
    feature query than through the tiles. Feature groups whose stage one reads
    the tiles (`features.behaviour.trends`) go through `_segmented`.
    """
    stamps = midnights(cutoffs).unique()
    edges = _segment_edges(stamps, spec)
    ev = with_roles(events, spec)
    t, role = ev[EVENT_TIME], ev[ROLE]
    day = t.truncate("D")
    sums = ev.group_by(
        _cid=ev[CUSTOMER_ID], _seg=_segment_of(day, edges, 0, len(edges))
    ).aggregate(_n=t.count().cast("float64"), **_event_sums(ev, spec))
    flags = {f"_has_{r}": (role == r).cast("int8").max() for r in ROLES}
    days = with_gaps(ev.group_by(_cid=ev[CUSTOMER_ID], _day=day).aggregate(**flags))
    daily = _active_day_sums(days)
    for r in ROLES:
        daily[f"_d_{r}"] = days[f"_has_{r}"].sum().cast("float64")
    of_days = days.group_by(
        _dcid=days._cid, _dseg=_segment_of(days._day, edges, 0, len(edges))
    ).aggregate(**daily)
    segments = sums.join(
        of_days, [sums._cid == of_days._dcid, sums._seg == of_days._dseg]
    ).drop("_dcid", "_dseg")
    return _by_bucket(segments, stamps, edges, spec)


def _by_bucket(
    segments: ir.Table, stamps: pd.DatetimeIndex, edges: list, spec: FeatureSpec
) -> ir.Table:
    """Stage one's rows from per-(customer `_cid`, segment `_seg`) sums: each
    segment joined to the cutoffs it lies before, with its age bucket there."""
    rows = []
    for k in range(len(edges) + 1):
        # a day of segment k: its first (the one before the first edge for 0)
        first = edges[k - 1] if k else edges[0] - pd.Timedelta(days=1)
        for c in stamps:
            if first < c:
                rows.append((k, c, _bucket_of((c - first).days, spec)))
    plan = pd.DataFrame(rows, columns=["_seg", CUTOFF, "_bucket"])
    plan = ibis.memtable(plan.astype({CUTOFF: "datetime64[us]"}))
    joined = segments.join(plan, "_seg")
    merge = {c: getattr(joined[c], how)() for c, how in bucket_merge(spec).items()}
    return joined.group_by(
        [joined._cid.name(CUSTOMER_ID), joined[CUTOFF], joined._bucket]
    ).aggregate(**merge)


def bucket_rows(joined: ir.Table, spec: FeatureSpec) -> ir.Table:
    """Stage one (`_bucketed`) for the incremental state: tiles with `_gap`
    joined to a cutoff, as per-(customer, cutoff, age bucket) rows."""
    return _bucketed(joined, spec)


def stage_one_by(rows: ir.Table, keys: list[str], spec: FeatureSpec) -> ir.Table:
    """Stage one's aggregates (`_bucketed`'s) of tiles with `_gap`, grouped by
    `keys` (columns of `rows`) instead of the age bucket at a cutoff."""
    return rows.group_by(keys).aggregate(**_day_sums(rows, spec))


def bucket_merge(spec: FeatureSpec) -> dict[str, str]:
    """How two rows of stage one for the same (customer, cutoff, bucket) combine:
    `sum`, `min` or `max` (the aggregate `_bucketed` takes of each). Stage two
    reads the minima and maxima other than `_amount_max_*` over all buckets only,
    so a value left in a bucket its tile has moved out of changes no feature."""
    out = {
        "_n": "sum",
        "_d": "sum",
        "_first_day": "min",
        "_first_event": "min",
        "_first_purchase": "min",
        "_gaps": "sum",
        "_gap_sum": "sum",
        "_gap_sq_sum": "sum",
    }
    for r in ROLES:
        out[f"_n_{r}"] = out[f"_d_{r}"] = "sum"
        out[f"_last_{r}"] = "max"
    for r in spec.amount_roles:
        out[f"_amount_{r}"] = out[f"_amounts_{r}"] = "sum"
        out[f"_amount_max_{r}"], out[f"_quantity_{r}"] = "max", "sum"
    return out | _group_stage_one_merge(spec)


def bucket_of(age_days: int, spec: FeatureSpec) -> int:
    """The age bucket stage one (`_bucketed`) puts a day in that is `age_days`
    whole days before its cutoff: the smallest window edge holding it."""
    return next((b for b in _boundaries(spec) if age_days <= b), OLDEST)


def customer_sums(
    b: ir.Table, spec: FeatureSpec, moved: tuple[int, int] | None = None
) -> ir.Table:
    """Stage two's aggregation: per (customer, cutoff), from stage one's rows,
    the window sums, totals, minima and maxima the event features are computed
    from (`features_from_sums`), each combining as `sum_merge` says. Money and
    quantities stay whole cents and thousandths here, so a sum can be advanced by
    adding and subtracting exactly (features.state).

    `moved=(from_bucket, to_bucket)`: the change of the sums when tiles move from
    one bucket to the other as the cutoff advances (features.state). `b` then
    holds, per customer, stage one's row of just those tiles (`stage_one_by`,
    keyed by customer and cutoff, no bucket). A sum over a bucket range holding
    exactly one of the two buckets gains the row's value (into the range) or
    loses it (out of it); the others cannot change and are left out, as are the
    minima and maxima (a tile moving to an older bucket raises none of them).
    So the change is a narrow projection of `b`, not an aggregate."""
    bucket = None if moved is not None else b._bucket

    def holds(upto: int | None, after: int, which: int) -> bool:
        return upto is None or after < which <= upto

    def total(column: str, upto: int | None = None, after: int = 0) -> ir.Value | None:
        """Sum over the buckets in (after, upto] days (all history if no upto);
        with `moved`, its change (None when the move cannot change it)."""
        if moved is not None:
            into, out_of = holds(upto, after, moved[1]), holds(upto, after, moved[0])
            if into == out_of:
                return None
            value = b[column].fill_null(0)
            return value if into else -value
        where = None if upto is None else (bucket <= upto) & (bucket > after)
        value = b[column] if where is None else only(where, b[column])
        return value.sum().fill_null(0)

    def cast(value: ir.Value | None, to: str) -> ir.Value | None:
        return None if value is None else value.cast(to)

    def count(column: str, upto: int | None = None, after: int = 0) -> ir.Value:
        return cast(total(column, upto, after), "int64")

    m: dict[str, ir.Value] = {}
    for w in spec.windows_days:
        for r in ROLES:
            m[f"{r}_count_{w}d"] = count(f"_n_{r}", w)
        for r in ROLES:
            m[f"{r}_days_{w}d"] = count(f"_d_{r}", w)
        m[f"active_days_{w}d"] = count("_d", w)
        for r in spec.amount_roles:
            m[f"_cents_{r}_{w}"] = cast(total(f"_amount_{r}", w), "float64")
            m[f"_amounts_{r}_{w}"] = total(f"_amounts_{r}", w)
            m[f"_amax_{r}_{w}"] = (
                None
                if moved is not None
                else only(bucket <= w, b[f"_amount_max_{r}"]).max()
            )
            m[f"_units_{r}_{w}"] = cast(total(f"_quantity_{r}", w), "float64")
    for r in ROLES:
        m[f"{r}_count_total"] = count(f"_n_{r}")
        m[f"_last_{r}"] = b[f"_last_{r}"].max()
    for name in ("_gaps", "_gap_sum", "_gap_sq_sum"):
        m[name] = total(name)
    for name in ("_first_event", "_first_purchase", "_first_day"):
        m[name] = b[name].min()
    for t in spec.trend_days:
        for what, column in (("event", "_n"), (PURCHASE, f"_n_{PURCHASE}")):
            m[f"_{what}_last_{t}"] = count(column, t)
            m[f"_{what}_prior_{t}"] = count(column, 2 * t, after=t)
    m.update(_group_sums(b, spec, total))
    if moved is not None:
        how = sum_merge(spec)
        m = {k: v for k, v in m.items() if v is not None and how[k] == "sum"}
        return b.select(b[CUSTOMER_ID], b[CUTOFF], **m)
    return b.group_by([b[CUSTOMER_ID], b[CUTOFF]]).aggregate(**m)


def sum_merge(spec: FeatureSpec) -> dict[str, str]:
    """How two rows of `customer_sums` for the same customer combine, column by
    column: `sum`, `min` or `max`. The windowed amount maxima (`_amax_*`) are
    maxima over a window: a value that leaves the window cannot be taken out."""
    out: dict[str, str] = {}
    for w in spec.windows_days:
        for r in ROLES:
            out[f"{r}_count_{w}d"] = out[f"{r}_days_{w}d"] = "sum"
        out[f"active_days_{w}d"] = "sum"
        for r in spec.amount_roles:
            out[f"_cents_{r}_{w}"] = out[f"_amounts_{r}_{w}"] = "sum"
            out[f"_amax_{r}_{w}"], out[f"_units_{r}_{w}"] = "max", "sum"
    for r in ROLES:
        out[f"{r}_count_total"], out[f"_last_{r}"] = "sum", "max"
    for name in ("_gaps", "_gap_sum", "_gap_sq_sum"):
        out[name] = "sum"
    for name in ("_first_event", "_first_purchase", "_first_day"):
        out[name] = "min"
    for t in spec.trend_days:
        for what in ("event", PURCHASE):
            out[f"_{what}_last_{t}"] = out[f"_{what}_prior_{t}"] = "sum"
    # the feature groups' sums are totals over buckets: they add up; their
    # maxima over all buckets (features.behaviour.MAXIMA) take the larger
    from features.behaviour import MAXIMA

    for name in _group_sums(None, spec, lambda *_, **__: None):
        out[name] = "max" if name in MAXIMA else "sum"
    return out


def _from_sums(agg: ir.Table, spec: FeatureSpec) -> ir.Table:
    """The event features from `customer_sums`: row by row, no aggregation (what
    depends on the cutoff, such as "days since", is computed here)."""
    money: dict[str, ir.Value] = {}
    for w in spec.windows_days:
        for r in spec.amount_roles:
            money[f"{r}_amount_sum_{w}d"] = agg[f"_cents_{r}_{w}"] / CENTS
            money[f"{r}_amount_max_{w}d"] = agg[f"_amax_{r}_{w}"] / CENTS
            money[f"{r}_quantity_sum_{w}d"] = agg[f"_units_{r}_{w}"] / QUANTITY_UNITS
    lasts = [agg[f"_last_{r}"] for r in ROLES if r != CANCEL]
    agg = agg.mutate(
        _last_non_cancel=ibis.greatest(*lasts),
        _last_event=ibis.greatest(*lasts, agg[f"_last_{CANCEL}"]),
        **money,
    )
    cut = agg[CUTOFF]
    d: dict[str, ir.Value] = {}
    observed = days_between(cut, agg._first_day)
    for w in spec.windows_days:
        active = agg[f"active_days_{w}d"].cast("float64")
        d[f"active_day_share_{w}d"] = active / ibis.least(w, observed)
        for r in spec.amount_roles:
            amounts = agg[f"_amounts_{r}_{w}"].nullif(0)
            d[f"{r}_amount_mean_{w}d"] = agg[f"{r}_amount_sum_{w}d"] / amounts
    for r in ROLES:
        d[f"days_since_last_{r}"] = days_between(cut, agg[f"_last_{r}"])
    d["days_since_last_event"] = days_between(cut, agg._last_event)
    d["days_since_first_purchase"] = days_between(cut, agg._first_purchase)
    d["tenure_days"] = days_between(cut, agg._first_event)
    purchases = agg[f"{PURCHASE}_count_total"]
    d["service_requests_per_purchase"] = agg[
        f"{SERVICE_REQUEST}_count_total"
    ] / purchases.nullif(0).cast("float64")
    # gaps are whole days: m*S2 - S1^2 is exact, so a constant gap has std 0
    gaps, s1, s2 = agg._gaps.nullif(0), agg._gap_sum, agg._gap_sq_sum
    d["active_day_gap_mean"] = s1 / gaps
    d["active_day_gap_std"] = ((gaps * s2 - s1 * s1) / (gaps * gaps)).sqrt()
    for t in spec.trend_days:
        for what in ("event", PURCHASE):
            last, prior = agg[f"_{what}_last_{t}"], agg[f"_{what}_prior_{t}"]
            d[f"{what}_count_ratio_{t}d"] = (last + 1) / (prior + 1)
            d[f"{what}_count_diff_{t}d"] = last - prior
    d.update(_populations(agg, spec))
    return agg.mutate(**d)


def cancel_days(events: ir.Table, spec: FeatureSpec) -> ir.Table:
    """The distinct (customer `_rcid`, day `_rday`) with a cancel event. Cancel
    events are few, so this is read from the events beside the main aggregation
    (not from the daily roll-up, which would then be built twice)."""
    ev = with_roles(events, spec)
    ev = ev.filter(ev[ROLE] == CANCEL)
    return ev.select(
        _rcid=ev[CUSTOMER_ID], _rday=ev[EVENT_TIME].truncate("D")
    ).distinct()


def reactivation_counts(sums: ir.Table, cancels: ir.Table) -> ir.Table:
    """`_reactivations` per (customer, cutoff) of `sums` (`customer_sums`) that
    has some: days with a cancel (`cancel_days`) before the day of the last
    non-cancel event before the cutoff, which is exactly when a later day has
    another event. A small table (customers with a cancel only), joined back by
    `_with_reactivations`; the Spark engine materialises it, so that join
    broadcasts it instead of shuffling the wide sums."""
    last_non_cancel = ibis.greatest(*(sums[f"_last_{r}"] for r in ROLES if r != CANCEL))
    keys = sums.select(CUSTOMER_ID, CUTOFF, _other_day=last_non_cancel.truncate("D"))
    hits = keys.join(
        cancels,
        [keys[CUSTOMER_ID] == cancels._rcid, cancels._rday < keys._other_day],
    )
    return hits.group_by([CUSTOMER_ID, CUTOFF]).aggregate(
        _reactivations=hits._rday.count()
    )


def _with_reactivations(agg: ir.Table, counts: ir.Table) -> ir.Table:
    """Add `reactivations` from `reactivation_counts` (0 where it has no row):
    a small join beside the main aggregation."""
    out = agg.left_join(
        counts,
        [agg[CUSTOMER_ID] == counts[CUSTOMER_ID], agg[CUTOFF] == counts[CUTOFF]],
    )
    return out.mutate(reactivations=out._reactivations.fill_null(0).cast("int64"))


def build_features(
    events: ir.Table,
    pairs: ir.Table | Sequence[datetime],
    spec: FeatureSpec,
    customers: ir.Table | None = None,
    subscriptions: ir.Table | None = None,
    classic: pd.DataFrame | None = None,
) -> ir.Table:
    """Features for each (customer_id, cutoff) in `pairs`, from events before it
    (and subscription terms started before it, when `spec.subscriptions`).
    With `spec.classic`, the models are fitted on every customer in `events`
    at each cutoff unless `classic` gives their parameters (features.classic:
    a caller passing a chunk of the customers fits on all of them first).

    `pairs` is a table of (customer_id, cutoff) or a list of cutoffs, meaning every
    customer with an event before each. Cutoffs must be midnights (UTC), as
    `cutoff_table` guarantees. Returns `customer_id`, `cutoff`, the catalogue's
    features in order, one population flag per listed target
    (`population_column`: `in_churn`, `in_purchase`, `in_service_request`; see
    `FeatureSpec.population_name`) and `eligible` (in some listed target's
    population). None of them is a model feature.
    """
    if spec.classic and classic is None:
        from features.classic import fit_from_events

        classic = fit_from_events(events, pairs, spec)
    return features_from_sums(
        feature_sums(events, pairs, spec),
        cancel_days(events, spec),
        spec,
        customers,
        subscriptions,
        classic,
    )


def feature_sums(
    events: ir.Table,
    pairs: ir.Table | Sequence[datetime],
    spec: FeatureSpec,
    *,
    tiles: bool = False,
) -> ir.Table:
    """Stages one and two of `build_features` (`pairs` as there): the
    per-(customer, cutoff) sums `features_from_sums` reads. The Spark engine
    materialises them once (Spark would otherwise compute them once per read).

    With `tiles`, stage one always reads the customer-day tiles, never the
    events per segment (`_segmented_events`): the same rows by a plan of fewer
    aggregation levels, which Spark prefers (it runs each level as a partial
    and a final aggregate: 192 JVM CPU-s against 137 on the reference job)."""
    if isinstance(pairs, ir.Table):
        # a repeated pair would count twice
        pairs = pairs.select(CUSTOMER_ID, CUTOFF).distinct()
        daily = daily_rollup(events, spec)
        joined = pairs.left_join(
            daily, [pairs[CUSTOMER_ID] == daily._cid, daily._day < pairs[CUTOFF]]
        )
        return customer_sums(_bucketed(joined, spec), spec)
    if 0 < len(_segment_edges(midnights(pairs).unique(), spec)) <= MAX_SEGMENTS:
        if tiles or _group_stage_one_merge(spec):  # groups that read the tiles
            rows = _segmented(daily_rollup(events, spec), pairs, spec)
        else:
            rows = _segmented_events(events, pairs, spec)
        return customer_sums(rows, spec)
    daily, cuts = daily_rollup(events, spec), cutoff_table(pairs)
    joined = daily.join(cuts, daily._day < cuts[CUTOFF])
    return customer_sums(_bucketed(joined.rename({CUSTOMER_ID: "_cid"}), spec), spec)


def features_from_buckets(
    buckets: ir.Table,
    cancels: ir.Table,
    spec: FeatureSpec,
    customers: ir.Table | None = None,
    subscriptions: ir.Table | None = None,
    classic: pd.DataFrame | None = None,
) -> ir.Table:
    """Stages two and on: the output of `build_features` from stage one's rows
    (`bucket_rows`: per customer, cutoff and age bucket) and the cancel days
    (`cancel_days`). `build_features` computes both from the events; the
    incremental state (features.state) keeps and advances them."""
    return features_from_sums(
        customer_sums(buckets, spec), cancels, spec, customers, subscriptions, classic
    )


def features_from_sums(
    sums: ir.Table,
    cancels: ir.Table,
    spec: FeatureSpec,
    customers: ir.Table | None = None,
    subscriptions: ir.Table | None = None,
    classic: pd.DataFrame | None = None,
    counts: ir.Table | None = None,
) -> ir.Table:
    """The output of `build_features` from stage two's per-customer sums
    (`customer_sums`) and the cancel days: no aggregation but the reactivations'
    small join (the incremental state keeps and advances the sums). `counts`:
    `reactivation_counts(sums, cancels)` when the caller computed it already
    (the Spark engine materialises it)."""
    if counts is None:
        counts = reactivation_counts(sums, cancels)
    out = _with_groups(_from_sums(sums, spec), spec, classic)
    out = _with_reactivations(out, counts)
    if customers is not None:
        out = _join_attributes(out, customers, spec)
    if spec.subscriptions:
        out = _join_subscriptions(out, subscriptions, spec)
    names = catalogue(spec, customers).names
    out = out.mutate(**{ELIGIBLE: _eligible_of(out, spec)})
    return out.select(CUSTOMER_ID, CUTOFF, *names, *population_columns(spec), ELIGIBLE)


def features_at(
    events: ir.Table,
    cutoffs: Sequence[datetime],
    spec: FeatureSpec,
    customers: ir.Table | None = None,
    subscriptions: ir.Table | None = None,
    classic: pd.DataFrame | None = None,
) -> ir.Table:
    """Features of every customer in some listed target's population at each
    cutoff, with the population flags (without `eligible`): what training (past
    cutoffs) and the nightly job (its as-of date) both score, each target on the
    rows its flag holds."""
    table = build_features(
        events, list(cutoffs), spec, customers, subscriptions, classic
    )
    return table.filter(table[ELIGIBLE]).drop(ELIGIBLE)


def _populations(agg: ir.Table, spec: FeatureSpec) -> dict[str, ir.BooleanValue]:
    """One flag per listed target, from the last-event aggregates already
    computed (no join): churn: seen and not already churned under the churn
    definition; purchase and service_request: seen (within their lookback)."""
    seen = agg._last_event.notnull()
    out: dict[str, ir.BooleanValue] = {}
    for target in spec.targets:
        if target == CHURN:
            flag = _not_churned(agg, spec)
        elif (days := spec.lookback_days.get(target)) is not None:
            since = agg[CUTOFF] - ibis.interval(days=days)
            flag = seen & (agg._last_event >= since).fill_null(False)
        else:
            flag = seen
        out[population_column(target)] = flag
    return out


def _eligible_of(table: ir.Table, spec: FeatureSpec) -> ir.BooleanValue:
    """In some listed target's population."""
    flags = [table[population_column(t)] for t in spec.targets]
    out = flags[0]
    for flag in flags[1:]:
        out = out | flag
    return out


def population_columns(spec: FeatureSpec) -> list[str]:
    return [population_column(t) for t in spec.targets]


def _not_churned(agg: ir.Table, spec: FeatureSpec) -> ir.BooleanValue:
    """Seen before the cutoff and not already churned under the churn definition."""
    seen = agg._last_event.notnull()
    last_activity = agg._last_non_cancel
    cancelled = agg[f"_last_{CANCEL}"].notnull() & (
        last_activity.isnull() | (agg[f"_last_{CANCEL}"] >= last_activity)
    )
    recent = last_activity >= agg[CUTOFF] - ibis.interval(days=spec.churn_horizon_days)
    definition = spec.churn_definition
    if definition == CONTRACT:
        return seen  # narrowed to active subscribers by _join_subscriptions
    if definition == "cancel":
        return seen & ~cancelled
    if definition == "inactivity":
        return seen & recent.fill_null(False)
    return seen & ~cancelled & recent.fill_null(False)


def _join_attributes(out: ir.Table, customers: ir.Table, spec: FeatureSpec) -> ir.Table:
    attrs = attribute_features(customers, spec)
    right = customers.select(
        _acid=customers[CUSTOMER_ID],
        **{
            f.name: customers[f.source].cast("timestamp")
            if f.days_since
            else customers[f.source]
            for f in attrs
        },
    )
    joined = out.left_join(right, out[CUSTOMER_ID] == right._acid)
    cutoff = joined[CUTOFF]
    # a date after the cutoff is not yet known at the cutoff
    days = {
        f.name: ibis.ifelse(
            joined[f.name] < cutoff, days_between(cutoff, joined[f.name]), ibis.null()
        ).cast("float64")
        for f in attrs
        if f.days_since
    }
    return joined.mutate(**days).drop("_acid")


# ------------------------------------------------------------ feature group hooks
# features.classic (BG/NBD, Gamma-Gamma) and features.behaviour, when the spec
# turns them on: their catalogue, their stage-two sums, their values.


def _group_features(spec: FeatureSpec) -> list[Feature]:
    from features.behaviour import behaviour_features
    from features.classic import classic_features

    return (behaviour_features(spec) if spec.behaviour else []) + (
        classic_features(spec) if spec.classic else []
    )


def _group_sums(b: ir.Table, spec: FeatureSpec, total) -> dict[str, ir.Value]:
    from features import behaviour, classic

    out = behaviour.stage_two_sums(b, spec, total) if spec.behaviour else {}
    return out | (classic.stage_two_sums(b, spec, total) if spec.classic else {})


def _group_stage_one(joined: ir.Table, spec: FeatureSpec) -> dict[str, ir.Value]:
    from features.behaviour import stage_one

    return stage_one(joined, spec)


def _group_stage_one_merge(spec: FeatureSpec) -> dict[str, str]:
    from features.behaviour import stage_one_merge

    return stage_one_merge(spec)


def _with_groups(
    agg: ir.Table, spec: FeatureSpec, params: pd.DataFrame | None
) -> ir.Table:
    if spec.behaviour:
        from features.behaviour import behaviour_values

        agg = agg.mutate(**behaviour_values(agg, spec))
    if spec.classic:
        from features.classic import fit_from_rows, with_classic

        agg = with_classic(
            agg, fit_from_rows(agg, spec) if params is None else params, spec
        )
    return agg


# ------------------------------------------------------------ subscriptions hooks
# features.subscriptions builds on this module's helpers, so it is imported where
# it is used.


def _subscription_catalogue(spec: FeatureSpec) -> list[Feature]:
    from features.subscriptions import subscription_features

    return subscription_features(spec)


def _join_subscriptions(
    out: ir.Table, subscriptions: ir.Table | None, spec: FeatureSpec
) -> ir.Table:
    """The subscription features added; under the contract churn definition only
    customers with a term in force at the cutoff stay in churn's population."""
    from features.subscriptions import ACTIVE, with_subscription_features

    if subscriptions is None:
        raise ValueError(
            "the feature spec has subscription features but no subscriptions "
            "table was given (set data.subscriptions)"
        )
    out = with_subscription_features(out, subscriptions, spec)
    churn = population_column(CHURN)
    if spec.churn_definition == CONTRACT and CHURN in spec.targets:
        out = out.mutate(**{churn: out[churn] & (out[ACTIVE] == 1)})
    return out


__all__ = [
    "ACTIVE_NOT_CHURNED",
    "ELIGIBLE",
    "SEEN",
    "Catalogue",
    "Feature",
    "FeatureSpec",
    "build_features",
    "catalogue",
    "cutoff_table",
    "bucket_merge",
    "customer_sums",
    "bucket_of",
    "bucket_rows",
    "cancel_days",
    "daily_rollup",
    "day_tiles",
    "features_from_buckets",
    "features_from_sums",
    "reactivation_counts",
    "features_at",
    "population_columns",
    "population_name",
    "seen_pairs",
    "sum_merge",
    "tile_merge",
    "with_gaps",
    "with_roles",
]
