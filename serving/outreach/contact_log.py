"""The contact log: every confirmed campaign selection, for the frequency cap and
the campaign readouts.

One SQLite table, one row per selected customer of a confirmed campaign (treatment
and control alike): the customer's stored form (the pseudonym when
pseudonymisation is on, never the raw id then), the campaign id, the target, the
group, when it was confirmed (UTC, ISO 8601 with microseconds, so text order is
time order) and the score at selection (the served probability; null in rows
logged before it was kept). A second table holds one row per confirmed campaign:
the control share and contact cost it was selected with, which its readout
compares against (campaigns confirmed before that table existed have none: the
readout falls back to the config's). A log written by an older version is
migrated by the next confirm (columns and table added, nothing rewritten);
readers accept either form.

Confirming is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock
before reading, so the cap check, the selection and the insert of one confirm see
every row committed by another (in any BentoML worker process) and two concurrent
confirms cannot both pass a cap. WAL lets dry runs read meanwhile; a writer waits
up to `busy_timeout` for the lock. The file and its folder are created by the
first confirm; a dry run writes nothing.

`ContactLogStore` is the interface; `ContactLog` (this module) keeps it in an
SQLite file, `PostgresContactLog` (serving.outreach.contact_log_postgres) in a
Postgres table shared by replicas on several machines. `open_contact_log` picks
one from `outreach.contact_log`: readouts, forget and retention work on both.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import ContactTable

TABLE = "contacts"
CUSTOMER = "customer"
CAMPAIGN = "campaign_id"
TARGET = "target"
GROUP = "contact_group"
CONFIRMED_AT = "confirmed_at"
SCORE = "score"
CAMPAIGNS_TABLE = "campaigns"
CONTROL_SHARE = "control_share"
CONTACT_COST = "contact_cost"
BUSY_TIMEOUT_MS = 30_000
# SQLite's default limit of host parameters per statement is 32766 (>= 3.32)
_CHUNK = 5_000

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    {CUSTOMER} TEXT NOT NULL,
    {CAMPAIGN} TEXT NOT NULL,
    {TARGET} TEXT NOT NULL,
    {GROUP} TEXT NOT NULL CHECK ({GROUP} IN ('treatment', 'control')),
    {CONFIRMED_AT} TEXT NOT NULL,
    {SCORE} REAL,
    PRIMARY KEY ({CAMPAIGN}, {CUSTOMER})
);
CREATE INDEX IF NOT EXISTS {TABLE}_by_customer ON {TABLE} ({CUSTOMER}, {CONFIRMED_AT});
CREATE TABLE IF NOT EXISTS {CAMPAIGNS_TABLE} (
    {CAMPAIGN} TEXT PRIMARY KEY,
    {TARGET} TEXT NOT NULL,
    {CONFIRMED_AT} TEXT NOT NULL,
    {CONTROL_SHARE} REAL,
    {CONTACT_COST} REAL
);
"""


class ContactLogError(RuntimeError):
    """The contact log cannot be read or written (locked too long, unwritable)."""


class AlreadyConfirmed(ValueError):
    """The campaign id was confirmed before; a campaign is confirmed once."""

    def __init__(self, campaign_id: str, confirmed_at: str) -> None:
        super().__init__(
            f"campaign {campaign_id!r} was already confirmed at {confirmed_at}; "
            "a campaign is confirmed once (use a new campaign_id)"
        )
        self.campaign_id = campaign_id
        self.confirmed_at = confirmed_at


@dataclass(frozen=True)
class Contact:
    customer: str
    campaign_id: str
    target: str
    group: str
    confirmed_at: str
    score: float | None = None


@dataclass(frozen=True)
class CampaignInfo:
    """One confirmed campaign: its target, when, the control share and contact
    cost it was selected with (None when logged before they were kept) and its
    customers per group."""

    campaign_id: str
    target: str
    confirmed_at: str
    control_share: float | None
    contact_cost: float | None
    treatment: int
    control: int


def stamp(at: datetime) -> str:
    """The stored text of an instant: UTC, microseconds, fixed width."""
    if at.tzinfo is None:
        raise ValueError("contact times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _window_start(now: datetime, per_days: int) -> str:
    return stamp(now - timedelta(days=per_days))


def _recent(
    conn: sqlite3.Connection, customers: Sequence[str], since: str
) -> dict[str, int]:
    """Contacts per customer confirmed strictly after `since`."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(customers))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT {CUSTOMER}, COUNT(*) FROM {TABLE} WHERE {CUSTOMER} IN ({marks}) "
            f"AND {CONFIRMED_AT} > ? GROUP BY {CUSTOMER}",
            [*chunk, since],
        )
        found.update({c: int(n) for c, n in rows})
    return found


Row = tuple[str, str] | tuple[str, str, float | None]


class Confirming(ABC):
    """One confirm in progress, inside the log's write transaction: the cap
    check (`recent`) and the insert (`record`) of one confirm see every row
    another confirm committed, and no other confirm runs between them."""

    campaign_id: str
    now: datetime
    confirmed_at: str

    @abstractmethod
    def recent(self, customers: Sequence[str], per_days: int) -> dict[str, int]:
        """Confirmed selections per stored id in the `per_days` days before now."""

    @abstractmethod
    def record(
        self,
        target: str,
        rows: Iterable[Row],
        *,
        control_share: float | None = None,
        contact_cost: float | None = None,
    ) -> int:
        """Log (stored id, group[, score at selection]) rows and the campaign;
        the count of rows written."""


class ContactLogStore(ABC):
    """The contact log's interface (an SQLite file or a Postgres table)."""

    @abstractmethod
    def recent(
        self, customers: Sequence[str], per_days: int, now: datetime
    ) -> dict[str, int]:
        """Confirmed selections per stored id in the `per_days` days before `now`
        (a contact exactly `per_days` days old no longer counts); reads only."""

    @abstractmethod
    def confirmed_at(self, campaign_id: str) -> str | None:
        """When the campaign was confirmed, or None."""

    @abstractmethod
    def contacts(self, customer: str | None = None) -> list[Contact]:
        """Every row, or one stored id's (the console's contact history), oldest
        first."""

    @abstractmethod
    def campaigns(self, campaign_id: str | None = None) -> list[CampaignInfo]:
        """Every confirmed campaign, oldest first, or only `campaign_id`."""

    def campaign(self, campaign_id: str) -> CampaignInfo | None:
        """One confirmed campaign, or None."""
        found = self.campaigns(campaign_id)
        return found[0] if found else None

    @abstractmethod
    def selected(self, campaign_id: str) -> list[tuple[str, str, float | None]]:
        """A campaign's (stored id, group, score at selection) rows."""

    @abstractmethod
    def delete(
        self, customers: Sequence[str] = (), before: datetime | None = None
    ) -> dict[str, int]:
        """Delete the rows of `customers` (forget), or those confirmed before
        `before` (retention); the rows deleted per stored id."""

    @abstractmethod
    def confirming(
        self, campaign_id: str, now: datetime | None = None
    ) -> AbstractContextManager[Confirming]:
        """A write transaction for confirming `campaign_id`: committed when the
        block ends, rolled back if it raises. AlreadyConfirmed when the campaign
        is in the log; ContactLogError when the log cannot be written."""


def open_contact_log(setting: Path | ContactTable) -> ContactLogStore:
    """The contact log `outreach.contact_log` names: an SQLite file, or a
    Postgres table."""
    if isinstance(setting, Path | str):
        return ContactLog(Path(setting))
    from serving.outreach.contact_log_postgres import PostgresContactLog

    return PostgresContactLog(setting)


class Confirmation(Confirming):
    """One confirm in progress, inside SQLite's write transaction."""

    def __init__(self, conn: sqlite3.Connection, campaign_id: str, now: datetime):
        self._conn = conn
        self.campaign_id = campaign_id
        self.now = now
        self.confirmed_at = stamp(now)

    def recent(self, customers: Sequence[str], per_days: int) -> dict[str, int]:
        """Confirmed selections per stored id in the `per_days` days before now."""
        return _recent(self._conn, customers, _window_start(self.now, per_days))

    def record(
        self,
        target: str,
        rows: Iterable[Row],
        *,
        control_share: float | None = None,
        contact_cost: float | None = None,
    ) -> int:
        """Log (stored id, group[, score at selection]) rows and the campaign
        (with the control share and contact cost it was selected with); the
        count of rows written."""
        cursor = self._conn.executemany(
            f"INSERT INTO {TABLE} ({CUSTOMER}, {CAMPAIGN}, {TARGET}, {GROUP}, "
            f"{CONFIRMED_AT}, {SCORE}) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (r[0], self.campaign_id, target, r[1], self.confirmed_at, score_of(r))
                for r in rows
            ],
        )
        self._conn.execute(
            f"INSERT OR REPLACE INTO {CAMPAIGNS_TABLE} ({CAMPAIGN}, {TARGET}, "
            f"{CONFIRMED_AT}, {CONTROL_SHARE}, {CONTACT_COST}) VALUES (?, ?, ?, ?, ?)",
            (self.campaign_id, target, self.confirmed_at, control_share, contact_cost),
        )
        return cursor.rowcount


def score_of(row: tuple) -> float | None:
    return None if len(row) < 3 or row[2] is None else float(row[2])


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


class ContactLog(ContactLogStore):
    """The log file at `path`; a connection per call, so it is safe across
    threads and processes."""

    def __init__(self, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms

    def __str__(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        return conn

    def recent(
        self, customers: Sequence[str], per_days: int, now: datetime
    ) -> dict[str, int]:
        """Confirmed selections per stored id in the `per_days` days before `now`
        (a contact exactly `per_days` days old no longer counts). Reads only:
        a missing log means no contacts."""
        if not self.path.exists():
            return {}
        try:
            with closing(self._connect()) as conn:
                return _recent(conn, customers, _window_start(now, per_days))
        except sqlite3.Error as exc:
            raise ContactLogError(f"contact log {self.path}: {exc}") from exc

    def confirmed_at(self, campaign_id: str) -> str | None:
        """When the campaign was confirmed, or None."""
        if not self.path.exists():
            return None
        with closing(self._connect()) as conn:
            return _confirmed_at(conn, campaign_id)

    def contacts(self, customer: str | None = None) -> list[Contact]:
        """Every row, or one stored id's, oldest first."""
        if not self.path.exists():
            return []
        where, params = (
            ("", []) if customer is None else (f"WHERE {CUSTOMER} = ?", [customer])
        )
        with closing(self._connect()) as conn:
            columns = _columns(conn, TABLE)
            if not columns:
                return []
            score = SCORE if SCORE in columns else "NULL"
            rows = conn.execute(
                f"SELECT {CUSTOMER}, {CAMPAIGN}, {TARGET}, {GROUP}, {CONFIRMED_AT}, "
                f"{score} FROM {TABLE} {where} "
                f"ORDER BY {CONFIRMED_AT}, {CAMPAIGN}, {CUSTOMER}",
                params,
            ).fetchall()
        return [Contact(*row) for row in rows]

    def campaigns(self, campaign_id: str | None = None) -> list[CampaignInfo]:
        """Every confirmed campaign, oldest first, or only `campaign_id` (a
        missing log: none)."""
        if not self.path.exists():
            return []
        try:
            with closing(self._connect()) as conn:
                if not _columns(conn, TABLE):
                    return []
                kept = bool(_columns(conn, CAMPAIGNS_TABLE))
                settings = (
                    f"k.{CONTROL_SHARE}, k.{CONTACT_COST}" if kept else "NULL, NULL"
                )
                joined = (
                    f"LEFT JOIN {CAMPAIGNS_TABLE} k ON k.{CAMPAIGN} = c.{CAMPAIGN}"
                    if kept
                    else ""
                )
                where, params = (
                    ("", [])
                    if campaign_id is None
                    else (f"WHERE c.{CAMPAIGN} = ?", [campaign_id])
                )
                rows = conn.execute(
                    f"SELECT c.{CAMPAIGN}, MIN(c.{TARGET}), MIN(c.{CONFIRMED_AT}), "
                    f"{settings}, SUM(c.{GROUP} = 'treatment'), "
                    f"SUM(c.{GROUP} = 'control') FROM {TABLE} c {joined} {where} "
                    f"GROUP BY c.{CAMPAIGN} ORDER BY 3, 1",
                    params,
                ).fetchall()
        except sqlite3.Error as exc:
            raise ContactLogError(f"contact log {self.path}: {exc}") from exc
        return [CampaignInfo(*row) for row in rows]

    def selected(self, campaign_id: str) -> list[tuple[str, str, float | None]]:
        """A campaign's (stored id, group, score at selection) rows."""
        if not self.path.exists():
            return []
        try:
            with closing(self._connect()) as conn:
                score = SCORE if SCORE in _columns(conn, TABLE) else "NULL"
                return conn.execute(
                    f"SELECT {CUSTOMER}, {GROUP}, {score} FROM {TABLE} "
                    f"WHERE {CAMPAIGN} = ? ORDER BY {CUSTOMER}",
                    (campaign_id,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise ContactLogError(f"contact log {self.path}: {exc}") from exc

    def treated(self, start: datetime, end: datetime) -> set[str]:
        """Stored ids in a treatment group of any campaign confirmed in
        [start, end) (aware instants); outcome monitoring leaves them out."""
        if not self.path.exists():
            return set()
        try:
            with closing(self._connect()) as conn:
                if not _columns(conn, TABLE):
                    return set()
                rows = conn.execute(
                    f"SELECT DISTINCT {CUSTOMER} FROM {TABLE} WHERE {GROUP} = "
                    f"'treatment' AND {CONFIRMED_AT} >= ? AND {CONFIRMED_AT} < ?",
                    (stamp(start), stamp(end)),
                ).fetchall()
        except sqlite3.Error as exc:
            raise ContactLogError(f"contact log {self.path}: {exc}") from exc
        return {r[0] for r in rows}

    def delete(
        self, customers: Sequence[str] = (), before: datetime | None = None
    ) -> dict[str, int]:
        """Delete the rows of `customers` (forget), or those confirmed before
        `before` (retention), with secure_delete so no freed page keeps them;
        the rows deleted per stored id."""
        if not self.path.exists():
            return {}
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("BEGIN IMMEDIATE")
            if before is None:
                chunks = [
                    list(customers[start : start + _CHUNK])
                    for start in range(0, len(customers), _CHUNK)
                ]
                clauses = [
                    (f"{CUSTOMER} IN ({', '.join('?' * len(c))})", c) for c in chunks
                ]
            else:
                clauses = [(f"{CONFIRMED_AT} < ?", [stamp(before)])]
            found: dict[str, int] = {}
            for where, params in clauses:
                for customer, n in conn.execute(
                    f"SELECT {CUSTOMER}, COUNT(*) FROM {TABLE} WHERE {where} "
                    f"GROUP BY {CUSTOMER}",
                    params,
                ):
                    found[customer] = found.get(customer, 0) + n
                conn.execute(f"DELETE FROM {TABLE} WHERE {where}", params)
            conn.execute("COMMIT")
            # the WAL may still hold the deleted rows' pages: fold it back in
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return found

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the table. Switching a new file to WAL fails at once,
        without waiting, while another process holds a lock on it: retried."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                if SCORE not in _columns(conn, TABLE):  # a log of an older version
                    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {SCORE} REAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def confirming(
        self, campaign_id: str, now: datetime | None = None
    ) -> Iterator[Confirmation]:
        """A write transaction for confirming `campaign_id`: committed when the
        block ends, rolled back if it raises. AlreadyConfirmed when the campaign
        is in the log; ContactLogError when the log cannot be written."""
        now = datetime.now(UTC) if now is None else now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise ContactLogError(f"contact log {self.path}: {exc}") from exc
        with closing(conn):
            try:
                self._prepare(conn)
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise ContactLogError(f"contact log {self.path}: {exc}") from exc
            try:
                if (when := _confirmed_at(conn, campaign_id)) is not None:
                    raise AlreadyConfirmed(campaign_id, when)
                yield Confirmation(conn, campaign_id, now)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise ContactLogError(f"contact log {self.path}: {exc}") from exc


def _confirmed_at(conn: sqlite3.Connection, campaign_id: str) -> str | None:
    row = conn.execute(
        f"SELECT MIN({CONFIRMED_AT}) FROM {TABLE} WHERE {CAMPAIGN} = ?",
        (campaign_id,),
    ).fetchone()
    return row[0] if row else None
