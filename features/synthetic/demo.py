"""Seeded synthetic usage history with known structure, streamed to Parquet.

Why: the pipeline needs realistic data with real signal (engagement drives
activity, purchases and churn; product issues trigger support tickets, which
raise churn) to test and benchmark end to end without private data, at any
size. The simulation walks day by day over all customers with vectorised numpy
and flushes events to one ParquetWriter, so memory is bounded by the number of
customers, not the number of events.

Per-customer Poisson counts are drawn as a compound Poisson process: the day's
total count is Poisson(sum of rates) and each event picks a customer with
probability proportional to its rate. This is exactly equivalent to
independent Poisson draws per customer but costs O(events), not O(customers),
in random numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.atomic import atomic_write
from features.columns import (
    CANCEL,
    CUSTOMER_ID,
    PURCHASE,
    SERVICE_REQUEST,
    SIGNUP_TIME,
)
from features.sources.contract import EVENTS_SCHEMA
from features.synthetic.campaign import DemoCampaign, campaign_day
from features.synthetic.subscriptions import LEAVING_USAGE, Terms

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Event types, indexed by the int8 codes used during simulation.
EVENT_TYPES: tuple[str, ...] = (
    "login",
    "page_view",
    "purchase",
    "support_ticket",
    "product_issue",
    "cancel",
)
_LOGIN, _PAGE_VIEW, _PURCHASE, _TICKET, _ISSUE, _CANCEL = range(6)

# Role -> event types, as the project config expects (everything else: activity).
DEFAULT_EVENT_TYPES: dict[str, list[str]] = {
    PURCHASE: ["purchase"],
    SERVICE_REQUEST: ["support_ticket"],
    CANCEL: ["cancel"],
}

PLANS: tuple[str, ...] = ("basic", "plus", "pro")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")

CUSTOMER_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (SIGNUP_TIME, pa.timestamp("us")),
        ("plan", pa.string()),
        ("region", pa.string()),
        ("age", pa.float64()),
    ]
)

_DAY = 86_400
_FLUSH_ROWS = 1_000_000
# Model parameters (log-scale engagement unless stated; rates per customer-day).
_PLAN_P, _PLAN_EFFECT = (0.55, 0.30, 0.15), np.array([0.0, 0.3, 0.6])
_MU_SD, _X_SD, _PHI, _TENURE_DECAY = 0.5, 0.35, 0.98, 0.15  # decay per year
_WEEKEND = 1.3  # weekend multiplier of activity and purchases
_PURCHASE_SHARE, _LOGIN_SHARE = 0.15, 0.4  # of main events; of activity
_ISSUE_RATE, _TICKET_RATE = 0.002, 0.0025  # at _REF_DENSITY main events/day
_REF_DENSITY = 0.272  # the density at the defaults (730 days, 100 events)
_TICKET_PER_PROBLEM, _PROBLEM_DECAY = 0.08, np.exp(-1 / 7)  # ~0.5 tickets/issue
_ISSUE_PENALTY, _TICKET_PENALTY = 0.15, 0.10  # engagement drop per event
_CHURN_BASE, _CHURN_BETA = 0.8e-4, 1.0  # hazard at mean engagement; elasticity
_CHURN_TICKET, _TICKET_DECAY = 35.0, np.exp(-1 / 30)  # hazard x(1 + 35*state)
_CANCEL_P, _MEAN_HAZARD = 0.5, 6e-4  # explicit-cancel share; for calibration


@dataclass(frozen=True)
class DemoSummary:
    """What `generate` wrote: sizes, the simulated period and file paths."""

    customers: int
    events: int
    start: datetime
    end: datetime
    events_path: Path
    customers_path: Path
    subscriptions_path: Path | None = None
    campaign_path: Path | None = None


def _sample(rng: np.random.Generator, rate: np.ndarray) -> np.ndarray:
    """Customer index of each event of independent Poisson(rate) counts, sorted."""
    cum = np.cumsum(rate, dtype=np.float64)
    total = float(cum[-1]) if len(cum) else 0.0
    if total <= 0:
        return np.empty(0, dtype=np.int64)
    u = rng.random(rng.poisson(total)) * total
    u.sort()
    idx = np.searchsorted(cum, u, side="right")
    return idx[idx < len(rate)]


def _customer_ids(n: int) -> pa.Array:
    """'C0000042'-style ids, zero-padded so string order equals numeric order."""
    width = max(7, len(str(n - 1)))
    digits = pc.utf8_lpad(pa.array(np.arange(n)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise("C", digits, "").cast(pa.string())


class _Population:
    """Customers' static draws and simulation state, as arrays of length n."""

    def __init__(
        self,
        rng: np.random.Generator,
        n: int,
        days: int,
        events_per_customer: float,
        subscriptions: bool = False,
        campaign_seed: int | None = None,
        ids: pa.Array | None = None,
    ) -> None:
        self.rng = rng
        # the demo campaign (features.synthetic.campaign), without subscriptions
        self.campaign_seed = None if subscriptions else campaign_seed
        self.campaign_day = campaign_day(days)
        self.campaign: DemoCampaign | None = None
        self.ids = ids
        # Ids are assigned in signup order, so the customers who have signed up
        # by day d are the prefix [0, n_signed(d)).
        existing = rng.random(n) < 0.4
        signup_s = np.where(
            existing, -rng.integers(1, 365 * _DAY, n), rng.integers(0, days * _DAY, n)
        )
        signup_s.sort()
        self.signup_s = signup_s
        self.signup_day = signup_s // _DAY
        self.signup_sod = signup_s - self.signup_day * _DAY
        self.plan = rng.choice(3, n, p=_PLAN_P)
        self.region = rng.choice(len(REGIONS), n, p=(0.25, 0.2, 0.2, 0.2, 0.15))
        self.age = np.clip(np.round(rng.normal(42, 13, n)), 18, 90)
        self.age_null = rng.random(n) < 0.05
        self.mu = _PLAN_EFFECT[self.plan] + rng.normal(0, _MU_SD, n)
        # e_ref centres engagement so that the mean of exp(e - e_ref) is ~1.
        self.e_ref = np.log(np.mean(np.exp(self.mu))) + _X_SD**2 / 2
        self.x = rng.normal(0, _X_SD, n)  # AR(1) deviation, stationary start
        self.buy_share = _PURCHASE_SHARE * rng.lognormal(-0.045, 0.3, n)
        self.spend_mu = np.array([3.0, 3.4, 3.8])[self.plan] + rng.normal(0, 0.3, n)
        # Main event rate per active customer-day at mean engagement, from the
        # expected exposure: days after signup, discounted by an average churn
        # hazard and by the tenure decay of engagement.
        first = np.maximum(self.signup_day, 0)
        k = _MEAN_HAZARD + _TENURE_DECAY / 365
        decayed = np.exp(-_TENURE_DECAY * (first - self.signup_day) / 365)
        exposure = np.mean(decayed * -np.expm1(-k * (days - first)) / k)
        # Issue/ticket rates scale with the event density (stable event mix);
        # the impact of one issue/ticket scales inversely (stable churn hazard).
        self.scale = events_per_customer / exposure / _REF_DENSITY
        # Problem-proneness is a lasting, heavy-tailed trait (a fragile set-up, a
        # needy account): mean-preserving lognormals, so past issues and tickets
        # predict future ones as in real support logs.
        self.issue_rate = _ISSUE_RATE * self.scale * rng.lognormal(-0.5, 1.0, n)
        self.ticket_rate = _TICKET_RATE * self.scale * rng.lognormal(-0.5, 1.0, n)
        rare = (np.mean(self.issue_rate) + np.mean(self.ticket_rate)) * 1.5
        self.main_rate = max(events_per_customer / exposure - rare, 1e-9)
        self.alive = np.ones(n)
        self.problem = np.zeros(n)  # decaying count of recent product issues
        self.tickets = np.zeros(n)  # decaying count of recent support tickets
        self.expe = np.empty(n)  # exp(engagement - e_ref): activity multiplier
        self.hazard0 = np.empty(n)  # churn hazard before the ticket effect
        self.refresh(0, slice(None))
        # subscription terms (features.synthetic.subscriptions): churn at a term's end
        self.terms = Terms(rng, signup_s, self.plan) if subscriptions else None

    def refresh(self, d: int, idx: slice | np.ndarray) -> None:
        """Recompute engagement-driven rates of customers idx on day d."""
        tenure = np.maximum(d - self.signup_day[idx], 0) / 365.0
        e = self.mu[idx] + self.x[idx] - _TENURE_DECAY * tenure - self.e_ref
        self.expe[idx] = np.exp(e)
        self.hazard0[idx] = _CHURN_BASE * np.exp(-_CHURN_BETA * e)

    def day(self, d: int, weekend: bool) -> tuple[np.ndarray, ...]:
        """Simulate day d: (customer index, second of day, type code, amount,
        quantity) of its events, sorted by time."""
        rng = self.rng
        n = int(np.searchsorted(self.signup_day, d, side="right"))
        if d % 7 == 0:  # weekly engagement drift, mean-reverting
            innov = rng.normal(0, _X_SD * np.sqrt(1 - _PHI**14), len(self.x))
            self.x[:] = _PHI**7 * self.x + innov
            self.refresh(d, slice(None))
        alive, problem, tickets = self.alive[:n], self.problem[:n], self.tickets[:n]
        problem *= _PROBLEM_DECAY
        tickets *= _TICKET_DECAY
        # Churn first: a churner emits nothing more, maybe one cancel event.
        ticket_effect = 1 + _CHURN_TICKET / self.scale * tickets
        if self.terms is not None:
            cancel = self._term_churn(d, n, ticket_effect)
            usage = np.where(self.terms.leaving[:n], LEAVING_USAGE, 1.0)
            return self._events(rng, d, weekend, alive, cancel, usage)
        if d == self.campaign_day and self.campaign_seed is not None:
            self.campaign = self._select(d, n, ticket_effect)
        members = None if self.campaign is None else self.campaign.members
        before = None if members is None else self.alive[members] > 0
        churn = np.unique(_sample(rng, self.hazard0[:n] * alive * ticket_effect))
        alive[churn] = 0.0
        cancel = churn[rng.random(len(churn)) < _CANCEL_P]
        base = self._events(rng, d, weekend, alive, cancel)
        if self.campaign is None or members is None or before is None:
            return base
        return self.campaign.day_events(
            d,
            base,
            before,
            self.alive[members] > 0,
            self.hazard0[members] * ticket_effect[members],
            lambda r, vec, who: self._events(r, d, weekend, vec, who),
            n,
            _CANCEL,
            _PURCHASE,
        )

    def _select(self, d: int, n: int, ticket_effect: np.ndarray) -> DemoCampaign:
        """The demo campaign's selection on day d (features.synthetic.campaign)."""
        assert self.campaign_seed is not None and self.ids is not None
        return DemoCampaign.select(
            self.campaign_seed,
            d,
            self.ids,
            self.alive[:n],
            self.signup_day,
            self.hazard0[:n] * ticket_effect,
            self.tickets[:n],
            self.plan == 0,
            self.age,
            self.age_null,
        )

    def _events(
        self,
        rng: np.random.Generator,
        d: int,
        weekend: bool,
        alive: np.ndarray,
        cancel: np.ndarray,
        usage: np.ndarray | float = 1.0,
    ) -> tuple[np.ndarray, ...]:
        """Day d's events of the signed-up customers with `alive` weights (0 for
        the churned; `usage` scales their activity) and the `cancel` events of
        today's churners, drawn from `rng`, sorted by time; updates the problem
        and ticket state."""
        n = len(alive)
        problem = self.problem[:n]
        week = 5 + 2 * _WEEKEND
        mult = self.main_rate * 7 * (_WEEKEND if weekend else 1.0) / week
        main = _sample(rng, self.expe[:n] * alive * usage * mult)
        ticket_rate = self.ticket_rate[:n] + _TICKET_PER_PROBLEM * problem
        rare_rate = (self.issue_rate[:n] + ticket_rate) * alive
        rare = _sample(rng, rare_rate)
        # Split main events into purchase/login/page_view and rare ones into
        # issue/ticket with each customer's rate shares.
        buy = rng.random(len(main)) < self.buy_share[main]
        login = rng.random(len(main)) < _LOGIN_SHARE
        main_code = np.where(buy, _PURCHASE, np.where(login, _LOGIN, _PAGE_VIEW))
        u = rng.random(len(rare)) * rare_rate[rare]
        is_issue = u < self.issue_rate[rare]
        # Problems drive tickets; both lower engagement (mean-reverting).
        issues, tix = rare[is_issue], rare[~is_issue]
        np.add.at(self.problem, issues, 1.0)
        np.add.at(self.tickets, tix, 1.0)
        np.add.at(self.x, issues, -_ISSUE_PENALTY / self.scale)
        np.add.at(self.x, tix, -_TICKET_PENALTY / self.scale)
        if len(rare):
            self.refresh(d, np.unique(rare))
        cust = np.concatenate([main, rare, cancel])
        code = np.concatenate(
            [
                main_code,
                np.where(is_issue, _ISSUE, _TICKET),
                np.full(len(cancel), _CANCEL),
            ]
        ).astype(np.int8)
        # Random time of day, not before the signup time on the signup day.
        lo = np.where(self.signup_day[cust] == d, self.signup_sod[cust], 0)
        sec = lo + (rng.random(len(cust)) * (_DAY - lo)).astype(np.int64)
        is_buy = code == _PURCHASE
        amount = np.full(len(cust), np.nan)
        spend = rng.lognormal(self.spend_mu[cust[is_buy]], 0.6)
        amount[is_buy] = np.round(spend, 2) + 0.01
        quantity = np.full(len(cust), np.nan)
        quantity[is_buy] = 1.0 + rng.poisson(0.4, len(spend))
        order = np.argsort(sec)
        return cust[order], sec[order], code[order], amount[order], quantity[order]

    def _term_churn(self, d: int, n: int, ticket_effect: np.ndarray) -> np.ndarray:
        """With subscriptions: the hazard makes customers decide to leave; a few
        cancel now, the rest leave when their term ends (so do lapses without
        auto-renew). Returns who emits a cancel event today."""
        rng, terms, alive = self.rng, self.terms, self.alive[:n]
        deciding = alive * ~terms.leaving[:n]
        churn = np.unique(_sample(rng, self.hazard0[:n] * deciding * ticket_effect))
        midterm = terms.decide(churn)
        alive[midterm] = 0.0
        strain = self.x[:n] - self.tickets[:n]  # engagement less recent tickets
        gone = terms.term_ends((d + 1) * _DAY, n, strain)
        gone = gone[alive[gone] > 0]  # mid-term cancellers already left
        alive[gone] = 0.0
        return np.concatenate([midterm, gone[rng.random(len(gone)) < _CANCEL_P]])


def _batches(
    chunks: Iterable[tuple[np.ndarray, ...]], rows: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """Concatenate consecutive column chunks into batches of at least `rows`."""
    buf: list[tuple[np.ndarray, ...]] = []
    buffered = 0
    for chunk in chunks:
        buf.append(chunk)
        buffered += len(chunk[0])
        if buffered >= rows:
            yield tuple(np.concatenate(c) for c in zip(*buf, strict=True))
            buf, buffered = [], 0
    if buf:
        yield tuple(np.concatenate(c) for c in zip(*buf, strict=True))


def _write_events(
    path: Path, chunks: Iterable[tuple[np.ndarray, ...]], ids: pa.Array
) -> int:
    """Stream (customer index, epoch second, type code, amount, quantity)
    chunks into one Parquet file, one row group per ~_FLUSH_ROWS rows.

    Encoding and writing run in one background thread (pyarrow releases the
    GIL), overlapping with the simulation of the next batch; at most one batch
    is in flight, so memory stays bounded.
    """
    types = pa.array(EVENT_TYPES, pa.string())

    def write(writer: pq.ParquetWriter, batch: tuple[np.ndarray, ...]) -> int:
        cust, t_s, code, amount, quantity = batch
        nulls = code != _PURCHASE
        table = pa.Table.from_arrays(
            [
                ids.take(pa.array(cust)),
                pa.array(t_s * 1_000_000, pa.timestamp("us")),
                types.take(pa.array(code)),
                pa.array(amount, pa.float64(), mask=nulls),
                pa.array(quantity, pa.float64(), mask=nulls),
            ],
            schema=EVENTS_SCHEMA,
        )
        writer.write_table(table)
        return len(table)

    total = 0
    with (
        pq.ParquetWriter(path, EVENTS_SCHEMA) as writer,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        pending: Future[int] | None = None
        for batch in _batches(chunks, _FLUSH_ROWS):
            if pending is not None:
                total += pending.result()
            pending = pool.submit(write, writer, batch)
            logger.debug("writing %d events (%d so far)", len(batch[0]), total)
        if pending is not None:
            total += pending.result()
    return total


def generate(
    out_dir: Path | str,
    customers: int,
    seed: int = 0,
    start: str = "2024-01-01",
    days: int = 730,
    events_per_customer: float = 100.0,
    subscriptions: bool = False,
    campaign: bool = True,
) -> DemoSummary:
    """Simulate `days` of history for `customers` and write two Parquet files
    (three with `subscriptions`), and with `campaign` the demo campaign's truth.

    Writes `out_dir/events.parquet` (customer_id, event_time, event_type,
    amount, quantity) and `out_dir/customers.parquet` (customer_id,
    signup_time, plan, region, age), each atomically; with `subscriptions`, also
    `out_dir/subscriptions.parquet` (the contract's subscription terms; churn then
    happens at term ends, see features.synthetic.subscriptions). With `campaign`
    (and without subscriptions, when the history is long enough), a retention
    campaign 91 days before the end with a known effect changes the treatment
    group's events and `out_dir/campaign_truth.parquet` holds its selection
    and truth (features.synthetic.campaign). The output is fully
    determined by the arguments; `events_per_customer` is the target mean event
    count per customer over the whole period (met within about 10%).
    """
    if customers < 1 or days < 1 or events_per_customer <= 0:
        raise ValueError("customers, days and events_per_customer must be > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = datetime.fromisoformat(start)
    if t0.tzinfo is not None:  # naive timestamps mean UTC
        t0 = t0.astimezone(UTC).replace(tzinfo=None)
    t0_s = int((t0 - datetime(1970, 1, 1)).total_seconds())
    end = t0 + timedelta(days=days)
    ids = _customer_ids(customers)
    pop = _Population(
        np.random.default_rng(seed),
        customers,
        days,
        events_per_customer,
        subscriptions,
        campaign_seed=seed if campaign else None,
        ids=ids,
    )

    def chunks() -> Iterator[tuple[np.ndarray, ...]]:
        for d in range(days):
            cust, sec, code, amount, quantity = pop.day(d, (t0.weekday() + d) % 7 >= 5)
            yield cust, t0_s + d * _DAY + sec, code, amount, quantity

    events_path, customers_path = out / "events.parquet", out / "customers.parquet"
    total = atomic_write(events_path, lambda tmp: _write_events(tmp, chunks(), ids))
    table = pa.Table.from_arrays(
        [
            ids,
            pa.array((t0_s + pop.signup_s) * 1_000_000, pa.timestamp("us")),
            pa.array(np.array(PLANS)[pop.plan], pa.string()),
            pa.array(np.array(REGIONS)[pop.region], pa.string()),
            pa.array(pop.age, pa.float64(), mask=pop.age_null),
        ],
        schema=CUSTOMER_SCHEMA,
    )
    atomic_write(customers_path, lambda tmp: pq.write_table(table, tmp))
    subscriptions_path = None
    if pop.terms is not None:
        subscriptions_path = out / "subscriptions.parquet"
        terms = pop.terms.table(ids, PLANS, t0_s, days * _DAY)
        atomic_write(subscriptions_path, lambda tmp: pq.write_table(terms, tmp))
    campaign_path = None
    if pop.campaign is not None:
        campaign_path = out / "campaign_truth.parquet"
        truth = pop.campaign.table(ids, t0)
        atomic_write(campaign_path, lambda tmp: pq.write_table(truth, tmp))
    logger.info("demo: %d customers, %d events %s..%s", customers, total, t0, end)
    return DemoSummary(
        customers,
        total,
        t0,
        end,
        events_path,
        customers_path,
        subscriptions_path,
        campaign_path,
    )
