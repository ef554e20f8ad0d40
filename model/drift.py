"""Binned reference distributions and the population stability index (PSI).

At training time every feature a model reads, and its calibrated score, is
summarised on a reference population: the rows of the latest cutoff the final model
was trained on (one cutoff's customers in the target's population, like one nightly
run), scored by the final model as it is served (so a score's PSI moves only when
the population does; in-sample scores are a little more spread than new ones). The
summary is small (about 13 numbers per column) and travels in the registered model's
metadata, so the champion's reference is found from the champion.

Bins: a numeric column gets up to `BINS` bins between its reference deciles (values
that occur: numpy's `lower` quantiles; repeated edges merged, so a column with few
values gets fewer bins) plus one bin for missing values; a categorical column
(integer codes) one bin per code plus missing (an unknown value is missing, as the
encoding makes it). A value equal to an edge falls in the lower bin.

PSI = sum over bins (actual - expected) * ln(actual / expected), each share floored
at `EPSILON` so an empty bin counts as rare, not impossible. Usual reading: below
0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one.

Counting is streaming (`Counts.add` per batch), so the nightly job never holds a
whole column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BINS = 10
EPSILON = 1e-4


@dataclass(frozen=True)
class Reference:
    """One column's binned distribution on the reference population."""

    edges: tuple[float, ...]
    # share of all rows per bin (len(edges) + 1), then `missing`: they sum to 1
    shares: tuple[float, ...]
    missing: float
    low: float | None  # smallest and largest non-missing value
    high: float | None
    rows: int
    categorical: bool = False

    @classmethod
    def of(
        cls, values: np.ndarray, categories: int | None = None, bins: int = BINS
    ) -> Reference:
        """The reference of `values` (NaN = missing); `categories` for a
        categorical column's codes 0..categories-1."""
        values = np.asarray(values, dtype=np.float64)
        present = values[~np.isnan(values)]
        if categories is not None:
            edges = np.arange(categories - 1, dtype=np.float64) + 0.5
        elif present.size:
            inner = np.quantile(present, np.arange(1, bins) / bins, method="lower")
            edges = np.unique(inner)
        else:
            edges = np.empty(0)
        counts = bin_counts(values, edges)
        n = max(values.size, 1)
        return cls(
            edges=tuple(float(e) for e in edges),
            shares=tuple(float(c) / n for c in counts[:-1]),
            missing=float(counts[-1]) / n,
            low=float(present.min()) if present.size else None,
            high=float(present.max()) if present.size else None,
            rows=int(values.size),
            categorical=categories is not None,
        )

    @property
    def expected(self) -> np.ndarray:
        """Shares per bin with missing last: what PSI compares against."""
        return np.array([*self.shares, self.missing])

    def to_dict(self) -> dict:
        return {
            "edges": list(self.edges),
            "shares": list(self.shares),
            "missing": self.missing,
            "low": self.low,
            "high": self.high,
            "rows": self.rows,
            "categorical": self.categorical,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        return cls(
            tuple(data["edges"]),
            tuple(data["shares"]),
            data["missing"],
            data["low"],
            data["high"],
            data["rows"],
            data.get("categorical", False),
        )


def bin_counts(values: np.ndarray, edges: np.ndarray | Sequence[float]) -> np.ndarray:
    """Counts per bin (len(edges) + 1), then the missing (NaN) count."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing])
    counts = np.bincount(index, minlength=len(edges) + 1)
    return np.append(counts, missing.sum())


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    if e.shape != a.shape:
        raise ValueError(f"PSI: bins differ, {e.shape} expected vs {a.shape} actual")
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class Counts:
    """Streaming counts of a column against a reference's bins, with the values
    below the reference's smallest and above its largest."""

    reference: Reference
    bins: np.ndarray = field(init=False)
    below: int = 0
    above: int = 0

    def __post_init__(self) -> None:
        self.bins = np.zeros(len(self.reference.edges) + 2, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.bins += bin_counts(values, self.reference.edges)
        ref = self.reference
        if ref.low is not None and not ref.categorical:
            with np.errstate(invalid="ignore"):
                self.below += int(np.sum(values < ref.low))
                self.above += int(np.sum(values > ref.high))

    @property
    def rows(self) -> int:
        return int(self.bins.sum())

    @property
    def actual(self) -> np.ndarray:
        """Shares per bin with missing last (zeros when no rows were counted)."""
        return self.bins / max(self.rows, 1)

    def psi(self) -> float:
        return psi(self.reference.expected, self.actual)


def profile(
    matrix: np.ndarray,
    features: Sequence[str],
    vocabularies: dict[str, Sequence[str]],
    scores: np.ndarray,
    **context: str,
) -> dict:
    """The reference kept with a model: every feature column of `matrix` (in
    `features` order, categoricals as codes) and the calibrated `scores`."""
    return {
        **context,
        "features": {
            name: Reference.of(
                matrix[:, j],
                len(vocabularies[name]) if name in vocabularies else None,
            ).to_dict()
            for j, name in enumerate(features)
        },
        "score": Reference.of(scores).to_dict(),
    }


__all__ = ["BINS", "EPSILON", "Counts", "Reference", "bin_counts", "profile", "psi"]
