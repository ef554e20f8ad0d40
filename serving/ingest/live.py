"""The live layer: ingested events applied to the online store within the
request (or before the stream entry is acknowledged).

`Ingester.ingest(events)` checks a batch by the data contract
(serving.ingest.batch), pseudonymises the ids and drops the suppressed (the
forgotten), then, grouped with whatever other batches arrived meanwhile
(`ingest.group_ms`), under a lock shared by every process on the machine:

1. appends them to the event log (serving.ingest.log), durable before anything
   else; an event id the log holds already is dropped (a replay changes nothing);
2. recomputes the touched customers' feature rows: the nightly feature state's
   day tiles (features.state, at its watermark) plus every event of theirs the
   state does not hold, read back from the log (so batches from other workers or
   the stream consumer count too), through the one feature definition
   (features.live); each at the midnight after the customer's newest event;
3. writes them as live rows over the nightly store
   (serving.online_store.live), with `as_of` the newest event's time.

Steps 2 and 3 run in a thread of the process, or in a child process of it
(`ingest.refresh: process`, the API's default: `_ChildRefresher`).

Attribute and subscription features stay the nightly's (the customers table is
not re-read per event); the scores are computed by `predict_by_id` from the
features, as always. Nothing is written to the nightly state: the next nightly
run reads the sealed log like any other events (docs/ingest.md).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import ProjectConfig
from core.config.base import ConfigError
from core.watch import WatchedFile
from features import state as fs
from features.columns import (
    AMOUNT,
    CUSTOMER_ID,
    EVENT_TIME,
    EVENT_TYPE,
    QUANTITY,
    population_column,
)
from features.definition import FeatureSpec
from features.live import LiveState, time_span
from features.sources.load import connect
from features.sources.privacy import (
    pseudonymiser,
    read_suppressed,
    suppression_path,
)
from serving.ingest import batch
from serving.ingest.log import EventLog
from serving.online_store import open_reader
from serving.online_store.base import StoreError, column_values
from serving.online_store.live import LiveRows, base_of, live_path, split_features

log = logging.getLogger(__name__)

LOCK = ".live.lock"
INLINE_EVENTS = 1000  # a batch this small is checked on the event loop when plain
SQL = "compiled"  # the live SQL compiled per state (features.live.LiveState)


@dataclass
class Outcome:
    """What became of one batch."""

    received: int = 0
    accepted: int = 0  # new in the log
    duplicates: int = 0  # event ids the log held already (or repeated)
    suppressed: int = 0  # of forgotten customers: dropped
    rejected: int = 0  # bad rows left out (the stream's dead letters)
    customers: int = 0  # whose rows were refreshed
    problems: list = field(default_factory=list)
    bad_rows: frozenset = frozenset()  # 1-based rows left out as bad
    as_of: str | None = None  # the newest event time the refreshed rows include


def _typed_events(rows: list[tuple]) -> pd.DataFrame:
    """Log rows (`EventLog.live`) with the contract's types."""
    events = pd.DataFrame(
        rows, columns=[CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, AMOUNT, QUANTITY]
    )
    events[CUSTOMER_ID] = events[CUSTOMER_ID].astype(object)
    events[EVENT_TYPE] = events[EVENT_TYPE].astype(object)
    events[EVENT_TIME] = pd.to_datetime(events[EVENT_TIME], format="ISO8601").astype(
        "datetime64[us]"
    )
    events[AMOUNT] = events[AMOUNT].astype("float64")
    events[QUANTITY] = events[QUANTITY].astype("float64")
    return events


def _included(results: list[tuple], whose: list[set], as_of: dict) -> list[tuple]:
    """Per batch: events added, customers, and the newest event time the
    refreshed rows of its customers include (None without a refresh)."""
    return [
        (n, c, max((as_of[s] for s in who if s in as_of), default=None))
        for (n, c, _), who in zip(results, whose, strict=True)
    ]


def _nicer(by: int) -> None:
    """This thread's niceness raised by `by` (Linux nice is per thread; a
    system without it keeps the thread as it is)."""
    if not by or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + by))
    except OSError as exc:
        log.warning("ingest: the refresh thread keeps its priority: %s", exc)


class _ChildRefresher:
    """The refreshes in a process of their own (`ingest.refresh: process`):
    its own interpreter (no GIL shared with the requests), its own DuckDB and
    copy of the state, niced by `ingest.nice`. The parent sends the customers
    to refresh and gets their newest event times back; a refresh there is the
    same `Ingester.refresh` under the same lock. Started again when it died."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self._process = None
        self._conn = None
        self._lock = threading.Lock()
        self._calls = threading.Lock()

    def start(self) -> None:
        import multiprocessing

        with self._lock:
            if self._process is not None and self._process.is_alive():
                return
            ctx = multiprocessing.get_context("spawn")  # never fork a threaded process
            parent, child = ctx.Pipe()
            self._process = ctx.Process(
                target=_refresh_main,
                args=(self.config, child),
                name="ingest-refresh",
                daemon=True,
            )
            self._process.start()
            child.close()
            self._conn = parent

    def __call__(self, touched: set[str]) -> dict[str, str]:
        self.start()
        try:
            with self._calls:  # one question and its answer at a time
                self._conn.send(touched)
                ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            with self._lock:
                if self._process is not None:
                    self._process.kill()
                self._process = None
            raise RuntimeError(f"ingest: the refresh process died ({exc!r})") from exc
        if not ok:
            raise RuntimeError(f"ingest: refreshing in the refresh process: {value}")
        return value


def _refresh_main(config: ProjectConfig, conn) -> None:
    """The child of `_ChildRefresher`: refreshes until its parent is gone."""
    logging.basicConfig(level=logging.INFO)
    _nicer(config.ingest.nice)  # its main thread runs the refreshes' queries
    ingester = Ingester(config)
    while True:
        try:
            touched = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((True, ingester._refreshed(touched)))
        except Exception as exc:
            log.exception("ingest: refreshing %d customers", len(touched))
            conn.send((False, f"{type(exc).__name__}: {exc}"))


class Ingester:
    """One per process: the worker of `POST /events`, or the stream consumer."""

    def __init__(self, config: ProjectConfig, refresh: str = "thread") -> None:
        """`refresh`: where the live rows are recomputed, in this process
        (`thread`) or in a child process (`process`, the API's
        `ingest.refresh`)."""
        from serving.batch.incremental import state_dir

        self.config = config
        self.spec = FeatureSpec.from_config(config)
        if self.spec.classic:
            # a few customers' rows cannot refit the population's BG/NBD
            raise ConfigError(
                "features.classic: true cannot be ingested in real time (the "
                "classic features are fitted on every customer at each cutoff, "
                "and a live row holds a few); set features.classic: false to use "
                "POST /events or the stream consumer"
            )
        self.pseudonyms = pseudonymiser(config.privacy)
        self._suppressed = WatchedFile(
            suppression_path(config.privacy), read_suppressed, lambda *_: frozenset()
        )
        self.log = EventLog(config.ingest.log)
        self.store = open_reader(config.online_store)
        self.rows = LiveRows(live_path(config.online_store.path))
        self.state_dir = state_dir(config.scoring.output)
        self.types = config.roles.types_read()
        # one thread: a refresh's query is small, and it shares the cores with
        # the requests (more threads only wait for each other there)
        self.con = connect(config.engine.memory_limit, 1)
        self._checker = connect(threads=1).con
        self._lock_path = Path(config.ingest.log) / LOCK
        self._base: str | None = None
        # the nightly rows' numbers, texts and scores, per customer, read once
        # per nightly store (`_nightly_of`)
        self._nightly: dict[str, tuple | None] = {}
        self._nightly_base: str | None = None
        self._nightly_gone: frozenset | None = None
        # the nightly's state, opened again when its manifest is replaced
        self._states = WatchedFile(
            self.state_dir / fs.MANIFEST,
            lambda manifest: fs.open_state(manifest.parent),
            lambda *_: None,
        )
        self._live: LiveState | None = None
        # the events the state does not hold, read from the log as it grows
        self._events: pd.DataFrame | None = None
        self._events_seq = 0
        self._events_state: fs.FeatureState | None = None
        self._events_gone: frozenset | None = None
        self._live_lock = threading.Lock()
        self._queue: list[tuple[list, list, Future]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._applier: threading.Thread | None = None
        self._pending: set[str] = set()  # logged, not yet refreshed
        self._waiting: list[tuple] = []  # groups to answer after the refresh
        self._applying = False
        self._checker_lock = threading.Lock()  # the checker's DuckDB
        self._check_lock = threading.Lock()  # the batches waiting for a check
        self._to_check: list[tuple] = []
        self._checking = False
        self._child = _ChildRefresher(config) if refresh == "process" else None
        if self._child is None:
            threading.Thread(target=self._warm, name="ingest-warm", daemon=True).start()
        else:
            self._child.start()  # it reads the state ahead of the first refresh

    # -- the public entry -------------------------------------------------

    def ingest(
        self,
        events: Sequence[Mapping[str, object]],
        where: str,
        *,
        ids: Sequence[str] | None = None,
        drop_bad: bool = False,
    ) -> Outcome:
        """Check, log and apply a batch (see the module docstring); returns once
        the log holds it and the live rows include it. ContractError (naming
        row and field) or batch.TooMany when it is refused whole."""
        out, rows, stored = self.prepare(events, where, ids=ids, drop_bad=drop_bad)
        if rows:
            self.finish(out, len(rows), self.submit(rows, stored).result())
        return out

    async def ingest_async(
        self, events: Sequence[Mapping[str, object]], where: str
    ) -> Outcome:
        """`ingest` for an event loop (the API's `POST /events`): a plainly
        valid batch of up to INLINE_EVENTS events checked on the loop (~0.25 ms
        for 100), any other in a thread (the contract's queries); the group
        awaited (a waiting request holds no thread)."""
        plain = None
        if len(events) <= INLINE_EVENTS:
            plain = batch.check_plain(
                events, where, max_events=self.config.ingest.max_events
            )
        if plain is not None:
            out, rows, stored = self._outcome(events, plain)
        else:
            out, rows, stored = await asyncio.to_thread(
                self._prepare_grouped, events, where
            )
        if rows:
            result = await asyncio.wrap_future(self.submit(rows, stored))
            self.finish(out, len(rows), result)
        return out

    def prepare(
        self,
        events: Sequence[Mapping[str, object]],
        where: str,
        *,
        ids: Sequence[str] | None = None,
        drop_bad: bool = False,
    ) -> tuple[Outcome, list, list]:
        """The batch checked, pseudonymised, the suppressed left out: the
        outcome so far, the rows to log and their stored ids."""
        with self._checker_lock:  # its own DuckDB: never waits for a group's query
            checked = batch.check(
                self._checker,
                events,
                where,
                max_events=self.config.ingest.max_events,
                ids=ids,
                drop_bad=drop_bad,
            )
        return self._outcome(events, checked)

    def _outcome(
        self, events: Sequence[Mapping[str, object]], checked: batch.Checked
    ) -> tuple[Outcome, list, list]:
        rows = checked.rows
        stored = self.pseudonyms.many(r[0] for r in rows)
        gone = self._suppressed.get()
        kept = [(r, s) for r, s in zip(rows, stored, strict=True) if s not in gone]
        out = Outcome(
            received=len(events),
            suppressed=len(rows) - len(kept),
            rejected=len(events) - len(rows),
            problems=[batch.problem_json(p) for p in checked.problems],
            bad_rows=checked.bad,
        )
        return out, [r for r, _ in kept], [s for _, s in kept]

    def _prepare_grouped(
        self, events: Sequence[Mapping[str, object]], where: str
    ) -> tuple[Outcome, list, list]:
        """`prepare` for one of many concurrent requests: whichever thread
        finds no check running checks every batch queued meanwhile in one pass
        (batch.check_many: one scan instead of one per batch, each batch's own
        errors when one fails) until none is left; the others wait for theirs."""
        done: Future = Future()
        with self._check_lock:
            self._to_check.append((events, where, done))
            leader = not self._checking
            self._checking = True
        while leader:
            with self._check_lock:
                taken, self._to_check = self._to_check, []
                if not taken:
                    self._checking = False
                    break
            try:
                self._check_group(taken)
            except BaseException as exc:
                for _, _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
        return done.result()

    def _check_group(self, taken: list[tuple]) -> None:
        by_where: dict[str, list[tuple]] = {}
        for item in taken:
            by_where.setdefault(item[1], []).append(item)
        for where, items in by_where.items():
            with self._checker_lock:
                results = batch.check_many(
                    self._checker,
                    [events for events, _, _ in items],
                    where,
                    max_events=self.config.ingest.max_events,
                )
            for (events, _, future), result in zip(items, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(self._outcome(events, result))

    @staticmethod
    def finish(out: Outcome, kept: int, result: tuple) -> None:
        out.accepted, out.customers, out.as_of = result
        out.duplicates = kept - out.accepted

    # -- grouping concurrent batches ---------------------------------------

    def submit(self, rows: list, stored: list) -> Future:
        """Queue rows for the next group; the future gives (events added,
        customers refreshed, newest event time): once they are logged and
        applied (`ingest.acknowledge: applied`), or once logged (`logged`)."""
        done: Future = Future()
        with self._cond:
            self._queue.append((rows, stored, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ingest-log", daemon=True
                )
                self._thread.start()
                self._applier = threading.Thread(
                    target=self._apply_loop, name="ingest-apply", daemon=True
                )
                self._applier.start()
            self._cond.notify_all()
        return done

    def _run(self) -> None:
        """Log each group in one transaction (no lock beyond SQLite's), then
        hand its customers to the applier."""
        wait = self.config.ingest.group_ms / 1000
        logged_ack = self.config.ingest.acknowledge == "logged"
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
            if wait:
                time.sleep(wait)
            with self._cond:
                taken, self._queue = self._queue, []
            try:
                added, results, whose = self._log(
                    [r for rows, _, _ in taken for r in rows],
                    [s for _, stored, _ in taken for s in stored],
                    [len(rows) for rows, _, _ in taken],
                )
            except BaseException as exc:  # each waiting request gets the error
                for _, _, done in taken:
                    done.set_exception(exc)
                continue
            with self._cond:
                self._pending |= {r[0] for r in added}
                if logged_ack or not added:  # nothing new: nothing to refresh
                    for (_, _, done), result in zip(taken, results, strict=True):
                        done.set_result(result)
                else:
                    self._waiting.append((taken, results, whose))
                self._cond.notify_all()

    def _apply_loop(self) -> None:
        """Refresh the customers logged since the last refresh, all at once
        (this thread niced by `ingest.nice`)."""
        _nicer(self.config.ingest.nice)
        while True:
            with self._cond:
                while not self._pending:
                    self._applying = False
                    self._cond.notify_all()
                    self._cond.wait()
                self._applying = True
                touched, self._pending = self._pending, set()
                waiting, self._waiting = self._waiting, []
            try:
                as_of = self._refreshed(touched)
            except BaseException as exc:
                if not waiting:  # acknowledged already: retried with the next
                    log.exception("ingest: refreshing %d customers", len(touched))
                    with self._cond:
                        self._pending |= touched
                    time.sleep(1)
                for taken, _, _ in waiting:
                    for _, _, done in taken:
                        done.set_exception(exc)
                continue
            for taken, results, whose in waiting:
                for (_, _, done), result in zip(
                    taken, _included(results, whose, as_of), strict=True
                ):
                    done.set_result(result)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every logged event is applied (the stream consumer before
        it exits); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and not self._pending and not self._applying,
                timeout,
            )

    # -- one group -----------------------------------------------------------

    @contextmanager
    def _locked(self):
        """Every process's refresh, one at a time: a refresh reads the log
        after taking it, so one that starts after an append sees it, and
        writes after any refresh that might not have."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _log(
        self, rows: list, stored: list, per_batch: Sequence[int]
    ) -> tuple[list[tuple], list[tuple[int, int, str | None]], list[set]]:
        """Append to the log; the rows added, per batch (sizes in `per_batch`)
        the events added, their customers and newest event, and the batch's
        customers."""
        added = self.log.append(rows, stored)
        ids = {r[5] for r in added}  # (stored id, time, ..., event id, at)
        out, whose, start = [], [], 0
        for n in per_batch:
            mine = [
                (r, s)
                for r, s in zip(
                    rows[start : start + n], stored[start : start + n], strict=True
                )
                if r[5] in ids
            ]
            ids -= {r[5] for r, _ in mine}
            start += n
            whose.append({s for _, s in mine})
            newest = max((r[1] for r, _ in mine), default=None)
            out.append(
                (
                    len(mine),
                    len(whose[-1]),
                    None if newest is None else newest.isoformat(),
                )
            )
        return added, out, whose

    def apply(
        self, rows: list, stored: list, per_batch: Sequence[int] | None = None
    ) -> list[tuple[int, int, str | None]]:
        """Log the events and refresh their customers' rows, here and now; per
        batch (the sizes in `per_batch`), the events added, the customers
        refreshed and the newest event time included."""
        per_batch = per_batch or [len(rows)]
        added, results, whose = self._log(rows, stored, per_batch)
        as_of = self._refreshed({r[0] for r in added})
        return _included(results, whose, as_of)

    def _refreshed(self, touched: set[str]) -> dict[str, str]:
        """`refresh` under the machine's lock, here or in the child process."""
        if self._child is not None:
            return self._child(touched)
        with self._locked():
            return self.refresh(touched)

    def refresh(self, touched: set[str]) -> dict[str, str]:
        """Recompute the live rows of `touched` customers (all customers with
        live events when the nightly contents changed); their newest event
        time each."""
        try:
            meta = self.store.meta()
        except StoreError as exc:
            log.warning("events logged; no online store to refresh yet: %s", exc)
            return {}
        state = self._states.get()
        if state is None:
            log.warning("events logged; no feature state yet (run the nightly)")
            return {}
        base = base_of(meta)
        mark = state.watermark
        if base != self._base:  # a new nightly store: every live row again
            touched = touched | set(self.log.live_customers(mark))
            self._base = base
        gone = self._suppressed.get()
        if gone is not self._nightly_gone:  # forgotten: nothing of theirs kept
            for c in gone:
                self._nightly.pop(c, None)
            self._nightly_gone = gone
        touched = {c for c in touched if c not in gone}
        if not touched:
            return {}
        live = self._live_events(state, gone)
        events = live[live[CUSTOMER_ID].isin(touched)]
        if events.empty:
            return {}
        newest, _ = time_span(events)
        table = self._live_for(state).features(self.con, events)
        nightly = self._nightly_of(meta, base, table[CUSTOMER_ID].tolist())
        as_of = {c: t.isoformat() for c, t in newest.items()}
        self.rows.write(base, self._rows(meta, table, nightly, as_of))
        return as_of

    def _nightly_of(self, meta, base: str, ids: list[str]) -> list[tuple | None]:
        """Per id, its nightly row as a live row keeps it (the numeric
        features as float64, the categorical ones, the scores as JSON), or
        None when the store has none: read from the store once per nightly
        store and kept (a customer is refreshed again and again between two
        nightly runs; the attributes and scores do not move meanwhile)."""
        if base != self._nightly_base:
            self._nightly, self._nightly_base = {}, base
        cache = self._nightly
        missing = [c for c in dict.fromkeys(ids) if c not in cache]
        if missing:
            numeric, texts = split_features(meta)
            found = self.store.lookup(missing)
            for c in missing:
                hit = found.get(c)
                if hit is None:
                    cache[c] = None
                    continue
                record = hit.record
                numbers = np.array(
                    [record.get(n) for n in numeric], dtype="float64"
                )  # None -> NaN
                cache[c] = (
                    numbers,
                    [record.get(n) for n in texts],
                    json.dumps(dict(hit.scores)),
                )
        return [cache[c] for c in ids]

    def _live_events(self, state: fs.FeatureState, gone: frozenset) -> pd.DataFrame:
        """Every event the state does not hold (`EventLog.live`), kept in
        memory: each refresh reads only the log's rows added since the last
        one (by any process: the log numbers rows in commit order), instead of
        every event of the touched customers again. Read whole again for a new
        state; the forgotten's rows are dropped when the suppression list
        changes."""
        if self._events is None or self._events_state is not state:
            self._events, self._events_seq = _typed_events([]), 0
            self._events_state, self._events_gone = state, None
        rows, self._events_seq = self.log.live_since(self._events_seq, state.watermark)
        if rows:
            new = _typed_events(rows)
            if self.types is not None:
                new = new[new[EVENT_TYPE].isin(self.types)]
            self._events = pd.concat([self._events, new], ignore_index=True)
        if self._events_gone is not gone:
            self._events = self._events[~self._events[CUSTOMER_ID].isin(gone)]
            self._events_gone = gone
        return self._events

    def _live_for(self, state: fs.FeatureState) -> LiveState:
        """The state in memory (its tiles, sums and cancel days read once per
        state) with the SQL of the usual way compiled (kept beside the log, so
        the next process on this state reads it)."""
        with self._live_lock:
            if self._live is None or self._live.state is not state:
                live = LiveState(
                    self.con, state, self.spec, cache=Path(self.config.ingest.log) / SQL
                )
                live.sql(self.con, "fast")
                if self._live is not None:  # its prepared statements: gone
                    self._live.release(self.con)
                self._live = live
            return self._live

    def _warm(self) -> None:
        """`_live_for` the current state, ahead of the first refresh."""
        try:
            state = self._states.get()
            if state is not None:
                self._live_for(state)
        except Exception:  # the first refresh tries again, and says why
            log.exception("ingest: reading the feature state ahead of use")

    def _rows(self, meta, table: pd.DataFrame, nightly, as_of) -> list[tuple]:
        """The live rows (serving.online_store.live.encode's layout), built a
        column at a time: the recomputed features over the nightly row's
        (`_nightly_of`: attributes, subscriptions, scores)."""
        ids = table[CUSTOMER_ID].tolist()
        numeric, texts = split_features(meta)
        missing = np.full(len(numeric), np.nan)
        matrix = np.vstack([missing, *(n[0] if n else missing for n in nightly)])[1:]
        present = [(j, name) for j, name in enumerate(numeric) if name in table.columns]
        if present:  # one conversion of the recomputed columns (numbers, flags)
            matrix[:, [j for j, _ in present]] = table[
                [name for _, name in present]
            ].to_numpy(dtype="float64", na_value=np.nan)
        text_columns = []
        for k, name in enumerate(texts):
            if name in table.columns:
                text_columns.append(column_values(table[name], True))
            else:
                text_columns.append([n[1][k] if n else None for n in nightly])
        flags = [
            (t, table[population_column(t)].fillna(False).astype(bool).to_numpy())
            for t in meta.targets
            if population_column(t) in table.columns
        ]
        scored = [
            json.dumps([t for t, flag in flags if flag[i]]) for i in range(len(ids))
        ]
        return [
            (
                cid,
                as_of[cid],
                matrix[i].tobytes(),
                json.dumps([col[i] for col in text_columns]),
                scored[i],
                nightly[i][2] if nightly[i] else "{}",
            )
            for i, cid in enumerate(ids)
        ]
