"""The paired cluster bootstrap: customers resampled with all their rows, the
vectorised statistics equal to scikit-learn's on explicitly resampled rows, the
same interval for the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from training.bootstrap import PairedRows, customer_draws, paired, row_weights


def predictions(customers: int, origins: int, seed: int = 0) -> pd.DataFrame:
    """Every customer at every origin; the champion informative, the challenger its
    scores plus noise; scores rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    n = customers * origins
    y = (rng.random(n) < 0.2).astype(int)
    champion = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.15, n), 0.01, 0.99)
    challenger = np.clip(champion + rng.normal(0, 0.05, n), 0.01, 0.99)
    return pd.DataFrame(
        {
            "customer_id": np.tile([f"c{i}" for i in range(customers)], origins),
            "origin": np.repeat(
                [f"2025-0{k + 1}-01" for k in range(origins)], customers
            ),
            "label": y,
            "champion": np.round(champion, 2),
            "challenger": np.round(challenger, 2),
        }
    )


def test_each_resample_draws_as_many_customers_as_there_are() -> None:
    draws = customer_draws(50, 7, np.random.default_rng(1))
    assert draws.shape == (7, 50)
    assert (draws.sum(axis=1) == 50).all()
    # with replacement: some customers twice or more, some not at all
    assert (draws == 0).any() and (draws >= 2).any()


def test_a_customers_rows_are_resampled_together() -> None:
    frame = predictions(30, 3)
    customers, index = np.unique(frame["customer_id"], return_inverse=True)
    draws = customer_draws(len(customers), 20, np.random.default_rng(2))
    weights = row_weights(draws, index)
    for c in range(len(customers)):
        rows = weights[:, index == c]  # the customer's 3 rows, in every resample
        assert rows.shape[1] == 3
        assert (rows == draws[:, [c]]).all()  # as often as the customer was drawn


def naive(frame: pd.DataFrame, counts: np.ndarray) -> tuple[float, float]:
    """The statistics by building the resample: each customer's rows repeated as
    often as it was drawn, then scikit-learn per origin, means over origins."""
    customers = np.unique(frame["customer_id"])
    repeat = dict(zip(customers, counts, strict=True))
    rows = frame.loc[frame.index.repeat(frame["customer_id"].map(repeat))]
    gains, losses = [], []
    for _, o in rows.groupby("origin"):
        gains.append(
            log_loss(o["label"], o["champion"]) - log_loss(o["label"], o["challenger"])
        )
        losses.append(
            roc_auc_score(o["label"], o["champion"])
            - roc_auc_score(o["label"], o["challenger"])
        )
    return float(np.mean(gains)), float(np.mean(losses))


def test_vectorised_statistics_equal_the_resampled_rows_metrics() -> None:
    frame = predictions(80, 3)
    data = PairedRows(frame, "champion", "challenger")
    draws = customer_draws(data.customers, 5, np.random.default_rng(3))
    gains, auc_losses = data.statistics(draws)
    for k in range(5):
        gain, auc_loss = naive(frame, draws[k])
        assert gains[k] == pytest.approx(gain, abs=1e-12)
        assert auc_losses[k] == pytest.approx(auc_loss, abs=1e-9)


def test_point_values_are_the_full_datas_metrics() -> None:
    frame = predictions(200, 2)
    result = paired(frame, "champion", "challenger", samples=200, confidence=0.9)
    gain, auc_loss = naive(frame, np.ones(200, dtype=int))
    assert result.log_loss_gain.point == pytest.approx(gain, abs=1e-12)
    assert result.auc_loss.point == pytest.approx(auc_loss, abs=1e-9)
    assert result.log_loss_gain.low < result.log_loss_gain.point
    assert result.log_loss_gain.point < result.log_loss_gain.high
    assert (result.customers, result.rows, result.samples) == (200, 400, 200)
    assert result.origins == ["2025-01-01", "2025-02-01"]


def test_the_interval_is_the_same_for_the_same_seed() -> None:
    frame = predictions(300, 2)
    runs = [
        paired(frame, "champion", "challenger", samples=300, confidence=0.95, seed=s)
        for s in (5, 5, 6)
    ]
    assert runs[0] == runs[1]
    assert runs[0].log_loss_gain != runs[2].log_loss_gain


def test_a_higher_confidence_widens_the_interval() -> None:
    frame = predictions(300, 2)
    narrow, wide = (
        paired(frame, "champion", "challenger", samples=400, confidence=c)
        for c in (0.8, 0.99)
    )
    assert wide.log_loss_gain.low < narrow.log_loss_gain.low
    assert wide.log_loss_gain.high > narrow.log_loss_gain.high
    assert wide.auc_loss.low < narrow.auc_loss.low


def test_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="no rows"):
        PairedRows(predictions(3, 1).iloc[:0], "champion", "challenger")


def test_merging_neighbouring_scores_moves_the_auc_by_at_most_half_a_group() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    y = (rng.random(n) < 0.3).astype(int)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "origin": "2025-01-01",
            "label": y,
            "champion": rng.random(n) * 0.5 + 0.3 * y,  # all distinct
            "challenger": np.round(rng.random(n) * 0.5 + 0.35 * y, 3),  # ties
        }
    )
    data = PairedRows(frame, "champion", "challenger", max_groups=100)
    draws = customer_draws(n, 20, np.random.default_rng(8))
    exact_gain, exact_auc = data.statistics(draws)
    gain, auc = data.statistics(draws, exact=False)
    np.testing.assert_allclose(gain, exact_gain)  # log loss is never merged
    assert np.abs(auc - exact_auc).max() <= 2 * 0.5 / 100  # two models' AUCs
    assert np.abs(auc - exact_auc).max() > 0  # and it did merge
