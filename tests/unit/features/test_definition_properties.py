"""Property tests: the engine against the pandas oracle `tests/oracles/features.py`.

Hypothesis draws small event logs (1-6 customers, 0-25 events each) and random
feature specs (1-3 windows, 1-2 trends; amount roles: the default, two roles,
activity, none). The timestamps cluster where it matters: exactly at a cutoff, at
`cutoff - w days` for every window (and the trend, prior-trend and churn-horizon
edges, and `cutoff + horizon` for labels), one second either side of those, other
midnights, repeated timestamps, more events on an earlier event's day (several
events a day; a cancel and another event the same day) or 1-3 days later (cancels
followed by other events: reactivations). Amounts and quantities are null, whole
quarters (negative too) or any float, and the file may lack either column. Some
customers are first seen after a cutoff, some have one event. Each example is
written to Parquet, loaded through `features.sources.load.load` and run through DuckDB,
through `build_features` with a pairs table or with the list of cutoffs; compiling
the engine's expression makes an example cost about half a second.

- features equal the reference (rows, every feature, nulls, eligibility; counts
  exactly and as int64, the other floats as float64 and to 1e-9);
- appending events at or after the cutoff changes no existing row (no leakage);
- labels equal the reference for random horizons and every churn definition.

Example counts: `make test` runs 50 feature examples (plus the explicit ones
below), 20 leakage examples (two engine runs each) and 130 label examples,
derandomized so every run sees the same examples: about 55 s of CPU, 60-80 s on the
shared two cores. The same properties marked `slow` hunt longer on fresh random
examples, and are skipped unless selected with `-m slow`:

    .venv/bin/pytest -m slow tests/unit/test_properties.py
    PROPERTY_EXAMPLES=2000 .venv/bin/pytest -m slow tests/unit/test_properties.py

`PROPERTY_EXAMPLES` (default 500, about 12 minutes) is the count per property of
the slow run (the leakage property gets half of it); failing examples are kept in
`.hypothesis/` so a rerun replays them first, and printed with a
`@reproduce_failure` blob.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from features.columns import (
    ACTIVITY,
    CANCEL,
    CHURN,
    CUSTOMER_ID,
    PURCHASE,
    SERVICE_REQUEST,
    TARGETS,
    population_column,
)
from features.definition import (
    ELIGIBLE,
    FeatureSpec,
)
from features.labels import LabelSpec
from tests.oracles.features import reference_features, reference_labels, reference_pairs
from tests.strategies import (
    DAY,
    DEFINITIONS,
    FEATURES,
    KEY,
    LABELS,
    LEAKAGE,
    LONG,
    LONG_LEAKAGE,
    ROLE_OF,
    SEC,
    Event,
    Scenario,
    check_types,
    customer_rows,
    customers_frame,
    cutoff_lists,
    differences,
    engine_features,
    engine_labels,
    event_columns,
    event_logs,
    events_frame,
    feature_edges,
    feature_scenarios,
    feature_specs,
)

C = datetime(2024, 3, 1)
EDGES = Scenario(
    events=(
        ("at_cut", C, "login", None, None),  # at the cutoff: not seen
        ("at_cut", C - SEC, "quit", None, None),  # 1 s before: 0 days, cancelled
        ("at_cut", C - SEC, "login", None, None),  # same instant as the cancel
        ("edge", C - 7 * DAY, "buy", 2.25, 1.0),  # first second of the 7-day window
        ("edge", C - 7 * DAY - SEC, "buy", None, 2.0),  # last second before it
        ("edge", C - 7 * DAY + SEC, "ticket", 1.0, None),
        ("edge", C - 30 * DAY, "buy", 0.5, None),
        ("edge", C - 60 * DAY - SEC, "view", None, None),  # just before the prior
        ("one", C - 30 * DAY - SEC, "login", None, None),  # one event, long ago
        ("late", C + SEC, "login", None, None),  # first seen after the cutoff
        ("late", C + 40 * DAY, "buy", 3.0, 1.0),
    ),
    cutoffs=(C, C + 40 * DAY),
    spec=FeatureSpec(role_of=ROLE_OF, windows_days=(7, 30), trend_days=(30,)),
    customers=(
        ("edge", 1.5, "pro", C - DAY + timedelta(seconds=0.5), date(2024, 3, 1)),
        ("late", None, None, C + DAY, None),
        ("one", -3.0, "basic", C, date(2024, 2, 29)),  # signed up at the cutoff
        ("ghost", 2.0, "", C - 400 * DAY, date(2023, 1, 1)),
    ),
)
# cancels followed by other events the same day and on later days, several
# events a day, null amounts and quantities, amounts of two roles and activity
REACTIVATIONS = Scenario(
    events=(
        ("r", C - 20 * DAY + 9 * 3600 * SEC, "login", None, None),
        ("r", C - 18 * DAY, "quit", None, None),  # followed the same day
        ("r", C - 18 * DAY + 5 * 3600 * SEC, "login", 1.0, None),  # and later
        ("r", C - 16 * DAY, "quit", None, None),  # followed on a later day
        ("r", C - 10 * DAY + 10 * 3600 * SEC, "buy", 10.0, 2.0),
        ("r", C - 10 * DAY + 13 * 3600 * SEC, "buy", None, 1.0),
        ("r", C - 3 * DAY - SEC, "buy", 4.0, None),
        ("r", C - 2 * DAY, "quit", -2.5, None),  # followed the next day
        ("r", C - DAY + 11 * 3600 * SEC, "quit", None, None),  # only the same day
        ("r", C - DAY + 12 * 3600 * SEC, "ticket", None, 3.0),
        ("q", C - 5 * DAY, "quit", None, None),  # only a cancel
        ("q", C - 5 * DAY, "quit", 1.0, 1.0),
    ),
    cutoffs=(C, C - 17 * DAY, C - 15 * DAY),
    spec=FeatureSpec(
        role_of=ROLE_OF,
        windows_days=(1, 3, 7, 30),
        trend_days=(1, 7),
        amount_roles=(CANCEL, ACTIVITY, PURCHASE),
    ),
    by_cutoffs=True,
)


def check_features(scenario: Scenario) -> None:
    events, customers = scenario.events_frame(), scenario.customers_table()
    spec = scenario.spec
    got, names = engine_features(
        events, scenario.cutoffs, spec, customers, scenario.by_cutoffs
    )
    want = reference_features(
        events, scenario.cutoffs, spec, customers_frame(customers)
    )
    flags = [*(population_column(t) for t in spec.targets), ELIGIBLE]
    assert list(got.columns) == [*KEY, *names, *flags]
    check_types(got, spec)
    if want.empty:
        assert got.empty
        return
    assert list(want.columns) == [*KEY, *names, *flags]  # the reference's names
    assert differences(got, want, [*names, *flags]) == []


# nobody seen before the cutoff: no rows
NOBODY = Scenario((("late", C, "quit", 1.0, 1.0),), (C,), FeatureSpec(role_of=ROLE_OF))


@FEATURES
@given(feature_scenarios())
@example(EDGES)
@example(REACTIVATIONS)
@example(NOBODY)
def test_features_equal_the_reference(scenario: Scenario) -> None:
    check_features(scenario)


@pytest.mark.slow
@LONG
@given(feature_scenarios())
def test_features_equal_the_reference_long(scenario: Scenario) -> None:
    check_features(scenario)


@st.composite
def leakage_scenarios(draw) -> tuple[Scenario, tuple[Event, ...]]:
    """One cutoff, a log, and events at or after the cutoff to append to it."""
    spec = draw(feature_specs(attributes=True))
    cutoffs = draw(cutoff_lists(max_size=1))
    events = draw(event_logs(cutoffs, feature_edges(spec)))
    ids = tuple(sorted({e[0] for e in events}))
    customers = draw(customer_rows(ids, cutoffs))
    n_new = draw(st.integers(0, 2))
    pool = (*ids, *(f"new{i}" for i in range(n_new)))
    edges = (0, -1, *(-w for w in spec.windows_days), -spec.churn_horizon_days)
    after = draw(event_logs(cutoffs, edges, ids=pool, late_only=True))
    scenario = Scenario(
        events,
        cutoffs,
        spec,
        customers,
        columns=draw(event_columns),
        by_cutoffs=draw(st.booleans()),
    )
    return scenario, after


def check_no_leakage(case: tuple[Scenario, tuple[Event, ...]]) -> None:
    scenario, after = case
    (cutoff,) = scenario.cutoffs
    assert all(e[1] >= cutoff for e in after)
    customers, spec = scenario.customers_table(), scenario.spec

    def features(events: list[Event]) -> tuple[pd.DataFrame, list[str]]:
        frame = events_frame(events, scenario.columns)
        return engine_features(
            frame, scenario.cutoffs, spec, customers, scenario.by_cutoffs
        )

    before, names = features(list(scenario.events))
    got, _ = features([*scenario.events, *after])
    seen = {e[0] for e in scenario.events if e[1] < cutoff}
    assert set(got[CUSTOMER_ID]) == seen  # first seen at or after it: not there
    if seen:
        flags = [*(population_column(t) for t in spec.targets), ELIGIBLE]
        assert differences(got, before, [*names, *flags]) == []


@LEAKAGE
@given(leakage_scenarios())
def test_events_at_or_after_the_cutoff_change_nothing(
    case: tuple[Scenario, tuple[Event, ...]],
) -> None:
    check_no_leakage(case)


@pytest.mark.slow
@LONG_LEAKAGE
@given(leakage_scenarios())
def test_events_at_or_after_the_cutoff_change_nothing_long(
    case: tuple[Scenario, tuple[Event, ...]],
) -> None:
    check_no_leakage(case)


@st.composite
def label_scenarios(draw) -> tuple[Scenario, LabelSpec]:
    # any non-empty subset of the targets, in canonical order
    listed = draw(st.sets(st.sampled_from(TARGETS), min_size=1))
    horizons = {t: draw(st.integers(1, 60)) for t in TARGETS if t in listed}
    labels = LabelSpec(horizons, draw(st.sampled_from(DEFINITIONS)))
    spec = FeatureSpec(role_of=ROLE_OF)
    cutoffs = draw(cutoff_lists())
    edges = (0, 1, *(-h for h in horizons.values()))
    return Scenario(draw(event_logs(cutoffs, edges)), cutoffs, spec), labels


LABEL_EDGES = (
    Scenario(
        events=(
            ("in", C - DAY, "login", None, None),
            ("in", C, "buy", 1.0, 1.0),  # at the cutoff: inside
            ("in", C + 14 * DAY - SEC, "ticket", None, None),  # last second: inside
            ("out", C - DAY, "login", None, None),
            ("out", C + 14 * DAY, "buy", None, None),  # at cutoff + H: outside
            ("out", C + 14 * DAY, "ticket", None, None),
            ("out", C + 14 * DAY, "quit", None, None),
            ("quit", C - DAY, "login", None, None),
            ("quit", C, "quit", None, None),
        ),
        cutoffs=(C,),
        spec=FeatureSpec(role_of=ROLE_OF),
    ),
    LabelSpec({CHURN: 14, PURCHASE: 14, SERVICE_REQUEST: 14}, "inactivity_or_cancel"),
)


def check_labels(case: tuple[Scenario, LabelSpec]) -> None:
    scenario, labels = case
    events = scenario.events_frame()
    got = engine_labels(events, scenario.cutoffs, scenario.spec, labels)
    pairs = reference_pairs(events, scenario.cutoffs)
    want = reference_labels(events, pairs, scenario.spec, labels)
    targets = list(labels.horizons)
    assert list(got.columns) == [*KEY, *targets]
    assert set(got[targets].stack()) <= {0, 1}
    if want.empty:
        assert got.empty
        return
    assert differences(got, want, targets) == []


@LABELS
@given(label_scenarios())
@example(LABEL_EDGES)
def test_labels_equal_the_reference(case: tuple[Scenario, LabelSpec]) -> None:
    check_labels(case)


@pytest.mark.slow
@LONG
@given(label_scenarios())
def test_labels_equal_the_reference_long(case: tuple[Scenario, LabelSpec]) -> None:
    check_labels(case)
