"""Feature rows -> the numeric matrix a model reads, in the model's column order.

LightGBM reads columns by position, so every caller (training, the API, the nightly
job) goes through `to_matrix` with the model's own feature list. Categorical values
become integer codes from a vocabulary fixed at training time and kept with the
model; unknown or missing values become NaN, which LightGBM treats as missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Encoding:
    """The model's input contract: feature order and categorical vocabularies."""

    features: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str]
    ) -> Encoding:
        vocab = {}
        for name in categorical:
            values = frame[name].dropna().astype(str).unique().tolist()
            vocab[name] = tuple(sorted(values))
        return cls(tuple(features), vocab)

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.features if f in self.vocabularies]

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Encoding:
        return cls(
            tuple(data["features"]),
            {k: tuple(v) for k, v in data.get("vocabularies", {}).items()},
        )

    def to_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """A float64 matrix with one column per feature, in order."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise KeyError(f"feature columns missing from the input: {missing}")
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            column = frame[name]
            if name in self.vocabularies:
                codes = pd.Categorical(
                    column.astype("string"), categories=self.vocabularies[name]
                ).codes
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = (
                    pd.to_numeric(column, errors="raise")
                    .astype("float64")
                    .to_numpy(na_value=np.nan)
                )
        return out

    def record_to_row(self, record: Mapping[str, object], out: np.ndarray) -> None:
        """Fill one row of a preallocated matrix from a {feature: value} mapping.

        Values must already be validated (numbers, strings for categoricals, or None).
        """
        for j, name in enumerate(self.features):
            value = record[name]
            if value is None:
                out[j] = np.nan
            elif name in self.vocabularies:
                vocab = self.vocabularies[name]
                try:
                    out[j] = vocab.index(str(value))
                except ValueError:
                    out[j] = np.nan
            else:
                number = float(value)
                out[j] = number if math.isfinite(number) else np.nan
