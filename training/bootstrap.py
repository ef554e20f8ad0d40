"""Paired cluster bootstrap of two models' out-of-time predictions.

The promotion gate asks whether a challenger's gain over the champion holds beyond
noise. Both models scored the same rows (customer, origin) with the same labels;
the rows of one customer at different origins are not independent, so the
resampling unit is the customer (a cluster bootstrap): each resample draws as many
customers as there are, with replacement, and every row of a drawn customer
counts as often as the customer was drawn, at every origin.

Per resample and origin the statistics are the weighted log loss and the weighted
ROC AUC of each model on the same weights; the gate's figures are their means over
the origins (as the point figures are means of per-origin metrics):

- log-loss gain = champion's log loss - challenger's (positive: challenger better);
- AUC loss = champion's AUC - challenger's (positive: challenger worse).

Everything is vectorised over a block of resamples: a resample is one vector of
draw counts per customer, a row's weight is its customer's count. Each model's
scores at an origin are sorted once into groups of tied scores; a sparse
(groups x customers) matrix of positives and one of negatives turn a block of
draw vectors into each group's positive and negative weight in one product, and
the AUC follows from a cumulative sum (ties count half). No resample sorts. With
more than MAX_GROUPS distinct scores, the resamples' AUCs merge neighbouring
scores into MAX_GROUPS groups (an error of at most about 0.5 / MAX_GROUPS); the
point values are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

# the gate's resamples use this seed: the same predictions give the same interval
SEED = 0
# per block of resamples, at most this many row weights in memory (float64: 32 MB)
BLOCK_CELLS = 4_000_000
# probabilities are clipped like scikit-learn's log_loss (float64 machine epsilon)
EPS = np.finfo(np.float64).eps

# In the resamples, each model's scores at an origin are merged into at most this
# many groups of neighbouring scores (ties stay together; the point values stay
# exact). Only (positive, negative) pairs inside one group are affected, each by at
# most one half, so a resample's AUC moves by at most about 0.5 / MAX_GROUPS
# (0.00002) while the cumulative sums cost a seventh at 250k rows per origin.
MAX_GROUPS = 2**15

# weights and pair counts in float32: whole numbers, exact below 2**24 (16.7M
# rows), and twice as fast as float64; sums over groups accumulate in float64
WEIGHT = np.float32

CUSTOMER, ORIGIN, LABEL, P = "customer_id", "origin", "label", "p"


@dataclass(frozen=True)
class Interval:
    """A statistic's point value (every customer once) and its central interval."""

    point: float
    low: float
    high: float


@dataclass(frozen=True)
class Paired:
    """The bootstrap of a paired comparison (see module docstring)."""

    log_loss_gain: Interval
    auc_loss: Interval
    confidence: float
    samples: int
    seed: int
    customers: int
    rows: int
    origins: list[str]


def customer_draws(
    n_customers: int, samples: int, rng: np.random.Generator
) -> np.ndarray:
    """(samples, n_customers) draw counts: each row is one resample of n_customers
    customers with replacement, so each row sums to n_customers."""
    picks = rng.integers(0, n_customers, size=(samples, n_customers))
    offsets = (np.arange(samples) * n_customers)[:, None]
    counts = np.bincount((picks + offsets).ravel(), minlength=samples * n_customers)
    return counts.reshape(samples, n_customers)


def row_weights(draws: np.ndarray, customer_index: np.ndarray) -> np.ndarray:
    """Each row's weight in each resample: its customer's draw count, so all of a
    customer's rows enter a resample together, as often as the customer. (The
    statistics below never build this matrix: their sparse customer-by-group
    matrices apply the same weights.)"""
    return draws[:, customer_index]


# a model's scores at an origin: (groups x customers) positives and negatives
Ranking = tuple[sparse.csr_matrix, sparse.csr_matrix]


@dataclass(frozen=True)
class _Origin:
    """One origin's rows, laid out so a block of resamples is a few products.

    `losses` holds, per customer, the champion's minus the challenger's log loss of
    the customer's row (0 for a customer without a row at the origin), `present`
    1 for a customer with a row. Per model, `pos` and `neg` (tie groups of the
    model's scores, ascending, by customers) hold the customer's positive and
    negative row in its score's group."""

    losses: np.ndarray
    present: np.ndarray
    # exact tie groups (the point values), and at most `max_groups` (resamples)
    rankings: tuple[Ranking, Ranking]
    coarse: tuple[Ranking, Ranking]


def _ranking(
    p: np.ndarray, y: np.ndarray, index: np.ndarray, n: int, groups: int | None
) -> Ranking:
    """The positive and negative matrices of the groups of tied scores, ascending;
    with `groups`, neighbouring scores merged into at most that many groups of
    about as many distinct scores each (tied scores stay in one group)."""
    values, group = np.unique(p, return_inverse=True)
    size = len(values)
    if groups is not None and size > groups:
        group = group * groups // size
        size = groups
    shape = (size, n)
    return (
        sparse.csr_matrix((y.astype(WEIGHT), (group, index)), shape=shape),
        sparse.csr_matrix(((1.0 - y).astype(WEIGHT), (group, index)), shape=shape),
    )


def _auc(
    ranking: tuple[sparse.csr_matrix, sparse.csr_matrix], draws_t: np.ndarray
) -> np.ndarray:
    """Weighted ROC AUC per resample (column of `draws_t`, customers by resamples):
    the weight of (positive, negative) pairs ranked right, ties counting half,
    over the weight of all such pairs."""
    pos, neg = ranking[0] @ draws_t, ranking[1] @ draws_t  # groups x resamples
    below = np.cumsum(neg, axis=0)
    below -= 0.5 * neg  # negatives below each group, and half of its own
    right = (pos * below).sum(axis=0, dtype=np.float64)
    pairs = pos.sum(axis=0, dtype=np.float64) * neg.sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return right / pairs


def _losses(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))


class PairedRows:
    """The joined predictions of both models, prepared once for many resamples."""

    def __init__(
        self,
        joined: pd.DataFrame,
        champion: str,
        challenger: str,
        max_groups: int | None = None,
    ) -> None:
        if joined.empty:
            raise ValueError("no rows to compare")
        customers, index = np.unique(joined[CUSTOMER].to_numpy(), return_inverse=True)
        self.customers = len(customers)
        self.rows = len(joined)
        self.origins = sorted(joined[ORIGIN].unique())
        self._origins = []
        for origin in self.origins:
            mask = (joined[ORIGIN] == origin).to_numpy()
            i = index[mask]
            y = joined.loc[mask, LABEL].to_numpy().astype(np.float64)
            a = joined.loc[mask, champion].to_numpy(dtype=np.float64)
            b = joined.loc[mask, challenger].to_numpy(dtype=np.float64)
            n = self.customers
            losses = np.bincount(i, _losses(a, y) - _losses(b, y), minlength=n)
            present = np.bincount(i, minlength=n).astype(np.float64)
            exact = (_ranking(a, y, i, n, None), _ranking(b, y, i, n, None))
            coarse = (
                (_ranking(a, y, i, n, max_groups), _ranking(b, y, i, n, max_groups))
                if max_groups is not None
                and max(len(np.unique(a)), len(np.unique(b))) > max_groups
                else exact
            )
            self._origins.append(_Origin(losses, present, exact, coarse))

    def statistics(
        self, draws: np.ndarray, exact: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per resample (row of `draws`, as from `customer_draws`): the mean over
        origins of the log-loss gain and of the AUC loss (`exact` False: the AUC
        on scores merged into at most `max_groups` groups)."""
        draws_t = np.ascontiguousarray(draws.T, dtype=WEIGHT)
        gain = np.zeros(len(draws))
        auc_loss = np.zeros(len(draws))
        w = draws.astype(np.float64)
        for o in self._origins:
            gain += (w @ o.losses) / (w @ o.present)
            champion, challenger = o.rankings if exact else o.coarse
            auc_loss += _auc(champion, draws_t) - _auc(challenger, draws_t)
        return gain / len(self._origins), auc_loss / len(self._origins)


def _quantiles(values: np.ndarray, point: float, confidence: float) -> Interval:
    tail = (1 - confidence) / 2
    finite = values[np.isfinite(values)]
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Interval(float(point), float(low), float(high))


def paired(
    joined: pd.DataFrame,
    champion: str,
    challenger: str,
    *,
    samples: int,
    confidence: float,
    seed: int = SEED,
    max_groups: int | None = MAX_GROUPS,
) -> Paired:
    """The intervals of the log-loss gain and the AUC loss (champion - challenger)
    from `joined`: one row per (customer_id, origin) with `label` and the two
    models' probabilities in columns `champion` and `challenger`."""
    data = PairedRows(joined, champion, challenger, max_groups)
    n = data.customers
    point_gain, point_auc = data.statistics(np.ones((1, n), dtype=np.int64))
    rng = np.random.default_rng(seed)
    block = max(1, min(samples, BLOCK_CELLS // n))
    gains, aucs = [], []
    for start in range(0, samples, block):
        draws = customer_draws(n, min(block, samples - start), rng)
        g, d = data.statistics(draws, exact=False)
        gains.append(g)
        aucs.append(d)
    return Paired(
        _quantiles(np.concatenate(gains), point_gain[0], confidence),
        _quantiles(np.concatenate(aucs), point_auc[0], confidence),
        confidence,
        samples,
        seed,
        n,
        data.rows,
        [str(o) for o in data.origins],
    )
