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
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import ibis.expr.types as ir
import pandas as pd

from core.config import ProjectConfig
from features.columns import (
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    TARGETS,
    population_column,
)
from features.definition import FeatureSpec
from features.labels import LabelSpec
from features.sources.chunks import read_chunked
from features.sources.load import Dataset
from training.dataset import data_end, training_expr
from training.fairness import check_segments

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


def _horizon_words(labels: LabelSpec, target: str) -> str:
    words = f"{labels.horizons[target]}-day horizon"
    if target == CHURN:
        words += f" ({labels.churn_definition}"
        if labels.churn_definition == CONTRACT:
            words += f", {labels.grace_days}-day grace"
        words += ")"
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
    """The rows of `target`'s population: those its flag (`in_<target>`) on the
    training table holds (a table without the flag: all its rows)."""
    flag = population_column(target)
    if flag not in frame.columns:
        return frame
    return frame[frame[flag].to_numpy(dtype=bool)]


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
# a long log: the latest this many monthly cutoffs (the training table grows with
# each)
MAX_CUTOFFS = 24
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
                if len(cutoffs) > MAX_CUTOFFS:
                    cutoffs = cutoffs[-MAX_CUTOFFS:]
                    start = cutoffs[0].date()
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
    first_cutoff = plans[0].final_cutoffs[0]
    parts = [
        f"monthly cutoffs from {day(first_cutoff)} (at least {warmup} month(s) of "
        f"history before the first, at most {MAX_CUTOFFS} cutoffs); {n} backtest "
        f"origins ({day(origins[0])} .. {day(origins[-1])})"
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


# -- what train would do (propensity check) ------------------------------------------


def listed_targets(config: ProjectConfig) -> tuple[str, ...]:
    """The targets `train` trains: `config.targets.listed()`."""
    return config.targets.listed()


@dataclass
class Preview:
    """What `train` would do on the config's data, without training."""

    events: int
    first: datetime
    last: datetime
    data_end: datetime
    cutoffs: list[datetime]
    origins: int
    plans: dict[str, Plan]
    labels: LabelSpec
    problems: list[str] = field(default_factory=list)
    # target -> its population's name (features.definition.population_name)
    populations: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.problem is None for p in self.plans.values())

    def text(self) -> str:
        last_day = day(self.data_end - timedelta(days=1))
        lines = [
            f"data: {self.events:,} events, {day(self.first)} .. {day(self.last)}; "
            f"complete through {last_day}",
            f"cutoffs: {len(self.cutoffs)}"
            + (
                f", {day(self.cutoffs[0])} .. {day(self.cutoffs[-1])}"
                if self.cutoffs
                else ""
            )
            + f"; the backtest takes {self.origins} origins per target",
        ]
        unlisted = [t for t in TARGETS if t not in self.plans]
        if self.plans:
            lines.append(
                f"targets: {', '.join(self.plans)}"
                + (f" (not listed: {', '.join(unlisted)})" if unlisted else "")
            )
        for target, p in self.plans.items():
            origins, dropped = set(p.origins), {d.cutoff: d for d in p.dropped}
            final = set(p.final_cutoffs)
            lines += [
                "",
                f"{target}: {_horizon_words(self.labels, target)}, population "
                f"{self.populations.get(target, '?')}",
                f"  {'cutoff':10} {'rows':>9} {'positives':>9}  use",
            ]
            for c in self.cutoffs:
                n = p.counts.get(c, Counts(0, 0))
                if c in origins:
                    use = "origin"
                elif c in dropped:
                    used = "train; " if c in final else ""
                    use = f"{used}dropped: {dropped[c].reason}"
                else:
                    use = "train" if c in final else ""
                lines.append(f"  {day(c):10} {n.rows:>9,} {n.positives:>9,}  {use}")
            if p.problem is None:
                lines.append(
                    f"  -> trains: origins {', '.join(map(day, p.origins))}; the "
                    f"final model fits on {len(p.final_cutoffs)} cutoffs"
                )
            else:
                lines.append(f"  -> cannot train: {p.problem}")
        lines.append("")
        lines += [f"problem: {problem}" for problem in self.problems]
        cannot = [t for t, p in self.plans.items() if p.problem is not None]
        if self.ok:
            lines.append(f"train would train {', '.join(self.plans)}")
        else:
            lines.append(
                "train would not run as configured"
                + (f": {', '.join(cannot)} cannot be trained" if cannot else "")
            )
        return "\n".join(lines)


def label_frame(
    ds: Dataset, config: ProjectConfig, cutoffs: list[datetime]
) -> pd.DataFrame:
    """customer_id, cutoff, every listed target's population flag and label for
    the rows `train` would build (the training table without its features)."""
    # the flags and labels only: no feature group (the classic fits cost time)
    spec = replace(FeatureSpec.from_config(config), classic=False, behaviour=False)
    labels = LabelSpec.from_config(config)
    flags = [population_column(t) for t in spec.targets]

    def build(events: ir.Table) -> ir.Table:
        expr = training_expr(
            events, ds.customers, spec, labels, cutoffs, ds.subscriptions
        )
        return expr.select(CUSTOMER_ID, CUTOFF, *flags, *spec.targets)

    return read_chunked(ds, build, cutoffs=len(cutoffs)).to_pandas()


def preview(config: ProjectConfig, ds: Dataset) -> Preview:
    """The cutoffs, every listed target's origins, the rows and positives per
    target and cutoff, the dropped cutoffs and the problems, as `train` would
    meet them."""
    check_segments(ds.customers, config.fairness)  # a ConfigError, as in train
    problems = []
    first, last = ds.time_range()
    end = data_end(ds, config.data.as_of)
    cutoffs = [c for c in config.training.cutoffs.resolve(last) if c <= end]
    labels = LabelSpec.from_config(config)
    origins = config.training.backtest.origins
    if not cutoffs:
        problems.append(
            f"training.cutoffs: no cutoff falls on or before the data's end {day(end)}"
        )
        return Preview(
            ds.rows(), first, last, end, cutoffs, origins, {}, labels, problems
        )
    frame = label_frame(ds, config, cutoffs)
    plans = {
        t: plan_target(
            t, cutoffs, end, labels, origins, class_counts(frame, t, cutoffs)
        )
        for t in listed_targets(config)
    }
    spec = FeatureSpec.from_config(config)
    return Preview(
        ds.rows(),
        first,
        last,
        end,
        cutoffs,
        origins,
        plans,
        labels,
        problems,
        {t: spec.population_name(t) for t in plans},
    )
