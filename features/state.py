"""The incremental feature state: what the one feature definition needs to
produce every customer's feature row at a later date without rescanning history.

`build_features` runs in stages (features.definition): events are rolled up to
customer-day *tiles* (`day_tiles`, with `with_gaps`), the tiles are joined to a
cutoff and summed per (customer, cutoff, age bucket) (`bucket_rows`: the bucket
is the smallest window edge holding the day), the bucket rows are summed per
customer into every window's sums, the totals, first and last times
(`customer_sums`: money in whole cents, so sums add and subtract exactly), and
the features are computed from those row by row (`features_from_sums`, with the
cancel days for the reactivations). The state keeps the tiles, the customer
sums at its *watermark* `D` (a midnight: it holds exactly the events before
`D`), and the cancel days, so advancing it to `D2 >= D` with the new events is:

- the changes: stage one's rows at `D2` of the new tiles (each one's gap counted
  from the customer's last active day, which the sums hold), and of the *moving
  tiles*: a tile changes bucket between `D` and `D2` only when its day is in
  `[D - e, D2 - e)` for a window edge `e` (one day per edge for a one-day step);
  it leaves the windows it was in and enters the ones it is in now; the rest of
  the history is not read. A day's tiles all make the same move (from one bucket
  to another), and a move changes only the sums over the bucket ranges that hold
  exactly one of the two buckets: each such sum gains or loses the tiles' stage
  one values. So per move, stage one's row of each customer's moving tiles
  (`stage_one_by`) is projected into just those columns with their signs
  (`customer_sums(..., moved=...)`: a dozen columns, no second aggregate), and
  the new and late tiles' rows are summed per customer at full width;
- the sums at `D2`: the old sums plus the changes (a join on the customer: sums
  add, first times take the minimum, last times the maximum); the customers
  nobody touched keep their row as it was;
- the windowed amount maxima cannot be subtracted: they are recomputed from the
  tiles of the largest window that hold an amount (kept apart, `amounts-*`: a
  sixth of the tiles in the demo, three of their columns), only for the
  customers one of whose tiles leaving a window held at least that window's
  maximum;
- late events (before `D`; `features.late_events: apply`) make their customers'
  sums recomputed from all their tiles (gaps between active days change); with
  `reject` they are left out and counted;
- events with an `event_id` already applied (or repeated within the batch) are
  dropped, so a replayed batch changes nothing; without one, every row counts,
  as in `build_features`;
- "days since" features, shares of the observed days and the populations move
  with the date: `features_from_sums` computes them from the cutoff, row by row.

So the features at `D2` are `features_from_sums` of the advanced sums: the
definition's own last stage, and they equal `build_features(events, [D2])`
(tests/unit/features/test_state_properties.py checks it on random streams). A
night costs a pass over one row per customer, not over the history.

On disk (a folder beside the scores, `<scoring.output>-state`): immutable
Parquet files named by the advance that wrote them (`tiles-N-*.parquet`, stored
by day in small row groups, `amounts-N-*.parquet` likewise,
`sums-N-*.parquet`, `cancels-N-*.parquet`, `ids-N.parquet`) and the manifest
`state.json` (watermark, the files that make up the state, the key it was
built under, whether each (customer, day) has one tile row: late events can
add a second, combined where the tiles are read), replaced atomically last
(core.atomic); files no manifest names are removed after the swap, so a kill at
any moment leaves the old state or the new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import ibis.expr.types as ir

from core.atomic import atomic_write
from features.columns import (
    AMOUNT,
    CANCEL,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    QUANTITY,
    ROLES,
)
from features.definition import (
    FeatureSpec,
    _boundaries,
    bucket_merge,
    bucket_of,
    bucket_rows,
    customer_sums,
    day_tiles,
    days_between,
    features_from_sums,
    only,
    stage_one_by,
    sum_merge,
    tile_merge,
    with_gaps,
)

log = logging.getLogger(__name__)

MANIFEST = "state.json"
# an optional events column: the same id twice is one event
EVENT_ID = "event_id"
APPLY, REJECT = "apply", "reject"
LATE_POLICIES = (APPLY, REJECT)
FORMAT = 3
# tiles are stored by day in row groups this small, so the days that move at
# the next advance are read without decoding many other days around them
TILE_ROW_GROUP = 10240
# the wide tables of one row per customer (the sums, the nightly's feature rows)
# are written in row groups of half DuckDB's default: its Parquet writer then
# spends about a quarter less CPU on them (1M rows of ~95 columns: 1.5 against
# 2.1 CPU-s, measured), for a few percent more bytes
WIDE_ROW_GROUP = 61440
# advances each add a small tiles, cancels and ids file; past this many of a kind
# they are merged into one (rows concatenated: tiles of the same customer and day
# in two files combine wherever they are read), so a night opens a bounded number
COMPACT_AFTER = 30


@dataclass
class Advanced:
    """What one `advance` did."""

    state: FeatureState
    events: int  # applied
    late: int  # before the old watermark (applied, or rejected by the policy)
    rejected: int  # left out by the late policy
    duplicates: int  # event ids already applied or repeated in the batch


@dataclass
class FeatureState:
    """A state on disk: its folder and manifest."""

    folder: Path
    manifest: dict = field(default_factory=dict)

    @property
    def watermark(self) -> datetime:
        return datetime.fromisoformat(self.manifest["watermark"])

    @property
    def key(self) -> dict:
        return self.manifest["key"]

    @property
    def unique_tiles(self) -> bool:
        """Whether every (customer, day) has one tile row in the files: true
        after a rebuild, until late events add tiles to days the files hold
        (those rows are combined where they are read). Unknown: false."""
        return bool(self.manifest.get("unique_tiles", False))

    @property
    def events(self) -> int:
        """Events the state holds (all before the watermark)."""
        return int(self.manifest["events"])

    def files(self, kind: str) -> list[str]:
        return [str(self.folder / f) for f in self.manifest["files"][kind]]

    def sums(self, con: ibis.BaseBackend) -> ir.Table:
        """Stage two's per-customer sums at the watermark (`customer_sums`)."""
        return con.read_parquet(self.files("sums"))

    def cancels(self, con: ibis.BaseBackend) -> ir.Table:
        t = con.read_parquet(self.files("cancels"))
        return t.distinct()

    def tiles(self, con: ibis.BaseBackend) -> ir.Table:
        return con.read_parquet(self.files("tiles"))

    def features(
        self,
        con: ibis.BaseBackend,
        spec: FeatureSpec,
        customers: ir.Table | None = None,
        subscriptions: ir.Table | None = None,
    ) -> ir.Table:
        """`build_features(events, [watermark], ...)` from the state."""
        return features_from_sums(
            self.sums(con), self.cancels(con), spec, customers, subscriptions
        )


def state_key(spec: FeatureSpec, version: str, extra: dict | None = None) -> dict:
    """What a state is only valid under: the feature spec, the feature-set
    version and whatever else the caller names (the config's data and privacy
    sections, the suppression list); a state built under another key is rebuilt."""
    spec_text = json.dumps(
        {k: _plain(v) for k, v in vars(spec).items()}, sort_keys=True, default=str
    )
    return {
        "format": FORMAT,
        "feature_set_version": version,
        "spec": hashlib.sha256(spec_text.encode()).hexdigest()[:16],
        **(extra or {}),
    }


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list | frozenset | set):
        return [_plain(v) for v in value]
    return value


def stale_reason(state: FeatureState | None, key: dict) -> str | None:
    """Why `state` cannot be advanced under `key` (None: it can)."""
    if state is None:
        return "no feature state yet"
    old = state.key
    for name in sorted(set(old) | set(key)):
        if old.get(name) != key.get(name):
            what = {
                "feature_set_version": "the feature definition changed",
                "spec": "the feature settings changed",
                "format": "the state's format changed",
                "suppressed": "the suppression list changed (a forget)",
                "config": "the data or privacy config changed",
            }.get(name, f"{name} changed")
            return f"{what} ({name} {old.get(name)} -> {key.get(name)})"
    return None


def open_state(folder: Path) -> FeatureState | None:
    """The state in `folder`, or None when there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return FeatureState(Path(folder), json.loads(path.read_text()))


def remove_state(folder: Path) -> bool:
    """Drop the state (its manifest first, so a half-removed state reads as
    none): the next run rebuilds it. Returns whether there was one."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    had = manifest.is_file()
    manifest.unlink(missing_ok=True)
    for f in folder.glob("*.parquet") if folder.is_dir() else []:
        f.unlink(missing_ok=True)
    return had


# ------------------------------------------------------------------ building


def rebuild(
    folder: Path,
    con: ibis.BaseBackend,
    chunks: Iterable[ir.Table],
    as_of: datetime,
    spec: FeatureSpec,
    key: dict,
    on_chunk: Callable[[int, ir.Table, ir.Table], None] | None = None,
) -> FeatureState:
    """A new state at `as_of` from all events, given as customer chunks (every
    customer's events in one chunk); `on_chunk(i, sums, cancels)` gets each
    chunk's customer sums and cancel days as they are written (the nightly
    computes its features from them), before the manifest is swapped in."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seq = _next_seq(folder)
    files: dict[str, list[str]] = {
        "tiles": [],
        "amounts": [],
        "sums": [],
        "cancels": [],
        "ids": [],
    }
    count = 0
    for i, events in enumerate(chunks):
        events = _typed(events)
        before = events.filter(events[EVENT_TIME] < as_of)
        if EVENT_ID in before.columns:  # an id applies once; remember them
            ided = before.filter(before[EVENT_ID].notnull())
            ided = ided.distinct(on=EVENT_ID, keep="first")
            ids_name = f"ids-{seq}-{i}.parquet"
            ided.select(EVENT_ID).to_parquet(folder / ids_name)
            files["ids"].append(ids_name)
            before = ided.union(before.filter(before[EVENT_ID].isnull()))
            before = before.drop(EVENT_ID)
        count += int(before.count().execute())
        tiles_name = f"tiles-{seq}-{i}.parquet"
        # by day: reading the days that move tomorrow skips most row groups
        day_tiles(before, spec).order_by("_day").to_parquet(
            folder / tiles_name, row_group_size=TILE_ROW_GROUP
        )
        tiles = con.read_parquet(str(folder / tiles_name))
        files["amounts"] += _write_amounts(
            tiles, spec, folder / f"amounts-{seq}-{i}.parquet"
        )
        sums_name = f"sums-{seq}-{i}.parquet"
        sums = customer_sums(_at(with_gaps(tiles), as_of, spec), spec)
        sums.to_parquet(folder / sums_name)
        cancels_name = f"cancels-{seq}-{i}.parquet"
        _cancels_of(tiles).to_parquet(folder / cancels_name)
        files["tiles"].append(tiles_name)
        files["sums"].append(sums_name)
        files["cancels"].append(cancels_name)
        if on_chunk is not None:
            on_chunk(
                i,
                con.read_parquet(str(folder / sums_name)),
                con.read_parquet(str(folder / cancels_name)).distinct(),
            )
    # a chunk's tiles: one row per (customer, day), no customer in two chunks
    return _commit(folder, seq, as_of, key, count, files, unique_tiles=True)


def _at(tiles: ir.Table, cutoff: datetime, spec: FeatureSpec) -> ir.Table:
    """Stage one's rows at `cutoff` of tiles (with `_gap`) all before it."""
    joined = tiles.mutate(
        **{CUSTOMER_ID: tiles._cid, CUTOFF: ibis.literal(cutoff, "timestamp")}
    )
    return bucket_rows(joined, spec)


def amount_tiles(tiles: ir.Table, spec: FeatureSpec) -> ir.Table:
    """The tiles with an amount (their customer, day and amount maxima), by
    day: what the windowed amount maxima are recomputed from
    (`_fix_amount_max`), a fraction of the tiles (purchases only, by default)
    and of their columns."""
    maxima = [f"_amount_max_{r}" for r in spec.amount_roles]
    held = tiles.filter(ibis.or_(*(tiles[c].notnull() for c in maxima)))
    return held.select("_cid", "_day", *maxima).order_by("_day")


def _write_amounts(tiles: ir.Table, spec: FeatureSpec, path: Path) -> list[str]:
    """`amount_tiles` written to `path`: its name, or none when the spec has no
    amount roles."""
    if not spec.amount_roles:
        return []
    amount_tiles(tiles, spec).to_parquet(path, row_group_size=TILE_ROW_GROUP)
    return [path.name]


def _cancels_of(tiles: ir.Table) -> ir.Table:
    t = tiles.filter(tiles[f"_n_{CANCEL}"] > 0)
    return t.select(_rcid=t._cid, _rday=t._day)


def _next_seq(folder: Path) -> int:
    state = open_state(folder)
    return 1 if state is None else int(state.manifest["seq"]) + 1


def _commit(
    folder: Path,
    seq: int,
    as_of: datetime,
    key: dict,
    events: int,
    files: dict,
    unique_tiles: bool,
) -> FeatureState:
    manifest = {
        "watermark": as_of.isoformat(),
        "key": key,
        "events": events,
        "seq": seq,
        "files": files,
        "unique_tiles": unique_tiles,
        "written_at": datetime.now().isoformat(timespec="seconds"),
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(text))
    keep = {MANIFEST, *(f for names in files.values() for f in names)}
    for f in folder.glob("*.parquet"):
        if f.name not in keep:
            f.unlink(missing_ok=True)
    return FeatureState(folder, manifest)


# ------------------------------------------------------------------ advancing


def advance(
    state: FeatureState,
    con: ibis.BaseBackend,
    events: ir.Table,
    to: datetime,
    spec: FeatureSpec,
    *,
    late: str = APPLY,
    compact_after: int | None = None,
    rows_to: Path | None = None,
    customers: ir.Table | None = None,
    subscriptions: ir.Table | None = None,
) -> Advanced:
    """Apply `events` (the contract's columns, optionally `event_id`) and move
    the state to `to` (a midnight, not before the watermark); every event must be
    before `to`. Events before the watermark are late: applied to the customers
    they concern, or left out under `late="reject"`. Returns the new state (the
    old one's files are removed once the new manifest is in place). The small
    files advances leave (a night's tiles, cancel days, event ids) are merged
    into one of each kind once there are more than `compact_after`
    (`COMPACT_AFTER`). With `rows_to`, the new state's feature rows
    (`FeatureState.features` with `customers` and `subscriptions`) are also
    written there, in any order, the query compiled while the sums are written."""
    if late not in LATE_POLICIES:
        raise ValueError(f"features.late_events must be one of {LATE_POLICIES}")
    old = state.watermark
    if to < old:
        raise ValueError(f"cannot move the state back from {old:%Y-%m-%d} to {to}")
    if to != datetime(to.year, to.month, to.day):
        raise ValueError(f"the state's date must be a midnight, got {to}")
    folder, seq = state.folder, int(state.manifest["seq"]) + 1
    files = {k: list(v) for k, v in state.manifest["files"].items()}
    # the batch read once (it may be a filter over a large log); the manifest
    # never names this file, so the commit removes it
    incoming = folder / f"incoming-{seq}.parquet"
    _typed(events).to_parquet(incoming)
    events = con.read_parquet(str(incoming))
    after = int(events.filter(events[EVENT_TIME] >= to).count().execute())
    if after:
        incoming.unlink()
        raise ValueError(
            f"{after} event(s) at or after {to:%Y-%m-%d}: the state holds events "
            "before its date only"
        )
    total = int(events.count().execute())
    # rejected first: a rejected event's id is not remembered, so it applies
    # when sent again under `apply`
    is_late = events[EVENT_TIME] < old
    rejected = 0
    if late == REJECT:
        rejected = int(events.filter(is_late).count().execute())
        events = events.filter(~is_late)
        if rejected:
            log.warning(
                "%d late event(s) before %s rejected", rejected, f"{old:%Y-%m-%d}"
            )
    events, duplicates = _new_ids(state, con, events, folder, seq, files)
    n_late = rejected or int(events.filter(events[EVENT_TIME] < old).count().execute())
    applied = total - duplicates - rejected
    keep = [c for c in events.columns if c != EVENT_ID]
    tiles_name = f"tiles-{seq}.parquet"
    tiles = day_tiles(events.select(*keep), spec).order_by("_day")
    tiles.to_parquet(folder / tiles_name, row_group_size=TILE_ROW_GROUP)
    files["tiles"].append(tiles_name)
    new = con.read_parquet(str(folder / tiles_name))
    files["amounts"] += _write_amounts(new, spec, folder / f"amounts-{seq}.parquet")
    cancels_name = f"cancels-{seq}.parquet"
    _cancels_of(new).to_parquet(folder / cancels_name)
    files["cancels"].append(cancels_name)

    all_tiles = con.read_parquet([str(folder / f) for f in files["tiles"]])
    amounts = [str(folder / f) for f in files["amounts"]]
    late_ids = None
    if n_late and rejected == 0:
        late_ids = new.filter(new._day < old).select(_lcid=new._cid).distinct()
    sums_name = f"sums-{seq}.parquet"
    rows = None
    if rows_to is not None:
        cancels = con.read_parquet([str(folder / f) for f in files["cancels"]])

        def rows(sums: ir.Table) -> tuple[ir.Table, Path]:
            return features_from_sums(
                sums, cancels.distinct(), spec, customers, subscriptions
            ), rows_to

    _advance_sums(
        state.sums(con),
        con,
        all_tiles,
        new,
        late_ids,
        old,
        to,
        spec,
        state.tiles(con),
        lambda name: folder / f"{name}-{seq}.parquet",
        folder / sums_name,
        state.unique_tiles,
        rows,
        con.read_parquet(amounts) if amounts else None,
    )
    files["sums"] = [sums_name]
    _compact(con, folder, seq, files, compact_after or COMPACT_AFTER)
    # new days' tiles are after every day the files hold; late ones may not be
    unique = state.unique_tiles and late_ids is None
    out = _commit(folder, seq, to, state.key, state.events + applied, files, unique)
    return Advanced(out, applied, n_late, rejected, duplicates)


def _compact(
    con: ibis.BaseBackend, folder: Path, seq: int, files: dict, limit: int
) -> None:
    """Merge the files advances wrote (`<kind>-<seq>.parquet`, not a rebuild's
    chunks) into `<kind>-<seq>-merged.parquet` when there are more than `limit`
    of a kind; `files` is updated in place (the commit removes the old ones)."""
    for kind in ("tiles", "amounts", "cancels", "ids"):
        small = [f for f in files[kind] if f.count("-") == 1]
        if len(small) <= limit:
            continue
        table = con.read_parquet([str(folder / f) for f in small])
        name = f"{kind}-{seq}-merged.parquet"
        if kind in ("tiles", "amounts"):
            table.order_by("_day").to_parquet(
                folder / name, row_group_size=TILE_ROW_GROUP
            )
        else:
            table.to_parquet(folder / name)
        files[kind] = [f for f in files[kind] if f not in small] + [name]


CONTRACT_TYPES = {
    CUSTOMER_ID: "string",
    EVENT_TIME: "timestamp",
    EVENT_TYPE: "string",
    AMOUNT: "float64",
    QUANTITY: "float64",
    EVENT_ID: "string",
}


def _typed(events: ir.Table) -> ir.Table:
    """The events with the contract's types (an empty batch has none), the
    optional amount and quantity null when absent."""
    present = set(events.columns)
    cols = {
        name: (events[name] if name in present else ibis.null()).cast(kind)
        for name, kind in CONTRACT_TYPES.items()
        if name in present or name in (AMOUNT, QUANTITY)
    }
    return events.select(**cols)


def _new_ids(
    state: FeatureState,
    con: ibis.BaseBackend,
    events: ir.Table,
    folder: Path,
    seq: int,
    files: dict,
) -> tuple[ir.Table, int]:
    """Events without an id, and those whose id was neither applied before nor
    seen earlier in the batch; the new ids are recorded in `ids-<seq>`."""
    if EVENT_ID not in events.columns:
        return events, 0
    before = int(events.count().execute())
    with_id = events.filter(events[EVENT_ID].notnull())
    without = events.filter(events[EVENT_ID].isnull())
    with_id = with_id.distinct(on=EVENT_ID, keep="first")
    if files["ids"]:
        seen = con.read_parquet([str(folder / f) for f in files["ids"]])
        with_id = with_id.anti_join(seen, with_id[EVENT_ID] == seen[EVENT_ID])
    name = f"ids-{seq}.parquet"
    with_id.select(EVENT_ID).to_parquet(folder / name)
    files["ids"].append(name)
    kept = con.read_parquet(str(folder / name))
    fresh = events.semi_join(kept, events[EVENT_ID] == kept[EVENT_ID])
    # one row per id (the first of a repeated one), and the events without an id
    fresh = fresh.distinct(on=EVENT_ID, keep="first")
    out = fresh.union(without)
    return out, before - int(out.count().execute())


def _merged(table: ir.Table, keys: list[str], how: dict[str, str]) -> ir.Table:
    """Rows of `table` with equal `keys` combined column by column (`how`)."""
    return table.group_by(keys).aggregate(
        **{c: getattr(table[c], op)() for c, op in how.items()}
    )


def _moving_days(old: datetime, to: datetime, spec: FeatureSpec) -> list[datetime]:
    """Days whose tiles change bucket between cutoffs `old` and `to`: `[old - e,
    to - e)` for each window edge `e`."""
    days = set()
    for edge in _boundaries(spec):
        day = old - timedelta(days=edge)
        while day < to - timedelta(days=edge):
            days.add(day)
            day += timedelta(days=1)
    return sorted(days)


def _moves(
    days: list[datetime], old: datetime, to: datetime, spec: FeatureSpec
) -> list[tuple[tuple[int, int], list[datetime]]]:
    """The moving days grouped by their tiles' move: (bucket at `old`, bucket at
    `to`) -> the days."""
    out: dict[tuple[int, int], list[datetime]] = {}
    for day in days:
        move = (bucket_of((old - day).days, spec), bucket_of((to - day).days, spec))
        out.setdefault(move, []).append(day)
    return sorted(out.items())


def _day_literals(days: list[datetime]) -> list[ir.Value]:
    return [ibis.literal(d, "timestamp") for d in days]


class _Queued:
    """Writes run in order on one thread, each once the one before it is done,
    while the caller builds and compiles the next: Ibis's compile of an
    advance's dozen queries (about a second of Python) overlaps DuckDB's run of
    the earlier ones instead of leaving both cores idle between them. A table
    written is read back through a view of its file, named before the file is
    there (an unbound table of its schema). Use it as a context manager: the
    exit waits for every write, drops the views and raises the first error."""

    def __init__(self, con: ibis.BaseBackend) -> None:
        self.con = con
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="state-writes")
        self.jobs: list[Future] = []
        self.views: list[str] = []

    def __enter__(self) -> _Queued:
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.pool.shutdown(wait=True)
        try:
            if error is None:
                for job in self.jobs:
                    job.result()
        finally:
            for view in self.views:
                self.con.con.execute(f'DROP VIEW IF EXISTS "{view}"')

    def write(
        self, t: ir.Table, path: Path, *, ordered: bool = True, **options
    ) -> ir.Table:
        """Queue `t` written to `path` (`options`: DuckDB's Parquet options, as
        `to_parquet` takes them; not `ordered`: as `unordered` writes); the
        table as it will be read back."""
        listed = "".join(f", {k.upper()} {v}" for k, v in options.items())
        file = "'" + str(path).replace("'", "''") + "'"
        name = f"_state_{uuid.uuid4().hex[:16]}"
        statements = [
            f"COPY ({self.con.compile(t)}) TO {file} (FORMAT parquet{listed})",
            f'CREATE TEMP VIEW "{name}" AS SELECT * FROM read_parquet({file})',
        ]
        self.views.append(name)
        self.jobs.append(self.pool.submit(self._run, statements, ordered))
        return ibis.table(t.schema(), name=name)

    def _run(self, statements: list[str], ordered: bool = True) -> None:
        with nullcontext() if ordered else unordered(self.con):
            for statement in statements:
                self.con.con.execute(statement)


def _advance_sums(
    sums: ir.Table,
    con: ibis.BaseBackend,
    all_tiles: ir.Table,
    new: ir.Table,
    late_ids: ir.Table | None,
    old: datetime,
    to: datetime,
    spec: FeatureSpec,
    old_tiles: ir.Table,
    scratch: Callable[[str], Path],
    out: Path,
    unique_tiles: bool = False,
    also: Callable[[ir.Table], tuple[ir.Table, Path]] | None = None,
    amounts: ir.Table | None = None,
) -> None:
    """Write the customer sums at `to` to `out` (see the module docstring).
    `unique_tiles`: the old tiles
    hold one row per (customer, day) (`FeatureState.unique_tiles`), so the
    moving ones need not be combined. Intermediate tables go to
    `scratch(name)` (files the manifest never names: the commit removes them),
    so the engine plans the joins with their true sizes. The writes are queued
    (`_Queued`): each query is compiled while the ones before it run. `also`,
    if given, says from the sums as written what else to write and where (the
    feature rows), unordered, after them. `amounts`: every tile with an
    amount (`amount_tiles`), for the windowed amount maxima."""
    # the tiles' footers (thousands of small row groups in dozens of files)
    # parsed once for the advance's queries, not once per query: ~0.15 s of a
    # 1M customers' night, measured, for ~120 MB more at the step's peak
    with _setting(con, "parquet_metadata_cache", True), _Queued(con) as queue:
        how = sum_merge(spec)
        columns = [CUSTOMER_ID, CUTOFF, *how]
        schema = sums.schema()
        cutoff = ibis.literal(to, "timestamp")

        def shaped(t: ir.Table) -> ir.Table:
            return t.select(*(t[c].cast(schema[c]).name(c) for c in columns))

        def not_late(t: ir.Table, cid: str) -> ir.Table:
            if late_ids is None:
                return t
            return t.anti_join(late_ids, t[cid] == late_ids._lcid)

        def written(t: ir.Table, name: str) -> ir.Table:
            return queue.write(t, scratch(name))

        kept = not_late(sums, CUSTOMER_ID)
        # stage one's rows of the new (and late) tiles, all at `to`: stage two's sums
        # of them are their changes of the sums, at full width
        rows: list[ir.Table] = []
        stage_one = bucket_merge(spec)
        keys = [CUSTOMER_ID, CUTOFF, "_bucket"]

        # tiles crossing an edge: out of the windows at the old date, into those at
        # `to`; the tiles are stored by day, so a list of days is read from the row
        # groups holding them
        days = _moving_days(old, to, spec)
        moving = None
        moves: list[ir.Table] = []
        if days:
            m = old_tiles.filter(old_tiles._day.isin(_day_literals(days)))
            m = not_late(m, "_cid")
            if not unique_tiles:
                m = _merged(m, ["_cid", "_day"], tile_merge(spec))
            moving = written(m, "moving")
            tagged = moving.mutate(
                _gap=ibis.null("float64"), **{CUSTOMER_ID: moving._cid, CUTOFF: cutoff}
            )
            # each day's tiles all move from one bucket to another, and a move
            # changes only the sums over the bucket ranges holding one of the two:
            # per move, stage one's row of each customer's moving tiles, and the
            # changes a narrow projection of it (`customer_sums(..., moved=...)`)
            for i, ((b_old, b_to), group) in enumerate(_moves(days, old, to, spec)):
                mine = tagged.filter(tagged._day.isin(_day_literals(group)))
                mine = stage_one_by(mine, [CUSTOMER_ID, CUTOFF], spec)
                change = customer_sums(mine, spec, moved=(b_old, b_to))
                if len(change.columns) > 2:  # a move changing no sum is left out
                    moves.append(written(change, f"move{i}"))

        # new days' tiles, their gaps counted from each customer's last active day
        rows.append(_at(gapped_after(not_late(new, "_cid"), kept), to, spec))

        # late customers: every tile of theirs again (their old sums are not kept)
        if late_ids is not None:
            theirs = all_tiles.semi_join(late_ids, all_tiles._cid == late_ids._lcid)
            theirs = _merged(theirs, ["_cid", "_day"], tile_merge(spec))
            rows.append(_at(with_gaps(theirs), to, spec))

        union = rows[0].select(*keys, *stage_one)
        for r in rows[1:]:
            union = union.union(r.select(*keys, *stage_one))
        delta = written(shaped(customer_sums(union, spec)), "delta")

        # the sums of the customers with changes plus their changes (a join, one row
        # per customer on each side); customers new to the state (or late) as the
        # changes say; the others as they were
        merged = plus_changes(kept, delta, spec, cutoff, moves)
        if moving is not None and amounts is not None:
            merged = _fix_amount_max(
                merged, moving, sums, amounts, late_ids, old, to, spec, written
            )
        only_new = delta.anti_join(kept, delta[CUSTOMER_ID] == kept[CUSTOMER_ID])
        # one row per customer, read by key: in any order
        wide = {"ordered": False, "row_group_size": WIDE_ROW_GROUP}
        written_sums = queue.write(shaped(merged).union(shaped(only_new)), out, **wide)
        if also is not None:
            queue.write(*also(written_sums), **wide)


@contextmanager
def _setting(con: ibis.BaseBackend, name: str, value: bool) -> Iterator[None]:
    """DuckDB's boolean setting `name` at `value` within it, as it was after."""
    was = con.con.execute(f"SELECT current_setting('{name}')").fetchone()[0]
    con.raw_sql(f"SET {name} = {str(value).lower()}")
    try:
        yield
    finally:
        con.raw_sql(f"SET {name} = {str(bool(was)).lower()}")


def unordered(con: ibis.BaseBackend):
    """Within it, DuckDB may write a query's rows in any order (its
    `preserve_insertion_order` off): a wide table of one row per customer is
    written about twice as fast, its row groups no longer waiting for each other.
    For outputs read by key only; an ORDER BY is still kept."""
    return _setting(con, "preserve_insertion_order", False)


def taken_out(
    rows: ir.Table, spec: FeatureSpec, where: ir.BooleanValue | None = None
) -> ir.Table:
    """Stage one's rows (`bucket_rows`) with their sums negated and their minima
    and maxima null (only the rows `where` holds, if given): summed with the
    rows they came from by `customer_sums`, they take those tiles out of the
    windows they were in (stage two reads the minima and maxima other than
    `_amax_*` over all buckets only)."""

    def out(c: str, op: str) -> ir.Value:
        value = -rows[c] if op == "sum" else ibis.null(rows[c].type())
        return value if where is None else ibis.ifelse(where, value, rows[c])

    return rows.mutate(**{c: out(c, op) for c, op in bucket_merge(spec).items()})


def gapped_after(fresh: ir.Table, sums: ir.Table) -> ir.Table:
    """New tiles (days after every day `sums` holds for their customers) with
    `_gap`: whole days since the customer's previous active day, the first
    counted from the last active day the sums hold (none: null)."""
    last_day = ibis.greatest(*(sums[f"_last_{r}"] for r in ROLES)).truncate("D")
    last = sums.select(_cid=sums[CUSTOMER_ID], _day=last_day)
    last = last.semi_join(fresh, last._cid == fresh._cid)
    base = fresh.select("_cid", "_day").mutate(_new=True)
    last = last.select(_cid=last._cid, _day=last._day.cast(base._day.type()))
    gaps = with_gaps(base.union(last.mutate(_new=False)))
    gaps = gaps.filter(gaps._new).select(_gcid="_cid", _gday="_day", _gap="_gap")
    fresh = fresh.join(gaps, [fresh._cid == gaps._gcid, fresh._day == gaps._gday])
    return fresh.drop("_gcid", "_gday")


def plus_changes(
    sums: ir.Table,
    delta: ir.Table,
    spec: FeatureSpec,
    cutoff: ir.Value | None = None,
    moves: Iterable[ir.Table] = (),
) -> ir.Table:
    """`sums` (`customer_sums` rows) plus their changes `delta` (`customer_sums`
    of stage one's rows of what changed, one row per customer or none), column
    by column as `sum_merge` says, at `cutoff` (default: the changes' own), and
    plus the narrow changes of moving tiles `moves` (`customer_sums(...,
    moved=...)`: a customer's row, or none, with the sums that move changes).
    One chain of joins and one projection: Ibis compiles that in a fraction of
    the time a join, projection and drop per change take."""
    how = sum_merge(spec)
    d = delta.rename(lambda c: f"_d{c}")
    j = sums.left_join(d, sums[CUSTOMER_ID] == d[f"_d{CUSTOMER_ID}"])
    added: dict[str, list[str]] = {}
    for i, change in enumerate(moves):
        m = change.rename(lambda c, i=i: f"_m{i}{c}")
        j = j.left_join(m, j[CUSTOMER_ID] == m[f"_m{i}{CUSTOMER_ID}"])
        for c in change.columns:
            if c not in (CUSTOMER_ID, CUTOFF):
                added.setdefault(c, []).append(f"_m{i}{c}")
    combine = {
        "sum": lambda a, b: a + b.fill_null(0),
        "max": lambda a, b: ibis.greatest(a, b),
        "min": lambda a, b: ibis.least(a, b),
    }

    def value(c: str, op: str) -> ir.Value:
        out = combine[op](j[c], j[f"_d{c}"])
        for name in added.get(c, []):
            out = out + j[name].fill_null(0)
        return out

    return j.select(
        j[CUSTOMER_ID],
        **{CUTOFF: j[f"_d{CUTOFF}"] if cutoff is None else cutoff},
        **{c: value(c, op) for c, op in how.items()},
    )


def _fix_amount_max(
    merged: ir.Table,
    moving: ir.Table,
    sums: ir.Table,
    amounts: ir.Table,
    late_ids: ir.Table | None,
    old: datetime,
    to: datetime,
    spec: FeatureSpec,
    written: Callable[[ir.Table, str], ir.Table],
) -> ir.Table:
    """The windowed amount maxima (a maximum cannot be subtracted) recomputed
    from the tiles with an amount (`amounts`) of the newest `max window` days,
    only for the customers one of whose tiles leaving a window held at least
    that window's maximum (in `sums`, at the old date): otherwise the maximum
    stays in the window."""
    cols = [(r, w) for r in spec.amount_roles for w in spec.windows_days]
    k = sums.select(
        _kcid=sums[CUSTOMER_ID],
        **{f"_k_{r}_{w}": sums[f"_amax_{r}_{w}"] for r, w in cols},
    )
    age_old = days_between(ibis.literal(old, "timestamp"), moving._day)
    age_to = days_between(ibis.literal(to, "timestamp"), moving._day)
    leaving = moving.filter(
        ibis.or_(*((age_old <= w) & (age_to > w) for w in spec.windows_days))
    )
    hit = leaving.join(k, leaving._cid == k._kcid)
    age_old = days_between(ibis.literal(old, "timestamp"), hit._day)
    age_to = days_between(ibis.literal(to, "timestamp"), hit._day)
    held = [
        (age_old <= w) & (age_to > w) & (hit[f"_amount_max_{r}"] >= hit[f"_k_{r}_{w}"])
        for r, w in cols
    ]
    carried = hit.filter(ibis.or_(*(h.fill_null(False) for h in held)))
    carried = written(carried.select(_rcid=carried._cid).distinct(), "carried")
    since = to - timedelta(days=max(spec.windows_days))
    # stored by day: the older days' row groups are skipped
    recent = amounts.filter(amounts._day >= ibis.literal(since, "timestamp"))
    recent = recent.semi_join(carried, recent._cid == carried._rcid)
    if late_ids is not None:
        recent = recent.anti_join(late_ids, recent._cid == late_ids._lcid)
    age = days_between(ibis.literal(to, "timestamp"), recent._day)
    fixed = recent.group_by(_fcid=recent._cid).aggregate(
        **{
            f"_f_{r}_{w}": only(age <= w, recent[f"_amount_max_{r}"]).max()
            for r, w in cols
        },
    )
    # a carried customer without a tile left in the largest window has none
    fixed = written(
        carried.left_join(fixed, carried._rcid == fixed._fcid).select(
            _fcid="_rcid", **{f"_f_{r}_{w}": f"_f_{r}_{w}" for r, w in cols}
        ),
        "fixed",
    )
    joined = merged.left_join(fixed, merged[CUSTOMER_ID] == fixed._fcid)
    redo = joined._fcid.notnull()
    return joined.mutate(
        **{
            f"_amax_{r}_{w}": ibis.ifelse(
                redo, joined[f"_f_{r}_{w}"], joined[f"_amax_{r}_{w}"]
            )
            for r, w in cols
        }
    )


def forget(
    state: FeatureState,
    con: ibis.BaseBackend,
    customer_ids: Iterable[str],
    key: dict | None = None,
) -> FeatureState:
    """The state without the given customers (stored ids): every file that
    holds one of their rows is rewritten without it and the manifest swapped in,
    so nothing of theirs is left. Their events leave the count; with `key` the
    state is kept under that key (the suppression list now naming them)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return state
    gone = ibis.memtable({"_gone": ids}, schema={"_gone": "string"})
    folder, seq = state.folder, int(state.manifest["seq"]) + 1
    tiles = state.tiles(con)
    theirs = tiles.semi_join(gone, tiles._cid == gone._gone)
    removed = theirs.aggregate(
        n=sum((theirs[f"_n_{r}"] for r in ROLES), ibis.literal(0.0)).sum()
    ).execute()["n"][0]
    files: dict[str, list[str]] = {}
    column = {
        "tiles": "_cid",
        "amounts": "_cid",
        "sums": CUSTOMER_ID,
        "cancels": "_rcid",
    }
    for kind, names in state.manifest["files"].items():
        files[kind] = []
        for i, name in enumerate(names):
            if kind not in column:  # event ids: no customer in them
                files[kind].append(name)
                continue
            table = con.read_parquet(str(folder / name))
            kept = table.anti_join(gone, table[column[kind]] == gone._gone)
            out = f"{kind}-{seq}-{i}.parquet"
            wide = {"row_group_size": WIDE_ROW_GROUP} if kind == "sums" else {}
            kept.to_parquet(folder / out, **wide)
            files[kind].append(out)
    count = state.events - int(0 if removed is None or removed != removed else removed)
    return _commit(
        folder, seq, state.watermark, key or state.key, count, files, state.unique_tiles
    )
