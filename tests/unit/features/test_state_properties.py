"""Property tests: the incremental feature state (features.state) against a
full rebuild (`build_features` on every event applied so far).

Hypothesis draws a feature spec, 2-4 increasing midnights (steps of 0-40 days,
so windows expire by one day and by many at once) and an event log clustered at
the window edges of those dates (tests.strategies.event_logs). The first date
rebuilds the state; each later one advances it with a batch. Each event arrives
in the batch of its date or, sometimes, a later one: a *late* event (before the
state's watermark). Sometimes events carry an `event_id` and some are sent twice
(in the same batch or a later one); sometimes the late policy is `reject`;
sometimes a customer is forgotten between two batches (and their later events
never arrive, as the suppression list drops them at load); sometimes the files
the advances leave are merged (`compact_after=1`). At every date the
state's feature rows equal `build_features` at that date over exactly the events
it should hold (counts exactly, floats to 1e-9, nulls in the same places).

`make test` runs 10 examples (derandomized), `make test-unit` 2
(PROPERTY_SCALE); `-m slow` hunts PROPERTY_EXAMPLES fresh ones.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import ibis
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import state as fs
from features.definition import FeatureSpec, build_features, catalogue
from features.sources.load import connect
from tests.strategies import (
    DAY,
    FEATURES,
    LONG,
    ROLE_OF,
    differences,
    event_logs,
    events_frame,
    examples,
    feature_edges,
    feature_specs,
    midnights,
)

STATE = settings(FEATURES, max_examples=examples(10))


@st.composite
def streams(draw):
    # with or without the feature groups (features.behaviour and its trends,
    # features.classic)
    spec = replace(
        draw(feature_specs()),
        behaviour=draw(st.booleans()),
        trends=draw(st.booleans()),
        classic=draw(st.booleans()),
        horizons=draw(st.sampled_from(((7,), (1, 30)))),
    )
    first = draw(midnights)
    steps = draw(st.lists(st.sampled_from((0, 1, 1, 2, 7, 40)), min_size=1, max_size=3))
    dates = [first]
    for step in steps:
        dates.append(dates[-1] + step * DAY)
    events = [
        e
        for e in draw(event_logs(tuple(dates), feature_edges(spec)))
        if e[1] < dates[-1]
    ]
    with_ids = draw(st.booleans())
    batches: list[list[tuple]] = [[] for _ in dates]
    for n, event in enumerate(events):
        due = next(i for i, d in enumerate(dates) if event[1] < d)
        arrive = draw(st.sampled_from((due, due, due, len(dates) - 1)))
        row = (*event, f"e{n}" if with_ids else None)
        batches[arrive].append(row)
        if with_ids and arrive > 0 and draw(st.integers(0, 5)) == 0:
            again = draw(st.integers(max(arrive, 1), len(dates) - 1))
            batches[again].append(row)  # sent twice: applied once
    ids = sorted({e[0] for e in events})
    forget = None
    if ids and len(dates) > 2 and draw(st.integers(0, 3)) == 0:
        forget = (draw(st.sampled_from(ids)), draw(st.integers(1, len(dates) - 2)))
    late = draw(st.sampled_from((fs.APPLY, fs.APPLY, fs.REJECT)))
    # sometimes the files advances leave are merged as soon as there are two
    compact = draw(st.sampled_from((None, 1)))
    return spec, dates, batches, with_ids, forget, late, compact


def frame(rows: list[tuple], with_ids: bool) -> pd.DataFrame:
    out = events_frame(tuple(r[:5] for r in rows), ("amount", "quantity"))
    if with_ids:
        out[fs.EVENT_ID] = pd.Series([r[5] for r in rows], dtype="string")
    return out


def check(stream) -> None:
    spec, dates, batches, with_ids, forget, late, compact = stream
    con = connect(threads=1)
    held: dict[object, tuple] = {}  # what the state should hold, by id or row
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = frame(batches[0], with_ids)
        state = fs.rebuild(folder, con, [ibis.memtable(first)], dates[0], spec, {})
        for n, row in enumerate(batches[0]):
            held[row[5] or n] = row
        compare(state, con, spec, held, dates[0])
        gone: set[str] = set()
        for i, date in enumerate(dates[1:], start=1):
            if forget is not None and forget[1] == i:
                gone.add(forget[0])
                state = fs.forget(state, con, gone)
                held = {k: r for k, r in held.items() if r[0] not in gone}
                assert not holds(state, con, gone)
            rows = [r for r in batches[i] if r[0] not in gone]
            old = dates[i - 1]
            result = fs.advance(
                state,
                con,
                ibis.memtable(frame(rows, with_ids)),
                date,
                spec,
                late=late,
                compact_after=compact,
            )
            state = result.state
            for n, row in enumerate(rows):
                key = row[5] or (i, n)
                if late == fs.REJECT and row[1] < old:
                    continue
                held.setdefault(key, row)
            assert result.state.events == len(held)
            if compact is not None:
                for kind in ("tiles", "amounts", "cancels"):
                    small = [
                        f for f in state.manifest["files"][kind] if f.count("-") == 1
                    ]
                    assert len(small) <= compact, state.manifest["files"]
            compare(state, con, spec, held, date)
    con.disconnect()


def holds(state, con, ids: set[str]) -> list[str]:
    """The state's files that still hold a row of one of `ids`."""
    column = {
        "tiles": "_cid",
        "amounts": "_cid",
        "sums": "customer_id",
        "cancels": "_rcid",
    }
    found = []
    for kind, name in column.items():
        for path in state.files(kind):
            t = con.read_parquet(path)
            if t.filter(t[name].isin(sorted(ids))).count().execute():
                found.append(path)
    return found


def compare(state, con, spec, held: dict, date: datetime) -> None:
    got = state.features(con, spec).to_pandas()
    events = frame(list(held.values()), False)
    want = build_features(ibis.memtable(events), [date], spec).to_pandas()
    names = catalogue(spec).names + [c for c in want.columns if c.startswith("in_")]
    if want.empty:
        assert got.empty, got
        return
    bad = differences(got, want, names)
    assert not bad, f"at {date:%Y-%m-%d}: {bad[:5]}"


@STATE
@given(streams())
def test_state_equals_a_full_rebuild_at_every_date(stream):
    check(stream)


@pytest.mark.slow
@LONG
@given(streams())
def test_state_equals_a_full_rebuild_long(stream):
    check(stream)


def test_a_replayed_batch_changes_nothing_and_late_events_are_counted():
    """Explicit: the same ids twice apply once; a late event is applied (apply)
    or left out and counted (reject)."""
    spec = fs_spec()
    d0, d1 = datetime(2024, 3, 1), datetime(2024, 3, 2)
    con = connect(threads=1)
    rows = [
        ("a", d0 - DAY, "buy", 2.5, 1.0, "x1"),
        ("a", d0, "login", None, None, "x2"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        base = fs.rebuild(
            Path(tmp), con, [ibis.memtable(frame(rows[:1], True))], d0, spec, {}
        )
        batch = ibis.memtable(frame(rows * 2, True))  # x1 again (late), x2 twice
        done = fs.advance(base, con, batch, d1, spec)
        assert (done.events, done.duplicates, done.late) == (1, 3, 0)
        late = ibis.memtable(frame([("a", d0 - 2 * DAY, "buy", 1.0, None, "x3")], True))
        rejected = fs.advance(done.state, con, late, d1, spec, late=fs.REJECT)
        assert (rejected.events, rejected.late, rejected.rejected) == (0, 1, 1)
        applied = fs.advance(rejected.state, con, late, d1, spec)
        assert (applied.events, applied.late, applied.rejected) == (1, 1, 0)
        row = applied.state.features(con, spec).to_pandas().iloc[0]
        assert row["purchase_count_total"] == 2
    con.disconnect()


def test_events_at_or_after_the_new_date_are_refused():
    spec = fs_spec()
    d0 = datetime(2024, 3, 1)
    con = connect(threads=1)
    rows = [("a", d0 - DAY, "buy", 2.5, 1.0)]
    with tempfile.TemporaryDirectory() as tmp:
        base = fs.rebuild(
            Path(tmp), con, [ibis.memtable(frame(rows, False))], d0, spec, {}
        )
        future = ibis.memtable(frame([("a", d0 + DAY, "buy", 1.0, None)], False))
        with pytest.raises(ValueError, match="at or after 2024-03-02"):
            fs.advance(base, con, future, d0 + DAY, spec)
        with pytest.raises(ValueError, match="back"):
            fs.advance(base, con, future, d0 - DAY, spec)
    con.disconnect()


def fs_spec() -> FeatureSpec:
    return FeatureSpec(role_of=ROLE_OF, windows_days=(7, 30), trend_days=(30,))
