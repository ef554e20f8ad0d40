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

import hashlib
import itertools
import json
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.atomic import atomic_write
from features.columns import (
    AMOUNT,
    CANCEL,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    QUANTITY,
)
from features.definition import (
    FeatureSpec,
    _boundaries,
    bucket_rows,
    customer_sums,
    day_tiles,
    features_from_buckets,
    features_from_sums,
    tile_merge,
    with_gaps,
)
from features.state import _plain, _setting, gapped_after, plus_changes, taken_out


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


def live_features_from_sums(
    sums: ir.Table,
    moving: ir.Table,
    events: ir.Table,
    cutoffs: ir.Table,
    cancels: ir.Table,
    mark: datetime,
    spec: FeatureSpec,
) -> ir.Table:
    """`build_features` output for the customers in `cutoffs` from the state's
    per-customer sums at its watermark `mark` instead of every tile: what
    `features.state.advance` does for the whole state, here for a few customers
    each at their own cutoff (the midnight after their newest event, not before
    `mark`). Every customer must have a row in `sums` (the state's
    `customer_sums` at `mark`), and no event in `events` before `mark` (a late
    event changes the gaps of the days after it: `live_features` recombines
    those customers' tiles). `moving` holds at least every state tile of theirs
    that changes age bucket between `mark` and their cutoff (any other tile
    taken out and put back changes no sum); a maximum cannot be taken out, so
    where one of those holds an amount, `sums` has that customer's windowed
    amount maxima null and `moving` every tile of theirs in the largest window
    too (`LiveState` does both). `cancels`: their cancel days in the state
    (`_rcid`, `_rday`).

    The changes are stage one's rows at the cutoff of the new events' tiles
    (gaps counted from the last active day the sums hold) and of the moving
    tiles, minus the moving tiles' rows at `mark`; `customer_sums` of them is
    added to the old sums (`plus_changes`) and the features computed by
    `features_from_sums`, the definition's own last stage."""
    keys = cutoffs.select(_kcid=cutoffs[CUSTOMER_ID], _kcut=cutoffs[CUTOFF])
    tile_types = moving.schema()
    new = day_tiles(events, spec)
    new = new.select(
        *(
            new[c].cast(tile_types[c]).name(c) if c in tile_types else new[c]
            for c in new.columns
        )
    )
    at_mark = ibis.literal(mark, "timestamp")

    def at(t: ir.Table, when: ir.Value | None = None) -> ir.Table:
        """Tiles `t` (with `_gap`) joined to each customer's cutoff (or to
        `when`), as `bucket_rows` reads them."""
        j = t.join(keys, t._cid == keys._kcid)
        cut = j._kcut if when is None else when
        j = j.mutate(
            **{CUSTOMER_ID: j._cid, CUTOFF: cut.cast("timestamp")},
            _gap=j._gap.cast("float64"),
        )
        return j.select(*columns)

    columns = ["_cid", "_day", *tile_merge(spec), "_gap", CUSTOMER_ID, CUTOFF]
    gapless = moving.mutate(_gap=ibis.null("float64"))
    # one stage one over the moving tiles at the watermark (taken out below)
    # and at the cutoff, and the new tiles at the cutoff: cutoffs are after the
    # watermark, so the rows at the watermark stay apart
    tiles = at(gapless, at_mark).union(at(gapless)).union(at(gapped_after(new, sums)))
    rows = bucket_rows(tiles, spec)
    rows = taken_out(rows, spec, rows[CUTOFF] == at_mark)
    rows = rows.join(keys, rows[CUSTOMER_ID] == keys._kcid)
    union = rows.mutate(**{CUTOFF: rows._kcut.cast("timestamp")}).drop("_kcid", "_kcut")
    schema = sums.schema()
    delta = customer_sums(union, spec)
    delta = delta.select(*(delta[c].cast(schema[c]).name(c) for c in schema.names))
    theirs = sums.semi_join(keys, sums[CUSTOMER_ID] == keys._kcid)
    merged = plus_changes(theirs, delta, spec)
    merged = merged.select(*(merged[c].cast(schema[c]).name(c) for c in schema.names))
    fresh = new.filter(new[f"_n_{CANCEL}"] > 0)
    every = cancels.select("_rcid", "_rday").union(
        fresh.select(_rcid=fresh._cid, _rday=fresh._day.cast(cancels._rday.type()))
    )
    return features_from_sums(merged, every.distinct(), spec)


class _Sorted:
    """A table in memory sorted by a customer column, and each customer's row
    range: a few customers' rows are taken by position (an Arrow `take`)
    instead of joining the whole table on the ids."""

    def __init__(self, table: pa.Table, key: str) -> None:
        self.table, self.key = table.combine_chunks(), key
        ids = self.table.column(key).combine_chunks().dictionary_encode()
        codes = ids.indices.to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.diff(codes, prepend=-1))  # sorted: runs
        ends = [*starts[1:].tolist(), len(codes)] if len(codes) else []
        names = ids.dictionary.take(pa.array(codes[starts])).to_pylist()
        self.ranges = dict(
            zip(names, zip(starts.tolist(), ends, strict=True), strict=True)
        )

    def positions(self, customers) -> np.ndarray:
        found = [self.ranges[c] for c in customers if c in self.ranges]
        if not found:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(a, b) for a, b in found])

    def of(self, customers) -> pa.Table:
        """The rows of these customers (those the table holds)."""
        return self.take(self.positions(customers))

    def take(self, rows: np.ndarray) -> pa.Table:
        return self.table.take(pa.array(rows, pa.int64()))


def _read_sorted(con, files: Sequence[str], key: str, order: str) -> _Sorted:
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    table = con.sql(f"SELECT * FROM read_parquet([{listed}]) ORDER BY {order}")
    return _Sorted(table.to_arrow_table(), key)


def time_span(events: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each customer's newest and oldest event time (`EVENT_COLUMNS` typed
    events), indexed by id in order: grouped by Arrow (a pandas group-by
    factorises the object ids in Python, several times slower)."""
    table = pa.table(
        {
            CUSTOMER_ID: pa.array(events[CUSTOMER_ID].to_numpy(), pa.string()),
            EVENT_TIME: pa.array(events[EVENT_TIME].to_numpy()),
        }
    )
    spans = table.group_by(CUSTOMER_ID, use_threads=False).aggregate(
        [(EVENT_TIME, "max"), (EVENT_TIME, "min")]
    )
    spans = spans.sort_by(CUSTOMER_ID)
    ids = pd.Index(spans.column(CUSTOMER_ID).to_pylist(), name=CUSTOMER_ID)

    def series(column: str) -> pd.Series:
        times = spans.column(column).to_numpy().astype("datetime64[us]")
        return pd.Series(times, index=ids, name=EVENT_TIME)

    return series(f"{EVENT_TIME}_max"), series(f"{EVENT_TIME}_min")


_SERIAL = itertools.count()
TILES, SUMS, CANCELS = "_live_tiles", "_live_sums", "_live_cancels"
EVENTS, CUTOFFS = "_live_events", "_live_cutoffs"
EVENT_COLUMNS = {
    CUSTOMER_ID: "string",
    EVENT_TIME: "timestamp",
    EVENT_TYPE: "string",
    AMOUNT: "float64",
    QUANTITY: "float64",
}


class LiveState:
    """A feature state (features.state) held in memory for live rows: its
    tiles, per-customer sums and cancel days sorted by customer, and the SQL of
    the two ways to a few customers' rows, compiled once (building and
    compiling the Ibis expressions costs far more than running them on a
    batch):

    - from the sums (`live_features_from_sums`): customers the state holds,
      with no late event and no amount in a tile leaving a window; reads a
      handful of rows per customer;
    - from every tile (`live_features`): the others (late events, a window's
      maximum that may leave, customers new to the state).

    `features(con, events)` gives `build_features` rows for the customers of
    `events` (every event of theirs the state does not hold, the contract's
    columns) at the midnight after each one's newest event, never before the
    watermark."""

    def __init__(
        self,
        con: ibis.BaseBackend,
        state,
        spec: FeatureSpec,
        cache: Path | None = None,
    ) -> None:
        raw = con.con
        self.state, self.spec, self.mark = state, spec, state.watermark
        self.tiles = _read_sorted(raw, state.files("tiles"), "_cid", "_cid, _day")
        self.sums = _read_sorted(raw, state.files("sums"), CUSTOMER_ID, CUSTOMER_ID)
        self.cancels = _read_sorted(
            raw,
            state.files("cancels"),
            "_rcid",
            "_rcid, _rday",
        )
        days = self.tiles.table.column("_day").cast(pa.timestamp("us"))
        self._days = days.to_numpy().astype("datetime64[D]").astype(np.int64)
        self._amounts = [
            np.asarray(
                self.tiles.table.column(f"_amount_max_{r}").is_valid(), dtype=bool
            )
            for r in spec.amount_roles
        ]
        self._edges = np.array(_boundaries(spec), dtype=np.int64)
        self._widest = max(spec.windows_days)
        self._maxima = [
            f"_amax_{r}_{w}" for r in spec.amount_roles for w in spec.windows_days
        ]
        self._cache = None if cache is None else Path(cache)
        self._compiled: dict[str, str] = {}
        self._lock = threading.Lock()
        # per DuckDB connection: the statements prepared on it (`_run`)
        self._prepared: dict[int, tuple] = {}
        self._run_lock = threading.Lock()
        self._serial = next(_SERIAL)

    def sql(self, con: ibis.BaseBackend, which: str) -> str:
        """The compiled SQL of one way (`fast` or `full`), compiled at its
        first use and kept; with a cache folder, read from or written to a
        file named by what it depends on (the spec, the tables' columns, the
        watermark, the Ibis version), so another process on the same state
        (a stream consumer, another API worker) skips the compilation."""
        with self._lock:
            if which not in self._compiled:
                self._compiled[which] = self._cached(con, which)
            return self._compiled[which]

    def _empty(self) -> dict[str, pa.Table]:
        """The tables the SQL reads, empty, with their columns and types."""
        return {
            TILES: self.tiles.table.schema.empty_table(),
            SUMS: self.sums.table.schema.empty_table(),
            CANCELS: self.cancels.table.schema.empty_table(),
            EVENTS: pa.schema(
                [(c, _ARROW[t]) for c, t in EVENT_COLUMNS.items()]
            ).empty_table(),
            CUTOFFS: pa.schema(
                [(CUSTOMER_ID, pa.string()), (CUTOFF, pa.timestamp("us"))]
            ).empty_table(),
        }

    def _cached(self, con: ibis.BaseBackend, which: str) -> str:
        empty = self._empty()
        path = None
        if self._cache is not None:
            key = json.dumps(
                [
                    which,
                    ibis.__version__,
                    self.mark.isoformat(),
                    {k: str(v.schema) for k, v in sorted(empty.items())},
                    {k: _plain(v) for k, v in sorted(vars(self.spec).items())},
                ],
                default=str,
            )
            digest = hashlib.sha256(key.encode()).hexdigest()[:24]
            path = self._cache / f"{which}-{digest}.sql"
            if path.is_file():
                return path.read_text()
        # compiled on a connection of its own: `_run` keeps temporary tables
        # of these names on `con`
        scratch = ibis.duckdb.connect()
        with _registered(scratch.con, empty):
            t = {name: scratch.table(name) for name in empty}
            if which == "full":
                expr = live_features(t[TILES], t[EVENTS], t[CUTOFFS], self.spec)
            else:
                expr = live_features_from_sums(
                    t[SUMS],
                    t[TILES],
                    t[EVENTS],
                    t[CUTOFFS],
                    t[CANCELS],
                    self.mark,
                    self.spec,
                )
            sql = str(scratch.compile(expr))
        scratch.disconnect()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: tmp.write_text(sql))
        return sql

    def features(self, con: ibis.BaseBackend, events: pd.DataFrame) -> pd.DataFrame:
        """`build_features` rows (see the class docstring); `events` typed as
        `EVENT_COLUMNS`, all before their customer's cutoff."""
        if events.empty:
            return pd.DataFrame()
        mark = pd.Timestamp(self.mark)
        newest, oldest = time_span(events)
        cut = (newest.dt.floor("D") + pd.Timedelta(days=1)).clip(lower=mark)
        cutoffs = pd.DataFrame({CUSTOMER_ID: newest.index, CUTOFF: cut.to_numpy()})
        ids = cutoffs[CUSTOMER_ID].tolist()
        fast, moving, redo = self._fast_and_moving(
            ids, cut.to_numpy(), (oldest >= mark).to_numpy()
        )
        out = []
        if fast:
            chosen = cutoffs[CUSTOMER_ID].isin(fast)
            theirs = events[events[CUSTOMER_ID].isin(fast)]
            tables = {
                SUMS: self._sums_of(fast, redo),
                TILES: self.tiles.take(moving),
                CANCELS: self.cancels.of(fast),
                EVENTS: theirs,
                CUTOFFS: cutoffs[chosen],
            }
            out.append(self._run(con, "fast", tables))
        if len(fast) < len(ids):
            done = set(fast)
            rest = [c for c in ids if c not in done]
            chosen = cutoffs[CUSTOMER_ID].isin(rest)
            tables = {
                TILES: self.tiles.of(rest),
                EVENTS: events[events[CUSTOMER_ID].isin(rest)],
                CUTOFFS: cutoffs[chosen],
            }
            out.append(self._run(con, "full", tables))
        return out[0] if len(out) == 1 else pd.concat(out, ignore_index=True)

    def _run(self, con: ibis.BaseBackend, which: str, tables: dict) -> pd.DataFrame:
        """One way's SQL over `tables`, prepared once per connection: the
        tables are temporary tables of fixed names and types, emptied and
        filled per call (DuckDB keeps a prepared plan while no table is
        created or dropped), so a call pays for its rows, not for parsing and
        planning the long query again. Prepared at the first call, on its
        rows (join orders planned on real sizes, not on empty tables)."""
        sql = self.sql(con, which)
        raw = con.con
        with self._run_lock:
            ready = self._prepared.setdefault(id(raw), (raw, set()))[1]
            if not ready:  # every table at once: no catalog change later
                empties = self._empty()
                for name, empty in empties.items():
                    rel = raw.from_arrow(empty)
                    columns = ", ".join(
                        f'"{c}" {t}'
                        for c, t in zip(rel.columns, rel.types, strict=True)
                    )
                    raw.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({columns})")
                self._columns = {k: v.column_names for k, v in empties.items()}
            for name, data in tables.items():
                # a relation inserted: no view registered, no catalog change
                raw.execute(f"DELETE FROM {name}")
                columns = self._columns[name]
                if isinstance(data, pd.DataFrame):
                    raw.from_df(data[columns]).insert_into(name)
                else:
                    raw.from_arrow(data.select(columns)).insert_into(name)
            statement = f"_live_{which}_{self._serial}"
            if which not in ready:
                raw.execute(f"PREPARE {statement} AS {sql.rstrip().rstrip(';')}")
                ready.add(which)
            try:
                # DuckDB plans a prepared statement again at each EXECUTE; on
                # a refresh's rows the optimizer costs more than it saves (1
                # customer: 31 against 39 ms, 1,640: 70 against 76 ms; 8% of a
                # refresh's CPU), and the rows are the same
                with _setting(con, "enable_optimizer", False):
                    return raw.execute(f"EXECUTE {statement}").df()
            finally:
                for name in tables:
                    raw.execute(f"DELETE FROM {name}")

    def release(self, con: ibis.BaseBackend) -> None:
        """Deallocate the statements `_run` prepared on `con` (a newer state
        replaces this one there)."""
        with self._run_lock:
            _, ready = self._prepared.pop(id(con.con), (None, set()))
            for which in ready:
                con.con.execute(f"DEALLOCATE _live_{which}_{self._serial}")

    def _sums_of(self, customers: list[str], redo: np.ndarray) -> pa.Table:
        """Their sums at the watermark, in `customers`' order, the amount
        maxima dropped where `redo` says (recomputed from their tiles)."""
        rows = np.array([self.sums.ranges[c][0] for c in customers], dtype=np.int64)
        table = self.sums.take(rows)
        if not redo.any() or not self._maxima:
            return table
        keep = pa.array(~redo)
        for name in self._maxima:
            i = table.schema.get_field_index(name)
            column = table.column(i)
            table = table.set_column(
                i, name, pc.if_else(keep, column, pa.nulls(len(table), column.type))
            )
        return table

    def _fast_and_moving(
        self, ids: list[str], cuts: np.ndarray, on_time: np.ndarray
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The customers whose rows come from the sums (in the state, no late
        event), the positions of their tiles to take out at the watermark and
        put back at their cutoff, and which of them have their windowed amount
        maxima recomputed from those tiles.

        The tiles that change age bucket between the watermark and the cutoff
        (a tile of day `d` does when `d + e` is in `[watermark, cutoff)` for a
        window edge `e`) are enough for every sum. A maximum cannot be taken
        out: a customer one of whose moving tiles holds an amount gets every
        tile of the largest window besides (taken out and put back, they change
        no sum) and its old maxima dropped, so the maxima are those of the
        tiles in each window at the cutoff."""
        mark = np.datetime64(self.mark, "D").astype(np.int64)
        held = [
            i
            for i, (cid, ok) in enumerate(zip(ids, on_time, strict=True))
            if ok and cid in self.sums.ranges and cid in self.tiles.ranges
        ]
        if not held:
            return [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        spans = np.array([self.tiles.ranges[ids[i]] for i in held], dtype=np.int64)
        lengths = spans[:, 1] - spans[:, 0]
        owner = np.repeat(np.arange(len(held)), lengths)
        offsets = np.cumsum(lengths) - lengths
        pos = np.arange(lengths.sum()) - np.repeat(offsets - spans[:, 0], lengths)
        days = cuts.astype("datetime64[D]").astype(np.int64)[held][owner]
        shifted = self._days[pos, None] + self._edges[None, :]
        moves = ((shifted >= mark) & (shifted < days[:, None])).any(axis=1)
        amounts = np.zeros(len(pos), dtype=bool)
        for has in self._amounts:
            amounts |= has[pos]
        redo = np.zeros(len(held), dtype=bool)
        redo[owner[moves & amounts]] = True
        recent = self._days[pos] >= days - self._widest
        taken = moves | (redo[owner] & recent)
        return [ids[i] for i in held], pos[taken], redo


_ARROW = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "float64": pa.float64(),
}


class _registered:
    """Tables registered under names on a DuckDB connection for a block."""

    def __init__(self, raw, tables: dict) -> None:
        self.raw, self.tables = raw, tables

    def __enter__(self):
        for name, table in self.tables.items():
            self.raw.register(name, table)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.tables:
            self.raw.unregister(name)
