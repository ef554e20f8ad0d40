"""The contact log as a Postgres table (`outreach.contact_log: {uri, table}`),
shared by API replicas on several machines: the same rows, interface and
guarantee as the SQLite file (serving.outreach.contact_log).

Two tables: `table` (one row per selected customer of a confirmed campaign,
primary key (campaign_id, customer)) and `<table>__campaigns` (one row per
confirmed campaign: the control share and contact cost it was selected with).
Times are stored as the SQLite log stores them (UTC ISO 8601 text with
microseconds, so text order is time order), so that both logs answer alike.

Confirming is one transaction that first takes a transaction-scoped advisory
lock for the log (`pg_advisory_xact_lock`, keyed by the table's name): the cap
check, the selection and the insert of one confirm run while no other confirm
of the same log can, on any machine, and see every row the previous one
committed, so two confirms cannot both pass a frequency cap. This serialises
confirms as SQLite's `BEGIN IMMEDIATE` does; dry runs and readouts only read,
without the lock. The lock is released by the commit or the rollback, also when
the connection drops. The tables are created, under the same lock, by the first
confirm. Credentials come from libpq's environment (PGUSER, PGPASSWORD or
~/.pgpass), never the URI.

`delete` (forget, retention) deletes in one transaction, then runs VACUUM on the
table so that the deleted rows' tuples are reclaimed now rather than whenever
autovacuum comes by (WAL and base backups keep them until they rotate: see
docs/privacy.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from core.config import ContactTable
from serving.outreach.contact_log import (
    CAMPAIGN,
    CAMPAIGNS_TABLE,
    CONFIRMED_AT,
    CONTACT_COST,
    CONTROL_SHARE,
    CUSTOMER,
    GROUP,
    SCORE,
    TARGET,
    AlreadyConfirmed,
    CampaignInfo,
    Confirming,
    Contact,
    ContactLogError,
    ContactLogStore,
    Row,
    score_of,
    stamp,
)

CONNECT_TIMEOUT_S = 10
# how long a confirm waits for another's lock (or a row lock) before failing
LOCK_TIMEOUT_MS = 30_000
_PAGE = 1_000


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(name: str, suffix: str = "") -> str:
    """A (schema-qualified) table name with a suffix on its last part, quoted."""
    *schema, table = name.split(".")
    return ".".join([*map(_q, schema), _q(table + suffix)])


def _lock_key(table: str) -> int:
    """The advisory lock's key: a stable 32-bit hash of the table's name (a
    signed bigint for Postgres)."""
    return zlib.crc32(f"propensity.contact_log:{table}".encode()) - 2**31


class PostgresConfirmation(Confirming):
    """One confirm in progress, inside the transaction holding the log's lock."""

    def __init__(self, log: PostgresContactLog, cur, campaign_id: str, now: datetime):
        self._log = log
        self._cur = cur
        self.campaign_id = campaign_id
        self.now = now
        self.confirmed_at = stamp(now)

    def recent(self, customers: Sequence[str], per_days: int) -> dict[str, int]:
        return self._log._recent(self._cur, customers, per_days, self.now)

    def record(
        self,
        target: str,
        rows: Iterable[Row],
        *,
        control_share: float | None = None,
        contact_cost: float | None = None,
    ) -> int:
        from psycopg2.extras import execute_values

        values = [
            (r[0], self.campaign_id, target, r[1], self.confirmed_at, score_of(r))
            for r in rows
        ]
        execute_values(
            self._cur,
            f"INSERT INTO {self._log.contacts_table} ({CUSTOMER}, {CAMPAIGN}, "
            f"{TARGET}, {GROUP}, {CONFIRMED_AT}, {SCORE}) VALUES %s",
            values,
            page_size=_PAGE,
        )
        self._cur.execute(
            f"INSERT INTO {self._log.campaigns_table} ({CAMPAIGN}, {TARGET}, "
            f"{CONFIRMED_AT}, {CONTROL_SHARE}, {CONTACT_COST}) "
            f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT ({CAMPAIGN}) DO UPDATE SET "
            + ", ".join(
                f"{c} = EXCLUDED.{c}"
                for c in (TARGET, CONFIRMED_AT, CONTROL_SHARE, CONTACT_COST)
            ),
            (self.campaign_id, target, self.confirmed_at, control_share, contact_cost),
        )
        return len(values)


class PostgresContactLog(ContactLogStore):
    """The log in the Postgres table `target.table`; a connection per call."""

    def __init__(self, target: ContactTable) -> None:
        self.target = target
        self.contacts_table = _table(target.table)
        self.campaigns_table = _table(target.table, f"__{CAMPAIGNS_TABLE}")
        self.lock_key = _lock_key(target.table)

    def __str__(self) -> str:
        return str(self.target)

    def _error(self, exc: Exception) -> ContactLogError:
        return ContactLogError(f"contact log {self.target}: {str(exc).strip()}")

    @contextmanager
    def _cursor(self, write: bool = False) -> Iterator:
        """A cursor in one transaction, committed at the end (rolled back if the
        block raises); psycopg2's errors become ContactLogError."""
        import psycopg2

        try:
            conn = psycopg2.connect(self.target.uri, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg2.Error as exc:
            raise self._error(exc) from exc
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                if not write:
                    cur.execute("SET TRANSACTION READ ONLY")
                yield cur
        except psycopg2.Error as exc:
            raise self._error(exc) from exc
        finally:
            conn.close()

    def _exists(self, cur) -> bool:
        cur.execute("SELECT to_regclass(%s)", (self.contacts_table,))
        return cur.fetchone()[0] is not None

    def _create(self, cur) -> None:
        *schema, _ = self.target.table.split(".")
        if schema:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema[0])}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {self.contacts_table} ("
            f"{CUSTOMER} TEXT NOT NULL, {CAMPAIGN} TEXT NOT NULL, "
            f"{TARGET} TEXT NOT NULL, {GROUP} TEXT NOT NULL CHECK ({GROUP} IN "
            f"('treatment', 'control')), {CONFIRMED_AT} TEXT NOT NULL, "
            f"{SCORE} DOUBLE PRECISION, PRIMARY KEY ({CAMPAIGN}, {CUSTOMER}))"
        )
        index = _q(self.target.table.split(".")[-1] + "_by_customer")
        cur.execute(
            f"CREATE INDEX IF NOT EXISTS {index} ON {self.contacts_table} "
            f"({CUSTOMER}, {CONFIRMED_AT})"
        )
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {self.campaigns_table} ("
            f"{CAMPAIGN} TEXT PRIMARY KEY, {TARGET} TEXT NOT NULL, "
            f"{CONFIRMED_AT} TEXT NOT NULL, {CONTROL_SHARE} DOUBLE PRECISION, "
            f"{CONTACT_COST} DOUBLE PRECISION)"
        )

    def _recent(
        self, cur, customers: Sequence[str], per_days: int, now: datetime
    ) -> dict[str, int]:
        from datetime import timedelta

        since = stamp(now - timedelta(days=per_days))
        cur.execute(
            f"SELECT {CUSTOMER}, count(*) FROM {self.contacts_table} "
            f"WHERE {CUSTOMER} = ANY(%s) AND {CONFIRMED_AT} > %s GROUP BY {CUSTOMER}",
            (list(dict.fromkeys(customers)), since),
        )
        return {c: int(n) for c, n in cur.fetchall()}

    def recent(
        self, customers: Sequence[str], per_days: int, now: datetime
    ) -> dict[str, int]:
        with self._cursor() as cur:
            if not self._exists(cur):
                return {}
            return self._recent(cur, customers, per_days, now)

    def _confirmed_at(self, cur, campaign_id: str) -> str | None:
        cur.execute(
            f"SELECT min({CONFIRMED_AT}) FROM {self.contacts_table} "
            f"WHERE {CAMPAIGN} = %s",
            (campaign_id,),
        )
        # a confirm that selected no one logged no contact: it may be confirmed
        # again (as in the SQLite log), its campaigns row then replaced
        return cur.fetchone()[0]

    def confirmed_at(self, campaign_id: str) -> str | None:
        with self._cursor() as cur:
            if not self._exists(cur):
                return None
            return self._confirmed_at(cur, campaign_id)

    def contacts(self, customer: str | None = None) -> list[Contact]:
        where, params = (
            ("", ()) if customer is None else (f"WHERE {CUSTOMER} = %s", (customer,))
        )
        with self._cursor() as cur:
            if not self._exists(cur):
                return []
            cur.execute(
                f"SELECT {CUSTOMER}, {CAMPAIGN}, {TARGET}, {GROUP}, {CONFIRMED_AT}, "
                f"{SCORE} FROM {self.contacts_table} {where} "
                f"ORDER BY {CONFIRMED_AT}, {CAMPAIGN}, {CUSTOMER}",
                params,
            )
            return [Contact(*row) for row in cur.fetchall()]

    def campaigns(self, campaign_id: str | None = None) -> list[CampaignInfo]:
        where, params = (
            ("", ())
            if campaign_id is None
            else (f"WHERE c.{CAMPAIGN} = %s", (campaign_id,))
        )
        with self._cursor() as cur:
            if not self._exists(cur):
                return []
            cur.execute(
                f"SELECT c.{CAMPAIGN}, min(c.{TARGET}), min(c.{CONFIRMED_AT}), "
                f"min(k.{CONTROL_SHARE}), min(k.{CONTACT_COST}), "
                f"count(*) FILTER (WHERE c.{GROUP} = 'treatment'), "
                f"count(*) FILTER (WHERE c.{GROUP} = 'control') "
                f"FROM {self.contacts_table} c LEFT JOIN {self.campaigns_table} k "
                f"ON k.{CAMPAIGN} = c.{CAMPAIGN} {where} "
                f"GROUP BY c.{CAMPAIGN} ORDER BY 3, 1",
                params,
            )
            return [CampaignInfo(*row) for row in cur.fetchall()]

    def selected(self, campaign_id: str) -> list[tuple[str, str, float | None]]:
        with self._cursor() as cur:
            if not self._exists(cur):
                return []
            cur.execute(
                f"SELECT {CUSTOMER}, {GROUP}, {SCORE} FROM {self.contacts_table} "
                f"WHERE {CAMPAIGN} = %s ORDER BY {CUSTOMER}",
                (campaign_id,),
            )
            return [tuple(r) for r in cur.fetchall()]

    def delete(
        self, customers: Sequence[str] = (), before: datetime | None = None
    ) -> dict[str, int]:
        if before is None and not customers:
            return {}
        where, param = (
            (f"{CUSTOMER} = ANY(%s)", list(customers))
            if before is None
            else (f"{CONFIRMED_AT} < %s", stamp(before))
        )
        with self._cursor(write=True) as cur:
            if not self._exists(cur):
                return {}
            cur.execute(
                f"DELETE FROM {self.contacts_table} WHERE {where} RETURNING {CUSTOMER}",
                (param,),
            )
            found: dict[str, int] = {}
            for (customer,) in cur.fetchall():
                found[customer] = found.get(customer, 0) + 1
        if found:
            self._vacuum()
        return found

    def _vacuum(self) -> None:
        """Reclaim the deleted rows' tuples now (VACUUM runs outside a
        transaction)."""
        import psycopg2

        try:
            conn = psycopg2.connect(self.target.uri, connect_timeout=CONNECT_TIMEOUT_S)
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"VACUUM {self.contacts_table}")
            finally:
                conn.close()
        except psycopg2.Error as exc:
            raise self._error(exc) from exc

    @contextmanager
    def confirming(
        self, campaign_id: str, now: datetime | None = None
    ) -> Iterator[PostgresConfirmation]:
        now = datetime.now(UTC) if now is None else now
        with self._cursor(write=True) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
            self._create(cur)
            if (when := self._confirmed_at(cur, campaign_id)) is not None:
                raise AlreadyConfirmed(campaign_id, when)
            yield PostgresConfirmation(self, cur, campaign_id, now)
