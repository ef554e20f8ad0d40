"""The classic models as features (features.classic): fitted at each cutoff on
the history before it only, the same from the events, from customer chunks and
from the incremental state, and equal to the BG/NBD baseline's own fit."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from features import state as fs
from features.bgnbd import BGNBD, rfm_summary
from features.classic import fit_from_events, gamma_gamma_log_likelihoods
from features.columns import (
    AMOUNT,
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    QUANTITY,
)
from features.definition import FeatureSpec, build_features, catalogue
from features.sources.load import connect
from tests.strategies import ROLE_OF, differences

START = datetime(2023, 1, 1)
CUTS = [datetime(2023, 9, 1), datetime(2023, 11, 1)]
SPEC = FeatureSpec(
    role_of=ROLE_OF,
    windows_days=(30,),
    trend_days=(30,),
    classic=True,
    behaviour=True,
    horizons=(7, 30),
)
CLASSIC = [n for n in catalogue(SPEC).names if n.startswith(("bgnbd_", "gg_"))]


def buy_till_you_die(customers: int = 120, seed: int = 7) -> pd.DataFrame:
    """Customers born in the first 150 days who buy (Poisson, rate ~ Gamma) and
    drop out after a purchase with probability ~ Beta, with logins between and
    amounts ~ Gamma around a customer's own mean: the BG/NBD story."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(customers):
        cid = f"c{i:03d}"
        t = float(rng.uniform(0, 150))
        rate, drop = rng.gamma(1.5, 1 / 20), rng.beta(1, 4)
        mean = rng.gamma(4, 10)
        while t < 360:
            when = START + timedelta(days=t)
            rows.append((cid, when, "buy", round(float(rng.gamma(5, mean / 5)), 2)))
            if rng.random() < 0.5:
                later = when + timedelta(hours=float(rng.uniform(1, 200)))
                rows.append((cid, later, "login", None))
            if rng.random() < drop:
                break
            t += float(rng.exponential(1 / rate))
    frame = pd.DataFrame(rows, columns=[CUSTOMER_ID, EVENT_TIME, EVENT_TYPE, AMOUNT])
    frame[EVENT_TIME] = frame[EVENT_TIME].astype("datetime64[us]")
    frame[AMOUNT] = frame[AMOUNT].astype("float64")
    frame[QUANTITY] = np.nan
    return frame


EVENTS = buy_till_you_die()


@cache
def whole() -> pd.DataFrame:
    """The features of every customer at both cutoffs, in one pass."""
    return features(EVENTS)


def features(events: pd.DataFrame, cuts=CUTS, spec=SPEC, **kw) -> pd.DataFrame:
    out = build_features(ibis.memtable(events), cuts, spec, **kw).to_pandas()
    return out.sort_values([CUTOFF, CUSTOMER_ID]).reset_index(drop=True)


def test_events_at_or_after_a_cutoff_change_nothing() -> None:
    base = whole()
    rng = np.random.default_rng(1)
    later = EVENTS.sample(300, random_state=2).copy()
    later[EVENT_TIME] = (
        CUTS[-1] + pd.to_timedelta(rng.uniform(0, 90, len(later)), unit="D")
    ).astype("datetime64[us]")
    later.iloc[0, 1] = CUTS[-1]  # exactly at the cutoff
    # the log truncated at the first cutoff: its events after it gone
    first_only = features(EVENTS[EVENTS[EVENT_TIME] < CUTS[0]], [CUTS[0]])
    assert (EVENTS[EVENT_TIME] >= CUTS[0]).sum() > 100
    with_future = features(pd.concat([EVENTS, later], ignore_index=True))
    assert base[CLASSIC].notna().any().all()
    assert not differences(with_future, base, CLASSIC)
    # the first cutoff's rows from the log truncated there
    assert not differences(first_only, base[base[CUTOFF] == CUTS[0]], CLASSIC)


def test_the_fit_at_a_cutoff_is_the_baselines_fit_on_the_truncated_log() -> None:
    params = fit_from_events(ibis.memtable(EVENTS), CUTS, SPEC)
    purchases = EVENTS[EVENTS[EVENT_TYPE] == "buy"]
    rows = whole()
    for cut in CUTS:
        truncated = purchases[purchases[EVENT_TIME] < cut]
        hist = rfm_summary(truncated, cut, "weeks")
        want = BGNBD.fit(hist.x, hist.t_x, hist["T"])
        got = params[params[CUTOFF] == cut].iloc[0]
        for k in ("r", "alpha", "a", "b"):
            assert got[f"_cl_purchase_{k}"] == pytest.approx(getattr(want, k), rel=1e-3)
        # and the features are that fit's predictions for each customer
        at = rows[rows[CUTOFF] == cut].set_index(CUSTOMER_ID)
        fitted = BGNBD(*(got[f"_cl_purchase_{k}"] for k in ("r", "alpha", "a", "b")))
        args = [hist[c].to_numpy() for c in ("x", "t_x", "T")]
        alive = pd.Series(fitted.p_alive(*args), hist.index)
        p30 = pd.Series(fitted.prob_any_purchase(30 / 7, *args), hist.index)
        np.testing.assert_allclose(
            at.loc[hist.index, "bgnbd_p_alive"], alive, rtol=1e-9
        )
        np.testing.assert_allclose(
            at.loc[hist.index, "bgnbd_p_purchase_30d"], p30, rtol=1e-9
        )
        # a customer without a purchase has no purchase history: null
        seen = set(EVENTS.loc[EVENTS[EVENT_TIME] < cut, CUSTOMER_ID])
        assert at.loc[sorted(seen - set(hist.index)), "bgnbd_p_alive"].isna().all()


def test_chunks_with_the_fit_on_every_customer_equal_one_pass() -> None:
    params = fit_from_events(ibis.memtable(EVENTS), CUTS, SPEC)
    ids = sorted(EVENTS[CUSTOMER_ID].unique())
    parts = [
        features(EVENTS[EVENTS[CUSTOMER_ID].isin(ids[i::2])], classic=params)
        for i in range(2)
    ]
    chunked = pd.concat(parts).sort_values([CUTOFF, CUSTOMER_ID])
    assert not differences(chunked, whole(), catalogue(SPEC).names)


def test_the_state_fits_what_a_full_build_fits() -> None:
    """The incremental state advanced two months gives the classic and behaviour
    features a full build gives (the property test's random logs are mostly too
    small for a fit)."""
    con = connect(threads=1)
    d0, d1 = CUTS
    with tempfile.TemporaryDirectory() as tmp:
        first = EVENTS[EVENTS[EVENT_TIME] < d0]
        state = fs.rebuild(Path(tmp), con, [ibis.memtable(first)], d0, SPEC, {})
        new = EVENTS[(EVENTS[EVENT_TIME] >= d0) & (EVENTS[EVENT_TIME] < d1)]
        state = fs.advance(state, con, ibis.memtable(new), d1, SPEC).state
        got = state.features(con, SPEC).to_pandas()
        want = whole()
        want = want[want[CUTOFF] == d1]
        assert got[CLASSIC].notna().any().all()
        assert not differences(got, want, catalogue(SPEC).names)
    con.disconnect()


def test_a_failed_fit_leaves_nulls() -> None:
    """Three customers do not identify a BG/NBD: the features are null, the
    other features are there."""
    few = EVENTS[EVENTS[CUSTOMER_ID].isin(["c000", "c001", "c002"])]
    out = features(few)
    assert out[CLASSIC].isna().all().all()
    assert out["purchase_count_total"].notna().all()


def test_without_the_group_the_catalogue_is_unchanged() -> None:
    plain = replace(SPEC, classic=False, behaviour=False)
    names = catalogue(SPEC).names
    assert [n for n in names if n in set(catalogue(plain).names)] == catalogue(
        plain
    ).names
    assert set(CLASSIC) == {
        "bgnbd_p_alive",
        "bgnbd_active_p_alive",
        *(
            f"bgnbd_{k}_{h}d"
            for k in ("p_purchase", "expected_purchases", "p_active", "expected_active")
            for h in (7, 30)
        ),
        "gg_expected_spend",
    }


def test_gamma_gamma_density_integrates_to_one() -> None:
    """The mean-amount density of n transactions (the Gamma-Gamma likelihood)
    is a density in m."""
    from scipy import integrate

    for n in (1.0, 3.0):
        total, _ = integrate.quad(
            lambda m, n=n: np.exp(
                gamma_gamma_log_likelihoods(
                    2.0, 3.0, 15.0, np.array([m]), np.array([n])
                )
            )[0],
            0,
            np.inf,
        )
        assert total == pytest.approx(1.0, abs=1e-6)
