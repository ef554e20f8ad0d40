"""Feature rows of a few customers from the incremental feature state's tiles
plus their events since it: what real-time ingest (serving.ingest) shows
`predict_by_id` between two nightly runs.

The state (features.state) keeps every customer's day tiles (`day_tiles` of the
events before its watermark). For the customers an ingested batch touches, their
tiles and the tiles of their new events are combined day by day (`tile_merge`),
given their gaps (`with_gaps`) and turned into stage one's rows at each
customer's cutoff (`bucket_rows`), then into features by the definition's own
stage two (`features_from_buckets`): the same stages `build_features` runs, so a
row equals `build_features(history + new events, [cutoff])` for that customer
(tests/unit/features/test_live.py checks it), with no second implementation.

The cutoff of a customer is the midnight after their newest event (never before
the state's watermark): the row is what the next nightly run would compute if no
other event came, and a late event (before the watermark) is applied like any
other (the customer's whole tile history is recombined).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.columns import CANCEL, CUSTOMER_ID, CUTOFF
from features.definition import (
    FeatureSpec,
    bucket_rows,
    day_tiles,
    features_from_buckets,
    tile_merge,
    with_gaps,
)


def tiles_of(events: ir.Table, spec: FeatureSpec) -> ir.Table:
    """The day tiles of events (the contract's columns)."""
    return day_tiles(events, spec)


def live_features(
    tiles: ir.Table,
    events: ir.Table,
    cutoffs: ir.Table,
    spec: FeatureSpec,
    customers: ir.Table | None = None,
    subscriptions: ir.Table | None = None,
) -> ir.Table:
    """`build_features` output for the customers in `cutoffs` (`customer_id`,
    `cutoff`: a midnight after their newest event), from `tiles` (the state's
    day tiles, or any subset holding all of those customers' tiles) and
    `events` (their events not in the tiles, all before their cutoff)."""
    how = tile_merge(spec)
    columns = ["_cid", "_day", *how]
    schema = tiles.schema()
    new = day_tiles(events, spec)

    def shaped(t: ir.Table) -> ir.Table:
        return t.select(*(t[c].cast(schema[c]).name(c) for c in columns))

    keys = cutoffs.select(_kcid=cutoffs[CUSTOMER_ID], _kcut=cutoffs[CUTOFF])
    theirs = tiles.semi_join(keys, tiles._cid == keys._kcid)
    both = shaped(theirs).union(shaped(new))
    merged = both.group_by(["_cid", "_day"]).aggregate(
        **{c: getattr(both[c], op)() for c, op in how.items()}
    )
    gapped = with_gaps(merged)
    joined = gapped.join(keys, gapped._cid == keys._kcid)
    joined = joined.filter(joined._day < joined._kcut)
    joined = joined.mutate(
        **{CUSTOMER_ID: joined._cid, CUTOFF: joined._kcut.cast("timestamp")}
    ).drop("_kcid", "_kcut")
    cancels = merged.filter(merged[f"_n_{CANCEL}"] > 0)
    cancels = cancels.select(_rcid=cancels._cid, _rday=cancels._day)
    return features_from_buckets(
        bucket_rows(joined, spec), cancels, spec, customers, subscriptions
    )


def empty_tiles(spec: FeatureSpec) -> ir.Table:
    """No tiles, with the columns and types `day_tiles` gives (for a live layer
    without a feature state yet)."""
    from features.columns import AMOUNT, EVENT_TIME, EVENT_TYPE, QUANTITY

    none = ibis.memtable(
        {CUSTOMER_ID: [], EVENT_TIME: [], EVENT_TYPE: [], AMOUNT: [], QUANTITY: []},
        schema={
            CUSTOMER_ID: "string",
            EVENT_TIME: "timestamp",
            EVENT_TYPE: "string",
            AMOUNT: "float64",
            QUANTITY: "float64",
        },
    )
    return day_tiles(none, spec)
