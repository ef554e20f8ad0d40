"""Which cutoffs each target's backtest uses, and which were dropped and why: the
one place `train` (through training.backtest.plan), `check` and `init` ask.

For a target with horizon H (plus, for contract churn, the grace days: its label
*window*), a cutoff is *complete* when its window lies in the data (through
`data_end`, the end of the last day with events or `data.as_of`). A candidate
origin is a complete cutoff whose rows hold both classes. The backtest's origins
are the latest `origins` candidates; for each, the training cutoffs are the
complete ones whose horizons end by it, the latest of them stops early and the
others are fitted on. A cutoff that is not an origin because its window is
incomplete, or because its rows hold a single class, is *dropped*, with the
reason (`Dropped`); a target whose data cannot give its origins, or whose fitting
or early-stopping rows hold a single class, has a `problem` and cannot be
trained.

`propose_schedule` turns the same rules around for `propensity init`: the first
cutoff and horizon that give the backtest its origins on a new log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd

from features.columns import CHURN, CONTRACT, CUTOFF
from features.labels import LabelSpec

MIN_ORIGINS = 2


def day(d: datetime | date) -> str:
    return d.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Fold:
    origin: datetime
    fit_cutoffs: list[datetime]
    stop_cutoff: datetime

    @property
    def train_cutoffs(self) -> list[datetime]:
        return [*self.fit_cutoffs, self.stop_cutoff]


@dataclass(frozen=True)
class Dropped:
    """A cutoff that is not an origin, and why."""

    cutoff: datetime
    reason: str

    def __str__(self) -> str:
        return f"{day(self.cutoff)}: {self.reason}"


@dataclass(frozen=True)
class Counts:
    """One cutoff's rows of a target's population and their positives."""

    rows: int
    positives: int

    @property
    def single_class(self) -> bool:
        return self.positives in (0, self.rows)


@dataclass(frozen=True)
class Plan:
    """A target's backtest: its folds, the cutoffs the final model fits on, the
    dropped cutoffs, and the problem that stops it (None: it can be trained)."""

    target: str
    horizon_days: int
    folds: list[Fold]
    final_cutoffs: list[datetime]
    dropped: list[Dropped] = field(default_factory=list)
    counts: dict[datetime, Counts] = field(default_factory=dict)
    problem: str | None = None

    @property
    def origins(self) -> list[datetime]:
        return [f.origin for f in self.folds]

    def dropped_lines(self) -> list[str]:
        return [f"{self.target}: dropped {d}" for d in self.dropped]


def window_days(labels: LabelSpec, target: str) -> int:
    """The days after a cutoff its label needs: the horizon, plus the grace
    period for contract churn."""
    days = labels.horizons[target]
    if target == CHURN and labels.churn_definition == CONTRACT:
        days += labels.grace_days
    return days


def _window_words(labels: LabelSpec, target: str) -> str:
    words = f"{target}'s {labels.horizons[target]}-day window"
    if target == CHURN and labels.churn_definition == CONTRACT:
        words += f" plus {labels.grace_days}-day grace"
    return words


def incomplete_reason(
    labels: LabelSpec, target: str, cutoff: datetime, data_end: datetime
) -> str | None:
    """Why `cutoff`'s label window is incomplete, or None when it is complete."""
    if labels.complete(target, cutoff, data_end):
        return None
    through = cutoff + timedelta(days=window_days(labels, target) - 1)
    return (
        f"{_window_words(labels, target)} runs through {day(through)}, past the "
        f"data's end {day(data_end - timedelta(days=1))} (label window incomplete)"
    )


def population_rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """The rows of `target`'s population. Today every target has the same rows
    (churn-eligible customers); the per-target populations (branch i18-targets)
    plug in here, by the target's population flag on the training table."""
    return frame


def class_counts(
    frame: pd.DataFrame, target: str, cutoffs: Sequence[datetime]
) -> dict[datetime, Counts]:
    """Rows and positives of `target`'s population at each cutoff."""
    rows = population_rows(frame, target)
    grouped = rows.groupby(CUTOFF)[target].agg(["size", "sum"])
    out = {}
    for c in cutoffs:
        if c in grouped.index:
            n, pos = grouped.loc[c]
            out[c] = Counts(int(n), int(pos))
        else:
            out[c] = Counts(0, 0)
    return out


def _pooled(counts: dict[datetime, Counts], cutoffs: Sequence[datetime]) -> Counts:
    return Counts(
        sum(counts[c].rows for c in cutoffs), sum(counts[c].positives for c in cutoffs)
    )


def plan_target(
    target: str,
    cutoffs: Sequence[datetime],
    data_end: datetime,
    labels: LabelSpec,
    origins: int,
    counts: dict[datetime, Counts] | None = None,
) -> Plan:
    """The backtest of `target` over `cutoffs`; `counts` (per cutoff, from
    `class_counts`) drops single-class origins and finds single-class fitting
    rows; without them only the label windows are checked (`init`)."""
    horizon = timedelta(days=labels.horizons[target])
    cutoffs = sorted(cutoffs)
    dropped: list[Dropped] = []
    complete = []
    for c in cutoffs:
        reason = incomplete_reason(labels, target, c, data_end)
        if reason is None:
            complete.append(c)
        else:
            dropped.append(Dropped(c, reason))
    candidates = []
    for c in complete:
        if counts is not None and counts[c].single_class:
            n = counts[c]
            dropped.append(
                Dropped(
                    c,
                    f"{target}'s rows hold a single class ({n.rows:,} rows, "
                    f"{n.positives:,} positive)",
                )
            )
        else:
            candidates.append(c)
    dropped.sort(key=lambda d: d.cutoff)

    def made(folds: list[Fold], problem: str | None = None) -> Plan:
        return Plan(
            target, horizon.days, folds, complete, dropped, counts or {}, problem
        )

    def failed(problem: str) -> Plan:
        return made([], problem)

    if len(candidates) < origins:
        both = " and both classes" if counts is not None else ""
        return failed(
            f"{target}: the backtest needs {origins} origins with a complete "
            f"{window_days(labels, target)}-day label window{both} before "
            f"{day(data_end)}, the cutoffs give {len(candidates)}; add earlier "
            "cutoffs or lower training.backtest.origins"
        )
    folds = []
    for origin in candidates[-origins:]:
        train = [c for c in complete if c + horizon <= origin]
        stop = train[-1] if train else None
        fit_cutoffs = [c for c in train if stop and c + horizon <= stop]
        if not fit_cutoffs:
            return failed(
                f"{target}: origin {day(origin)} needs two earlier cutoffs whose "
                f"{horizon.days}-day windows end by it (one to fit on, one to stop "
                f"early on), found {len(train)}; add earlier cutoffs"
            )
        folds.append(Fold(origin, fit_cutoffs, stop))
    if counts is not None:
        for fold in folds:
            for name, rows in (
                ("fitting", fold.fit_cutoffs),
                ("early-stopping", [fold.stop_cutoff]),
            ):
                if _pooled(counts, rows).single_class:
                    return failed(
                        f"{target}: the {name} rows for origin {day(fold.origin)} "
                        f"({', '.join(map(day, rows))}) hold a single class; "
                        "cannot train"
                    )
    return made(folds)


# -- a schedule for a new log (propensity init) --------------------------------------

HORIZONS = (30, 14, 7)
# months of history before the first cutoff, most preferred first
WARMUP_MONTHS = (3, 2, 1)


@dataclass(frozen=True)
class Schedule:
    """What `init` proposes: monthly cutoffs from `start`, every target's horizon,
    the backtest's origins; `note` says why, for the config's comments."""

    start: date
    horizon_days: int
    origins: int
    cutoffs: list[datetime]
    note: str


def _month_starts(first: date, last: date) -> list[datetime]:
    days = pd.date_range(first, last, freq="MS")
    return [datetime(d.year, d.month, d.day) for d in days]


def propose_schedule(
    first: datetime,
    data_end: datetime,
    *,
    grace_days: int = 0,
    origins: int = 4,
) -> Schedule:
    """The first monthly cutoff and the horizon that give the backtest `origins`
    complete origins (with contract churn's `grace_days` after each), or fewer
    (down to MIN_ORIGINS), or a shorter horizon (HORIZONS), in that order of
    preference; a ValueError when even 2 origins at 7 days do not fit."""
    last = (data_end - timedelta(days=1)).date()
    tried = []
    for horizon in HORIZONS:
        for n in range(origins, MIN_ORIGINS - 1, -1):
            for warmup in WARMUP_MONTHS:
                start = (
                    pd.Timestamp(first.date()) + pd.DateOffset(months=warmup)
                ).date()
                start = start.replace(day=1)
                cutoffs = _month_starts(start, last)
                labels = LabelSpec(
                    {CHURN: horizon, "purchase": horizon, "service_request": horizon},
                    churn_definition=CONTRACT if grace_days else "inactivity",
                    grace_days=grace_days,
                )
                plans = [
                    plan_target(t, cutoffs, data_end, labels, n)
                    for t in labels.horizons
                ]
                if all(p.problem is None for p in plans):
                    note = _note(horizon, n, origins, warmup, plans, grace_days)
                    return Schedule(start, horizon, n, cutoffs, note)
            tried.append(f"{horizon} days/{n} origins")
    raise ValueError(
        f"the data run {day(first)} .. {day(last)}: too short for a backtest of "
        f"{MIN_ORIGINS} monthly origins with a {HORIZONS[-1]}-day horizon"
        + (f" plus {grace_days} days' grace" if grace_days else "")
        + f" (tried {', '.join(tried)}); a backtest needs about "
        f"{MIN_ORIGINS + 3} months of events"
    )


def _note(
    horizon: int, n: int, wanted: int, warmup: int, plans: list[Plan], grace: int
) -> str:
    origins = plans[0].origins
    parts = [
        f"monthly cutoffs from {warmup} month(s) after the first event; "
        f"{n} backtest origins ({day(origins[0])} .. {day(origins[-1])})"
    ]
    if n < wanted:
        parts.append(f"fewer than the default {wanted}: the data are too short")
    if horizon != HORIZONS[0]:
        parts.append(
            f"a {horizon}-day horizon, shorter than {HORIZONS[0]}: the data are too "
            "short for more"
        )
    if grace:
        parts.append(f"contract churn's {grace}-day grace counted in each window")
    return "; ".join(parts)
