"""training.plan: which cutoffs are origins, which were dropped and why, and the
schedule `init` proposes for a new log."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from core.config import load_config
from features.columns import CHURN
from features.definition import FeatureSpec
from features.labels import LabelSpec
from features.sources.load import load_project
from features.synthetic.demo import generate
from tests.helpers import write_config
from training.dataset import build_training_table
from training.plan import (
    Counts,
    class_counts,
    plan_target,
    preview,
    propose_schedule,
)

CUTOFFS = [datetime(2017, m, 1) for m in range(1, 10)]
# a log whose last event is on 2017-09-30: complete through that day
END = datetime(2017, 10, 1)


def test_an_incomplete_label_window_drops_the_cutoff_with_its_dates() -> None:
    labels = LabelSpec(
        {CHURN: 30, "purchase": 30, "service_request": 30},
        churn_definition="contract",
        grace_days=30,
    )
    p = plan_target(CHURN, CUTOFFS, END, labels, origins=4)
    assert p.dropped_lines() == [
        "churn: dropped 2017-09-01: churn's 30-day window plus 30-day grace runs "
        "through 2017-10-30, past the data's end 2017-09-30 (label window "
        "incomplete)"
    ]
    assert p.origins == CUTOFFS[4:8]
    assert p.problem is None
    # purchase's window (no grace) fits: 09-01 is its last origin
    purchase = plan_target("purchase", CUTOFFS, END, labels, origins=4)
    assert purchase.dropped == [] and purchase.origins == CUTOFFS[5:9]


def test_too_few_origins_is_a_problem_that_names_the_dropped() -> None:
    labels = LabelSpec({CHURN: 30, "purchase": 30, "service_request": 30})
    counts = {c: Counts(100, 10) for c in CUTOFFS}
    counts[CUTOFFS[-2]] = Counts(100, 0)
    p = plan_target("purchase", CUTOFFS[5:], END, labels, 4, counts)
    assert p.problem is not None
    assert "needs 4 origins" in p.problem and "the cutoffs give 3" in p.problem
    assert [str(d) for d in p.dropped] == [
        "2017-08-01: purchase's rows hold a single class (100 rows, 0 positive)"
    ]


@pytest.mark.parametrize(
    ("first", "end", "grace", "horizon", "origins"),
    [
        # two years: the default 4 origins of 30 days
        (datetime(2024, 1, 1), datetime(2025, 12, 31), 0, 30, 4),
        # seven months: fewer origins
        (datetime(2024, 1, 1), datetime(2024, 8, 1), 0, 30, 3),
        # five and a half months: fewer origins and a shorter horizon
        (datetime(2024, 1, 1), datetime(2024, 6, 15), 0, 14, 3),
        # a 30-day grace needs 60 days after each origin
        (datetime(2017, 1, 1), datetime(2017, 10, 1), 30, 30, 4),
    ],
)
def test_the_proposed_schedule_leaves_complete_origins(
    first: datetime, end: datetime, grace: int, horizon: int, origins: int
) -> None:
    s = propose_schedule(first, end, grace_days=grace)
    assert (s.horizon_days, s.origins) == (horizon, origins)
    labels = LabelSpec(
        {CHURN: horizon, "purchase": horizon, "service_request": horizon},
        churn_definition="contract" if grace else "inactivity",
        grace_days=grace,
    )
    for target in labels.horizons:
        p = plan_target(target, s.cutoffs, end, labels, s.origins)
        assert p.problem is None and len(p.origins) == origins
    if origins < 4:
        assert "fewer than the default 4" in s.note
    if horizon < 30:
        assert f"a {horizon}-day horizon" in s.note


def test_a_long_log_keeps_the_latest_24_cutoffs() -> None:
    s = propose_schedule(datetime(2015, 1, 1), datetime(2025, 1, 1))
    assert len(s.cutoffs) == 24 and s.cutoffs[-1] == datetime(2024, 12, 1)
    assert s.start == s.cutoffs[0].date()


def test_a_log_too_short_for_two_origins_is_refused() -> None:
    with pytest.raises(ValueError, match="too short for a backtest of 2 monthly"):
        propose_schedule(datetime(2017, 1, 1), datetime(2017, 4, 1))


def test_check_counts_the_rows_train_builds(tmp_path: Path) -> None:
    """`check`'s rows and positives per target and cutoff are those of the
    training table `train` builds from the same config and data."""
    summary = generate(tmp_path / "demo", customers=150, seed=3, days=300)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            summary.events_path,
            summary.customers_path,
            training={"cutoffs": {"start": "2024-03-01", "freq": "MS"}},
        )
    )
    ds = load_project(config)
    shown = preview(config, ds)
    _, last = ds.time_range()
    table = build_training_table(
        ds,
        FeatureSpec.from_config(config),
        LabelSpec.from_config(config),
        config.training.cutoffs.resolve(last),
    )
    assert shown.cutoffs == table.cutoffs and shown.data_end == table.data_end
    for target, p in shown.plans.items():
        assert p.counts == class_counts(table.frame, target, table.cutoffs)
        assert sum(c.positives for c in p.counts.values()) > 0


def test_check_with_no_cutoff_before_the_data_end_says_so(tmp_path: Path) -> None:
    summary = generate(tmp_path / "demo", customers=30, seed=3, days=60)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            summary.events_path,
            None,
            training={"cutoffs": {"start": "2030-01-01", "freq": "MS"}},
        )
    )
    shown = preview(config, load_project(config))
    assert not shown.ok
    assert "training.cutoffs: no cutoff falls on or before" in shown.text()
