"""Hypothesis strategies and checks shared by the property tests of the feature
definition and of subscriptions: random event logs, specs and cutoffs, and the
comparison of engine output with the pandas oracles (tests/oracles)."""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from features.columns import (
    ACTIVITY,
    AMOUNT,
    CHURN,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
    QUANTITY,
    ROLES,
    SERVICE_REQUEST,
    TARGETS,
    population_column,
)
from features.definition import (
    ELIGIBLE,
    FeatureSpec,
    build_features,
    catalogue,
    seen_pairs,
)
from features.labels import LabelSpec, build_labels
from features.sources.load import connect, load

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
# `make test`: bounded and derandomized, the same examples every run.
# `make test-unit`, the quick loop, sets PROPERTY_SCALE=0.15: the first sixth of the
# same examples (each engine run spends ~1 s compiling the Ibis expression); `make
# test` and CI run them all, `-m slow` hunts far more.
PROPERTY_SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))


def examples(n: int) -> int:
    """`n` routine property examples, scaled for the quick loop."""
    return max(1, round(n * PROPERTY_SCALE))


FEATURES = settings(
    max_examples=examples(50), derandomize=True, database=None, **_COMMON
)
LEAKAGE = settings(FEATURES, max_examples=examples(20))
LABELS = settings(FEATURES, max_examples=examples(130))
# `-m slow`: fresh random examples, failures kept in .hypothesis/ and printed
LONG_EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "500"))
LONG = settings(max_examples=LONG_EXAMPLES, print_blob=True, **_COMMON)
LONG_LEAKAGE = settings(LONG, max_examples=max(1, LONG_EXAMPLES // 2))

BASE = datetime(2024, 1, 1)
SPAN = 125 * 86400  # events within BASE +- 125 days, in seconds
FAR_FUTURE = datetime(2100, 1, 1)
SEC = timedelta(seconds=1)
DAY = timedelta(days=1)
TYPES = ("login", "buy", "ticket", "quit", "view")
ROLE_OF = {"buy": "purchase", "ticket": "service_request", "quit": "cancel"}
DEFINITIONS = ("inactivity_or_cancel", "inactivity", "cancel")
OPTIONAL = (AMOUNT, QUANTITY)

# customer, time, type, amount, quantity
Event = tuple[str, datetime, str, float | None, float | None]


# --------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """Events as plain tuples, so a failing example prints readably.

    `columns`: the optional event columns the file has; `by_cutoffs`: call
    `build_features` with the list of cutoffs instead of a pairs table.
    """

    events: tuple[Event, ...]
    cutoffs: tuple[datetime, ...]
    spec: FeatureSpec
    customers: tuple[tuple, ...] | None = None
    columns: tuple[str, ...] = OPTIONAL
    by_cutoffs: bool = False

    def events_frame(self) -> pd.DataFrame:
        return events_frame(self.events, self.columns)

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
        (QUANTITY, pa.float64()),
    ]
)


def events_frame(
    events: tuple[Event, ...] | list[Event], columns: tuple[str, ...] = OPTIONAL
) -> pd.DataFrame:
    """The events with the optional columns in `columns` (the others dropped)."""
    frame = pd.DataFrame([list(e) for e in events], columns=EVENT_SCHEMA.names)
    frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME]).astype("datetime64[us]")
    for name in OPTIONAL:
        frame[name] = pd.to_numeric(frame[name]).astype("float64")
    return frame.drop(columns=[c for c in OPTIONAL if c not in columns])


midnights = st.integers(-100, 110).map(lambda d: BASE + d * DAY)


def cutoff_lists(max_size: int = 3) -> st.SearchStrategy[tuple[datetime, ...]]:
    return st.lists(midnights, min_size=1, max_size=max_size, unique=True).map(
        lambda cs: tuple(sorted(cs))
    )


# amount roles: the default, two roles, activity, none, any one or two roles
amount_roles = st.one_of(
    st.sampled_from(
        (
            (PURCHASE,),
            (PURCHASE, ACTIVITY),
            (ACTIVITY,),
            (SERVICE_REQUEST, PURCHASE),
            (),
        )
    ),
    st.lists(st.sampled_from(ROLES), unique=True, min_size=1, max_size=2).map(tuple),
)


@st.composite
def feature_specs(draw, attributes: bool = False) -> FeatureSpec:
    # at most three windows and two trends: each feature costs compile time
    windows = draw(st.sets(st.sampled_from((7, 30, 1, 3, 90)), min_size=1, max_size=3))
    trends = draw(st.sets(st.sampled_from((7, 30, 1, 3)), min_size=1, max_size=2))
    chosen = None
    if attributes and draw(st.booleans()):
        names = [n for n in CUSTOMER_SCHEMA.names if n != CUSTOMER_ID]
        chosen = tuple(draw(st.lists(st.sampled_from(names), unique=True)))
    # the listed targets (canonical order) and the event targets' lookbacks
    listed = draw(st.sets(st.sampled_from(TARGETS), min_size=1))
    targets = tuple(t for t in TARGETS if t in listed)
    lookback = {
        t: days
        for t in targets
        if t != CHURN and (days := draw(st.sampled_from((None, 1, 7, 30)))) is not None
    }
    return FeatureSpec(
        role_of=ROLE_OF,
        windows_days=tuple(sorted(windows)),
        trend_days=tuple(sorted(trends)),
        amount_roles=draw(amount_roles),
        churn_horizon_days=draw(st.sampled_from((7, 30))),
        churn_definition=draw(st.sampled_from(DEFINITIONS)),
        attributes=chosen,
        targets=targets,
        lookback_days=lookback,
    )


amounts = st.one_of(
    st.none(),
    st.integers(-400, 400).map(lambda k: k / 4),  # exact in any order of summing
    st.floats(0, 1000, allow_nan=False, allow_infinity=False),
)
quantities = st.one_of(
    st.none(),
    st.integers(0, 5).map(float),
    st.floats(0, 100, allow_nan=False, allow_infinity=False),
)
# seconds into a day: midnight, its first and last second, or anywhere
seconds_of_day = st.one_of(st.sampled_from((0, 1, 86399)), st.integers(0, 86399))

HOW = (
    "edge",
    "edge",
    "cutoff",
    "anywhere",
    "midnight",
    "repeat",
    "same_day",
    "later_day",
)


@st.composite
def event_time(
    draw,
    cutoffs: tuple[datetime, ...],
    edges_days: tuple[int, ...],
    everyone: list[datetime],
    mine: list[datetime],
    late: bool,
) -> datetime:
    """A time at a cutoff edge (`cutoff - d days`, +- 1 s), at a cutoff, anywhere, a
    midnight, a repeat of anyone's earlier time, or on the day of (or 1-3 days after)
    one of this customer's earlier events."""
    how = draw(st.sampled_from(HOW))
    if how == "repeat" and everyone:
        return draw(st.sampled_from(everyone))
    if how in ("same_day", "later_day") and mine:
        day = datetime.combine(draw(st.sampled_from(mine)).date(), datetime.min.time())
        if how == "later_day":
            day += draw(st.integers(1, 3)) * DAY
        t = day + draw(seconds_of_day) * SEC
    elif how == "cutoff":
        t = draw(st.sampled_from(cutoffs))
    elif how == "midnight":
        t = draw(midnights)
    elif how == "anywhere":
        t = BASE + draw(st.integers(-SPAN, SPAN)) * SEC
    else:
        cutoff = draw(st.sampled_from(cutoffs))
        days = draw(st.sampled_from(edges_days))
        nudge = draw(st.sampled_from((-1, 0, 1)))
        t = cutoff - days * DAY + nudge * SEC
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
    """Events of 1-6 customers; at least one event in all. Any customer but the
    first may be first seen at or after the first cutoff."""
    if ids is None:
        n = draw(st.integers(1, 6))
        ids = tuple(f"c{i}" for i in range(n))
    events: list[Event] = []
    everyone: list[datetime] = []
    for i, cid in enumerate(ids):
        late = late_only or (i > 0 and draw(st.sampled_from((False, False, True))))
        count = draw(st.one_of(st.integers(0, 25), st.just(1)))
        if i == 0 and not events:
            count = max(count, 1)
        mine: list[datetime] = []
        for _ in range(count):
            t = draw(event_time(cutoffs, edges_days, everyone, mine, late))
            everyone.append(t)
            mine.append(t)
            kind = draw(st.sampled_from(TYPES))
            events.append((cid, t, kind, draw(amounts), draw(quantities)))
    return tuple(events)


# the optional columns an events file has: mostly both
event_columns = st.sampled_from(
    (OPTIONAL, OPTIONAL, OPTIONAL, (AMOUNT,), (QUANTITY,), ())
)


def feature_edges(spec: FeatureSpec) -> tuple[int, ...]:
    """Days before a cutoff where some feature's window or rule changes."""
    days = {0, 1, *spec.windows_days, spec.churn_horizon_days}
    days |= set(spec.lookback_days.values())
    days |= {*spec.trend_days, *(2 * t for t in spec.trend_days)}
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
    return Scenario(
        events,
        cutoffs,
        spec,
        draw(customer_rows(ids, cutoffs)),
        columns=draw(event_columns),
        by_cutoffs=draw(st.booleans()),
    )


# ------------------------------------------------------------------ the engine


def write_and_load(tmp: Path, events: pd.DataFrame, customers: pa.Table | None = None):
    schema = pa.schema([EVENT_SCHEMA.field(name) for name in events.columns])
    table = pa.Table.from_pandas(events, schema=schema, preserve_index=False)
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
    by_cutoffs: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """build_features on the loaded files (with seen_pairs, or with the list of
    cutoffs), and the catalogue's feature names."""
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_and_load(Path(tmp), events, customers)
        try:
            pairs = list(cutoffs) if by_cutoffs else seen_pairs(ds.events, cutoffs)
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
        ds = write_and_load(Path(tmp), events)
        try:
            pairs = seen_pairs(ds.events, list(cutoffs))
            return build_labels(ds.events, pairs, spec, labels).to_pandas()
        finally:
            ds.con.disconnect()


# ------------------------------------------------------------------ comparison

KEY = [CUSTOMER_ID, CUTOFF]
# counts: int64 and exact
COUNT = re.compile(r"(_count_\d+d|_days_\d+d|_count_total|^reactivations)$")
# other whole numbers, compared exactly: count differences, whole days
WHOLE = re.compile(r"(_count_diff_\d+d$|^days_since_|^tenure_days$)")


def is_null(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def is_whole_number(name: str) -> bool:
    """Counts, count differences and whole days: compared exactly."""
    return bool(COUNT.search(name) or WHOLE.search(name))


def same(name: str, got: object, want: object) -> bool:
    if is_null(got) or is_null(want):
        return is_null(got) and is_null(want)
    if name == ELIGIBLE or name.startswith("in_"):
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
    got_rows, want_rows = got.to_dict("index"), want.to_dict("index")
    return [
        (*key, name, got_rows[key][name], want_rows[key][name])
        for key in got_rows
        for name in columns
        if not same(name, got_rows[key][name], want_rows[key][name])
    ]


def check_types(got: pd.DataFrame, spec: FeatureSpec) -> None:
    """Counts are int64, the other event features (but whole days and count
    differences) float64, `eligible` boolean, as the definition's docstring says."""
    for name in catalogue(spec).names:
        dtype = got[name].dtype
        if COUNT.search(name):
            assert dtype == "int64", (name, dtype)
        elif WHOLE.search(name):  # nullable: all nulls may come as objects
            numeric = pd.api.types.is_numeric_dtype(dtype)
            assert numeric or got[name].isna().all(), (name, dtype)
        else:
            assert dtype == "float64", (name, dtype)
    for name in [*(population_column(t) for t in spec.targets), ELIGIBLE]:
        assert pd.api.types.is_bool_dtype(got[name]), name


# ------------------------------------------------------------------ properties


# ------------------------------------------------------------ broken sources

_CSV_COLUMNS = [CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, AMOUNT, QUANTITY]
_GOOD_FIELDS = {
    CUSTOMER_ID: st.sampled_from(["c1", "c2", " c3 ", "42", "é"]),
    EVENT_TIME: st.sampled_from(
        [
            "2024-01-01",
            "2024-01-01 10:00:00",
            "2024-01-01T10:00:00+02:00",
            "2024-02-29T23:59:59Z",
        ]
    ),
    EVENT_TYPE: st.sampled_from(["purchase", "login", " support "]),
    AMOUNT: st.sampled_from(["1.5", "-3", "0", "", "1e3"]),
    QUANTITY: st.sampled_from(["1", "-2", "", "0.5"]),
}
_BAD_FIELDS = st.one_of(
    st.sampled_from(
        [
            "1969-01-01",
            "2999-01-01",
            "NaN",
            "inf",
            "-Infinity",
            "1e999",
            "",
            " ",
            '"',
            '""',
            '"a,b"',
            '"line\nbreak"',
            "null",
            "\ufeff",
            "a,b",
        ]
    ),
    st.text(max_size=12),
)


@st.composite
def broken_csvs(draw) -> bytes:
    """A CSV of events, mostly well formed, broken in a few places the way a real
    export is: a column missing, repeated or misspelt; a row too short or too
    long; NaN, infinities, quotes, line breaks, bytes that are not UTF-8; mixed
    line endings; a BOM."""
    names = list(_CSV_COLUMNS)
    for _ in range(draw(st.integers(0, 1))):
        k = draw(st.integers(0, len(names) - 1))
        how = draw(st.sampled_from(["drop", "repeat", "rename", "add"]))
        if how == "drop":
            names.pop(k)
        elif how == "repeat":
            names.append(names[k])
        elif how == "rename":
            names[k] = draw(st.text(min_size=1, max_size=6))
        else:
            names.append(draw(st.text(min_size=1, max_size=6)))
    lines = [",".join(names).encode()]
    for _ in range(draw(st.integers(0, 6))):
        cells = [
            draw(_GOOD_FIELDS.get(n, st.sampled_from(["", "x"]))).encode()
            for n in names
        ]
        for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
            how = draw(st.sampled_from(["field", "bytes", "short", "long"]))
            k = draw(st.integers(0, len(cells) - 1)) if cells else 0
            if how == "field" and cells:
                cells[k] = draw(_BAD_FIELDS).encode()
            elif how == "bytes" and cells:
                cells[k] = draw(st.binary(min_size=1, max_size=6))
            elif how == "short" and cells:
                cells.pop()
            else:
                cells.append(draw(_BAD_FIELDS).encode())
        lines.append(b",".join(cells))
    end = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    body = end.join(lines) + (end if draw(st.booleans()) else b"")
    return (b"\xef\xbb\xbf" if draw(st.integers(0, 4)) == 0 else b"") + body


@st.composite
def broken_customer_csvs(draw) -> bytes:
    """A customers CSV whose attribute columns mix numbers, text, dates, NaN and
    blanks, sometimes after many uniform rows (past DuckDB's type sample), with
    ids repeated or missing now and then."""
    kinds = draw(
        st.lists(st.sampled_from(["int", "float", "date", "text"]), max_size=3)
    )
    names = [CUSTOMER_ID, *(f"a{i}" for i in range(len(kinds)))]
    uniform = {"int": "7", "float": "1.5", "date": "2024-01-01", "text": "x"}
    head = draw(st.sampled_from([0, 3, 25_000]))
    lines = [",".join(names)]
    lines += [",".join([f"u{i}", *(uniform[k] for k in kinds)]) for i in range(head)]
    odd = st.sampled_from(["", "NaN", "inf", "12.5", "abc", "2024-13-01", "1", "true"])
    for i in range(draw(st.integers(0, 5))):
        cid = draw(st.sampled_from([f"c{i}", "", "u0", f"c{i}"]))
        lines.append(",".join([cid, *(draw(odd) for _ in kinds)]))
    return ("\n".join(lines) + "\n").encode()
