"""The incremental state's narrow sums per move (features.state): a day's tiles
crossing a window edge change only the sums over the bucket ranges holding one
of the two buckets, so `customer_sums(..., moved=...)` projects just those
from stage one's row of each customer's moving tiles;
and the manifest's `unique_tiles`, which lets an advance skip combining the
moving tiles. The property tests (test_state_properties.py) check the whole
state against a full rebuild; these pin the two pieces on their own."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import pandas as pd
import pytest

from core.config import load_config
from features import state as fs
from features.definition import (
    OLDEST,
    FeatureSpec,
    _boundaries,
    bucket_merge,
    bucket_of,
    customer_sums,
    day_tiles,
    stage_one_by,
    sum_merge,
)
from features.sources.load import connect
from tests.strategies import events_frame

ROOT = Path(__file__).resolve().parents[3]
OLD = datetime(2025, 6, 1)


def demo_spec() -> FeatureSpec:
    """The demo's spec with every feature group on (their sums move too)."""
    spec = FeatureSpec.from_config(load_config(ROOT / "propensity.yaml"))
    return replace(spec, behaviour=True, trends=True, classic=True)


def moving_tiles(spec: FeatureSpec, edge: int) -> ibis.Table:
    """Three customers' tiles on the day `edge` days before OLD (a gap of none,
    as features.state moves them)."""
    day = OLD - timedelta(days=edge)
    rows = [
        ("a", day + timedelta(hours=9), "purchase", 12.5, 2.0),
        ("a", day + timedelta(hours=10), "activity", None, None),
        ("b", day + timedelta(hours=11), "service_request", None, None),
        ("c", day + timedelta(hours=8), "purchase", 7.25, 1.0),
        ("c", day + timedelta(hours=12), "cancel", None, None),
    ]
    events = events_frame(rows, ("amount", "quantity"))
    return day_tiles(ibis.memtable(events), spec).mutate(_gap=ibis.null("float64"))


def out_and_in(tiles: ibis.Table, spec: FeatureSpec, to: datetime) -> ibis.Table:
    """Stage one's rows of `tiles` moving from OLD to `to`, the long way: each
    tile's row at OLD negated, its row at `to`, both at `to`. Their full
    `customer_sums` is the move's change of every sum."""
    keys = ["customer_id", "cutoff", "_bucket"]
    cols = [*keys, *bucket_merge(spec)]
    out = fs.taken_out(fs._at(tiles, OLD, spec), spec)
    out = out.mutate(cutoff=ibis.literal(to, "timestamp")).select(*cols)
    return out.union(fs._at(tiles, to, spec).select(*cols))


@pytest.mark.parametrize("days", [1, 40])
def test_a_move_projects_exactly_the_sums_it_changes(days):
    spec = demo_spec()
    con = connect(threads=1)
    how = sum_merge(spec)
    seen = set()
    to = OLD + timedelta(days=days)
    for edge in _boundaries(spec):
        move = (bucket_of(edge, spec), bucket_of(edge + days, spec))
        assert move[0] == edge and move[1] > edge
        if move in seen:
            continue
        seen.add(move)
        tiles = moving_tiles(spec, edge)
        full = con.execute(customer_sums(out_and_in(tiles, spec, to), spec))
        full = full.set_index("customer_id")
        rows = tiles.mutate(
            customer_id=tiles._cid, cutoff=ibis.literal(to, "timestamp")
        )
        rows = stage_one_by(rows, ["customer_id", "cutoff"], spec)
        narrow = con.execute(customer_sums(rows, spec, moved=move))
        narrow = narrow.set_index("customer_id")
        changed = [c for c in narrow.columns if c != "cutoff"]
        assert changed, f"the move {move} changes no sum"
        assert all(how[c] == "sum" for c in changed)
        pd.testing.assert_frame_equal(
            narrow[changed].sort_index(),
            full[changed].sort_index(),
            check_dtype=False,
        )
        # every other sum is unchanged by the move: the tile's rows cancel
        rest = [c for c, op in how.items() if op == "sum" and c not in changed]
        assert (full[rest].fillna(0) == 0).all().all(), full[rest].loc[
            :, (full[rest].fillna(0) != 0).any()
        ]
        # and the move did change something the narrow sums carry
        assert (full[changed] != 0).any().any()
    con.disconnect()


def test_bucket_of_is_stage_ones_bucket():
    spec = demo_spec()
    edges = _boundaries(spec)
    assert bucket_of(1, spec) == edges[0]
    assert bucket_of(edges[0], spec) == edges[0]
    assert bucket_of(edges[0] + 1, spec) == edges[1]
    assert bucket_of(edges[-1] + 1, spec) == OLDEST


def test_unique_tiles_until_late_events_add_a_second_row_to_a_day():
    spec = demo_spec()
    con = connect(threads=1)

    def batch(rows):
        return ibis.memtable(events_frame(rows, ("amount", "quantity")))

    day = timedelta(days=1)
    history = [
        ("a", OLD - 3 * day, "purchase", 10.0, 1.0),
        ("b", OLD - 2 * day, "activity", None, None),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        state = fs.rebuild(folder, con, [batch(history)], OLD, spec, {})
        assert state.unique_tiles
        # the next day's events: after every day the tiles hold
        state = fs.advance(
            state,
            con,
            batch([("a", OLD + day / 2, "purchase", 5.0, 1.0)]),
            OLD + day,
            spec,
        ).state
        assert state.unique_tiles
        # rejected late events add no tile
        late = [("a", OLD - 3 * day + day / 4, "activity", None, None)]
        state = fs.advance(
            state, con, batch(late), OLD + 2 * day, spec, late=fs.REJECT
        ).state
        assert state.unique_tiles
        # applied, a late event adds a second tile to a's day: combined where read
        state = fs.advance(state, con, batch(late), OLD + 3 * day, spec).state
        assert not state.unique_tiles
        assert fs.open_state(folder).unique_tiles is False
        # forgetting a customer keeps what is known of the rest
        assert not fs.forget(state, con, ["b"]).unique_tiles
    con.disconnect()


def test_a_state_written_before_the_flag_is_taken_as_not_unique():
    state = fs.FeatureState(Path("."), {"watermark": OLD.isoformat()})
    assert state.unique_tiles is False
