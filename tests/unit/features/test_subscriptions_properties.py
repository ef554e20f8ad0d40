"""Property tests of the subscription features and contract churn: the engine
against the pandas reference in `tests/oracles/subscriptions.py`.

Hypothesis draws an event log as `test_properties` does, and for each customer 0-4
subscription terms whose edges cluster where it matters: a term starting or ending
exactly at a cutoff or one second either side, at a window edge, contiguous
renewals, gaps of a second or days between terms, plan changes up and down, an
open last term. Each example is written to Parquet, loaded through
`features.sources.load.load` (subscriptions validated) and run through DuckDB.

- features equal the reference (every event and subscription feature, eligibility
  under every churn definition, contract included);
- terms starting at or after the cutoff change no feature;
- contract churn labels equal the reference for random horizons and grace periods.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from features.columns import (
    CHURN,
    CONTRACT,
    CUSTOMER_ID,
    CUTOFF,
    PURCHASE,
    SERVICE_REQUEST,
    population_column,
)
from features.definition import (
    ELIGIBLE,
    FeatureSpec,
    build_features,
    catalogue,
    seen_pairs,
)
from features.labels import LabelSpec, build_labels
from features.sources.contract import SUBSCRIPTIONS_SCHEMA
from features.sources.load import connect, load
from tests.oracles.features import reference_features, reference_pairs
from tests.oracles.subscriptions import (
    reference_contract_churn,
    reference_subscription_features,
    terms_of,
)
from tests.strategies import (
    DAY,
    DEFINITIONS,
    EVENT_SCHEMA,
    FAR_FUTURE,
    FEATURES,
    KEY,
    ROLE_OF,
    SEC,
    Event,
    cutoff_lists,
    differences,
    event_logs,
    events_frame,
    examples,
    feature_edges,
    feature_specs,
    midnights,
)

SUBS_FEATURES = settings(FEATURES, max_examples=examples(30))
SUBS_LABELS = settings(FEATURES, max_examples=examples(40))
# customer, plan, start, end, price, billing period days, discount, auto renew, qty
Term = tuple[
    str,
    str,
    datetime,
    datetime | None,
    float,
    float,
    float | None,
    bool | None,
    float | None,
]
PLANS = {"basic": (10.0, 30.0), "pro": (30.0, 30.0), "annual": (99.0, 365.0)}


@dataclass(frozen=True)
class Case:
    events: tuple[Event, ...]
    terms: tuple[Term, ...]
    cutoffs: tuple[datetime, ...]
    spec: FeatureSpec


@st.composite
def term_logs(
    draw, ids: tuple[str, ...], cutoffs: tuple[datetime, ...], edges: tuple[int, ...]
) -> tuple[Term, ...]:
    """0-4 non-overlapping terms per customer, edges at cutoffs and window edges."""
    terms: list[Term] = []
    for cid in ids:
        n = draw(st.integers(0, 4))
        cutoff = draw(st.sampled_from(cutoffs))
        start = draw(
            st.one_of(
                midnights,
                st.builds(
                    lambda d, s, c=cutoff: c - d * DAY + s * SEC,
                    st.sampled_from(edges),
                    st.sampled_from((-1, 0, 1)),
                ),
            )
        )
        for i in range(n):
            plan = draw(st.sampled_from(sorted(PLANS)))
            price, period = PLANS[plan]
            how = draw(st.sampled_from(("period", "to_cutoff", "days", "seconds")))
            if how == "to_cutoff":
                later = [c for c in cutoffs if c > start]
                end = (
                    draw(st.sampled_from(later))
                    + draw(st.sampled_from((-1, 0, 0, 1))) * SEC
                    if later
                    else start + period * DAY
                )
            elif how == "period":
                end = start + period * DAY
            elif how == "days":
                end = start + draw(st.integers(1, 60)) * DAY
            else:
                end = start + draw(st.integers(1, 5)) * SEC
            if end <= start:
                end = start + SEC
            last = i == n - 1
            if last and draw(st.booleans()):
                end = None
            terms.append(
                (
                    cid,
                    plan,
                    start,
                    end,
                    price * draw(st.sampled_from((1.0, 1.0, 0.5))),
                    period,
                    draw(st.sampled_from((None, 0.0, 0.2))),
                    draw(st.sampled_from((None, True, False))),
                    draw(st.sampled_from((None, 1.0, 3.0))),
                )
            )
            if end is None:
                break
            # contiguous renewal mostly; else a gap of a second or some days
            start = end + draw(st.sampled_from((0, 0, 0, 1, 86400, 20 * 86400))) * SEC
    if not terms:  # an empty subscriptions table is a contract error
        terms.append((ids[-1], "basic", cutoffs[0], None, 10.0, 30.0, None, None, None))
    return tuple(terms)


def terms_table(terms: tuple[Term, ...]) -> pa.Table:
    names = SUBSCRIPTIONS_SCHEMA.names
    return pa.Table.from_pylist(
        [dict(zip(names, t, strict=True)) for t in terms], schema=SUBSCRIPTIONS_SCHEMA
    )


@st.composite
def cases(draw) -> Case:
    spec = draw(feature_specs())
    definition = draw(st.sampled_from((*DEFINITIONS, CONTRACT, CONTRACT)))
    spec = dataclasses.replace(spec, subscriptions=True, churn_definition=definition)
    cutoffs = draw(cutoff_lists())
    events = draw(event_logs(cutoffs, feature_edges(spec)))
    ids = (*sorted({e[0] for e in events}), "terms_only")
    terms = draw(term_logs(ids, cutoffs, feature_edges(spec)))
    return Case(events, terms, cutoffs, spec)


def _load(tmp: Path, case: Case):
    frame = events_frame(case.events)
    table = pa.Table.from_pandas(frame, schema=EVENT_SCHEMA, preserve_index=False)
    pq.write_table(table, tmp / "events.parquet")
    pq.write_table(terms_table(case.terms), tmp / "subscriptions.parquet")
    return load(
        tmp / "events.parquet",
        as_of=FAR_FUTURE,
        con=connect(threads=1),
        subscriptions=tmp / "subscriptions.parquet",
    )


def engine_features(case: Case) -> tuple[pd.DataFrame, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ds = _load(Path(tmp), case)
        try:
            pairs = seen_pairs(ds.events, case.cutoffs)
            table = build_features(ds.events, pairs, case.spec, None, ds.subscriptions)
            return table.to_pandas(), catalogue(case.spec).names
        finally:
            ds.con.disconnect()


def terms_frame(terms: tuple[Term, ...]) -> pd.DataFrame:
    return terms_table(terms).to_pandas()


def check_features(case: Case) -> None:
    got, names = engine_features(case)
    events = events_frame(case.events)
    want = reference_features(events, case.cutoffs, case.spec)
    if want.empty:
        assert got.empty
        return
    want = reference_subscription_features(want, terms_frame(case.terms), case.spec)
    assert [n for n in names if n.startswith("sub_")] == [
        c for c in want.columns if c.startswith("sub_")
    ]
    flags = [*(population_column(t) for t in case.spec.targets), ELIGIBLE]
    assert differences(got, want, [*names, *flags]) == []


C = datetime(2024, 3, 1)
EDGES = Case(
    events=(
        ("at_end", C - 3 * DAY, "login", None, None),
        ("gap", C - 3 * DAY, "login", None, None),
        ("up", C - 3 * DAY, "login", None, None),
    ),
    terms=(
        # a term ending exactly at the cutoff: current, 0 days to its end
        ("at_end", "basic", C - 30 * DAY, C, 10.0, 30.0, None, True, None),
        ("at_end", "basic", C, C + 30 * DAY, 10.0, 30.0, None, True, None),
        # in a gap between terms at the cutoff: not active
        ("gap", "basic", C - 60 * DAY, C - 30 * DAY, 10.0, 30.0, 0.2, None, 1.0),
        ("gap", "pro", C - 30 * DAY + SEC, C - SEC, 30.0, 30.0, None, False, 1.0),
        ("gap", "pro", C + 10 * DAY, None, 30.0, 30.0, None, None, None),
        # a renewal, then an upgrade to annual, then a downgrade after the cutoff
        ("up", "basic", C - 90 * DAY, C - 60 * DAY, 10.0, 30.0, None, None, None),
        ("up", "basic", C - 60 * DAY, C - 30 * DAY, 10.0, 30.0, None, None, None),
        ("up", "annual", C - 30 * DAY, C + 335 * DAY, 199.0, 365.0, None, None, None),
        ("up", "basic", C + 335 * DAY, None, 5.0, 30.0, None, None, None),
    ),
    cutoffs=(C,),
    spec=FeatureSpec(
        role_of=ROLE_OF,
        windows_days=(7, 30, 90),
        trend_days=(30,),
        churn_definition=CONTRACT,
        subscriptions=True,
    ),
)


def test_edges_have_the_documented_values() -> None:
    got, _ = engine_features(EDGES)
    rows = got.set_index(CUSTOMER_ID)
    assert rows.loc["at_end", "sub_active"] == 1
    assert rows.loc["at_end", "sub_days_to_term_end"] == 0
    assert rows.loc["gap", "sub_active"] == 0
    # out of churn's population (contract: no term in force), in purchase's
    assert not rows.loc["gap", population_column(CHURN)]
    assert rows.loc["gap", population_column(PURCHASE)] and rows.loc["gap", ELIGIBLE]
    # the second term began a second after the first ended; the third is unknown
    assert rows.loc["gap", "sub_gaps_total"] == 1
    assert rows.loc["gap", "sub_terms_total"] == 2
    assert pd.isna(rows.loc["gap", "sub_plan"])
    up = rows.loc["up"]
    assert (up.sub_renewals_total, up.sub_upgrades_30d, up.sub_downgrades_90d) == (
        1,
        1,
        0,
    )
    assert up.sub_plan == "annual" and up.sub_days_to_term_end == 335
    assert up.sub_days_since_plan_change == 30


@SUBS_FEATURES
@given(cases())
@example(EDGES)
def test_subscription_features_equal_the_reference(case: Case) -> None:
    check_features(case)


@SUBS_FEATURES
@given(cases(), st.data())
def test_terms_starting_at_or_after_the_cutoff_change_nothing(case: Case, data) -> None:
    (cutoff, *_) = case.cutoffs
    case = dataclasses.replace(case, cutoffs=(cutoff,))
    # keep the terms known at the cutoff, closing any left open; add later ones
    known = tuple(t for t in case.terms if t[2] < cutoff)
    # an empty table is a contract error: a term nobody sees, starting at the cutoff
    known = known or (("nobody", "basic", cutoff, None, 1.0, 30.0, None, None, None),)
    later_start = max([cutoff, *(t[3] or cutoff for t in known)])
    later_start += data.draw(st.sampled_from((0, 1, 86400))) * SEC
    ids = sorted({t[0] for t in known} | {e[0] for e in case.events})
    extra = tuple(
        (cid, "pro", later_start, later_start + 30 * DAY, 30.0, 30.0, None, None, None)
        for cid in ids
        if not any(t[0] == cid and t[3] is None for t in known)
    )
    before, names = engine_features(dataclasses.replace(case, terms=known))
    after, _ = engine_features(dataclasses.replace(case, terms=known + extra))
    if before.empty:
        assert after.empty
        return
    flags = [*(population_column(t) for t in case.spec.targets), ELIGIBLE]
    assert differences(after, before, [*names, *flags]) == []


# ------------------------------------------------------------------ labels


def engine_contract_labels(case: Case, labels: LabelSpec) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        ds = _load(Path(tmp), case)
        try:
            pairs = seen_pairs(ds.events, list(case.cutoffs))
            table = build_labels(ds.events, pairs, case.spec, labels, ds.subscriptions)
            return table.to_pandas()
        finally:
            ds.con.disconnect()


def check_labels(case: Case, labels: LabelSpec) -> None:
    got = engine_contract_labels(case, labels)
    events = events_frame(case.events)
    pairs = reference_pairs(events, case.cutoffs)
    by_id = terms_of(terms_frame(case.terms))
    want = pairs.assign(
        **{
            CHURN: [
                reference_contract_churn(
                    by_id.get(p[CUSTOMER_ID], []),
                    pd.Timestamp(p[CUTOFF]),
                    labels.horizons[CHURN],
                    labels.grace_days,
                )
                for p in pairs.to_dict("records")
            ]
        }
    )
    assert list(got.columns) == [*KEY, CHURN, PURCHASE, SERVICE_REQUEST]
    if want.empty:
        assert got.empty
        return
    assert differences(got[[*KEY, CHURN]], want, [CHURN]) == []


@st.composite
def label_cases(draw) -> tuple[Case, LabelSpec]:
    horizon = draw(st.sampled_from((1, 7, 30, 45)))
    grace = draw(st.sampled_from((0, 1, 7, 30)))
    labels = LabelSpec(
        {CHURN: horizon, PURCHASE: 30, SERVICE_REQUEST: 30}, CONTRACT, grace
    )
    spec = FeatureSpec(role_of=ROLE_OF, subscriptions=True, churn_definition=CONTRACT)
    cutoffs = draw(cutoff_lists())
    events = draw(event_logs(cutoffs, (0, 1)))
    ids = tuple(sorted({e[0] for e in events}))
    edges = (0, 1, -horizon, -horizon - grace, -1)
    return Case(events, draw(term_logs(ids, cutoffs, edges)), cutoffs, spec), labels


LABEL_EDGES = (
    Case(
        events=tuple(
            (c, C - DAY, "login", None, None)
            for c in ("renews", "late", "ends_at_h", "graced")
        ),
        terms=(
            (
                "renews",
                "basic",
                C - 20 * DAY,
                C + 10 * DAY,
                10.0,
                30.0,
                None,
                None,
                None,
            ),
            (
                "renews",
                "basic",
                C + 10 * DAY,
                C + 40 * DAY,
                10.0,
                30.0,
                None,
                None,
                None,
            ),
            # the term after the end comes one second too late: churn
            ("late", "basic", C - 20 * DAY, C, 10.0, 30.0, None, None, None),
            ("late", "basic", C + 7 * DAY + SEC, None, 10.0, 30.0, None, None, None),
            # ends exactly at cutoff + H: outside the window
            (
                "ends_at_h",
                "basic",
                C - 20 * DAY,
                C + 30 * DAY,
                10.0,
                30.0,
                None,
                None,
                None,
            ),
            # returns exactly at end + G: inside the grace, not churn
            (
                "graced",
                "basic",
                C - 20 * DAY,
                C + 5 * DAY,
                10.0,
                30.0,
                None,
                None,
                None,
            ),
            ("graced", "pro", C + 12 * DAY, None, 30.0, 30.0, None, None, None),
        ),
        cutoffs=(C,),
        spec=FeatureSpec(
            role_of=ROLE_OF, subscriptions=True, churn_definition=CONTRACT
        ),
    ),
    LabelSpec({CHURN: 30, PURCHASE: 30, SERVICE_REQUEST: 30}, CONTRACT, 7),
)


def test_contract_churn_edges() -> None:
    got = engine_contract_labels(*LABEL_EDGES).set_index(CUSTOMER_ID)[CHURN]
    assert got.to_dict() == {"renews": 0, "late": 1, "ends_at_h": 0, "graced": 0}


@SUBS_LABELS
@given(label_cases())
@example(LABEL_EDGES)
def test_contract_churn_equals_the_reference(case: tuple[Case, LabelSpec]) -> None:
    check_labels(*case)


def test_contract_churn_without_subscriptions_is_an_error() -> None:
    case, labels = LABEL_EDGES
    with tempfile.TemporaryDirectory() as tmp:
        ds = _load(Path(tmp), case)
        pairs = seen_pairs(ds.events, list(case.cutoffs))
        with pytest.raises(ValueError, match="subscriptions"):
            build_labels(ds.events, pairs, case.spec, labels).to_pandas()
        with pytest.raises(ValueError, match="subscriptions"):
            build_features(ds.events, pairs, case.spec)
