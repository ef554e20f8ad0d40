"""A batch of ingested events checked by the data contract
(features.sources.contract.validate_events, the checks file loading runs, with
the same messages naming the row and column) and normalised as the loader
normalises a file (ids and types trimmed, times to the second, amounts as
numbers)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from features.columns import AMOUNT, CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, QUANTITY
from features.sources.contract import (
    ROW,
    ContractError,
    Problem,
    ensure,
    number_sql,
    timestamp_sql,
    validate_events,
)

EVENT_ID = "event_id"
FIELDS = (CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, AMOUNT, QUANTITY, EVENT_ID)


class TooMany(ValueError):
    """More events than `ingest.max_events` in one batch."""


@dataclass(frozen=True)
class Checked:
    """A batch that passed the contract: one row per event, normalised, each
    with an event id (the sender's, else one made up here)."""

    rows: list[tuple]  # (customer_id, event_time, event_type, amount, quantity, id)
    problems: list[Problem]  # rows left out (only with `drop_bad`)
    bad: frozenset[int] = frozenset()  # their row numbers (1-based), every one


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def check(
    con: duckdb.DuckDBPyConnection,
    events: Sequence[Mapping[str, object]],
    where: str,
    *,
    max_events: int,
    as_of: datetime | None = None,
    ids: Sequence[str] | None = None,
    drop_bad: bool = False,
) -> Checked:
    """The events checked and normalised. ContractError naming every problem
    (row numbers 1-based, in the batch's order) unless `drop_bad`: then the bad
    rows are left out and returned as problems. `ids` give the event ids of
    events without one (e.g. the stream entry ids); otherwise a random one is
    made, so the event log holds each event once. `as_of` (default now) is the
    instant after which an event is in the future."""
    if len(events) > max_events:
        raise TooMany(
            f"{where}: {len(events):,} events in one batch; at most {max_events:,} "
            "(ingest.max_events)"
        )
    present = sorted({k for e in events for k in e if k in FIELDS})
    columns = {
        name: pa.array([_text(e.get(name)) for e in events], pa.string())
        for name in present
    }
    columns[ROW] = pa.array(range(1, len(events) + 1), pa.int64())
    table = pa.table(columns)
    cur = con.cursor()
    try:
        cur.register("_ingest_batch", table)
        as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
        problems = validate_events(cur, where, "_ingest_batch", present, as_of)
        bad: set[int] = set()
        if problems and not drop_bad:
            ensure(problems)
        if problems:
            bad = _bad_rows(cur, problems, present, as_of, len(events))
        # every row bad (e.g. a required field absent from all): nothing to read
        out = (
            []
            if len(bad) >= len(events)
            else cur.execute(_normalised_sql(present)).fetchall()
        )
    finally:
        cur.close()
    rows = []
    for row in out:
        if row[0] in bad:
            continue
        i = row[0] - 1
        event_id = row[6] or (ids[i] if ids is not None else f"i-{uuid.uuid4().hex}")
        rows.append((row[1], row[2], row[3], row[4], row[5], event_id))
    return Checked(rows, problems, frozenset(bad))


def check_many(
    con: duckdb.DuckDBPyConnection,
    batches: Sequence[Sequence[Mapping[str, object]]],
    where: str,
    *,
    max_events: int,
    as_of: datetime | None = None,
) -> list[Checked | Exception]:
    """Several batches (e.g. concurrent requests) checked as `check` would
    check each: in one pass over all of them when every event passes (the
    usual case: one scan instead of one per batch), else each on its own, so
    a refused batch's errors name its own rows and the others pass. Per batch,
    its `Checked` or the error refusing it (ContractError, TooMany)."""
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
    if len(batches) > 1 and all(0 < len(b) <= max_events for b in batches):
        every = [e for b in batches for e in b]
        try:
            whole = check(con, every, where, max_events=len(every), as_of=as_of)
        except ContractError:
            whole = None
        if whole is not None:  # one row per event, in order
            out: list[Checked | Exception] = []
            start = 0
            for b in batches:
                out.append(Checked(whole.rows[start : start + len(b)], []))
                start += len(b)
            return out
    results: list[Checked | Exception] = []
    for b in batches:
        try:
            results.append(check(con, b, where, max_events=max_events, as_of=as_of))
        except (ContractError, TooMany) as exc:
            results.append(exc)
    return results


def _normalised_sql(present: Sequence[str]) -> str:
    def optional(col: str) -> str:
        return number_sql(col) if col in present else "CAST(NULL AS DOUBLE)"

    event_id = (
        f"NULLIF(TRIM({EVENT_ID}), '')" if EVENT_ID in present else "NULL::VARCHAR"
    )
    return (
        f"SELECT {ROW}, TRIM({CUSTOMER_ID}), "
        f"date_trunc('second', {timestamp_sql(EVENT_TIME)}), TRIM({EVENT_TYPE}), "
        f"{optional(AMOUNT)}, {optional(QUANTITY)}, {event_id} "
        f"FROM _ingest_batch ORDER BY {ROW}"
    )


def _bad_rows(
    cur, problems: list[Problem], present, as_of: datetime, n: int
) -> set[int]:
    """Every row failing a check (a Problem shows only the first few)."""
    # the same checks again, row by row: cheap on a batch
    bad: set[int] = set()
    for problem in problems:
        if not problem.rows:
            return set(range(1, n + 1))  # a batch-wide problem: all of it
    for (row,) in cur.execute(f"SELECT {ROW} FROM _ingest_batch").fetchall():
        one = f"(SELECT * FROM _ingest_batch WHERE {ROW} = {row})"
        found = validate_events(cur, "", one, present, as_of)
        if found:
            bad.add(row)
    return bad


def problem_json(problem: Problem) -> dict:
    """A problem as the API returns it: the row(s), the field, what was expected."""
    return {
        "rows": list(problem.rows),
        "field": problem.column,
        "count": problem.count,
        "message": str(problem),
    }


__all__ = [
    "Checked",
    "ContractError",
    "TooMany",
    "check",
    "check_many",
    "problem_json",
]
