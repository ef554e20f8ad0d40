"""Features and labels on literal tables: boundaries and known values."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.columns import population_column
from features.definition import (
    ELIGIBLE,
    FeatureSpec,
    build_features,
    catalogue,
    seen_pairs,
)
from features.labels import LabelSpec, build_labels
from features.sources.load import load
from tests.helpers import ROOT
from tests.oracles.features import reference_features

CUT = datetime(2024, 3, 1)
SEC = timedelta(seconds=1)
DAY = timedelta(days=1)
SPEC = FeatureSpec(
    role_of={"buy": "purchase", "ticket": "service_request", "quit": "cancel"},
    windows_days=(7, 30),
    trend_days=(30,),
    churn_horizon_days=30,
)
LABELS = LabelSpec({"churn": 30, "purchase": 14, "service_request": 30})


def dataset(tmp_path: Path, rows: list[tuple], customers: pd.DataFrame | None = None):
    """Events from (customer, time, type, amount[, quantity]) rows."""
    frame = events_frame(rows)
    frame.to_parquet(tmp_path / "events.parquet")
    cpath = None
    if customers is not None:
        cpath = tmp_path / "customers.parquet"
        customers.to_parquet(cpath)
    return load(tmp_path / "events.parquet", cpath, as_of=datetime(2030, 1, 1))


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    columns = ["customer_id", "event_time", "event_type", "amount", "quantity"]
    frame = pd.DataFrame(rows, columns=columns[: len(rows[0])])
    frame["event_time"] = pd.to_datetime(frame["event_time"]).astype("datetime64[us]")
    return frame


def features_at(ds, cutoffs=(CUT,), spec=SPEC) -> pd.DataFrame:
    table = build_features(
        ds.events, seen_pairs(ds.events, list(cutoffs)), spec, ds.customers
    )
    return table.to_pandas().set_index(["customer_id", "cutoff"]).sort_index()


def row(frame: pd.DataFrame, cid: str, cutoff: datetime = CUT) -> pd.Series:
    return frame.loc[(cid, pd.Timestamp(cutoff))]


def test_event_one_second_before_cutoff_counts_and_is_zero_days_ago(
    tmp_path: Path,
) -> None:
    ds = dataset(
        tmp_path,
        [("a", CUT - SEC, "login", None), ("a", CUT - 40 * DAY, "login", None)],
    )
    r = row(features_at(ds), "a")
    assert r.activity_count_7d == 1 and r.activity_count_30d == 1
    assert r.days_since_last_activity == 0 and r.days_since_last_event == 0


def test_event_at_the_cutoff_is_excluded(tmp_path: Path) -> None:
    ds = dataset(
        tmp_path, [("a", CUT, "login", None), ("a", CUT - 2 * DAY, "buy", 5.0)]
    )
    r = row(features_at(ds), "a")
    assert r.activity_count_7d == 0 and pd.isna(r.days_since_last_activity)
    assert r.purchase_count_7d == 1 and r.days_since_last_purchase == 2


def test_window_start_is_inclusive_and_one_second_earlier_is_out(
    tmp_path: Path,
) -> None:
    ds = dataset(
        tmp_path,
        [
            ("a", CUT - 7 * DAY, "login", None),
            ("a", CUT - 7 * DAY - SEC, "login", None),
        ],
    )
    r = row(features_at(ds), "a")
    assert r.activity_count_7d == 1 and r.activity_count_30d == 2
    assert r.days_since_last_activity == 7  # 7 days exactly
    assert r.tenure_days == 7  # 7 days and 1 second, floored


def test_known_values_on_a_small_history(tmp_path: Path) -> None:
    rows = [
        ("a", "2024-02-28 10:00:00", "buy", 10.0),
        ("a", "2024-02-28 18:00:00", "buy", 2.5),
        ("a", "2024-02-20 09:00:00", "ticket", None),
        ("a", "2024-01-15 09:00:00", "login", None),
        ("a", "2024-01-10 09:00:00", "login", None),
        ("a", "2023-12-01 00:00:00", "login", None),
    ]
    r = row(features_at(dataset(tmp_path, rows)), "a")
    assert r.purchase_count_7d == 2 and r.purchase_amount_sum_7d == pytest.approx(12.5)
    assert r.service_request_count_7d == 0 and r.service_request_count_30d == 1
    assert r.active_days_7d == 1 and r.active_days_30d == 2
    assert r.activity_count_30d == 0
    assert r.days_since_last_purchase == 1  # 2024-02-28 18:00 -> 1 day 6 hours
    assert r.days_since_last_service_request == 9
    assert (
        r.days_since_last_activity == 45
    )  # 2024-01-15 09:00 -> 45 days 15 hours, floored
    assert r.tenure_days == 91
    # last 30 days: 3 events; the 30 before (Jan 1 .. Jan 31): 2 logins
    assert r.event_count_ratio_30d == pytest.approx((3 + 1) / (2 + 1))
    assert r.event_count_diff_30d == 3 - 2
    assert r.purchase_count_ratio_30d == pytest.approx((2 + 1) / (0 + 1))
    assert pd.isna(r.days_since_last_cancel) and r.cancel_count_30d == 0


# Cancels followed the same day and on later days, several events a day, null
# amounts and quantities, one-event customers, a customer first seen at the cutoff.
SMALL_LOG = [
    ("a", "2024-02-10 09:00:00", "login", None, None),
    ("a", "2024-02-12 10:00:00", "quit", None, None),  # followed on 02-20, a later day
    ("a", "2024-02-12 15:00:00", "login", 1.5, None),  # same day: not a reactivation
    ("a", "2024-02-14 08:00:00", "quit", None, None),  # reactivated on 02-20
    ("a", "2024-02-20 10:00:00", "buy", 10.0, 2.0),
    ("a", "2024-02-20 13:00:00", "buy", None, 1.0),  # null amount: left out
    ("a", "2024-02-27 23:59:59", "buy", 4.0, None),  # null quantity: left out
    ("a", "2024-02-28 00:00:00", "quit", None, None),  # reactivated on 02-29
    ("a", "2024-02-29 11:00:00", "quit", None, None),  # only followed the same day
    ("a", "2024-02-29 12:00:00", "ticket", None, None),
    ("b", "2024-02-29 00:00:00", "buy", None, None),  # one event, no amount
    ("c", "2024-02-20 00:00:00", "login", None, None),
    ("c", "2024-02-22 00:00:00", "view", None, None),
    ("c", "2024-02-24 23:59:59", "login", None, None),
    ("late", "2024-03-01 00:00:00", "buy", 1.0, 1.0),  # at the cutoff: not seen
]
SMALL_SPEC = FeatureSpec(
    role_of=SPEC.role_of,
    windows_days=(7, 30),
    trend_days=(7,),
    amount_roles=("purchase", "activity"),
)
# By hand, at CUT = 2024-03-01. a's active days: 02-10, 12, 14, 20, 27, 28, 29, gaps
# 2, 2, 6, 7, 1, 1; first day 02-10, 20 days before the cutoff.
SMALL_EXPECTED = {
    "a": {
        "purchase_count_7d": 1,
        "cancel_count_7d": 2,
        "cancel_days_7d": 2,
        "cancel_count_30d": 4,
        "cancel_days_30d": 4,
        "purchase_days_30d": 2,
        "activity_days_30d": 2,
        "active_days_7d": 3,
        "active_days_30d": 7,
        "active_day_share_7d": 3 / 7,
        "active_day_share_30d": 7 / 20,  # 20 days since the first day
        "purchase_amount_sum_7d": 4.0,
        "purchase_amount_mean_7d": 4.0,
        "purchase_quantity_sum_7d": 0.0,  # the only quantity is null
        "purchase_amount_sum_30d": 14.0,
        "purchase_amount_mean_30d": 7.0,  # (10 + 4) / 2: the null is not a zero
        "purchase_amount_max_30d": 10.0,
        "purchase_quantity_sum_30d": 3.0,
        "activity_amount_sum_7d": 0.0,
        "activity_amount_mean_7d": None,
        "activity_amount_max_7d": None,
        "activity_amount_sum_30d": 1.5,
        "activity_amount_mean_30d": 1.5,
        "activity_quantity_sum_30d": 0.0,
        "days_since_last_activity": 17,  # 02-12 15:00: 17 days 9 hours
        "days_since_last_purchase": 2,  # 02-27 23:59:59: 2 days 1 second
        "days_since_last_cancel": 0,
        "days_since_first_purchase": 9,
        "tenure_days": 19,
        "cancel_count_total": 4,
        "purchase_count_total": 3,
        "reactivations": 3,  # 02-12, 02-14, 02-28; not 02-29
        "service_requests_per_purchase": 1 / 3,
        "active_day_gap_mean": 19 / 6,
        "active_day_gap_std": (1254 / 216) ** 0.5,  # sum of (gap - 19/6)^2 / 6
        "event_count_ratio_7d": (4 + 1) / (2 + 1),  # 02-23..29 vs 02-16..22
        "event_count_diff_7d": 2,
        "purchase_count_ratio_7d": (1 + 1) / (2 + 1),
        "purchase_count_diff_7d": -1,
    },
    "b": {
        "active_days_7d": 1,
        "active_day_share_7d": 1.0,  # one day since the first: 1 / min(7, 1)
        "active_day_share_30d": 1.0,
        "purchase_amount_sum_7d": 0.0,
        "purchase_amount_mean_7d": None,
        "purchase_amount_max_7d": None,
        "purchase_quantity_sum_7d": 0.0,
        "days_since_first_purchase": 1,
        "tenure_days": 1,
        "reactivations": 0,
        "service_requests_per_purchase": 0.0,
        "active_day_gap_mean": None,  # one active day
        "active_day_gap_std": None,
        "event_count_ratio_7d": 2.0,
        "purchase_count_diff_7d": 1,
    },
    "c": {
        "activity_count_7d": 1,  # 02-24 23:59:59; 02-22 is 8 days before
        "active_days_30d": 3,
        "active_day_share_7d": 1 / 7,
        "active_day_share_30d": 3 / 10,  # 10 days since 02-20
        "days_since_first_purchase": None,
        "service_requests_per_purchase": None,  # no purchases
        "active_day_gap_mean": 2.0,
        "active_day_gap_std": 0.0,
        "purchase_amount_sum_30d": 0.0,
        "purchase_amount_max_30d": None,
        "tenure_days": 10,
        "event_count_diff_7d": 1 - 2,
    },
}


def assert_expected(frame: pd.DataFrame) -> None:
    """`frame` (indexed by customer) holds SMALL_EXPECTED, nulls and all."""
    assert sorted(frame.index) == sorted(SMALL_EXPECTED)
    for cid, expected in SMALL_EXPECTED.items():
        for name, want in expected.items():
            got = frame.loc[cid, name]
            if want is None:
                assert pd.isna(got), (cid, name, got)
            else:
                assert got == pytest.approx(want, rel=1e-12), (cid, name, got, want)


def test_new_features_by_hand_on_a_small_log(tmp_path: Path) -> None:
    ds = dataset(tmp_path, SMALL_LOG)
    frame = features_at(ds, spec=SMALL_SPEC).droplevel("cutoff")
    assert_expected(frame)


def test_the_reference_agrees_with_the_hand_computed_values() -> None:
    frame = reference_features(events_frame(SMALL_LOG), [CUT], SMALL_SPEC)
    assert_expected(frame.set_index("customer_id"))


def test_customers_first_seen_after_the_cutoff_are_not_scored(tmp_path: Path) -> None:
    ds = dataset(
        tmp_path, [("a", CUT - DAY, "login", None), ("late", CUT + DAY, "login", None)]
    )
    assert set(features_at(ds).index.get_level_values(0)) == {"a"}


def test_equal_timestamps_count_twice(tmp_path: Path) -> None:
    t = CUT - 3 * DAY
    ds = dataset(tmp_path, [("a", t, "buy", 1.0), ("a", t, "buy", 2.0)])
    r = row(features_at(ds), "a")
    assert (
        r.purchase_count_7d == 2
        and r.purchase_amount_sum_7d == 3.0
        and r.active_days_7d == 1
    )


def test_several_cutoffs_see_only_their_past(tmp_path: Path) -> None:
    second = CUT + 31 * DAY
    ds = dataset(
        tmp_path, [("a", CUT - DAY, "login", None), ("a", CUT + 10 * DAY, "buy", 4.0)]
    )
    frame = features_at(ds, (CUT, second))
    assert row(frame, "a").purchase_count_30d == 0
    assert row(frame, "a", second).purchase_count_30d == 1
    assert row(frame, "a", second).days_since_last_activity == 32


def test_churn_population_excludes_cancelled_and_long_inactive(
    tmp_path: Path,
) -> None:
    rows = [
        ("active", CUT - 5 * DAY, "login", None),
        ("cancelled", CUT - 5 * DAY, "login", None),
        ("cancelled", CUT - 2 * DAY, "quit", None),
        ("reactivated", CUT - 9 * DAY, "quit", None),
        ("reactivated", CUT - 2 * DAY, "login", None),
        ("gone", CUT - 31 * DAY, "login", None),
    ]
    frame = features_at(dataset(tmp_path, rows))
    churn = frame[population_column("churn")].droplevel(1).to_dict()
    assert churn == {
        "active": True,
        "cancelled": False,
        "reactivated": True,
        "gone": False,
    }
    cancel_only = FeatureSpec(**{**SPEC.__dict__, "churn_definition": "cancel"})
    churn = features_at(dataset(tmp_path, rows), spec=cancel_only)[
        population_column("churn")
    ].droplevel(1)
    assert churn["gone"] and not churn["cancelled"]


def test_purchase_population_is_everyone_seen(tmp_path: Path) -> None:
    """purchase and service_request cover every customer seen before the cutoff,
    cancelled or inactive for longer than the churn horizon; `eligible` is the
    union of the listed populations."""
    rows = [
        ("active", CUT - 5 * DAY, "login", None),
        ("cancelled", CUT - 2 * DAY, "quit", None),
        ("gone", CUT - 200 * DAY, "login", None),
        ("later", CUT + DAY, "login", None),
    ]
    frame = features_at(dataset(tmp_path, rows), (CUT, CUT + 2 * DAY))
    at_cut = frame.xs(CUT, level="cutoff")
    assert sorted(at_cut.index) == ["active", "cancelled", "gone"]
    for target in ("purchase", "service_request"):
        assert at_cut[population_column(target)].all()
    assert at_cut[ELIGIBLE].all()
    assert not at_cut.loc["gone", population_column("churn")]
    assert list(frame.columns[-4:]) == [
        *(population_column(t) for t in ("churn", "purchase", "service_request")),
        ELIGIBLE,
    ]


def test_lookback_days_exclude_older_customers(tmp_path: Path) -> None:
    """With lookback_days, a purchase population holds only customers with an
    event (of any kind) in the N days before the cutoff; with churn unlisted,
    `eligible` is that population alone."""
    rows = [
        ("recent", CUT - 89 * DAY - SEC, "quit", None),  # 89 days and a second
        ("edge", CUT - 90 * DAY, "login", None),  # exactly 90 days: in
        ("old", CUT - 90 * DAY - SEC, "login", None),  # a second more: out
    ]
    spec = FeatureSpec(
        **{
            **SPEC.__dict__,
            "targets": ("purchase", "service_request"),
            "lookback_days": {"purchase": 90},
        }
    )
    frame = features_at(dataset(tmp_path, rows), spec=spec).droplevel(1)
    assert frame[population_column("purchase")].to_dict() == {
        "edge": True,
        "old": False,
        "recent": True,
    }
    assert frame[population_column("service_request")].all()
    assert population_column("churn") not in frame.columns
    assert spec.population_name("purchase") == "seen_within_90d"
    assert spec.population_name("service_request") == "seen"
    assert spec.population_name("churn") == "active_not_churned"
    only_purchase = FeatureSpec(**{**spec.__dict__, "targets": ("purchase",)})
    frame = features_at(dataset(tmp_path, rows), spec=only_purchase).droplevel(1)
    assert frame[ELIGIBLE].to_dict() == {"edge": True, "old": False, "recent": True}


def test_static_attributes(tmp_path: Path) -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "plan": ["pro", None],
            "age": [31.0, None],
            "signup_time": pd.to_datetime(["2024-01-01", "2024-05-01"]),
        }
    )
    ds = dataset(
        tmp_path,
        [("a", CUT - DAY, "login", None), ("b", CUT - DAY, "login", None)],
        customers,
    )
    frame = features_at(ds)
    assert row(frame, "a").plan == "pro" and row(frame, "a").age == 31.0
    assert row(frame, "a").days_since_signup_time == 60
    assert pd.isna(row(frame, "b").days_since_signup_time)  # signs up after the cutoff
    cat = catalogue(SPEC, ds.customers)
    assert cat.categorical == ["plan"]
    assert cat.names[-3:] == ["plan", "age", "days_since_signup_time"]
    flags = [population_column(t) for t in ("churn", "purchase", "service_request")]
    assert list(frame.columns) == [*cat.names, *flags, ELIGIBLE]


def labels_at(ds, labels=LABELS) -> pd.DataFrame:
    table = build_labels(ds.events, seen_pairs(ds.events, [CUT]), SPEC, labels)
    return table.to_pandas().set_index("customer_id").sort_index()


def test_label_window_is_cutoff_inclusive_and_end_exclusive(tmp_path: Path) -> None:
    rows = [
        ("at_cut", CUT - DAY, "login", None),
        ("at_cut", CUT, "buy", 1.0),
        ("at_end", CUT - DAY, "login", None),
        ("at_end", CUT + 14 * DAY, "buy", 1.0),
        ("before_end", CUT - DAY, "login", None),
        ("before_end", CUT + 14 * DAY - SEC, "buy", 1.0),
        ("before", CUT - DAY, "buy", 1.0),
    ]
    labels = labels_at(dataset(tmp_path, rows))
    assert labels.purchase.to_dict() == {
        "at_cut": 1,
        "at_end": 0,
        "before": 0,
        "before_end": 1,
    }


def test_labels_of_a_subset_of_targets(tmp_path: Path) -> None:
    """Without churn listed, the labels are the listed targets' columns only,
    with the same values as when all three are listed."""
    rows = [
        ("a", CUT - DAY, "login", None),
        ("a", CUT + DAY, "buy", 1.0),
        ("b", CUT - DAY, "buy", 1.0),
        ("b", CUT + 20 * DAY, "ticket", None),
    ]
    ds = dataset(tmp_path, rows)
    subset = labels_at(ds, LabelSpec({"purchase": 14, "service_request": 30}))
    assert list(subset.columns) == ["cutoff", "purchase", "service_request"]
    full = labels_at(ds)
    assert subset.purchase.to_dict() == full.purchase.to_dict() == {"a": 1, "b": 0}
    assert subset.service_request.to_dict() == {"a": 0, "b": 1}
    only_churn = labels_at(ds, LabelSpec({"churn": 30}))
    assert list(only_churn.columns) == ["cutoff", "churn"]


def test_churn_labels_by_definition(tmp_path: Path) -> None:
    rows = [
        ("stays", CUT - DAY, "login", None),
        ("stays", CUT + 29 * DAY, "login", None),
        ("silent", CUT - DAY, "login", None),
        ("silent", CUT + 30 * DAY, "login", None),  # at cutoff + H: outside
        ("quits", CUT - DAY, "login", None),
        ("quits", CUT + DAY, "login", None),
        ("quits", CUT + 2 * DAY, "quit", None),
        ("ticket", CUT - DAY, "login", None),
        ("ticket", CUT + 3 * DAY, "ticket", None),
    ]
    ds = dataset(tmp_path, rows)
    both = labels_at(ds)
    assert both.churn.to_dict() == {"quits": 1, "silent": 1, "stays": 0, "ticket": 0}
    assert both.service_request.to_dict() == {
        "quits": 0,
        "silent": 0,
        "stays": 0,
        "ticket": 1,
    }
    inactivity = labels_at(ds, LabelSpec(LABELS.horizons, "inactivity")).churn.to_dict()
    assert inactivity == {"quits": 0, "silent": 1, "stays": 0, "ticket": 0}
    cancel = labels_at(ds, LabelSpec(LABELS.horizons, "cancel")).churn.to_dict()
    assert cancel == {"quits": 1, "silent": 0, "stays": 0, "ticket": 0}


def test_label_completeness() -> None:
    end = datetime(2024, 3, 31)
    assert LABELS.complete("churn", CUT, end)  # Mar 1 + 30 days = Mar 31
    assert not LABELS.complete("churn", CUT + DAY, end)


def test_repeated_cutoffs_and_pairs_count_once(tmp_path: Path) -> None:
    ds = dataset(tmp_path, [("a", CUT - 2 * DAY, "buy", 3.0)])
    once = build_features(ds.events, seen_pairs(ds.events, [CUT]), SPEC).to_pandas()
    pairs = seen_pairs(ds.events, [CUT, CUT])
    twice = build_features(ds.events, pairs.union(pairs, distinct=False), SPEC)
    twice = twice.to_pandas()
    assert len(twice) == 1 and twice.purchase_count_7d[0] == 1
    pd.testing.assert_frame_equal(twice, once)
    assert once.active_days_7d[0] == 1 and once.event_count_ratio_30d[0] == 2.0


def test_money_sums_are_exact_to_the_cent_in_any_order_and_thread_count(
    tmp_path: Path,
) -> None:
    """A sum of amounts is the same bit for bit whatever order the rows arrive in
    and however many threads add them (a float sum was not: 388.15 from Parquet,
    388.15000000000003 from Postgres); amounts count to the cent."""
    import random

    from features.sources.load import connect

    amounts = [0.1, 0.2, 0.3, 388.15, 1e-3, 12.345, 7.005, 0.7] * 40
    base = datetime(2024, 2, 1)
    rows = [("a", base + i * SEC, "buy", x, 1.0005) for i, x in enumerate(amounts)]
    frames = []
    for seed, threads in ((0, 1), (1, 2), (2, 2)):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        folder = tmp_path / str(seed)
        folder.mkdir()
        events_frame(shuffled).to_parquet(folder / "events.parquet")
        con = connect(None, threads)
        ds = load(folder / "events.parquet", None, as_of=datetime(2030, 1, 1), con=con)
        frames.append(features_at(ds))
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other, check_exact=True)
    r = row(frames[0], "a")
    cents = sum(round(x * 100 + 1e-9) for x in amounts)  # half away from zero
    assert r.purchase_amount_sum_30d == cents / 100
    assert r.purchase_amount_max_30d == 388.15
    assert r.purchase_quantity_sum_30d == pytest.approx(len(amounts) * 1.001)


def test_contract_churn_grace_defaults_to_30_days() -> None:
    """`grace_days` left out of the config gives LabelSpec 30 days."""
    import yaml

    from core.config import ProjectConfig

    demo = ROOT / "propensity.yaml"
    raw = yaml.safe_load(demo.read_text())
    raw["data"]["subscriptions"] = "subscriptions.parquet"
    raw["targets"]["churn"] = {"horizon_days": 30, "definition": "contract"}
    labels = LabelSpec.from_config(ProjectConfig.model_validate(raw))
    assert labels.churn_definition == "contract"
    assert labels.grace_days == 30
    raw["targets"]["churn"]["grace_days"] = 7
    assert LabelSpec.from_config(ProjectConfig.model_validate(raw)).grace_days == 7


@pytest.mark.parametrize("trends", [False, True], ids=["events", "tiles"])
def test_cutoffs_read_per_segment_give_the_rows_per_cutoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trends: bool
) -> None:
    """A list of cutoffs sums per calendar segment once for all cutoffs, from
    the events and a narrow roll-up of active days (`_segmented_events`) or,
    with feature groups that read the tiles, from the daily rows
    (`_segmented`); past MAX_SEGMENTS edges, per cutoff, as a pairs table
    always is: all three give exactly the same rows."""
    import features.definition as definition
    from features.synthetic.demo import generate

    summary = generate(tmp_path, customers=150, seed=3, days=150)
    ds = load(summary.events_path, summary.customers_path, as_of=datetime(2030, 1, 1))
    spec = FeatureSpec(
        role_of={"purchase": "purchase", "support_ticket": "cancel"},
        behaviour=trends,
        trends=trends,
    )
    called = []
    for name in ("_segmented", "_segmented_events"):
        original = getattr(definition, name)
        monkeypatch.setattr(
            definition,
            name,
            lambda *a, _f=original, _n=name: called.append(_n) or _f(*a),
        )
    first = ds.time_range()[0].replace(hour=0, minute=0, second=0, microsecond=0)
    # uneven gaps, a cutoff a day after another, one before most customers
    # (the trends' edges are more: one cutoff fewer keeps within MAX_SEGMENTS)
    days = (40, 41, 149) if trends else (3, 40, 41, 149)
    cutoffs = [first + DAY * d for d in days]

    def rows(pairs) -> pd.DataFrame:
        table = build_features(ds.events, pairs, spec, ds.customers).to_pandas()
        return table.sort_values(["customer_id", "cutoff"]).reset_index(drop=True)

    segments = definition._segment_edges(definition.midnights(cutoffs), spec)
    assert 1 < len(segments) <= definition.MAX_SEGMENTS
    by_segment = rows(cutoffs)
    assert called == ["_segmented" if trends else "_segmented_events"]
    monkeypatch.setattr(definition, "MAX_SEGMENTS", 0)
    by_cutoff = rows(cutoffs)
    assert len(by_segment) > 300 and by_segment["purchase_count_total"].sum() > 0
    pd.testing.assert_frame_equal(by_segment, by_cutoff)
    pd.testing.assert_frame_equal(by_segment, rows(seen_pairs(ds.events, cutoffs)))
