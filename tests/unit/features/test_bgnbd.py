"""BG/NBD: known values, the formulas against simulated customers, degenerate inputs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from features.bgnbd import (
    BGNBD,
    EXPECTED_PURCHASES,
    P_PURCHASE,
    ConvergenceError,
    purchase_baseline,
    rfm_summary,
)
from features.columns import CUSTOMER_ID, EVENT_TIME, EVENT_TYPE

CUT = datetime(2024, 3, 1)
DAY = timedelta(days=1)
ROLE_OF = {"buy": "purchase", "ticket": "service_request"}
# FHL 2005's CDNOW estimates (weeks), and a population with a > 1 and longer lives.
PUBLISHED = BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426)
LOYAL = BGNBD(r=1.5, alpha=8.0, a=2.0, b=6.0)
Z_MAX = 4.0  # simulated vs predicted, in standard errors


def events(rows: list[tuple[str, datetime, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[CUSTOMER_ID, EVENT_TIME, EVENT_TYPE])


# --- RFM summary -------------------------------------------------------------------


def test_rfm_counts_purchase_days_and_measures_to_the_last_day() -> None:
    rows = [
        ("a", CUT - 14 * DAY, "buy"),
        ("a", CUT - 14 * DAY + timedelta(hours=5), "buy"),  # same day: one
        ("a", CUT - 7 * DAY, "buy"),
        ("b", CUT - DAY + timedelta(hours=23), "buy"),  # the last day: T = 0
        ("c", CUT - 8 * DAY, "buy"),
        ("c", CUT - DAY, "buy"),  # on the last day: t_x = T
        ("c", CUT, "buy"),  # at the cutoff: excluded
    ]

    weeks = rfm_summary(events(rows), CUT)
    days = rfm_summary(events(rows), CUT, unit="days")

    assert weeks.to_dict("index") == {
        "a": {"x": 1, "t_x": 1.0, "T": 13 / 7},
        "b": {"x": 0, "t_x": 0.0, "T": 0.0},
        "c": {"x": 1, "t_x": 1.0, "T": 1.0},
    }
    assert days.loc["a"].to_dict() == {"x": 1, "t_x": 7.0, "T": 13.0}


def test_rfm_rejects_a_cutoff_that_is_not_a_midnight_and_unknown_units() -> None:
    frame = events([("a", CUT - DAY, "buy")])
    with pytest.raises(ValueError, match="midnight"):
        rfm_summary(frame, CUT + timedelta(hours=1))
    with pytest.raises(ValueError, match="unit must be one of"):
        rfm_summary(frame, CUT, unit="months")  # type: ignore[arg-type]


# --- known values ------------------------------------------------------------------


@pytest.mark.parametrize("x, t_x, T", [(0, 0.0, 20.0), (3, 12.5, 30.0)])
def test_likelihood_is_the_individual_likelihood_integrated_over_lambda_and_p(
    x: int, t_x: float, T: float
) -> None:
    m = LOYAL

    def individual(lam: float, p: float) -> float:
        alive = (1 - p) ** x * lam**x * np.exp(-lam * T)
        dead = p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * t_x) if x else 0.0
        prior = stats.gamma.pdf(lam, m.r, scale=1 / m.alpha) * stats.beta.pdf(
            p, m.a, m.b
        )
        return (alive + dead) * prior

    expected, _ = integrate.dblquad(individual, 0, 1, 0, np.inf, epsrel=1e-10)

    assert np.exp(m.log_likelihoods(x, t_x, T)) == pytest.approx(expected, rel=1e-6)


def test_p_alive_boundaries() -> None:
    # No repeat purchase: BG/NBD only drops customers out right after a repeat.
    assert PUBLISHED.p_alive([0, 0], [0, 0], [1, 100]) == pytest.approx([1, 1])
    # A purchase at the end of the calibration: only the first-step drop-out odds.
    x = np.array([1, 5])
    expected = 1 / (1 + PUBLISHED.a / (PUBLISHED.b + x - 1))
    assert PUBLISHED.p_alive(x, [10, 10], [10, 10]) == pytest.approx(expected)


def test_predictions_are_zero_over_a_zero_horizon() -> None:
    args = ([0, 2], [0, 3], [5, 5])
    assert PUBLISHED.prob_any_purchase(0.0, *args) == pytest.approx([0, 0])
    assert PUBLISHED.expected_purchases(0.0, *args) == pytest.approx([0, 0])


def test_more_recent_purchases_and_longer_horizons_raise_the_probability() -> None:
    t_x = np.linspace(0.5, 30, 60)
    by_recency = PUBLISHED.prob_any_purchase(13, 3, t_x, 30)
    by_horizon = PUBLISHED.prob_any_purchase(np.array([1, 4, 13, 39]), 3, 20, 30)

    assert np.all(np.diff(by_recency) > 0)
    assert np.all(np.diff(by_horizon) > 0)
    assert np.all(PUBLISHED.expected_purchases(13, 3, t_x, 30) > by_recency)


# --- against simulated customers ----------------------------------------------------


@dataclass(frozen=True)
class Simulated:
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    alive: np.ndarray  # alive at T
    future: np.ndarray  # purchases in (T, T + horizon]


def simulate(m: BGNBD, n: int, horizon: float, seed: int) -> Simulated:
    """BG/NBD customers born (first purchase) at 0, observed until T ~ U(0, 39]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(m.r, 1 / m.alpha, n)
    p = rng.beta(m.a, m.b, n)
    T = rng.uniform(0, 39, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    now, alive = np.zeros(n), np.ones(n, dtype=bool)
    active = np.arange(n)
    while active.size:
        with np.errstate(divide="ignore"):  # lambda can underflow to 0: never buys
            now[active] += rng.standard_exponential(active.size) / lam[active]
        active = active[now[active] <= T[active] + horizon]
        seen = now[active] <= T[active]
        x[active[seen]] += 1
        t_x[active[seen]] = now[active[seen]]
        future[active[~seen]] += 1
        dies = rng.random(active.size) < p[active]
        alive[active[dies & seen]] = False
        active = active[~dies]
    return Simulated(x, t_x, T, alive, future)


def binned(predicted: np.ndarray, bins: int = 10) -> list[np.ndarray]:
    """Customer indices in `bins` groups of equal size by predicted value."""
    return np.array_split(np.argsort(predicted, kind="stable"), bins)


def bernoulli_z(predicted: np.ndarray, observed: np.ndarray) -> list[float]:
    """Per bin: (observed - predicted count) / binomial standard error."""
    return [
        (observed[i].sum() - predicted[i].sum())
        / np.sqrt((predicted[i] * (1 - predicted[i])).sum())
        for i in binned(predicted)
    ]


HORIZON = 39.0


@pytest.fixture(scope="module", params=[PUBLISHED, LOYAL], ids=["cdnow", "loyal"])
def simulated(request: pytest.FixtureRequest) -> tuple[BGNBD, Simulated]:
    return request.param, simulate(request.param, 20_000, HORIZON, seed=11)


def test_prob_any_purchase_matches_simulation(
    simulated: tuple[BGNBD, Simulated],
) -> None:
    m, s = simulated
    predicted = m.prob_any_purchase(HORIZON, s.x, s.t_x, s.T)

    z = bernoulli_z(predicted, s.future > 0)

    assert max(map(abs, z)) < Z_MAX, z


def test_p_alive_matches_simulation(simulated: tuple[BGNBD, Simulated]) -> None:
    m, s = simulated
    repeat = s.x > 0  # x = 0 is alive for sure, in the model and the simulation
    assert s.alive[~repeat].all()
    predicted = m.p_alive(s.x[repeat], s.t_x[repeat], s.T[repeat])

    z = bernoulli_z(predicted, s.alive[repeat])

    assert max(map(abs, z)) < Z_MAX, z


def test_expected_purchases_matches_simulation(
    simulated: tuple[BGNBD, Simulated],
) -> None:
    m, s = simulated
    predicted = m.expected_purchases(HORIZON, s.x, s.t_x, s.T)

    z = [
        (s.future[i].mean() - predicted[i].mean())
        / (s.future[i].std(ddof=1) / np.sqrt(i.size))
        for i in binned(predicted)
    ]

    assert max(map(abs, z)) < Z_MAX, z


def test_fit_reaches_at_least_the_true_likelihood_and_is_deterministic() -> None:
    s = simulate(PUBLISHED, 5_000, HORIZON, seed=3)

    fitted = BGNBD.fit(s.x, s.t_x, s.T)

    truth = PUBLISHED.log_likelihoods(s.x, s.t_x, s.T).sum()
    assert fitted.log_likelihood >= truth
    assert fitted.log_likelihood == pytest.approx(
        fitted.log_likelihoods(s.x, s.t_x, s.T).sum()
    )
    assert BGNBD.fit(s.x, s.t_x, s.T) == fitted
    # 5,000 customers pin the parameters down loosely; the CDNOW test is the exact one.
    assert fitted.r == pytest.approx(PUBLISHED.r, rel=0.3)
    assert fitted.b == pytest.approx(PUBLISHED.b, rel=0.5)


# --- degenerate inputs ---------------------------------------------------------------


def test_fit_without_repeat_purchases_is_an_error() -> None:
    with pytest.raises(ValueError, match="none with x > 0"):
        BGNBD.fit([0, 0, 0], [0, 0, 0], [3, 10, 20])
    with pytest.raises(ValueError, match="got 0 customers"):
        BGNBD.fit([], [], [])


def test_fit_on_a_single_customer_does_not_converge() -> None:
    with pytest.raises(ConvergenceError, match="on 1 customers"):
        BGNBD.fit([2], [5.0], [10.0])


@pytest.mark.parametrize(
    "x, t_x, T",
    [([-1], [0], [5]), ([1.5], [1], [5]), ([2], [6], [5]), ([0], [1], [5])],
    ids=["negative x", "fractional x", "t_x after T", "t_x without repeats"],
)
def test_invalid_histories_are_rejected(x: list, t_x: list, T: list) -> None:
    with pytest.raises(ValueError, match="invalid histories"):
        PUBLISHED.p_alive(x, t_x, T)


# --- the pipeline's entry ------------------------------------------------------------


def shop(seed: int = 5, customers: int = 300) -> pd.DataFrame:
    """Purchases on random days over 200 days before CUT, some tickets, one customer
    with tickets only, one whose first purchase is at the cutoff."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        first = int(rng.integers(1, 200))
        days = rng.integers(0, first, rng.poisson(rng.gamma(0.5, 6)))
        for d in [first, *days]:
            rows.append((f"c{c:03d}", CUT - int(d) * DAY, "buy"))
    rows += [
        ("c000", CUT - 3 * DAY, "ticket"),
        ("tickets-only", CUT - 9 * DAY, "ticket"),
        ("newcomer", CUT, "buy"),
        ("c001", CUT + 2 * DAY, "buy"),
    ]
    return events(rows)


def test_purchase_baseline_rows_and_values() -> None:
    frame = shop()

    model, scores = purchase_baseline(frame, CUT, 28, ROLE_OF)

    buyers = {f"c{c:03d}" for c in range(300)}
    assert set(scores.index) == buyers | {"tickets-only"}  # any event before CUT
    assert scores.loc["tickets-only"].isna().all()
    known = scores.drop(index="tickets-only")
    assert known[P_PURCHASE].between(0, 1).all()
    assert (known[EXPECTED_PURCHASES] >= known[P_PURCHASE]).all()
    history = rfm_summary(frame[frame[EVENT_TYPE] == "buy"], CUT)
    expected = model.prob_any_purchase(4.0, history.x, history.t_x, history["T"])
    assert known[P_PURCHASE].to_numpy() == pytest.approx(expected)


def test_purchase_baseline_ignores_events_from_the_cutoff_on() -> None:
    frame = shop()
    later = events([("c002", CUT + k * DAY, "buy") for k in range(5)])

    before = purchase_baseline(frame, CUT, 28, ROLE_OF)
    after = purchase_baseline(pd.concat([frame, later]), CUT, 28, ROLE_OF)

    assert after[0] == before[0]
    pd.testing.assert_frame_equal(after[1], before[1])


def test_purchase_baseline_does_not_depend_on_the_time_unit() -> None:
    frame = shop()

    weeks, by_week = purchase_baseline(frame, CUT, 28, ROLE_OF, unit="weeks")
    days, by_day = purchase_baseline(frame, CUT, 28, ROLE_OF, unit="days")

    assert days.alpha == pytest.approx(7 * weeks.alpha, rel=1e-3)
    for column in (P_PURCHASE, EXPECTED_PURCHASES):
        assert by_day[column].to_numpy() == pytest.approx(
            by_week[column].to_numpy(), rel=1e-3, nan_ok=True
        )
