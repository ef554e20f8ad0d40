"""The Redis Stream consumer (`propensity ingest --stream NAME`).

Entries carry an event as fields (`customer_id`, `event_time`, `event_type`,
optional `amount`, `quantity`, `event_id`) or as one JSON object in the field
`event`. The consumer reads them in a consumer group (`ingest.group`, created at
the stream's start when missing), up to `ingest.read_count` at a time, and hands
them to the ingester (serving.ingest.live) like a `POST /events` batch: checked
by the data contract, appended to the event log, the customers' rows refreshed.
Only then are the entries acknowledged (XACK). A consumer killed in between
leaves them pending: restarted under the same name it reads its pending entries
first and applies them again, and the event log, keyed by event id (the
entry's id when the event has none: `<stream>/<entry id>`), drops what it
already holds, so nothing is lost and nothing counts twice.

An entry the contract refuses is not retried forever: it goes to the stream
`<stream>:rejected` with the problem (row = its place in the read) and is
acknowledged.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from core.config import ProjectConfig
from serving.ingest.live import Ingester, Outcome

log = logging.getLogger(__name__)

REJECTED_SUFFIX = ":rejected"
IN_FLIGHT = 4  # reads handed to the ingester and not yet acknowledged, at most
POLL_MS = 5  # how long a read blocks while earlier reads are in flight


@dataclass
class Totals:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    suppressed: int = 0
    acked: int = 0


def default_consumer() -> str:
    return f"{socket.gethostname()}-ingest"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event(fields: dict) -> dict:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    if "event" in fields:
        try:
            parsed = json.loads(fields["event"])
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return fields


class Consumer:
    """One consumer of the group; `run` until stopped, `step` reads once."""

    def __init__(
        self,
        config: ProjectConfig,
        stream: str | None = None,
        consumer: str | None = None,
        ingester: Ingester | None = None,
        client=None,
    ) -> None:
        import redis

        self.config = config
        self.settings = config.ingest
        self.stream = stream or self.settings.stream
        self.group = self.settings.group
        self.name = consumer or default_consumer()
        self.redis = client or redis.Redis.from_url(self.settings.redis)
        self.ingester = ingester or Ingester(config)
        self.totals = Totals()
        self._pending = True  # our own unacknowledged entries first
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self, before_ack: Callable[[list], None] | None = None) -> int:
        """Read once (this consumer's pending entries first, then new ones),
        apply, acknowledge; the entries handled."""
        read = self._read(self.settings.block_ms)
        if read is None:
            return 0
        self._settle(read, before_ack)
        return len(read.ids)

    def _read(self, block_ms: int) -> _Read | None:
        """One XREADGROUP (our pending entries while any are left, then new
        ones), checked by the contract and handed to the ingester (not waited
        for); None when nothing was read."""
        start = "0" if self._pending else ">"
        got = self.redis.xreadgroup(
            self.group,
            self.name,
            {self.stream: start},
            count=self.settings.read_count,
            block=None if self._pending else block_ms,
        )
        entries = got[0][1] if got else []
        if not entries:
            self._pending = False
            return None
        ids = [_text(i) for i, _ in entries]
        events = [_event(f) for _, f in entries]
        out, rows, stored = self.ingester.prepare(
            events,
            f"stream {self.stream}",
            ids=[f"{self.stream}/{i}" for i in ids],
            drop_bad=True,
        )
        update = self.ingester.submit(rows, stored) if rows else None
        return _Read(ids, events, out, len(rows), update)

    def _settle(
        self, read: _Read, before_ack: Callable[[list], None] | None = None
    ) -> None:
        """Wait for a read's update (the state and the rows, or the log under
        `acknowledge: logged`), then acknowledge its entries."""
        out = read.outcome
        if read.update is not None:
            Ingester.finish(out, read.kept, read.update.result())
        if out.bad_rows:
            self._dead_letters(read.ids, read.events, out)
        if before_ack is not None:
            before_ack(read.ids)
        self.redis.xack(self.stream, self.group, *read.ids)
        t = self.totals
        t.read += len(read.ids)
        t.accepted += out.accepted
        t.duplicates += out.duplicates
        t.rejected += out.rejected
        t.suppressed += out.suppressed
        t.acked += len(read.ids)

    def _dead_letters(self, ids: list[str], events: list[dict], outcome) -> None:
        target = self.stream + REJECTED_SUFFIX
        why = "; ".join(p["message"] for p in outcome.problems)
        for row in sorted(outcome.bad_rows):
            self.redis.xadd(
                target,
                {
                    "entry": ids[row - 1],
                    "event": json.dumps(events[row - 1], default=str),
                    "problem": why,
                },
            )
        log.warning(
            "stream %s: %d entries refused by the data contract, sent to %s: %s",
            self.stream,
            len(outcome.bad_rows),
            target,
            why,
        )

    def run(
        self,
        stop: Callable[[], bool] = lambda: False,
        idle_exit_s: float | None = None,
        before_ack: Callable[[list], None] | None = None,
    ) -> Totals:
        """Consume until `stop()` (or `idle_exit_s` seconds with nothing new).

        Reads are pipelined: the next read is checked and logged while the
        ingester applies the earlier ones (their refreshes grouped), up to
        `IN_FLIGHT` reads; each read is acknowledged, in order, once its own
        update is done, so a crash still leaves every unapplied entry pending.
        Our own pending entries (a restart) are read one read at a time: a
        read from "0" would return the entries still in flight again."""
        flight: deque[_Read] = deque()
        idle_since = time.monotonic()
        while not stop():
            while flight and (flight[0].done() or len(flight) >= IN_FLIGHT):
                self._settle(flight.popleft(), before_ack)
            pending = self._pending
            read = self._read(POLL_MS if flight else self.settings.block_ms)
            if read is not None:
                idle_since = time.monotonic()
                if pending:
                    self._settle(read, before_ack)
                else:
                    flight.append(read)
            elif not flight and (
                idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s
            ):
                break
        while flight:  # stopped: what was read is applied and acknowledged
            self._settle(flight.popleft(), before_ack)
        self.ingester.drain()  # `acknowledge: logged`: the rows follow; wait
        return self.totals


@dataclass
class _Read:
    """One XREADGROUP handed to the ingester."""

    ids: list[str]
    events: list[dict]
    outcome: Outcome
    kept: int  # events left to log (checked, not suppressed)
    update: Future | None  # None: nothing to log

    def done(self) -> bool:
        return self.update is None or self.update.done()
