"""features.live against a full rebuild: a customer's row from the state's tiles
plus their events since equals `build_features` over all their events at the
midnight after their newest one (late events included)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import ibis
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features import state as fs
from features.columns import CUSTOMER_ID, CUTOFF, EVENT_TIME
from features.definition import build_features, catalogue
from features.live import LiveState, live_features
from features.sources.load import connect
from tests.strategies import (
    DAY,
    FEATURES,
    differences,
    event_logs,
    events_frame,
    examples,
    feature_edges,
    feature_specs,
    midnights,
)


@st.composite
def histories(draw):
    spec = draw(feature_specs())
    mark = draw(midnights)
    later = mark + draw(st.sampled_from((1, 2, 9))) * DAY
    events = [
        e for e in draw(event_logs((mark, later), feature_edges(spec))) if e[1] < later
    ]
    # most events before the watermark are history; a few arrive late
    late = [draw(st.integers(0, 6)) == 0 for _ in events]
    return spec, mark, events, late


def live_cutoffs(fresh: pd.DataFrame, mark) -> pd.DataFrame:
    """Each customer's live row date: the midnight after their newest event
    (never before the state's watermark)."""
    newest = fresh.groupby(CUSTOMER_ID)[EVENT_TIME].max()
    cut = (newest.dt.floor("D") + timedelta(days=1)).clip(lower=pd.Timestamp(mark))
    return pd.DataFrame({CUSTOMER_ID: cut.index, CUTOFF: cut.to_numpy()})


def assert_rebuilt(got: pd.DataFrame, cutoffs: pd.DataFrame, events, spec) -> None:
    """`got` equals `build_features` over every event at those cutoffs."""
    every = ibis.memtable(events_frame(tuple(events)))
    want = build_features(every, ibis.memtable(cutoffs), spec).to_pandas()
    names = catalogue(spec).names + [c for c in want.columns if c.startswith("in_")]
    assert len(got) == len(cutoffs)
    bad = differences(got, want, names)
    assert not bad, bad[:5]


@settings(FEATURES, max_examples=examples(5))
@given(histories())
def test_live_rows_equal_a_full_rebuild(history):
    spec, mark, events, late = history
    old = [e for e, x in zip(events, late, strict=True) if e[1] < mark and not x]
    new = [e for e, x in zip(events, late, strict=True) if e[1] >= mark or x]
    con = connect(threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        state = fs.rebuild(
            Path(tmp), con, [ibis.memtable(events_frame(tuple(old)))], mark, spec, {}
        )
        fresh = events_frame(tuple(new))
        if fresh.empty:
            return
        cutoffs = live_cutoffs(fresh, mark)
        got = live_features(
            state.tiles(con), ibis.memtable(fresh), ibis.memtable(cutoffs), spec
        ).to_pandas()
        assert_rebuilt(got, cutoffs, old + new, spec)
    con.disconnect()


@st.composite
def live_streams(draw):
    """A state at a watermark (rebuilt there, or rebuilt earlier and advanced,
    sometimes with a customer forgotten on the way), and the events it does
    not hold: after it, and a few late ones. With the feature groups
    sometimes, and sometimes no amounts (then every customer the state holds
    without a late event takes the sums' way)."""
    spec = replace(
        draw(feature_specs()),
        behaviour=draw(st.booleans()),
        trends=draw(st.booleans()),
    )
    start = draw(midnights)
    mark = start + draw(st.sampled_from((0, 1, 7))) * DAY
    later = mark + draw(st.sampled_from((1, 2, 9, 40))) * DAY
    events = [
        e
        for e in draw(event_logs((start, mark, later), feature_edges(spec)))
        if e[1] < later
    ]
    if not draw(st.booleans()):
        events = [(*e[:3], None, None) for e in events]
    late = [draw(st.integers(0, 6)) == 0 for _ in events]
    ids = sorted({e[0] for e in events})
    gone = draw(st.sampled_from(ids)) if ids and draw(st.booleans()) else None
    return spec, start, mark, events, late, gone


@settings(FEATURES, max_examples=examples(5))
@given(live_streams())
def test_live_state_rows_equal_a_full_rebuild(stream):
    """`LiveState.features` (the ingester's way: the sums plus the changes
    where it can, every tile where it must) equals `build_features`."""
    spec, start, mark, events, late, gone = stream
    old = [e for e, x in zip(events, late, strict=True) if e[1] < mark and not x]
    new = [e for e, x in zip(events, late, strict=True) if e[1] >= mark or x]
    con = connect(threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        first = [e for e in old if e[1] < start]
        state = fs.rebuild(
            Path(tmp), con, [ibis.memtable(events_frame(tuple(first)))], start, spec, {}
        )
        if mark > start:
            rest = events_frame(tuple(e for e in old if e[1] >= start))
            state = fs.advance(state, con, ibis.memtable(rest), mark, spec).state
        if gone is not None:
            state = fs.forget(state, con, [gone])
            old = [e for e in old if e[0] != gone]
            new = [e for e in new if e[0] != gone]
        fresh = events_frame(tuple(new))
        if fresh.empty:
            return
        live = LiveState(con, state, spec)
        got = live.features(con, fresh)
        assert_rebuilt(got, live_cutoffs(fresh, mark), old + new, spec)
        # the same LiveState again (its statements prepared at the first call,
        # over tables emptied and refilled): one customer's batch gives their
        # row and no other
        first = fresh[CUSTOMER_ID].iloc[0]
        again = live.features(con, fresh[fresh[CUSTOMER_ID] == first])
        assert again[CUSTOMER_ID].tolist() == [first]
        names = catalogue(spec).names + [c for c in got.columns if c.startswith("in_")]
        assert not differences(again, got[got[CUSTOMER_ID] == first], names)
    con.disconnect()
