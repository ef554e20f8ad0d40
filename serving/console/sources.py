"""What the console's pages read, and nothing more.

Every figure comes from a small file the batch side already wrote, read again
only when it changes (its mtime and size):

- `<scoring.output>/_last_run.json`: the last nightly run (serving.batch.nightly);
- `<scoring.output>/_aggregates.json`: histograms, drift, champions, outcome
  series, readouts (serving.batch.aggregates);
- `<scoring.output>/_outcomes/_last_check.json`: the last outcome check;
- the contact log (campaigns, one customer's contacts: indexed queries);
- the online store (one customer's row: a keyed look-up).

The scores themselves are never read: a page costs the same on a thousand
customers as on ten million.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.config import ProjectConfig
from features.sources.privacy import pseudonymiser
from serving import online_store
from serving.batch.aggregates import AGGREGATES_FILE
from serving.batch.nightly import STATUS_FILE, read_status
from serving.monitoring.outcome_runs import STATUS_FILE as CHECK_FILE
from serving.monitoring.outcome_runs import outcomes_dir
from serving.outreach.contact_log import CampaignInfo, Contact, open_contact_log

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass
class _Cached:
    stamp: tuple[int, int] | None = None
    value: dict | None = None


@dataclass
class JsonFiles:
    """JSON files parsed once per change (mtime, size); a missing file is None,
    an unreadable one is logged and None."""

    _cache: dict[Path, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, path: Path) -> dict | None:
        stamp = _stamp(path)
        if stamp is None:
            return None
        with self._lock:
            cached = self._cache.setdefault(path, _Cached())
            if cached.stamp != stamp:
                try:
                    value = json.loads(path.read_text())
                except (OSError, ValueError) as exc:
                    log.error("%s: unreadable: %s", path, exc)
                    value = None
                cached.stamp, cached.value = stamp, value
            return cached.value


@dataclass(frozen=True)
class CustomerView:
    """What the Customer page shows of one id."""

    customer_id: str
    stored_id: str
    pseudonymised: bool
    as_of: str | None
    scores: dict[str, float]
    not_in_population: list[str]
    contacts: list[Contact]
    # per scored target: (feature, plain words, value) of the top reasons
    reasons: dict[str, list[tuple[str, str, object]]] = field(default_factory=dict)
    reasons_error: str | None = None


class Sources:
    """The files and stores of one config, read for the pages."""

    def __init__(self, config: ProjectConfig, root: Path) -> None:
        self.config = config
        self.root = root  # the config's folder (a relative MLflow store)
        self.output = Path(config.scoring.output)
        self.files = JsonFiles()
        self.pseudonyms = pseudonymiser(config.privacy)
        self._store: online_store.OnlineStore | None = None
        self._champions = None
        self._champions_lock = threading.Lock()
        self._campaigns: tuple[tuple, list[CampaignInfo]] | None = None
        self._campaigns_lock = threading.Lock()

    def champions(self):  # noqa: ANN201 - serving.scoring.Champions, loaded late
        """The champions, loaded at the first customer look-up (the other pages
        never need them)."""
        with self._champions_lock:
            if self._champions is None:
                from model.registry import configure
                from serving.scoring import Champions

                uri = self.config.tracking_uri(self.root)
                configure(uri)
                self._champions = Champions.load(self.config, uri)
            return self._champions

    def reasons(self, record: dict, targets: list[str]) -> dict[str, list]:
        """The top reasons of each target for one stored feature record."""
        from serving.reasons import reasons

        champions = self.champions()
        explain = self.config.explain
        out = {}
        for target in targets:
            model = champions.models[target]
            found = reasons(
                model,
                champions.matrix([record], target),
                explain.top_k,
                frozenset(explain.non_actionable),
                None,
                explain.method,
            )[0]
            out[target] = [(r.feature, r.phrase, r.value) for r in found]
        return out

    def last_run(self) -> dict | None:
        """The status file, a dead `running` run read as `interrupted`."""
        status = self.files.read(self.output / STATUS_FILE)
        if status is not None and status.get("state") == "running":
            return read_status(self.output)
        return status

    def aggregates(self) -> dict | None:
        return self.files.read(self.output / AGGREGATES_FILE)

    def outcome_check(self) -> dict | None:
        return self.files.read(outcomes_dir(self.config) / CHECK_FILE)

    def campaigns(self) -> list[CampaignInfo]:
        """The confirmed campaigns; an SQLite log's answer is kept until the
        file (or its write-ahead log) changes: grouping every contact on each
        page view would cost a second on a few hundred thousand contacts."""
        setting = self.config.outreach.contact_log
        log = open_contact_log(setting)
        if not isinstance(setting, Path):
            return log.campaigns()
        stamp = tuple(_stamp(Path(f"{setting}{end}")) for end in ("", "-wal"))
        with self._campaigns_lock:
            if self._campaigns is None or self._campaigns[0] != stamp:
                self._campaigns = (stamp, log.campaigns())
            return self._campaigns[1]

    def customer(self, customer_id: str) -> CustomerView:
        """One id's nightly scores and contacts (hashed first when
        pseudonymisation is on); StoreError when the store cannot be read."""
        stored = self.pseudonyms.one(customer_id)
        if self._store is None:
            self._store = online_store.open_reader(self.config.online_store)
        found = self._store.lookup([stored]).get(stored)
        targets = list(self._store.meta().targets)
        contacts = open_contact_log(self.config.outreach.contact_log).contacts(stored)
        explained, why = {}, None
        if found is not None and found.scores:
            try:
                explained = self.reasons(found.record, sorted(found.scores))
            except Exception as exc:  # noqa: BLE001 - the page shows the rest
                log.warning("reasons for the console failed: %s", exc)
                why = f"{type(exc).__name__}: {exc}"
        return CustomerView(
            customer_id=customer_id,
            stored_id=stored,
            pseudonymised=self.config.privacy.pseudonymise,
            as_of=None if found is None else found.as_of,
            scores={} if found is None else dict(found.scores),
            not_in_population=[]
            if found is None
            else [t for t in targets if t not in found.scores],
            contacts=contacts,
            reasons=explained,
            reasons_error=why,
        )
