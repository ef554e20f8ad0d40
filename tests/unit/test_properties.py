"""Property tests: the engine against the pandas reference in `tests/reference.py`.

Hypothesis draws small event logs (1-6 customers, 0-25 events each) whose
timestamps cluster on the edges that matter: exactly at a cutoff, exactly at
`cutoff - w days` for every window (and the trend and churn-horizon edges, and
`cutoff + horizon` for labels), one second either side of those, repeated
timestamps, customers first seen after a cutoff, customers with one event. Each
example is written to Parquet, loaded through `features.load.load` and run through
DuckDB, so an example costs a few tenths of a second.

- features equal the reference (rows, every feature, nulls, eligibility);
- appending events at or after the cutoff changes no existing row (no leakage);
- labels equal the reference for random horizons and every churn definition.

Example counts: 40 per property by default (`make test`; 30 for the leakage
property, which runs the engine twice per example), about 50 s in all,
derandomized so CI sees the same examples every run. For a longer hunt raise the
count (the leakage property gets three quarters of it) and draw fresh examples:

    PROPERTY_EXAMPLES=500 PROPERTY_RANDOM=1 \
        .venv/bin/pytest tests/unit/test_properties.py

(`PROPERTY_RANDOM=1` also keeps failing examples in `.hypothesis/` so a rerun
replays them first.)
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features.columns import (
    AMOUNT,
    CHURN,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
    SERVICE_REQUEST,
)
from features.definition import (
    ELIGIBLE,
    FeatureSpec,
    build_features,
    catalogue,
    seen_pairs,
)
from features.labels import LabelSpec, build_labels
from features.load import connect, load
from tests.reference import reference_features, reference_labels, reference_pairs

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "40"))
RANDOM = os.environ.get("PROPERTY_RANDOM", "") not in ("", "0")
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=RANDOM,
    **({} if RANDOM else {"database": None}),
)
# Two engine runs per example: three quarters as many keep the default run short.
LEAKAGE = settings(PROPERTY, max_examples=max(1, EXAMPLES * 3 // 4))

BASE = datetime(2024, 1, 1)
SPAN = 125 * 86400  # events within BASE +- 125 days, in seconds
FAR_FUTURE = datetime(2100, 1, 1)
SEC = timedelta(seconds=1)
DAY = timedelta(days=1)
TYPES = ("login", "buy", "ticket", "quit", "view")
ROLE_OF = {"buy": "purchase", "ticket": "service_request", "quit": "cancel"}
DEFINITIONS = ("inactivity_or_cancel", "inactivity", "cancel")

Event = tuple[str, datetime, str, float | None]


# --------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """Events as plain tuples, so a failing example prints readably."""

    events: tuple[Event, ...]
    cutoffs: tuple[datetime, ...]
    spec: FeatureSpec
    customers: tuple[tuple, ...] | None = None

    def events_frame(self) -> pd.DataFrame:
        return events_frame(self.events)

    def customers_table(self) -> pa.Table | None:
        """The customers as written to Parquet (a date column among them)."""
        if self.customers is None:
            return None
        names = CUSTOMER_SCHEMA.names
        rows = [dict(zip(names, row, strict=True)) for row in self.customers]
        return pa.Table.from_pylist(rows, schema=CUSTOMER_SCHEMA)


def customers_frame(table: pa.Table | None) -> pd.DataFrame | None:
    """The customers for the reference: dates as midnight timestamps."""
    return None if table is None else table.to_pandas(date_as_object=False)


CUSTOMER_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        ("score", pa.float64()),
        ("plan", pa.string()),
        ("signup_time", pa.timestamp("us")),
        ("joined_on", pa.date32()),
    ]
)
EVENT_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (EVENT_TIME, pa.timestamp("us")),
        (EVENT_TYPE, pa.string()),
        (AMOUNT, pa.float64()),
    ]
)


def events_frame(events: tuple[Event, ...] | list[Event]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [list(e) for e in events], columns=[CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, AMOUNT]
    )
    frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME]).astype("datetime64[us]")
    frame[AMOUNT] = pd.to_numeric(frame[AMOUNT]).astype("float64")
    return frame


midnights = st.integers(-100, 110).map(lambda d: BASE + d * DAY)


def cutoff_lists(max_size: int = 3) -> st.SearchStrategy[tuple[datetime, ...]]:
    return st.lists(midnights, min_size=1, max_size=max_size, unique=True).map(
        lambda cs: tuple(sorted(cs))
    )


@st.composite
def feature_specs(draw, attributes: bool = False) -> FeatureSpec:
    windows = draw(st.sets(st.sampled_from((7, 30, 1, 3, 90)), min_size=1))
    chosen = None
    if attributes and draw(st.booleans()):
        names = [n for n in CUSTOMER_SCHEMA.names if n != CUSTOMER_ID]
        chosen = tuple(draw(st.lists(st.sampled_from(names), unique=True)))
    return FeatureSpec(
        role_of=ROLE_OF,
        windows_days=tuple(sorted(windows)),
        trend_days=draw(st.sampled_from((7, 30))),
        churn_horizon_days=draw(st.sampled_from((7, 30))),
        churn_definition=draw(st.sampled_from(DEFINITIONS)),
        attributes=chosen,
    )


amounts = st.one_of(
    st.none(),
    st.integers(0, 400).map(lambda k: k / 4),
    st.floats(0, 1000, allow_nan=False, allow_infinity=False),
)


@st.composite
def event_time(
    draw,
    cutoffs: tuple[datetime, ...],
    edges_days: tuple[int, ...],
    previous: list[datetime],
    late: bool,
) -> datetime:
    """A time at a cutoff edge (`cutoff - d days`, +- 1 s), anywhere, or a repeat."""
    how = draw(st.sampled_from(("edge", "anywhere", "edge", "repeat")))
    if how == "repeat" and previous:
        return draw(st.sampled_from(previous))
    if how == "edge":
        cutoff = draw(st.sampled_from(cutoffs))
        days = draw(st.sampled_from(edges_days))
        nudge = draw(st.sampled_from((0, -1, 1)))
        t = cutoff - days * DAY + nudge * SEC
    else:
        t = BASE + draw(st.integers(-SPAN, SPAN)) * SEC
    if late and t < cutoffs[0]:  # first seen at or after the first cutoff
        t = cutoffs[0] + (cutoffs[0] - t)
    return t


@st.composite
def event_logs(
    draw,
    cutoffs: tuple[datetime, ...],
    edges_days: tuple[int, ...],
    ids: tuple[str, ...] | None = None,
    late_only: bool = False,
) -> tuple[Event, ...]:
    """Events of 1-6 customers; at least one event in all."""
    if ids is None:
        n = draw(st.integers(1, 6))
        ids = tuple(f"c{i}" for i in range(n))
    events: list[Event] = []
    previous: list[datetime] = []
    for i, cid in enumerate(ids):
        late = late_only or draw(st.sampled_from((False, False, False, True)))
        count = draw(st.one_of(st.integers(0, 25), st.just(1)))
        if i == 0 and not events:
            count = max(count, 1)
        for _ in range(count):
            t = draw(event_time(cutoffs, edges_days, previous, late))
            previous.append(t)
            events.append((cid, t, draw(st.sampled_from(TYPES)), draw(amounts)))
    return tuple(events)


def feature_edges(spec: FeatureSpec) -> tuple[int, ...]:
    """Days before a cutoff where some feature's window or rule changes."""
    days = {0, *spec.windows_days, spec.trend_days, 2 * spec.trend_days}
    days |= {spec.churn_horizon_days, 1}
    return tuple(sorted(days))


SIGNUP_OFFSETS = (
    timedelta(0),
    DAY,
    DAY - SEC / 2,
    DAY + SEC / 2,
    SEC,
    -SEC,
    -DAY,
    400 * DAY,
)


@st.composite
def customer_rows(
    draw, ids: tuple[str, ...], cutoffs: tuple[datetime, ...]
) -> tuple[tuple, ...] | None:
    """A customers table for some of the ids (and maybe one without events)."""
    if not draw(st.sampled_from((True, True, False))):
        return None
    pool = [*ids, "ghost"]
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, unique=True))
    rows = []
    for cid in chosen:
        score = draw(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)))
        plan = draw(st.sampled_from(("basic", None, "pro", "")))
        cutoff = draw(st.sampled_from(cutoffs))
        # at the cutoff, a day before it (+- half a second or a second), later, long ago
        offset = draw(st.sampled_from(SIGNUP_OFFSETS))
        signup = draw(st.sampled_from((cutoff, cutoff - offset, cutoff - offset, None)))
        joined = draw(
            st.one_of(
                st.none(),
                st.sampled_from((0, 1, -1)).map(
                    lambda d, c=cutoff: (c + d * DAY).date()
                ),
                st.integers(-200, 200).map(lambda d: (BASE + d * DAY).date()),
            )
        )
        rows.append((cid, score, plan, signup, joined))
    return tuple(rows)


@st.composite
def feature_scenarios(draw) -> Scenario:
    spec = draw(feature_specs(attributes=True))
    cutoffs = draw(cutoff_lists())
    events = draw(event_logs(cutoffs, feature_edges(spec)))
    ids = tuple(sorted({e[0] for e in events}))
    return Scenario(events, cutoffs, spec, draw(customer_rows(ids, cutoffs)))


# ------------------------------------------------------------------ the engine


def write_and_load(tmp: Path, events: pd.DataFrame, customers: pa.Table | None):
    table = pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False)
    pq.write_table(table, tmp / "events.parquet")
    cpath = None
    if customers is not None:
        cpath = tmp / "customers.parquet"
        pq.write_table(customers, cpath)
    return load(tmp / "events.parquet", cpath, as_of=FAR_FUTURE, con=connect(threads=1))


def engine_features(
    events: pd.DataFrame,
    cutoffs: tuple[datetime, ...],
    spec: FeatureSpec,
    customers: pa.Table | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """build_features on the loaded files, and the catalogue's feature names."""
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_and_load(Path(tmp), events, customers)
        try:
            pairs = seen_pairs(ds.events, list(cutoffs))
            table = build_features(ds.events, pairs, spec, ds.customers)
            return table.to_pandas(), catalogue(spec, ds.customers).names
        finally:
            ds.con.disconnect()


def engine_labels(
    events: pd.DataFrame,
    cutoffs: tuple[datetime, ...],
    spec: FeatureSpec,
    labels: LabelSpec,
) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_and_load(Path(tmp), events, None)
        try:
            pairs = seen_pairs(ds.events, list(cutoffs))
            return build_labels(ds.events, pairs, spec, labels).to_pandas()
        finally:
            ds.con.disconnect()


# ------------------------------------------------------------------ comparison

KEY = [CUSTOMER_ID, CUTOFF]


def is_null(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def is_whole_number(name: str) -> bool:
    """Counts and whole days: compared exactly."""
    return (
        "_count_" in name
        or name.startswith(("active_days_", "days_since_"))
        or name == "tenure_days"
    )


def same(name: str, got: object, want: object) -> bool:
    if is_null(got) or is_null(want):
        return is_null(got) and is_null(want)
    if name == ELIGIBLE:
        return bool(got) == bool(want)
    if isinstance(want, str) or isinstance(got, str):
        return got == want
    got, want = float(got), float(want)
    if is_whole_number(name):
        return got == want and got.is_integer()
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out[CUTOFF] = pd.to_datetime(out[CUTOFF]).astype("datetime64[us]")
    return out.set_index(KEY).sort_index()


def differences(got: pd.DataFrame, want: pd.DataFrame, columns: list[str]) -> list:
    """(customer, cutoff, column, got, want) wherever the frames disagree."""
    got, want = keyed(got), keyed(want)
    assert list(got.index) == list(want.index), (
        f"rows differ: engine only {sorted(set(got.index) - set(want.index))}, "
        f"reference only {sorted(set(want.index) - set(got.index))}"
    )
    return [
        (*key, name, got.at[key, name], want.at[key, name])
        for key in got.index
        for name in columns
        if not same(name, got.at[key, name], want.at[key, name])
    ]


# ------------------------------------------------------------------ properties

C = datetime(2024, 3, 1)
EDGES = Scenario(
    events=(
        ("at_cut", C, "login", None),  # at the cutoff: not seen
        ("at_cut", C - SEC, "quit", None),  # one second before: 0 days, cancelled
        ("at_cut", C - SEC, "login", None),  # same instant as the cancel
        ("edge", C - 7 * DAY, "buy", 2.25),  # first second of the 7-day window
        ("edge", C - 7 * DAY - SEC, "buy", None),  # last second before it
        ("edge", C - 7 * DAY + SEC, "ticket", 1.0),
        ("edge", C - 30 * DAY, "buy", 0.5),
        ("edge", C - 60 * DAY - SEC, "view", None),  # trend: just before the prior
        ("one", C - 30 * DAY - SEC, "login", None),  # one event, outside the horizon
        ("late", C + SEC, "login", None),  # first seen after the cutoff
        ("late", C + 40 * DAY, "buy", 3.0),
    ),
    cutoffs=(C, C + 40 * DAY),
    spec=FeatureSpec(role_of=ROLE_OF, windows_days=(7, 30)),
    customers=(
        ("edge", 1.5, "pro", C - DAY + timedelta(seconds=0.5), date(2024, 3, 1)),
        ("late", None, None, C + DAY, None),
        ("one", -3.0, "basic", C, date(2024, 2, 29)),  # signed up at the cutoff
        ("ghost", 2.0, "", C - 400 * DAY, date(2023, 1, 1)),
    ),
)


@PROPERTY
@given(feature_scenarios())
@example(EDGES)
def test_features_equal_the_reference(scenario: Scenario) -> None:
    events, customers = scenario.events_frame(), scenario.customers_table()
    got, names = engine_features(events, scenario.cutoffs, scenario.spec, customers)
    want = reference_features(
        events, scenario.cutoffs, scenario.spec, customers_frame(customers)
    )
    assert list(got.columns) == [*KEY, *names, ELIGIBLE]
    counts = [n for n in names if "_count_" in n or n.startswith("active_days_")]
    for name in counts:
        assert pd.api.types.is_integer_dtype(got[name]), (name, got[name].dtype)
    assert pd.api.types.is_bool_dtype(got[ELIGIBLE])
    if want.empty:
        assert got.empty
        return
    assert sorted(want.columns) == sorted(got.columns)
    assert differences(got, want, [*names, ELIGIBLE]) == []


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
    after = draw(
        event_logs(cutoffs, (0, -1, -spec.churn_horizon_days), ids=pool, late_only=True)
    )
    return Scenario(events, cutoffs, spec, customers), after


@LEAKAGE
@given(leakage_scenarios())
def test_events_at_or_after_the_cutoff_change_nothing(
    case: tuple[Scenario, tuple[Event, ...]],
) -> None:
    scenario, after = case
    (cutoff,) = scenario.cutoffs
    assert all(t >= cutoff for _, t, _, _ in after)
    customers = scenario.customers_table()
    before, names = engine_features(
        scenario.events_frame(), scenario.cutoffs, scenario.spec, customers
    )
    extended = events_frame([*scenario.events, *after])
    got, _ = engine_features(extended, scenario.cutoffs, scenario.spec, customers)
    seen = {cid for cid, t, _, _ in scenario.events if t < cutoff}
    assert set(got[CUSTOMER_ID]) == seen  # first seen at or after it: not there
    if seen:
        assert differences(got, before, [*names, ELIGIBLE]) == []


@st.composite
def label_scenarios(draw) -> tuple[Scenario, LabelSpec]:
    horizons = {
        CHURN: draw(st.integers(1, 60)),
        PURCHASE: draw(st.integers(1, 60)),
        SERVICE_REQUEST: draw(st.integers(1, 60)),
    }
    labels = LabelSpec(horizons, draw(st.sampled_from(DEFINITIONS)))
    spec = FeatureSpec(role_of=ROLE_OF)
    cutoffs = draw(cutoff_lists())
    edges = (0, 1, *(-h for h in horizons.values()))
    return Scenario(draw(event_logs(cutoffs, edges)), cutoffs, spec), labels


LABEL_EDGES = (
    Scenario(
        events=(
            ("in", C - DAY, "login", None),
            ("in", C, "buy", 1.0),  # at the cutoff: inside
            ("in", C + 14 * DAY - SEC, "ticket", None),  # last second: inside
            ("out", C - DAY, "login", None),
            ("out", C + 14 * DAY, "buy", None),  # at cutoff + H: outside
            ("out", C + 14 * DAY, "ticket", None),
            ("out", C + 14 * DAY, "quit", None),
            ("quit", C - DAY, "login", None),
            ("quit", C, "quit", None),
        ),
        cutoffs=(C,),
        spec=FeatureSpec(role_of=ROLE_OF),
    ),
    LabelSpec({CHURN: 14, PURCHASE: 14, SERVICE_REQUEST: 14}, "inactivity_or_cancel"),
)


@PROPERTY
@given(label_scenarios())
@example(LABEL_EDGES)
def test_labels_equal_the_reference(case: tuple[Scenario, LabelSpec]) -> None:
    scenario, labels = case
    events = scenario.events_frame()
    got = engine_labels(events, scenario.cutoffs, scenario.spec, labels)
    pairs = reference_pairs(events, scenario.cutoffs)
    want = reference_labels(events, pairs, scenario.spec, labels)
    targets = [CHURN, PURCHASE, SERVICE_REQUEST]
    assert list(got.columns) == [*KEY, *targets]
    assert set(got[targets].stack()) <= {0, 1}
    if want.empty:
        assert got.empty
        return
    assert differences(got, want, targets) == []
